// What the HTTP server's listener (server.cpp) and its sessions (session.cpp) share. Internal to
// src/net/http.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "net/http/http.h"

namespace rpool::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// A JSON error answer (json_error() without a request).
HttpResponse make_json_error(unsigned version, bool keep_alive, http::status status,
                             std::string_view code, std::string_view message);

// One connection, seen from the listener: it only ever closes or shuts down a session. The session
// itself (session.cpp) is a template over its stream, plain or TLS.
class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Graceful shutdown: read no more requests; answer the ones already read, then close.
  virtual void shutdown() = 0;
  // Closes the socket now; whatever is unanswered is dropped.
  virtual void close() = 0;
};

// What the listener and its sessions share. Sessions hold it by shared_ptr, so a session that
// finishes its last callback after ~HttpServer still finds it.
struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io_in, HttpServerOptions options_in, HttpHandler handler_in);

  void log(std::string_view message) const {
    if (options.log) {
      options.log(message);
    } else {
      fmt::print(stderr, "rpool http: {}\n", message);
    }
  }

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void refuse(tcp::socket& socket);
  void unregister(SessionBase* session);

  asio::io_context& io;
  const HttpServerOptions options;
  const HttpHandler handler;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;  // backs off after an accept error such as EMFILE
  // The pause after the next failed accept: accept_backoff_min after a success, doubling up to
  // accept_backoff_max while accepts fail.
  std::chrono::milliseconds accept_backoff = accept_backoff_min;
  const std::string overloaded;  // the whole answer to a connection over connections_max
  std::uint16_t port = 0;
  HttpServerStats stats;
  // Every open session, owned here until it closes: a session waiting only for its handlers has
  // no pending I/O to keep it alive. stats.connections_active == sessions.size().
  std::unordered_map<SessionBase*, std::shared_ptr<SessionBase>> sessions;
  bool shutting_down = false;
  std::function<void()> shutdown_done;  // run once when `sessions` empties during shutdown
};

// Creates the session of an accepted connection (TLS when options.tls is set), registers it in
// `server->sessions` and starts it.
void start_session(const std::shared_ptr<HttpServer::State>& server, tcp::socket socket);

}  // namespace rpool::net
