// The load loop of rpool-bench (see main.cpp for its shape).
//
// Hot path. Per request nothing is allocated once a connection is warm: the request bytes are
// rendered once per connection (D copies, an Idempotency-Key patched in place), answers are read
// into a reused flat_buffer by a parser of our own (derived from beast::http::basic_parser) that
// keeps no header fields and copies the body only for draws, into a reused string. Asio's own
// per-thread handler cache holds only two blocks, too few for many connections, so each connection
// gives its reads and writes their own fixed handler memory (HandlerMemory below); heaptrack
// shows the allocations per request drop to zero (plain TCP; TLS's nested operations may not fit).
//
// TLS. A connection owns an ssl::stream over its socket, made anew on every (re)connect (a stream
// cannot be reused after its session ends); the server's certificate is checked against the
// context's CA and the host named in the URL (its DNS name or IP address), then the same reads
// and writes run over the stream instead of the socket.
#include "load.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>
#pragma GCC diagnostic pop

#include "base/assert.h"

namespace rpool::bench {

void ThreadStats::merge(const ThreadStats& s) {
  latency_ns.merge(s.latency_ns);
  for (std::size_t i = 0; i < status_codes_max; ++i) status[i] += s.status[i];
  responses += s.responses;
  draws += s.draws;
  draws_empty += s.draws_empty;
  lost_in_flight += s.lost_in_flight;
  for (auto& [k, v] : s.connection_errors) connection_errors[k] += v;
  last_done = std::max(last_done, s.last_done);
  slow_answers += s.slow_answers;
  for (const Slow& a : s.slow) {
    if (slow.size() < slow_answers_max) slow.push_back(a);
  }
}

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Nanos = std::chrono::nanoseconds;
using TlsStream = ssl::stream<tcp::socket>;

constexpr std::chrono::milliseconds reconnect_delay{100};
constexpr std::size_t read_buffer_bytes = 16 * 1024;  // per connection

// A response parser that keeps only what the benchmark needs: the status, keep-alive (basic_parser
// itself tracks it), and for draw answers the body, appended to a string owned by the connection.
class ResponseParser final : public http::basic_parser<false> {
 public:
  ResponseParser(std::string& body, bool want_body) : body_(body), want_body_(want_body) {
    body_limit(16 * 1024 * 1024);
  }
  int status() const { return status_; }

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override {
    status_ = code;
    keep_body_ = want_body_ && code == 200;
    body_.clear();  // keeps its capacity
  }
  void on_field_impl(http::field, beast::string_view, beast::string_view,
                     beast::error_code&) override {}
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view s, beast::error_code&) override {
    if (keep_body_) body_.append(s.data(), s.size());
    return s.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view s,
                                 beast::error_code& ec) override {
    return on_body_impl(s, ec);
  }
  void on_finish_impl(beast::error_code&) override {}

  std::string& body_;
  bool want_body_;
  bool keep_body_ = false;
  int status_ = 0;
};

std::uint64_t count_occurrences(std::string_view haystack, std::string_view needle) {
  std::uint64_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// Fixed memory for the handlers of one kind of operation of one connection (its reads, or its
// writes): a few slots, because a composed operation (Beast's async_read) holds its own state and
// the socket operation below it at the same time. Falls back to the heap when every slot is taken.
// Used from one thread only.
class HandlerMemory {
 public:
  void* allocate(std::size_t bytes) {
    for (auto& slot : slots_) {
      if (!slot.used && bytes <= sizeof slot.bytes) {
        slot.used = true;
        return slot.bytes;
      }
    }
    return ::operator new(bytes);
  }
  void deallocate(void* p) {
    for (auto& slot : slots_) {
      if (p == slot.bytes) {
        slot.used = false;
        return;
      }
    }
    ::operator delete(p);
  }

 private:
  struct Slot {
    alignas(std::max_align_t) unsigned char bytes[1024];
    bool used = false;
  };
  Slot slots_[4];
};

template <class T>
class HandlerAllocator {
 public:
  using value_type = T;
  explicit HandlerAllocator(HandlerMemory& memory) : memory_(&memory) {}
  template <class U>
  HandlerAllocator(const HandlerAllocator<U>& other) : memory_(other.memory_) {}  // NOLINT: rebind
  T* allocate(std::size_t n) { return static_cast<T*>(memory_->allocate(sizeof(T) * n)); }
  void deallocate(T* p, std::size_t) { memory_->deallocate(p); }
  template <class U>
  bool operator==(const HandlerAllocator<U>& other) const {
    return memory_ == other.memory_;
  }

 private:
  template <class U>
  friend class HandlerAllocator;
  HandlerMemory* memory_;
};

class Worker;

// One kept-alive connection with up to `pipeline` requests in flight.
class Connection {
 public:
  Connection(Worker& worker, const Url& target, const tcp::endpoint& endpoint, std::size_t id,
             std::size_t connections_total);
  void start() { connect(); }
  void stop();  // closes the socket; callbacks that follow are ignored

 private:
  void connect();
  void on_connect(std::uint64_t generation, beast::error_code ec);
  void on_handshake(std::uint64_t generation, beast::error_code ec);
  void ready();  // connected (and TLS set up): start reading and sending
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  void pump();  // issues every request that is allowed now, arms the rate timer if needed
  bool claim(Clock::time_point now);
  void issue(Clock::time_point stamp);
  void do_write();
  void on_write(std::uint64_t generation, std::size_t requests, beast::error_code ec);
  void do_read();
  void on_read(std::uint64_t generation, beast::error_code ec);
  void fail(beast::error_code ec, const char* what);
  void finish();  // no more requests for this connection (--requests exhausted)
  Clock::time_point scheduled(std::uint64_t seq) const {
    return rate_start_ + Nanos(static_cast<std::int64_t>(static_cast<double>(seq) * interval_ns_));
  }

  Worker& worker_;
  const Url& target_;
  const tcp::endpoint endpoint_;
  const std::size_t id_;
  tcp::socket socket_;             // plain TCP
  std::unique_ptr<TlsStream> tls_;  // TLS: the stream, with its own socket
  asio::steady_timer rate_timer_;
  asio::steady_timer retry_timer_;
  beast::flat_buffer read_buffer_;
  std::string body_;
  std::optional<ResponseParser> parser_;
  HandlerMemory read_memory_;
  HandlerMemory write_memory_;
  std::string requests_;                  // `pipeline` copies of the request, rendered once
  std::size_t request_bytes_ = 0;         // one copy
  std::vector<std::size_t> key_offsets_;  // where each copy's key counter digits start
  std::uint64_t key_counter_ = 0;
  std::vector<std::size_t> pool_offsets_;  // where each copy's pool number digits start (--pools)
  std::uint64_t pool_counter_ = 0;
  std::vector<Clock::time_point> stamps_;  // ring of in-flight requests' start (or scheduled) times
  std::size_t head_ = 0;                   // oldest in-flight request
  std::size_t in_flight_ = 0;              // sent or waiting to be written; <= pipeline
  std::size_t unwritten_ = 0;              // the newest `unwritten_` of them are not written yet
  bool writing_ = false;
  bool connected_ = false;
  bool stopped_ = false;
  bool finished_ = false;
  bool rate_timer_armed_ = false;
  std::uint64_t generation_ = 0;  // bumped on every (re)connect: stale callbacks are ignored
  // Open loop only.
  double interval_ns_ = 0;
  Clock::time_point rate_start_;
  std::uint64_t next_seq_ = 0;
};

class Worker {
 public:
  Worker(const Options& options, Shared& shared, ssl::context* tls)
      : options_(options), shared_(shared), tls_(tls), end_timer_(io_) {}

  void add(const Url& target, const tcp::endpoint& endpoint, std::size_t id) {
    connections_.push_back(
        std::make_unique<Connection>(*this, target, endpoint, id, options_.connections));
  }

  void run() {
    active_ = connections_.size();
    for (auto& c : connections_) c->start();
    end_timer_.expires_at(shared_.end);
    end_timer_.async_wait([this](beast::error_code ec) {
      if (!ec) stop_all();
    });
    io_.run();
  }

  void stop_all() {
    stopping_ = true;
    end_timer_.cancel();
    for (auto& c : connections_) c->stop();
  }

  void connection_finished() {
    RPOOL_ASSERT(active_ > 0);
    if (--active_ == 0) end_timer_.cancel();
  }

  asio::io_context& io() { return io_; }
  const Options& options() const { return options_; }
  Shared& shared() { return shared_; }
  ssl::context* tls() { return tls_; }
  ThreadStats& stats() { return stats_; }
  bool stopping() const { return stopping_; }

 private:
  const Options& options_;
  Shared& shared_;
  ssl::context* tls_;
  asio::io_context io_{1};
  asio::steady_timer end_timer_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::size_t active_ = 0;
  bool stopping_ = false;
  ThreadStats stats_;
};

Connection::Connection(Worker& worker, const Url& target, const tcp::endpoint& endpoint,
                       std::size_t id, std::size_t connections_total)
    : worker_(worker),
      target_(target),
      endpoint_(endpoint),
      id_(id),
      socket_(worker.io()),
      rate_timer_(worker.io()),
      retry_timer_(worker.io()) {
  const Options& o = worker_.options();
  RPOOL_ASSERT(o.pipeline >= 1);
  stamps_.resize(o.pipeline);
  // Render the request once; the Idempotency-Key's counter digits are patched before each write.
  const Rendered one =
      render_request(o, target, fmt::format("{}-{:06x}", worker_.shared().run_id, id_));
  request_bytes_ = one.bytes.size();
  for (std::size_t i = 0; i < o.pipeline; ++i) {
    if (one.key_at != std::string::npos) key_offsets_.push_back(requests_.size() + one.key_at);
    if (one.pool_at != std::string::npos) pool_offsets_.push_back(requests_.size() + one.pool_at);
    requests_ += one.bytes;
  }
  // Connections start at pools spread over the range, so that they do not draw in step.
  if (o.pools > 0)
    pool_counter_ = id_ * (o.pools / std::max<std::size_t>(connections_total, 1) + 1);
  body_.reserve(64 * 1024);
  // Beast reads into the free space of the buffer, at least 512 bytes: without room reserved,
  // a 4 KiB answer (GET /v1/pool) takes several reads, and the generator ran at 40% of wrk's
  // rate against nginx answering 4 KiB.
  read_buffer_.reserve(read_buffer_bytes);
  if (o.rate > 0) {
    interval_ns_ = 1e9 * static_cast<double>(connections_total) / o.rate;
    // Stagger the connections' schedules evenly over one interval.
    rate_start_ = worker_.shared().start +
                  Nanos(static_cast<std::int64_t>(interval_ns_ * static_cast<double>(id_) /
                                                  static_cast<double>(connections_total)));
  }
}

void Connection::connect() {
  ++generation_;
  connected_ = false;
  writing_ = false;
  in_flight_ = 0;
  unwritten_ = 0;
  head_ = 0;
  read_buffer_.clear();
  parser_.reset();
  beast::error_code ignored;
  socket().close(ignored);
  if (ssl::context* context = worker_.tls()) {
    tls_ = std::make_unique<TlsStream>(worker_.io(), *context);
    tls_->set_verify_mode(ssl::verify_peer);
    tls_->set_verify_callback(ssl::host_name_verification(target_.host));
    // SNI carries DNS names only, never an address.
    beast::error_code not_ip;
    asio::ip::make_address(target_.host, not_ip);
    if (not_ip) {
      // SSL_set_tlsext_host_name, without its macro's C cast.
      SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(target_.host.c_str()));
    }
  }
  const std::uint64_t generation = generation_;
  socket().async_connect(endpoint_,
                         [this, generation](beast::error_code ec) { on_connect(generation, ec); });
}

void Connection::on_connect(std::uint64_t generation, beast::error_code ec) {
  if (generation != generation_ || stopped_) return;
  if (ec) return fail(ec, "connect");
  socket().set_option(tcp::no_delay(true), ec);
  if (!tls_) return ready();
  tls_->async_handshake(ssl::stream_base::client, [this, generation](beast::error_code e) {
    on_handshake(generation, e);
  });
}

void Connection::on_handshake(std::uint64_t generation, beast::error_code ec) {
  if (generation != generation_ || stopped_) return;
  if (ec) return fail(ec, "tls handshake");
  ready();
}

void Connection::ready() {
  connected_ = true;
  do_read();
  pump();
}

void Connection::stop() {
  stopped_ = true;
  ++generation_;
  beast::error_code ignored;
  socket().close(ignored);
  rate_timer_.cancel();
  retry_timer_.cancel();
}

bool Connection::claim(Clock::time_point now) {
  const Options& o = worker_.options();
  if (o.requests == 0 || now < worker_.shared().warm_end) return true;
  return worker_.shared().claimed.fetch_add(1, std::memory_order_relaxed) < o.requests;
}

void Connection::pump() {
  if (!connected_ || stopped_ || finished_) return;
  const Options& o = worker_.options();
  const Clock::time_point now = Clock::now();
  if (o.rate > 0) {
    while (in_flight_ < o.pipeline && scheduled(next_seq_) <= now) {
      if (!claim(now)) return finish();
      issue(scheduled(next_seq_++));
    }
    if (in_flight_ < o.pipeline && !rate_timer_armed_) {
      rate_timer_armed_ = true;
      rate_timer_.expires_at(scheduled(next_seq_));
      rate_timer_.async_wait([this](beast::error_code ec) {
        rate_timer_armed_ = false;
        if (!ec) pump();
      });
    }
  } else {
    while (in_flight_ < o.pipeline) {
      if (!claim(now)) return finish();
      issue(now);
    }
  }
  if (unwritten_ > 0 && !writing_) do_write();
}

void Connection::issue(Clock::time_point stamp) {
  RPOOL_ASSERT(in_flight_ < stamps_.size());
  stamps_[(head_ + in_flight_) % stamps_.size()] = stamp;
  ++in_flight_;
  ++unwritten_;
}

void Connection::do_write() {
  RPOOL_ASSERT(!writing_);
  RPOOL_ASSERT(unwritten_ > 0);
  RPOOL_ASSERT(unwritten_ <= stamps_.size());
  const std::size_t n = unwritten_;
  for (std::size_t i = 0; i < n && i < key_offsets_.size(); ++i) {
    std::uint64_t k = key_counter_++;
    char* digits = requests_.data() + key_offsets_[i];
    for (std::size_t d = key_counter_digits; d-- > 0; k >>= 4)
      digits[d] = "0123456789abcdef"[k & 15];
  }
  for (std::size_t i = 0; i < n && i < pool_offsets_.size(); ++i) {
    std::uint64_t k = pool_counter_++ % worker_.options().pools;
    char* digits = requests_.data() + pool_offsets_[i];
    for (std::size_t d = pool_digits; d-- > 0; k /= 10) digits[d] = static_cast<char>('0' + k % 10);
  }
  writing_ = true;
  const std::uint64_t generation = generation_;
  auto done = asio::bind_allocator(HandlerAllocator<int>(write_memory_),
                                   [this, generation, n](beast::error_code ec, std::size_t) {
                                     on_write(generation, n, ec);
                                   });
  const auto bytes = asio::buffer(requests_.data(), n * request_bytes_);
  if (tls_) {
    asio::async_write(*tls_, bytes, std::move(done));
  } else {
    asio::async_write(socket_, bytes, std::move(done));
  }
}

void Connection::on_write(std::uint64_t generation, std::size_t requests, beast::error_code ec) {
  if (generation != generation_ || stopped_) return;
  writing_ = false;
  if (ec) return fail(ec, "write");
  RPOOL_ASSERT(unwritten_ >= requests);
  unwritten_ -= requests;
  if (unwritten_ > 0) do_write();
}

void Connection::do_read() {
  parser_.emplace(body_, worker_.options().op == Op::draw);
  const std::uint64_t generation = generation_;
  auto done = asio::bind_allocator(
      HandlerAllocator<int>(read_memory_),
      [this, generation](beast::error_code ec, std::size_t) { on_read(generation, ec); });
  if (tls_) {
    http::async_read(*tls_, read_buffer_, *parser_, std::move(done));
  } else {
    http::async_read(socket_, read_buffer_, *parser_, std::move(done));
  }
}

void Connection::on_read(std::uint64_t generation, beast::error_code ec) {
  if (generation != generation_ || stopped_) return;
  if (ec) return fail(ec, "read");
  const Clock::time_point now = Clock::now();
  if (in_flight_ == 0 || in_flight_ == unwritten_)
    return fail(http::error::unexpected_body, "answer without a request");
  const Clock::time_point stamp = stamps_[head_];
  head_ = (head_ + 1) % stamps_.size();
  --in_flight_;
  Shared& shared = worker_.shared();
  ThreadStats& stats = worker_.stats();
  if (now >= shared.warm_end && now < shared.end) {
    const int status = parser_->status();
    ++stats.responses;
    ++stats.status[status >= 0 && static_cast<std::size_t>(status) < status_codes_max
                       ? static_cast<std::size_t>(status)
                       : 0];
    const auto latency_ns =
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, (now - stamp).count()));
    stats.latency_ns.record(latency_ns);
    const double slow_ms = worker_.options().slow_ms;
    if (slow_ms > 0 && static_cast<double>(latency_ns) >= slow_ms * 1e6) {
      ++stats.slow_answers;
      if (stats.slow.size() < slow_answers_max)
        stats.slow.push_back({std::chrono::system_clock::now(), latency_ns});
    }
    stats.last_done = now;
    if (status == 200 && worker_.options().op == Op::draw) {
      stats.draws += count_occurrences(body_, "\"request_id\"");
      stats.draws_empty += count_occurrences(body_, "\"pool_empty\"");
    }
  }
  if (!parser_->keep_alive()) {
    // The server closes after this answer: what else was in flight is lost; start over.
    stats.lost_in_flight += in_flight_;
    connect();
    return;
  }
  do_read();
  pump();
  if (finished_ && in_flight_ == 0) stop();
}

void Connection::finish() {
  if (finished_) return;
  finished_ = true;
  worker_.connection_finished();
  if (in_flight_ == 0) stop();
}

void Connection::fail(beast::error_code ec, const char* what) {
  if (stopped_ || worker_.stopping()) return;
  ThreadStats& stats = worker_.stats();
  ++stats.connection_errors[fmt::format("{}: {}", what, ec.message())];
  stats.lost_in_flight += in_flight_;
  ++generation_;
  beast::error_code ignored;
  socket().close(ignored);
  connected_ = false;
  if (finished_) return stop();
  retry_timer_.expires_after(reconnect_delay);
  retry_timer_.async_wait([this](beast::error_code e) {
    if (!e && !stopped_) connect();
  });
}


}  // namespace

ThreadStats run_load(const Options& o, const std::vector<tcp::endpoint>& endpoints,
                     ssl::context* tls, Shared& shared, const std::function<void()>& on_started) {
  RPOOL_ASSERT(endpoints.size() == o.targets.size());
  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t t = 0; t < o.threads; ++t)
    workers.push_back(std::make_unique<Worker>(o, shared, tls));
  for (std::size_t c = 0; c < o.connections; ++c) {
    const std::size_t k = c % o.targets.size();
    workers[c % o.threads]->add(o.targets[k], endpoints[k], c);
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  if (on_started) on_started();
  for (auto& t : threads) t.join();
  ThreadStats all;
  for (auto& w : workers) all.merge(w->stats());
  return all;
}

}  // namespace rpool::bench
