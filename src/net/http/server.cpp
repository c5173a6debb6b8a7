// The HTTP server's listener: binds, accepts with a backoff when descriptors run out, refuses
// connections over connections_max, and hands each accepted connection to a session
// (session.cpp), plain or TLS. Graceful shutdown walks the sessions.
#include <algorithm>
#include <array>
#include <exception>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "net/http/server_state.h"

namespace rpool::net {

HttpResponse make_json_error(unsigned version, bool keep_alive, http::status status,
                             std::string_view code, std::string_view message) {
  HttpResponse response{status, version};
  response.set(http::field::content_type, "application/json");
  // A message may quote the request, whose bytes need not be UTF-8: replaced, never a throw.
  response.body() = nlohmann::json{{"error", code}, {"message", message}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

namespace {

// The answer to a connection over connections_max, written in one non-blocking send.
std::string overloaded_answer(const std::string& server_name) {
  HttpResponse response =
      make_json_error(11, false, http::status::service_unavailable, "overloaded",
                      "The node holds as many connections as it may; retry shortly.");
  response.set(http::field::server, server_name);
  response.set(http::field::retry_after, "1");
  std::string out = "HTTP/1.1 503 Service Unavailable\r\n";
  for (const auto& field : response) {
    out.append(field.name_string().data(), field.name_string().size());
    out += ": ";
    out.append(field.value().data(), field.value().size());
    out += "\r\n";
  }
  out += "\r\n";
  out += response.body();
  return out;
}

}  // namespace

HttpResponse json_error(const HttpRequest* request, http::status status, std::string_view code,
                        std::string_view message) {
  if (request == nullptr) return make_json_error(11, false, status, code, message);
  return make_json_error(request->version(), request->keep_alive(), status, code, message);
}

HttpServer::State::State(asio::io_context& io_in, HttpServerOptions options_in,
                         HttpHandler handler_in)
    : io(io_in),
      options(std::move(options_in)),
      handler(std::move(handler_in)),
      acceptor(io_in),
      accept_retry(io_in),
      overloaded(overloaded_answer(options.server_name)) {}

void HttpServer::State::do_accept() {
  acceptor.async_accept(
      io, beast::bind_front_handler(&HttpServer::State::on_accept, shared_from_this()));
}

void HttpServer::State::on_accept(beast::error_code ec, tcp::socket socket) {
  if (!acceptor.is_open() || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors (EMFILE, ENFILE), of kernel memory, or a connection reset before it was
    // accepted. Accepting again at once would fail again at once: a busy loop while the
    // descriptors stay taken. Pause instead, longer while it goes on; pending connections wait
    // in the backlog.
    ++stats.accept_errors;
    log(fmt::format("accept: {}; accepting again in {} ms", ec.message(), accept_backoff.count()));
    accept_retry.expires_after(accept_backoff);
    accept_backoff = std::min(accept_backoff * 2, accept_backoff_max);
    accept_retry.async_wait([self = shared_from_this()](beast::error_code timer_ec) {
      if (!timer_ec && self->acceptor.is_open()) self->do_accept();
    });
    return;
  }
  accept_backoff = accept_backoff_min;
  ++stats.connections_accepted;
  if (sessions.size() >= options.connections_max) {
    refuse(socket);
  } else {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    start_session(shared_from_this(), std::move(socket));
  }
  do_accept();
}

// Over connections_max: answer 503 overloaded and close, in this one step, so that the refused
// connection holds its descriptor for no longer than the accept. The answer is far smaller than a
// socket's send buffer, so the non-blocking send writes it whole or fails (then the client sees
// the close). Request bytes that already arrived are read first: closing a socket with unread
// data sends a reset, which could overtake the answer. Under TLS no answer can be written
// without a handshake, which would hold the descriptor: the connection is only closed.
void HttpServer::State::refuse(tcp::socket& socket) {
  ++stats.connections_refused;
  beast::error_code ignored;
  if (options.tls) {
    socket.close(ignored);
    return;
  }
  socket.non_blocking(true, ignored);
  socket.send(asio::buffer(overloaded), 0, ignored);
  std::array<char, 4096> discard{};
  socket.receive(asio::buffer(discard), 0, ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void HttpServer::State::unregister(SessionBase* session) {
  const std::size_t erased = sessions.erase(session);
  RPOOL_ASSERT_OP(erased, ==, std::size_t{1});
  stats.connections_active = sessions.size();
  if (shutting_down && sessions.empty() && shutdown_done) {
    asio::post(io, std::exchange(shutdown_done, nullptr));
  }
}

HttpServer::HttpServer(asio::io_context& io, HttpServerOptions options, HttpHandler handler)
    : state_(std::make_shared<State>(io, std::move(options), std::move(handler))) {
  RPOOL_ASSERT(state_->handler != nullptr);
  RPOOL_ASSERT_OP(state_->options.pipeline_depth_max, >=, std::size_t{1});
  RPOOL_ASSERT_OP(state_->options.connections_max, >=, std::size_t{1});
  RPOOL_ASSERT_OP(state_->options.header_bytes_max, >=, std::size_t{1});
  // The header section must be refused by its own limit (431) before the buffer fills.
  RPOOL_ASSERT_OP(state_->options.read_buffer_bytes_max, >, state_->options.header_bytes_max);
}

HttpServer::~HttpServer() {
  stop_accepting();
  std::vector<std::shared_ptr<SessionBase>> sessions;
  for (auto& [raw, session] : state_->sessions) sessions.push_back(session);
  for (auto& session : sessions) session->close();
  state_->shutdown_done = nullptr;
}

std::error_code HttpServer::start() {
  RPOOL_ASSERT(!state_->acceptor.is_open());
  beast::error_code ec;
  tcp::endpoint endpoint;
  const auto address = asio::ip::make_address(state_->options.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, state_->options.port);
  } else {
    tcp::resolver resolver(state_->io);
    auto results = resolver.resolve(state_->options.host, std::to_string(state_->options.port),
                                    tcp::resolver::passive, ec);
    if (ec) return ec;
    if (results.empty()) return std::make_error_code(std::errc::address_not_available);
    endpoint = results.begin()->endpoint();
  }
  tcp::acceptor& acceptor = state_->acceptor;
  auto fail = [&acceptor](const beast::error_code& error) -> std::error_code {
    beast::error_code ignored;
    acceptor.close(ignored);
    return error;
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail(ec);
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail(ec);
  acceptor.bind(endpoint, ec);
  if (ec) return fail(ec);
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(ec);
  const auto local = acceptor.local_endpoint(ec);
  if (ec) return fail(ec);
  state_->port = local.port();
  state_->do_accept();
  return {};
}

std::uint16_t HttpServer::port() const { return state_->port; }

void HttpServer::stop_accepting() {
  beast::error_code ignored;
  state_->acceptor.close(ignored);
  state_->accept_retry.cancel();
}

void HttpServer::shutdown(std::function<void()> done) {
  stop_accepting();
  state_->shutting_down = true;
  state_->shutdown_done = std::move(done);
  std::vector<std::shared_ptr<SessionBase>> sessions;
  for (auto& [raw, session] : state_->sessions) sessions.push_back(session);
  for (auto& session : sessions) session->shutdown();
  if (state_->sessions.empty() && state_->shutdown_done) {
    asio::post(state_->io, std::exchange(state_->shutdown_done, nullptr));
  }
}

HttpServerStats HttpServer::stats() const { return state_->stats; }

std::size_t connections_max_for_fd_limit(std::uint64_t fd_limit) {
  const std::uint64_t reserve = std::min<std::uint64_t>(fds_reserved_for_node, fd_limit / 2);
  const std::uint64_t usable = fd_limit - reserve;
  const auto connections =
      static_cast<std::size_t>(std::clamp<std::uint64_t>(usable, 1, connections_max_default));
  // The reserve is never handed to HTTP (a limit of 0 still gets its one connection).
  if (fd_limit >= 1) RPOOL_ASSERT_OP(std::uint64_t{connections} + reserve, <=, fd_limit);
  RPOOL_ASSERT_OP(connections, >=, std::size_t{1});
  return connections;
}

}  // namespace rpool::net
