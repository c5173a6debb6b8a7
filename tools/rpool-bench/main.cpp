// rpool-bench: an HTTP/1.1 keep-alive load generator for rpool (docs/api.md).
//
//   rpool-bench --url http://127.0.0.1:8001 --connections 64 --threads 2 --duration 10 --op draw
//
// Shape. T threads, each with its own io_context and no shared state but a few atomics; C
// connections spread round-robin over the threads and over the target nodes. Each connection keeps
// up to D requests in flight (pipelining) on one kept-alive socket. Two modes:
//  - closed loop (default): a connection sends its next request as soon as an answer frees a slot;
//    latency runs from the moment the request is handed to the socket.
//  - open loop (--rate R): request k of a connection is *scheduled* at start + k * interval,
//  whether
//    or not the server keeps up; it is sent when due and a slot is free, and its latency runs from
//    the scheduled time. A stalled server therefore shows up in the percentiles instead of quietly
//    slowing the load down ("coordinated omission").
// Answers completing inside [warm-up end, end) are counted: per status, latency into a per-thread
// histogram (merged at the end), draws from 200 answers of POST /v1/draw.
//
// Hot path. Per request nothing is allocated once a connection is warm: the request bytes are
// rendered once per connection (D copies, an Idempotency-Key patched in place), answers are read
// into a reused flat_buffer by a parser of our own (derived from beast::http::basic_parser) that
// keeps no header fields and copies the body only for draws, into a reused string. Asio's own
// per-thread handler cache holds only two blocks, too few for many connections, so each connection
// gives its reads and writes their own fixed handler memory (HandlerMemory below); heaptrack
// shows the allocations per request drop to zero.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>
#pragma GCC diagnostic pop

#include "base/assert.h"
#include "histogram.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Nanos = std::chrono::nanoseconds;
using rpool::bench::Histogram;

constexpr int exit_bad_usage = 2;
constexpr std::size_t status_codes_max = 600;
constexpr std::chrono::milliseconds reconnect_delay{100};

enum class Op { draw, pool, stale };

struct Target {
  std::string host;
  std::uint16_t port = 0;
  tcp::endpoint endpoint;
};

struct Options {
  std::vector<Target> targets;
  std::size_t connections = 16;
  std::size_t threads = 1;
  std::size_t pipeline = 1;
  double duration_s = 10;
  std::uint64_t requests = 0;  // 0: run for duration_s
  double warmup_s = 1;
  Op op = Op::draw;
  int count = 1;
  double rate = 0;  // requests per second over all connections; 0: closed loop
  bool idempotency = false;
  bool json = false;
  // Draws go to /v1/pools/pool-NNNNN/draw, the pool changing with every request, over this many
  // pools (pool-00000 .. ); 0: POST /v1/draw.
  std::uint32_t pools = 0;
};

// Pool numbers are patched into the rendered request in place: a fixed width of decimal digits.
constexpr std::size_t pool_digits = 5;
constexpr std::uint32_t pools_max = 100'000;  // 10^pool_digits

// What one thread saw inside the measuring window.
struct ThreadStats {
  Histogram latency_ns;
  std::vector<std::uint64_t> status = std::vector<std::uint64_t>(status_codes_max, 0);
  std::uint64_t responses = 0;
  std::uint64_t draws = 0;           // request_ids in 200 answers to draws
  std::uint64_t draws_empty = 0;     // of which pool_empty
  std::uint64_t lost_in_flight = 0;  // requests sent on a connection that then failed
  std::map<std::string, std::uint64_t> connection_errors;  // rare: allocation is fine here
  Clock::time_point last_done{};
};

// State shared by every thread: the clock marks and the --requests budget.
struct Shared {
  Clock::time_point start;
  Clock::time_point warm_end;
  Clock::time_point end;
  std::atomic<std::uint64_t> claimed{0};  // requests started after warm-up (--requests)
  std::string run_id;                     // makes Idempotency-Keys unique across runs
};

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
  Connection(Worker& worker, const Target& target, std::size_t id, std::size_t connections_total);
  void start() { connect(); }
  void stop();  // closes the socket; callbacks that follow are ignored

 private:
  void connect();
  void on_connect(std::uint64_t generation, beast::error_code ec);
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
  const Target& target_;
  const std::size_t id_;
  tcp::socket socket_;
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
  Worker(const Options& options, Shared& shared)
      : options_(options), shared_(shared), end_timer_(io_) {}

  void add(const Target& target, std::size_t id) {
    connections_.push_back(std::make_unique<Connection>(*this, target, id, options_.connections));
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
  ThreadStats& stats() { return stats_; }
  bool stopping() const { return stopping_; }

 private:
  const Options& options_;
  Shared& shared_;
  asio::io_context io_{1};
  asio::steady_timer end_timer_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::size_t active_ = 0;
  bool stopping_ = false;
  ThreadStats stats_;
};

constexpr std::size_t key_counter_digits = 12;

Connection::Connection(Worker& worker, const Target& target, std::size_t id,
                       std::size_t connections_total)
    : worker_(worker),
      target_(target),
      id_(id),
      socket_(worker.io()),
      rate_timer_(worker.io()),
      retry_timer_(worker.io()) {
  const Options& o = worker_.options();
  RPOOL_ASSERT(o.pipeline >= 1);
  stamps_.resize(o.pipeline);
  // Render the request once; the Idempotency-Key's counter digits are patched before each write.
  std::string head;
  std::string body;
  switch (o.op) {
    case Op::draw:
      body = fmt::format("{{\"count\":{}}}", o.count);
      head = fmt::format(
          "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n"
          "Content-Length: {}\r\n",
          o.pools > 0 ? "/v1/pools/pool-" + std::string(pool_digits, '0') + "/draw" : "/v1/draw",
          target.host, target.port, body.size());
      break;
    case Op::pool:
    case Op::stale:
      head = fmt::format("GET {} HTTP/1.1\r\nHost: {}:{}\r\n",
                         o.op == Op::pool ? "/v1/pool" : "/v1/pool?consistency=stale", target.host,
                         target.port);
      break;
  }
  std::size_t key_at = std::string::npos;
  if (o.idempotency && o.op == Op::draw) {
    const std::string prefix =
        fmt::format("Idempotency-Key: {}-{:06x}-", worker_.shared().run_id, id_);
    key_at = head.size() + prefix.size();
    head += prefix + std::string(key_counter_digits, '0') + "\r\n";
  }
  const std::string one = head + "\r\n" + body;
  request_bytes_ = one.size();
  const std::size_t pool_at =
      o.pools > 0 && o.op == Op::draw ? one.find("/pool-") + 6 : std::string::npos;
  for (std::size_t i = 0; i < o.pipeline; ++i) {
    if (key_at != std::string::npos) key_offsets_.push_back(requests_.size() + key_at);
    if (pool_at != std::string::npos) pool_offsets_.push_back(requests_.size() + pool_at);
    requests_ += one;
  }
  // Connections start at pools spread over the range, so that they do not draw in step.
  if (o.pools > 0)
    pool_counter_ = id_ * (o.pools / std::max<std::size_t>(connections_total, 1) + 1);
  body_.reserve(64 * 1024);
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
  socket_.close(ignored);
  const std::uint64_t generation = generation_;
  socket_.async_connect(target_.endpoint,
                        [this, generation](beast::error_code ec) { on_connect(generation, ec); });
}

void Connection::on_connect(std::uint64_t generation, beast::error_code ec) {
  if (generation != generation_ || stopped_) return;
  if (ec) return fail(ec, "connect");
  socket_.set_option(tcp::no_delay(true), ec);
  connected_ = true;
  do_read();
  pump();
}

void Connection::stop() {
  stopped_ = true;
  ++generation_;
  beast::error_code ignored;
  socket_.close(ignored);
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
  asio::async_write(socket_, asio::buffer(requests_.data(), n * request_bytes_),
                    asio::bind_allocator(HandlerAllocator<int>(write_memory_),
                                         [this, generation, n](beast::error_code ec, std::size_t) {
                                           on_write(generation, n, ec);
                                         }));
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
  http::async_read(socket_, read_buffer_, *parser_,
                   asio::bind_allocator(HandlerAllocator<int>(read_memory_),
                                        [this, generation](beast::error_code ec, std::size_t) {
                                          on_read(generation, ec);
                                        }));
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
    stats.latency_ns.record(
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, (now - stamp).count())));
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
  socket_.close(ignored);
  connected_ = false;
  if (finished_) return stop();
  retry_timer_.expires_after(reconnect_delay);
  retry_timer_.async_wait([this](beast::error_code e) {
    if (!e && !stopped_) connect();
  });
}

// "http://host:port[/...]" or "host:port"; the host is resolved once, here.
std::optional<Target> parse_target(std::string text, std::string& why) {
  if (text.starts_with("http://")) text.erase(0, 7);
  if (text.starts_with("https://")) {
    why = "https is not supported";
    return std::nullopt;
  }
  if (auto slash = text.find('/'); slash != std::string::npos) text.erase(slash);
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    why = fmt::format("'{}' needs host:port", text);
    return std::nullopt;
  }
  Target t;
  t.host = text.substr(0, colon);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port == 0 || port > 65535)
      throw std::invalid_argument("port");
  } catch (const std::exception&) {
    why = fmt::format("'{}' has a bad port", text);
    return std::nullopt;
  }
  t.port = static_cast<std::uint16_t>(port);
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto results = resolver.resolve(t.host, std::to_string(t.port), ec);
  if (ec || results.empty()) {
    why = fmt::format("cannot resolve '{}': {}", t.host, ec.message());
    return std::nullopt;
  }
  t.endpoint = results.begin()->endpoint();
  return t;
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string fmt_latency(std::uint64_t ns) {
  if (ns < 1'000'000) return fmt::format("{:.0f} us", us(ns));
  if (ns < 10'000'000'000ull) return fmt::format("{:.2f} ms", static_cast<double>(ns) / 1e6);
  return fmt::format("{:.2f} s", static_cast<double>(ns) / 1e9);
}

const char* op_name(Op op) {
  switch (op) {
    case Op::draw: return "draw";
    case Op::pool: return "pool";
    case Op::stale: return "stale";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rpool-bench: HTTP/1.1 keep-alive load generator for rpool, with latency percentiles"};
  Options o;
  std::vector<std::string> urls;
  std::string nodes;
  std::string op = "draw";
  app.add_option("--url", urls,
                 "a node, http://host:port (repeatable; connections are spread over them)");
  app.add_option("--nodes", nodes,
                 "comma-separated nodes, host:port or http://host:port (adds to --url)");
  app.add_option("--connections,-c", o.connections, "connections in total (default 16)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--threads,-t", o.threads, "threads, each with its own io_context (default 1)")
      ->check(CLI::Range(1, 256));
  app.add_option("--pipeline", o.pipeline, "requests in flight per connection (default 1)")
      ->check(CLI::Range(1, 1024));
  auto* duration = app.add_option("--duration,-d", o.duration_s,
                                  "seconds to measure after the warm-up (default 10)")
                       ->check(CLI::PositiveNumber);
  app.add_option("--requests,-n", o.requests, "measure this many requests instead of a duration")
      ->check(CLI::PositiveNumber)
      ->excludes(duration);
  app.add_option("--warmup", o.warmup_s, "seconds of load before measuring (default 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--op", op, "draw (POST /v1/draw), pool (GET /v1/pool, linearizable) or stale")
      ->check(CLI::IsMember({"draw", "pool", "stale"}));
  app.add_option("--count", o.count, "draws per request, 1..1000 (default 1)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rate", o.rate,
                 "open loop: requests/s over all connections, latency from the scheduled time")
      ->check(CLI::PositiveNumber);
  app.add_flag("--idempotency", o.idempotency, "a unique Idempotency-Key header on every draw");
  app.add_option("--pools", o.pools,
                 "draw in pools pool-00000 .. pool-<N-1>, one after the other "
                 "(POST /v1/pools/{pool_id}/draw); default: POST /v1/draw")
      ->check(CLI::Range(std::uint32_t{1}, pools_max));
  app.add_flag("--json", o.json, "print the result as one JSON object");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_bad_usage;
  }
  o.op = op == "draw" ? Op::draw : op == "pool" ? Op::pool : Op::stale;
  for (std::size_t at = 0; at < nodes.size();) {
    std::size_t comma = nodes.find(',', at);
    if (comma == std::string::npos) comma = nodes.size();
    if (comma > at) urls.push_back(nodes.substr(at, comma - at));
    at = comma + 1;
  }
  if (urls.empty()) {
    std::cerr << "rpool-bench: name at least one node with --url or --nodes\n";
    return exit_bad_usage;
  }
  for (const std::string& u : urls) {
    std::string why;
    auto t = parse_target(u, why);
    if (!t) {
      std::cerr << "rpool-bench: --url: " << why << "\n";
      return exit_bad_usage;
    }
    o.targets.push_back(*t);
  }
  o.threads = std::min(o.threads, o.connections);

  Shared shared;
  {
    std::random_device rd;
    shared.run_id = fmt::format("{:08x}", rd());
  }
  shared.start = Clock::now();
  shared.warm_end = shared.start + Nanos(static_cast<std::int64_t>(o.warmup_s * 1e9));
  shared.end = o.requests > 0
                   ? shared.warm_end + std::chrono::hours(24)
                   : shared.warm_end + Nanos(static_cast<std::int64_t>(o.duration_s * 1e9));

  std::vector<std::unique_ptr<Worker>> workers;
  for (std::size_t t = 0; t < o.threads; ++t)
    workers.push_back(std::make_unique<Worker>(o, shared));
  for (std::size_t c = 0; c < o.connections; ++c) {
    workers[c % o.threads]->add(o.targets[c % o.targets.size()], c);
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (auto& t : threads) t.join();

  // Merge.
  ThreadStats all;
  for (auto& w : workers) {
    ThreadStats& s = w->stats();
    all.latency_ns.merge(s.latency_ns);
    for (std::size_t i = 0; i < status_codes_max; ++i) all.status[i] += s.status[i];
    all.responses += s.responses;
    all.draws += s.draws;
    all.draws_empty += s.draws_empty;
    all.lost_in_flight += s.lost_in_flight;
    for (auto& [k, v] : s.connection_errors) all.connection_errors[k] += v;
    all.last_done = std::max(all.last_done, s.last_done);
  }
  const Clock::time_point measured_end = o.requests > 0 ? all.last_done : shared.end;
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(measured_end - shared.warm_end).count());
  const double rps = static_cast<double>(all.responses) / seconds;
  const std::uint64_t draws_ok = all.draws - all.draws_empty;
  const double dps = static_cast<double>(draws_ok) / seconds;
  const Histogram& h = all.latency_ns;
  std::uint64_t errors_http = 0;
  for (std::size_t i = 0; i < status_codes_max; ++i) {
    if (i < 200 || i >= 300) errors_http += all.status[i];
  }
  std::uint64_t errors_connection = 0;
  for (auto& [k, v] : all.connection_errors) errors_connection += v;

  if (o.json) {
    nlohmann::json j;
    j["op"] = op_name(o.op);
    j["count"] = o.op == Op::draw ? o.count : 0;
    j["nodes"] = urls;
    j["connections"] = o.connections;
    j["threads"] = o.threads;
    j["pipeline"] = o.pipeline;
    j["rate"] = o.rate;
    j["idempotency"] = o.idempotency;
    j["pools"] = o.pools;
    j["warmup_s"] = o.warmup_s;
    j["seconds"] = seconds;
    j["requests"] = all.responses;
    j["requests_per_s"] = rps;
    j["draws"] = draws_ok;
    j["draws_pool_empty"] = all.draws_empty;
    j["draws_per_s"] = dps;
    j["latency_us"] = {{"p50", us(h.percentile(50))}, {"p90", us(h.percentile(90))},
                       {"p99", us(h.percentile(99))}, {"p99.9", us(h.percentile(99.9))},
                       {"max", us(h.max())},          {"min", us(h.min())},
                       {"mean", h.mean() / 1000.0}};
    nlohmann::json status = nlohmann::json::object();
    for (std::size_t i = 0; i < status_codes_max; ++i) {
      if (all.status[i] > 0) status[std::to_string(i)] = all.status[i];
    }
    j["status"] = status;
    j["errors_http"] = errors_http;
    j["errors_connection"] = all.connection_errors;
    j["lost_in_flight"] = all.lost_in_flight;
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::string where;
  for (const auto& t : o.targets) where += fmt::format(" {}:{}", t.host, t.port);
  fmt::print("rpool-bench: {}{} on{}: {} connections, {} threads, pipeline {}, {}\n", op_name(o.op),
             o.op == Op::draw ? fmt::format(" count={}", o.count) : "", where, o.connections,
             o.threads, o.pipeline,
             o.rate > 0 ? fmt::format("open loop at {:.0f} req/s", o.rate)
                        : std::string("closed loop"));
  fmt::print("  measured   {:.2f} s after {:.1f} s warm-up\n", seconds, o.warmup_s);
  fmt::print("  requests   {:>12}  {:>12.1f} /s\n", all.responses, rps);
  if (o.op == Op::draw) {
    fmt::print("  draws      {:>12}  {:>12.1f} /s   (pool_empty: {})\n", draws_ok, dps,
               all.draws_empty);
  }
  fmt::print("  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
             fmt_latency(h.percentile(50)), fmt_latency(h.percentile(90)),
             fmt_latency(h.percentile(99)), fmt_latency(h.percentile(99.9)), fmt_latency(h.max()),
             fmt_latency(static_cast<std::uint64_t>(h.mean())));
  std::string statuses;
  for (std::size_t i = 0; i < status_codes_max; ++i) {
    if (all.status[i] > 0)
      statuses +=
          fmt::format(" {}: {}", i == 0 ? std::string("other") : std::to_string(i), all.status[i]);
  }
  fmt::print("  status    {}\n", statuses.empty() ? " none" : statuses);
  if (errors_connection > 0 || all.lost_in_flight > 0) {
    fmt::print("  connection errors: {} (requests lost in flight: {})\n", errors_connection,
               all.lost_in_flight);
    for (auto& [k, v] : all.connection_errors) fmt::print("    {:>8}  {}\n", v, k);
  }
  return 0;
}
