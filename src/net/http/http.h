// Transport-level HTTP/1.1 for the node: a Beast server (keep-alive, pipelining, body and queue
// limits, read deadlines, graceful shutdown) and a keep-alive client used by followers to forward
// requests to the leader. Routing and the API handlers live elsewhere; this layer only moves
// requests and responses.
//
// Threading: everything here runs on the node's ONE io_context thread. Every public member
// function must be called on that thread (or before the io_context runs), every callback is
// invoked on it, and no state is shared with other threads, so there are no locks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "net/http/beast.h"

namespace boost::asio::ssl {
class context;
}

namespace rpool::net {

namespace http = boost::beast::http;
using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// Answers one request. Call it exactly once, on the io_context thread, now or later. The server
// fixes up the answer before writing it: the HTTP version of the request, `Server`,
// `Content-Length`, and `Connection` (the connection is kept only if the request, the response
// and the server's state all allow it; set `res.keep_alive(false)` to close after this answer).
// If every copy of a Respond is destroyed without being called, the client gets a 500 `internal`.
using Respond = std::function<void(HttpResponse&&)>;
// Called on the io_context thread for each complete request, in the order requests arrive on a
// connection. It may answer later: answers are written in request order whatever order the
// handlers finish in. If it throws, the client gets a 500 `internal` and the throw is logged.
using HttpHandler = std::function<void(HttpRequest&& request, Respond respond)>;

// The default and ceiling of HttpServerOptions::connections_max: each connection may hold a read
// buffer, a body and a pipeline of answers, so even a large file limit is not a memory budget.
inline constexpr std::size_t connections_max_default = 10'000;
// Descriptors a node keeps for everything but its HTTP server: the WAL (open segment, the next
// one, the directory for fsync), snapshot files being written or sent, the hard-state temporary
// file, the data-dir lock, peer connections, the forwarding client's connections to the leader
// (64 per host), the log and stdio, and the event loop's own. Generous on purpose: running out
// fails a disk write, which is far worse than refusing an HTTP connection.
inline constexpr std::size_t fds_reserved_for_node = 256;
// How many HTTP connections a process whose RLIMIT_NOFILE is `fd_limit` may hold:
// fd_limit - fds_reserved_for_node, at most connections_max_default. Under a small limit at most
// half of it, and at least 1.
std::size_t connections_max_for_fd_limit(std::uint64_t fd_limit);
// How long accepting pauses after a failed accept (out of descriptors, ...): doubles from min to
// max while accepts keep failing, back to min after one succeeds. Never a busy loop, never fatal.
inline constexpr std::chrono::milliseconds accept_backoff_min{50};
inline constexpr std::chrono::milliseconds accept_backoff_max{1'000};
static_assert(accept_backoff_min.count() > 0);  // a zero pause is the busy loop it prevents
static_assert(accept_backoff_min <= accept_backoff_max);

struct HttpServerOptions {
  std::string host;                        // an IP literal or a name resolved once at start()
  std::uint16_t port = 0;                  // 0: any free port, see HttpServer::port()
  std::size_t body_bytes_max = 64 * 1024;  // a larger body is answered 413 payload_too_large
  // The request line and header fields together; a larger header section is answered 431
  // headers_too_large and the connection is closed.
  std::size_t header_bytes_max = 8 * 1024;
  // Bytes read from the socket and not yet parsed, per connection. The parser needs a whole
  // header section, chunk-size line (with its extensions) or trailer section in the buffer at
  // once, so without this bound a line that never ends grows the buffer without limit. A
  // chunk-size line or trailer section that does not fit is answered 400 and the connection is
  // closed. Must exceed header_bytes_max, so that a header section is refused by its own limit.
  std::size_t read_buffer_bytes_max = 16 * 1024;
  // How long the server waits for the client while the connection holds no unanswered request:
  // an idle keep-alive connection, or a request that arrives too slowly, is closed after it. While
  // a handler is working on a request of the connection the clock is stopped. Also bounds each
  // write of a response (a client that does not read its answers).
  std::chrono::milliseconds read_timeout{30'000};
  std::size_t pipeline_depth_max = 64;  // requests read ahead per connection, answered or not
  // Open connections. One beyond it is accepted, answered `503 overloaded` with `Retry-After`
  // and `Connection: close` in a single non-blocking write, and closed in the same step, so it
  // never holds a descriptor (a client that sent its request before the answer arrived may see
  // a reset instead). Derive it from the file limit with connections_max_for_fd_limit(): a
  // connection is a descriptor, and the node's log, snapshots and peers need theirs.
  std::size_t connections_max = connections_max_default;
  std::string server_name = "rpool";
  // Null: plain HTTP. Else the port serves HTTPS only, with this context's certificate
  // (net::make_tls_context); clients are not asked for a certificate. A connection whose TLS
  // handshake fails or does not finish within read_timeout is closed and counted.
  std::shared_ptr<boost::asio::ssl::context> tls;
  // Where warnings go (a handler threw, accept failed). Null: one line on stderr.
  std::function<void(std::string_view message)> log;
};

struct HttpServerStats {
  std::uint64_t connections_accepted = 0;  // including ones refused over connections_max
  std::uint64_t connections_refused = 0;   // answered 503 overloaded and closed: over the cap
  std::uint64_t connections_active = 0;
  // Failed accepts (EMFILE, ENFILE, ...). Each pauses accepting for a while, doubling from
  // accept_backoff_min up to accept_backoff_max while they go on; pending connections wait in
  // the kernel's backlog meanwhile.
  std::uint64_t accept_errors = 0;
  std::uint64_t requests = 0;                // complete requests handed to the handler
  std::uint64_t bad_requests = 0;            // answered 400, 413 or 431 by the server itself
  std::uint64_t tls_handshake_failures = 0;  // HTTPS: connections closed in the TLS handshake
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpServerOptions options, HttpHandler handler);
  // Closes the listener and every connection at once; unanswered requests are dropped.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, then accepts on the io_context. Returns the error of a bad host or of a
  // taken address (std::errc::address_in_use) without throwing.
  std::error_code start();
  // The bound port, valid after a successful start() (tests use port 0).
  std::uint16_t port() const;
  // Graceful shutdown, step 1: closes the listener; new connections are refused.
  void stop_accepting();
  // Graceful shutdown, step 2: stops reading new requests on every connection; idle connections
  // close now, busy ones after their in-flight answers are written (the last with
  // `Connection: close`). `done` runs on the io_context once every connection is closed, never
  // from inside this call. Implies stop_accepting().
  void shutdown(std::function<void()> done);
  HttpServerStats stats() const;

  struct State;

 private:
  std::shared_ptr<State> state_;  // shared with the connections, which may outlive this object
};

// Errors of the HTTP client of its own (the others are system and Beast errors).
enum class HttpErrc {
  // Every connection to the host is busy and waiting_per_host_max requests already wait for
  // one: the request failed at once, unsent. The node answers it 503 overloaded.
  queue_full = 1,
};
const std::error_category& http_category();
std::error_code make_error_code(HttpErrc e);

struct HttpClientOptions {
  std::size_t connections_per_host_max = 64;  // further requests wait for a free connection
  // Requests waiting for a connection per host:port; one more fails at once with
  // HttpErrc::queue_full (a follower flooded with writes refuses them instead of queueing
  // them without bound in front of the leader).
  std::size_t waiting_per_host_max = 1'024;
  // Kept-alive connections kept per host:port. As many as may be open: fewer would close
  // connections after a burst only to open them again for the next one.
  std::size_t idle_connections_max = 64;
  std::string bind_host;  // optional source address of outgoing connections
  // An idle connection older than this is closed instead of reused (below the server's 30 s read
  // deadline, so a connection the server is about to close is not picked).
  std::chrono::milliseconds idle_timeout{15'000};
  std::size_t response_body_bytes_max = 64 * 1024 * 1024;
  // Null: plain HTTP. Else every request goes over HTTPS, and the server's certificate must chain
  // to the context's CA and cover the host the request is sent to (net::make_tls_context).
  std::shared_ptr<boost::asio::ssl::context> tls;
};

struct HttpClientStats {
  std::uint64_t connections_opened = 0;  // connect attempts
  std::uint64_t requests = 0;            // requests started
  std::uint64_t requests_on_reused_connection = 0;
};

class HttpClient {  // kept-alive connections per target, reused; followers forward to the leader
 public:
  HttpClient(boost::asio::io_context& io, HttpClientOptions options);
  // close_all(); the callbacks of unfinished requests still run (std::errc::operation_canceled).
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` to host:port, reusing an idle kept-alive connection when one exists. `done`
  // runs on the io_context thread exactly once, never from inside this call: (error, response).
  // Errors (refused, reset, bad address, a malformed answer, HttpErrc::queue_full when too many
  // requests wait for a connection to the host) come back as the error code; nothing throws.
  // `timeout` covers waiting for a free connection, connect, write and read; on expiry the error
  // is std::errc::timed_out and the connection is closed. A connection returns to the pool only
  // after a complete response that allows keep-alive. `Host` and `Content-Length` are filled in
  // when missing. A failed request is not retried: it may have reached the server.
  void request(const std::string& host, std::uint16_t port, HttpRequest request,
               std::chrono::milliseconds timeout,
               std::function<void(std::error_code, HttpResponse&&)> done);
  // Closes every connection; unfinished requests complete with std::errc::operation_canceled.
  // The client stays usable.
  void close_all();
  HttpClientStats stats() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// A JSON error answer: {"error":"<code>","message":"<message>"} with Content-Type
// application/json and Content-Length. With a request: its HTTP version and its keep-alive;
// without one (null): HTTP/1.1 and `Connection: close`. Bytes of `code` or `message` that are
// not UTF-8 (a message quoting a request target, say) are replaced by U+FFFD: rendering never
// throws.
HttpResponse json_error(const HttpRequest* request, http::status status, std::string_view code,
                        std::string_view message);

}  // namespace rpool::net

template <>
struct std::is_error_code_enum<rpool::net::HttpErrc> : std::true_type {};
