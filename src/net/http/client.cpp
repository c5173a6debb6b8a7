// The keep-alive HTTP client used to forward requests to the leader.
//
// Per host:port, a pool: idle kept-alive connections (most recently used first), a count of all
// open connections, and the requests waiting for a connection when the count is at its limit
// (at most waiting_per_host_max; one more fails at once with HttpErrc::queue_full).
// Each request is one Exchange: take or open a connection, write, read, then give the connection
// back (keep-alive) or close it. One steady_timer per exchange bounds the whole of it; on expiry
// the connection is closed, which aborts whatever I/O is pending.
//
// Completion callbacks are always posted, never called from inside a pool operation, so a
// callback may start new requests or call close_all() without re-entering half-updated state.
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "net/http/http.h"

namespace rpool::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

using Done = std::function<void(std::error_code, HttpResponse&&)>;

struct Connection {
  Connection(asio::io_context& io, std::string key_in) : stream(io), key(std::move(key_in)) {}
  // Calls f with the stream that carries HTTP: TLS over `stream`, or `stream` itself.
  template <class F>
  void with_stream(F&& f) {
    if (tls) {
      f(*tls);
    } else {
      f(stream);
    }
  }
  beast::tcp_stream stream;
  std::optional<asio::ssl::stream<beast::tcp_stream&>> tls;  // HTTPS (set before the handshake)
  beast::flat_buffer buffer;
  const std::string key;  // "host:port" of its pool
  std::chrono::steady_clock::time_point idle_since;
  bool discarded = false;  // closed and no longer counted in its pool
};

struct Exchange {
  Exchange(asio::io_context& io, std::string host_in, std::uint16_t port_in, HttpRequest request_in,
           Done done_in)
      : key(fmt::format("{}:{}", host_in, port_in)),
        host(std::move(host_in)),
        port(port_in),
        request(std::move(request_in)),
        timer(io),
        done(std::move(done_in)) {}
  const std::string key;
  const std::string host;
  const std::uint16_t port;
  HttpRequest request;
  std::optional<http::response_parser<http::string_body>> parser;
  asio::steady_timer timer;
  Done done;
  std::shared_ptr<Connection> connection;  // set once the exchange has one
  bool finished = false;                   // `done` is posted; late I/O completions are ignored
};

struct HostPool {
  std::vector<std::shared_ptr<Connection>> idle;  // back: most recently used
  std::size_t connections = 0;                    // open: idle, in use, or connecting
  // For a connection, in arrival order; size() <= waiting_per_host_max.
  std::deque<std::shared_ptr<Exchange>> waiting;
};

// Whether an idle connection can carry another request: still open, not idle too long, and the
// server has neither closed it nor sent anything unasked (a peek that would block).
bool usable(Connection& connection, std::chrono::milliseconds idle_timeout) {
  if (!connection.stream.socket().is_open()) return false;
  if (connection.buffer.size() != 0) return false;
  if (std::chrono::steady_clock::now() - connection.idle_since > idle_timeout) return false;
  beast::error_code ec;
  connection.stream.socket().non_blocking(true, ec);
  if (ec) return false;
  char byte = 0;
  connection.stream.socket().receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
  return ec == asio::error::would_block;
}

}  // namespace

struct HttpClient::State : std::enable_shared_from_this<HttpClient::State> {
  State(asio::io_context& io_in, HttpClientOptions options_in)
      : io(io_in), options(std::move(options_in)), resolver(io_in) {}

  void start(const std::shared_ptr<Exchange>& exchange);
  void acquire(const std::shared_ptr<Exchange>& exchange);
  void connect(const std::shared_ptr<Exchange>& exchange);
  void connect_to(const std::shared_ptr<Exchange>& exchange, const tcp::endpoint& endpoint);
  void handshake(const std::shared_ptr<Exchange>& exchange);
  void send(const std::shared_ptr<Exchange>& exchange);
  void receive(const std::shared_ptr<Exchange>& exchange);
  void on_read(const std::shared_ptr<Exchange>& exchange, beast::error_code ec);
  void on_timeout(const std::shared_ptr<Exchange>& exchange, beast::error_code ec);
  void finish(const std::shared_ptr<Exchange>& exchange, std::error_code ec,
              HttpResponse&& response);
  void fail(const std::shared_ptr<Exchange>& exchange, std::error_code ec);
  void release(const std::shared_ptr<Connection>& connection, bool keep_alive);
  void discard(Connection& connection);
  void pump(HostPool& pool);
  void close_all();

  asio::io_context& io;
  const HttpClientOptions options;
  tcp::resolver resolver;
  std::unordered_map<std::string, HostPool> pools;
  std::unordered_map<Exchange*, std::shared_ptr<Exchange>> active;  // started, not finished
  HttpClientStats stats;
  bool destroyed = false;  // ~HttpClient ran: requests still posted fail at once
};

void HttpClient::State::start(const std::shared_ptr<Exchange>& exchange) {
  active.emplace(exchange.get(), exchange);
  ++stats.requests;
  if (destroyed) return fail(exchange, std::make_error_code(std::errc::operation_canceled));
  exchange->timer.async_wait([self = shared_from_this(), exchange](beast::error_code ec) {
    self->on_timeout(exchange, ec);
  });
  acquire(exchange);
}

void HttpClient::State::acquire(const std::shared_ptr<Exchange>& exchange) {
  HostPool& pool = pools[exchange->key];
  while (!pool.idle.empty()) {
    std::shared_ptr<Connection> connection = std::move(pool.idle.back());
    pool.idle.pop_back();
    if (usable(*connection, options.idle_timeout)) {
      ++stats.requests_on_reused_connection;
      exchange->connection = std::move(connection);
      send(exchange);
      return;
    }
    discard(*connection);
  }
  if (pool.connections >= options.connections_per_host_max) {
    // pump() takes a request off the queue before it calls acquire(), so only a new request
    // finds the queue full.
    if (pool.waiting.size() >= options.waiting_per_host_max) {
      return fail(exchange, make_error_code(HttpErrc::queue_full));
    }
    pool.waiting.push_back(exchange);
    return;
  }
  ++pool.connections;
  ++stats.connections_opened;
  exchange->connection = std::make_shared<Connection>(io, exchange->key);
  connect(exchange);
}

void HttpClient::State::connect(const std::shared_ptr<Exchange>& exchange) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(exchange->host, ec);
  if (!ec) {
    connect_to(exchange, tcp::endpoint(address, exchange->port));
    return;
  }
  resolver.async_resolve(
      exchange->host, std::to_string(exchange->port),
      [self = shared_from_this(), exchange](beast::error_code resolve_ec,
                                            const tcp::resolver::results_type& results) {
        if (exchange->finished) return;
        if (resolve_ec) return self->fail(exchange, resolve_ec);
        if (results.empty()) {
          return self->fail(exchange, std::make_error_code(std::errc::host_unreachable));
        }
        self->connect_to(exchange, results.begin()->endpoint());
      });
}

void HttpClient::State::connect_to(const std::shared_ptr<Exchange>& exchange,
                                   const tcp::endpoint& endpoint) {
  tcp::socket& socket = exchange->connection->stream.socket();
  if (!options.bind_host.empty()) {
    // A source address set by binding before connecting (async_connect keeps an open socket).
    beast::error_code ec;
    const auto source = asio::ip::make_address(options.bind_host, ec);
    if (ec) return fail(exchange, ec);
    socket.open(endpoint.protocol(), ec);
    if (ec) return fail(exchange, ec);
#ifdef IP_BIND_ADDRESS_NO_PORT
    // Choose the source port at connect(), not at bind(): a bind to port 0 searches the whole
    // port range for one with no conflict, which is slow with many connections in TIME_WAIT.
    // An old kernel without the option refuses it; the bind below still works, so it is ignored.
    const int on = 1;
    (void)::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
#endif
    socket.bind(tcp::endpoint(source, 0), ec);
    if (ec) return fail(exchange, ec);
  }
  exchange->connection->stream.expires_never();  // the exchange's timer is the deadline
  exchange->connection->stream.async_connect(
      endpoint, [self = shared_from_this(), exchange](beast::error_code ec) {
        if (exchange->finished) return;
        if (ec) return self->fail(exchange, ec);
        beast::error_code ignored;
        exchange->connection->stream.socket().set_option(tcp::no_delay(true), ignored);
        if (self->options.tls) return self->handshake(exchange);
        self->send(exchange);
      });
}

// HTTPS: the server's certificate must chain to our CA and cover the host we asked for (the
// leader's HTTP host), or the request fails unsent.
void HttpClient::State::handshake(const std::shared_ptr<Exchange>& exchange) {
  auto& tls = exchange->connection->tls.emplace(exchange->connection->stream, *options.tls);
  tls.set_verify_callback(asio::ssl::host_name_verification(exchange->host));
  tls.async_handshake(asio::ssl::stream_base::client,
                      [self = shared_from_this(), exchange](beast::error_code ec) {
                        if (exchange->finished) return;
                        if (ec) return self->fail(exchange, ec);
                        self->send(exchange);
                      });
}

void HttpClient::State::send(const std::shared_ptr<Exchange>& exchange) {
  HttpRequest& request = exchange->request;
  if (request.find(http::field::host) == request.end()) {
    request.set(http::field::host, exchange->key);
  }
  request.prepare_payload();
  Connection& connection = *exchange->connection;
  connection.stream.expires_never();
  connection.with_stream([&](auto& stream) {
    http::async_write(stream, request,
                      [self = shared_from_this(), exchange](beast::error_code ec, std::size_t) {
                        if (exchange->finished) return;
                        if (ec) return self->fail(exchange, ec);
                        self->receive(exchange);
                      });
  });
}

void HttpClient::State::receive(const std::shared_ptr<Exchange>& exchange) {
  exchange->parser.emplace();
  exchange->parser->body_limit(options.response_body_bytes_max);
  // An answer to HEAD announces a length but carries no body.
  if (exchange->request.method() == http::verb::head) exchange->parser->skip(true);
  Connection& connection = *exchange->connection;
  connection.with_stream([&](auto& stream) {
    http::async_read(stream, connection.buffer, *exchange->parser,
                     [self = shared_from_this(), exchange](beast::error_code ec, std::size_t) {
                       self->on_read(exchange, ec);
                     });
  });
}

void HttpClient::State::on_read(const std::shared_ptr<Exchange>& exchange, beast::error_code ec) {
  if (exchange->finished) return;
  if (ec) return fail(exchange, ec);
  const bool keep_alive = exchange->parser->keep_alive() && exchange->request.keep_alive();
  HttpResponse response = exchange->parser->release();
  std::shared_ptr<Connection> connection = exchange->connection;
  finish(exchange, {}, std::move(response));
  release(connection, keep_alive);
}

void HttpClient::State::on_timeout(const std::shared_ptr<Exchange>& exchange,
                                   beast::error_code ec) {
  if (ec == asio::error::operation_aborted || exchange->finished) return;
  fail(exchange, std::make_error_code(std::errc::timed_out));
}

// Ends an exchange: its callback is posted with (ec, response).
void HttpClient::State::finish(const std::shared_ptr<Exchange>& exchange, std::error_code ec,
                               HttpResponse&& response) {
  RPOOL_ASSERT(!exchange->finished);
  exchange->finished = true;
  exchange->timer.cancel();
  active.erase(exchange.get());
  asio::post(io, [done = std::move(exchange->done), ec, response = std::move(response)]() mutable {
    done(ec, std::move(response));
  });
}

// Ends an exchange with an error: its connection (if any) is closed, a waiting slot is given up.
void HttpClient::State::fail(const std::shared_ptr<Exchange>& exchange, std::error_code ec) {
  RPOOL_ASSERT(ec);
  std::shared_ptr<Connection> connection = exchange->connection;
  auto pool = pools.find(exchange->key);
  if (!connection && pool != pools.end()) {
    auto& waiting = pool->second.waiting;
    waiting.erase(std::remove(waiting.begin(), waiting.end(), exchange), waiting.end());
  }
  finish(exchange, ec, HttpResponse{});
  if (connection) release(connection, false);
}

// Gives a connection back after an exchange: to the idle list if it may be reused, else closed.
// Then a waiting request may proceed.
void HttpClient::State::release(const std::shared_ptr<Connection>& connection, bool keep_alive) {
  if (connection->discarded) return;
  HostPool& pool = pools[connection->key];
  // Kept if it may be reused and either the idle list has room or a request waits for it (pump()
  // below hands it over). Closing it for a full idle list while a request waits only made pump()
  // open a new one: under load every forwarded request paid a connect and a bind.
  if (keep_alive && connection->stream.socket().is_open() &&
      (pool.idle.size() < options.idle_connections_max || !pool.waiting.empty())) {
    connection->idle_since = std::chrono::steady_clock::now();
    pool.idle.push_back(connection);
  } else {
    discard(*connection);
  }
  pump(pool);
}

void HttpClient::State::discard(Connection& connection) {
  if (connection.discarded) return;
  connection.discarded = true;
  beast::error_code ignored;
  connection.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  connection.stream.socket().close(ignored);
  HostPool& pool = pools[connection.key];
  RPOOL_ASSERT_OP(pool.connections, >, std::size_t{0});
  --pool.connections;
}

void HttpClient::State::pump(HostPool& pool) {
  while (!pool.waiting.empty() &&
         (!pool.idle.empty() || pool.connections < options.connections_per_host_max)) {
    std::shared_ptr<Exchange> exchange = std::move(pool.waiting.front());
    pool.waiting.pop_front();
    acquire(exchange);
  }
}

void HttpClient::State::close_all() {
  std::vector<std::shared_ptr<Exchange>> exchanges;
  exchanges.reserve(active.size());
  for (auto& [raw, exchange] : active) exchanges.push_back(exchange);
  for (auto& [key, pool] : pools) pool.waiting.clear();  // so fail() does not pump them
  for (auto& exchange : exchanges) {
    if (exchange->connection) discard(*exchange->connection);
    fail(exchange, std::make_error_code(std::errc::operation_canceled));
  }
  for (auto& [key, pool] : pools) {
    for (auto& connection : pool.idle) discard(*connection);
    pool.idle.clear();
    RPOOL_ASSERT_OP(pool.connections, ==, std::size_t{0});
  }
  pools.clear();
}

HttpClient::HttpClient(asio::io_context& io, HttpClientOptions options)
    : state_(std::make_shared<State>(io, std::move(options))) {
  RPOOL_ASSERT_OP(state_->options.connections_per_host_max, >=, std::size_t{1});
}

namespace {

class HttpCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "rpool.http"; }
  std::string message(int value) const override {
    switch (static_cast<HttpErrc>(value)) {
      case HttpErrc::queue_full: return "too many requests wait for a connection to the host";
    }
    return "unknown HTTP client error";
  }
};

}  // namespace

const std::error_category& http_category() {
  static const HttpCategory category;
  return category;
}

std::error_code make_error_code(HttpErrc e) { return {static_cast<int>(e), http_category()}; }

HttpClient::~HttpClient() {
  state_->destroyed = true;
  state_->close_all();
}

void HttpClient::request(const std::string& host, std::uint16_t port, HttpRequest request,
                         std::chrono::milliseconds timeout,
                         std::function<void(std::error_code, HttpResponse&&)> done) {
  RPOOL_ASSERT(done != nullptr);
  auto exchange =
      std::make_shared<Exchange>(state_->io, host, port, std::move(request), std::move(done));
  exchange->timer.expires_after(timeout);
  // Started from the io_context so that `done` can never run inside this call.
  asio::post(state_->io, [state = state_, exchange] { state->start(exchange); });
}

void HttpClient::close_all() { state_->close_all(); }

HttpClientStats HttpClient::stats() const { return state_->stats; }

}  // namespace rpool::net
