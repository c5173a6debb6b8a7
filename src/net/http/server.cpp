// The HTTP server, written the Beast way: a listener accepts, one Session per connection runs a
// read loop (do_read/on_read) and a write loop (do_write/on_write) side by side.
//
// Pipelining: the read loop reads requests ahead while handlers work, up to pipeline_depth_max
// unanswered requests per connection. Each request takes a slot in `slots_` in arrival order; a
// handler's answer fills its slot whenever it comes, and the write loop writes the answers ready at
// the front (all of them in one write), so answers go out in request order.
//
// Bounds: the header section (431), the body (413), the unparsed bytes in the read buffer (a
// chunk-size line or trailer section that never ends: 400), requests read ahead per connection,
// connections (503 overloaded past the cap), and a read deadline. A failed accept (out of
// descriptors) pauses accepting with a backoff instead of retrying at once.
//
// Closing: a connection closes after an answer that ends it (Connection: close, HTTP/1.0, a 400,
// 413 or 431, shutdown) by sending FIN and then reading and discarding what the client still sends
// for a short while ("lingering close"), so the client reads the answer instead of a reset caused
// by unread request bytes.
#include <algorithm>
#include <array>
#include <deque>
#include <exception>
#include <optional>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "net/http/http.h"

namespace rpool::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

// After the last answer, how long and how much the server keeps reading and discarding.
constexpr std::chrono::milliseconds linger_timeout{1'000};
constexpr std::size_t linger_bytes_max = 256 * 1024;

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

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == beast::http::make_error_code(http::error::bad_method).category();
}

// RFC 9112 §6.3: a request whose Transfer-Encoding does not end in `chunked` has no reliable
// length. Beast reads such a request as if it had no body, so its body would be parsed as the
// next request (request smuggling); it must be answered 400 and the connection closed.
bool final_coding_is_not_chunked(const HttpRequest& request) {
  std::string_view last_coding;
  bool present = false;
  const auto [first, last] = request.equal_range(http::field::transfer_encoding);
  for (auto field = first; field != last; ++field) {
    present = true;
    for (const auto coding : http::token_list{field->value()}) {
      last_coding = std::string_view(coding.data(), coding.size());
    }
  }
  return present && !beast::iequals(last_coding, "chunked");
}

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

class Session;

}  // namespace

HttpResponse json_error(const HttpRequest* request, http::status status, std::string_view code,
                        std::string_view message) {
  if (request == nullptr) return make_json_error(11, false, status, code, message);
  return make_json_error(request->version(), request->keep_alive(), status, code, message);
}

// What the listener and its sessions share. Sessions hold it by shared_ptr, so a session that
// finishes its last callback after ~HttpServer still finds it.
struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io_in, HttpServerOptions options_in, HttpHandler handler_in)
      : io(io_in),
        options(std::move(options_in)),
        handler(std::move(handler_in)),
        acceptor(io_in),
        accept_retry(io_in),
        overloaded(overloaded_answer(options.server_name)) {}

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
  void unregister(Session* session);

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
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions;
  bool shutting_down = false;
  std::function<void()> shutdown_done;  // run once when `sessions` empties during shutdown
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<HttpServer::State> server, tcp::socket socket)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        read_deadline_(socket_.get_executor()),
        write_deadline_(socket_.get_executor()),
        linger_timer_(socket_.get_executor()) {
    buffer_.max_size(server_->options.read_buffer_bytes_max);
  }

  void start() { do_read(); }

  // Graceful shutdown: read no more requests; answer the ones already read, then close.
  void shutdown() {
    if (closed_ || lingering_) return;
    read_closed_ = true;
    if (slots_.empty()) {
      close();
      return;
    }
    // Abort the read ahead. Cancelling would also abort a write, so while one is under way
    // on_write does it instead.
    if (reading_ && !writing_) cancel_io();
  }

  // Closes the socket now; whatever is unanswered is dropped.
  void close() {
    if (closed_) return;
    const auto self = shared_from_this();  // unregister() drops the server's reference
    closed_ = true;
    read_deadline_.cancel();
    write_deadline_.cancel();
    linger_timer_.cancel();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    // The slots stay until the session is destroyed: a cancelled write may still refer to one.
    server_->unregister(this);
  }

  // Puts the answer to request `sequence` in its slot and writes what can be written.
  void complete(std::uint64_t sequence, HttpResponse&& response) {
    if (closed_ || lingering_) return;
    RPOOL_ASSERT_OP(sequence, >=, front_sequence_);
    const std::size_t index = sequence - front_sequence_;
    RPOOL_ASSERT_OP(index, <, slots_.size());
    Slot& slot = slots_[index];
    RPOOL_ASSERT(!slot.response.has_value());
    slot.response.emplace(std::move(response));
    do_write();
  }

  void log(std::string_view message) const { server_->log(message); }

 private:
  struct Slot {
    unsigned version = 11;
    bool keep_alive = true;  // the request allows another request after it
    bool head = false;
    std::optional<HttpResponse> response;  // filled when the handler answers
  };

  // Tracks one request's Respond: answers 500 if every copy is dropped unanswered, tells a bug
  // (a second answer) from the server having answered already on the handler's behalf.
  class Responder {
   public:
    Responder(std::weak_ptr<Session> session, std::uint64_t sequence)
        : session_(std::move(session)), sequence_(sequence) {}
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;
    ~Responder() {
      if (state_ != State::pending) return;
      if (auto session = session_.lock()) {
        session->log("a handler dropped a request without answering it; answered 500");
        session->complete(sequence_,
                          make_json_error(11, true, http::status::internal_server_error, "internal",
                                          "The request was dropped without an answer."));
      }
    }

    void respond(HttpResponse&& response) {
      if (state_ == State::answered_by_server) {
        if (auto session = session_.lock()) {
          session->log("a handler answered a request the server had already answered; ignored");
        }
        return;
      }
      RPOOL_ASSERT(state_ == State::pending);  // Respond is called exactly once
      state_ = State::answered_by_handler;
      if (auto session = session_.lock()) session->complete(sequence_, std::move(response));
    }

    // The handler threw: answer 500 unless it answered before throwing.
    void answer_internal_error() {
      if (state_ != State::pending) return;
      state_ = State::answered_by_server;
      if (auto session = session_.lock()) {
        session->complete(sequence_,
                          make_json_error(11, true, http::status::internal_server_error, "internal",
                                          "The server failed to handle the request."));
      }
    }

   private:
    enum class State { pending, answered_by_handler, answered_by_server };
    std::weak_ptr<Session> session_;
    std::uint64_t sequence_;
    State state_ = State::pending;
  };

  const HttpServerOptions& options() const { return server_->options; }

  void cancel_io() {
    beast::error_code ignored;
    socket_.cancel(ignored);
  }

  void do_read() {
    if (closed_ || lingering_ || read_closed_ || reading_) return;
    if (slots_.size() >= options().pipeline_depth_max) return;  // on_write resumes reading
    parser_.emplace();
    parser_->body_limit(options().body_bytes_max);
    parser_->header_limit(static_cast<std::uint32_t>(options().header_bytes_max));
    reading_ = true;
    // The read deadline runs only while no request of this connection is unanswered.
    if (slots_.empty()) arm_read_deadline();
    http::async_read(socket_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t /*bytes*/) {
    reading_ = false;
    if (closed_) return;
    if (lingering_) {
      do_linger_read();
      return;
    }
    if (ec == http::error::end_of_stream || (ec && read_closed_)) {
      // The client finished sending, or shutdown aborted the read ahead: answer what was read.
      read_closed_ = true;
      finish_if_done();
      return;
    }
    if (ec) {
      if (is_parse_error(ec) && ec != http::error::partial_message) {
        reject(ec);
      } else {
        fail(ec, "read");
      }
      return;
    }
    read_deadline_.cancel();
    if (final_coding_is_not_chunked(parser_->get())) {
      reject(http::error::bad_transfer_encoding);
      return;
    }
    ++server_->stats.requests;

    HttpRequest request = parser_->release();
    parser_.reset();
    const std::uint64_t sequence = front_sequence_ + slots_.size();
    slots_.push_back(Slot{request.version(), request.keep_alive(),
                          request.method() == http::verb::head, std::nullopt});
    if (!request.keep_alive()) read_closed_ = true;  // Connection: close, or HTTP/1.0

    auto responder = std::make_shared<Responder>(weak_from_this(), sequence);
    Respond respond = [responder](HttpResponse&& response) {
      responder->respond(std::move(response));
    };
    try {
      server_->handler(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      log(fmt::format("a handler threw: {}; answered 500", e.what()));
      responder->answer_internal_error();
    } catch (...) {
      log("a handler threw a non-exception; answered 500");
      responder->answer_internal_error();
    }
    responder.reset();  // if the handler kept no copy, this answers 500 now
    do_read();          // read ahead
  }

  // The request could not be parsed, or it exceeds a bound: answer and close.
  void reject(const beast::error_code& ec) {
    ++server_->stats.bad_requests;
    read_closed_ = true;
    const unsigned version = parser_->is_header_done() ? parser_->get().version() : 11;
    slots_.push_back(Slot{version, false, false, rejection(ec, version)});
    do_write();
  }

  HttpResponse rejection(const beast::error_code& ec, unsigned version) const {
    if (ec == http::error::body_limit) {
      return make_json_error(
          version, false, http::status::payload_too_large, "payload_too_large",
          fmt::format("The request body exceeds {} bytes.", options().body_bytes_max));
    }
    if (ec == http::error::header_limit) {
      return make_json_error(
          version, false, http::status::request_header_fields_too_large, "headers_too_large",
          fmt::format("The request header section exceeds {} bytes.", options().header_bytes_max));
    }
    if (ec == http::error::buffer_overflow) {
      // The header section fits (it is refused by header_limit first), so this is a chunk-size
      // line with its extensions, or a trailer section, longer than the read buffer.
      return make_json_error(version, false, http::status::bad_request, "bad_request",
                             fmt::format("A chunk-size line or trailer section exceeds {} bytes.",
                                         options().read_buffer_bytes_max));
    }
    if (ec == http::error::bad_transfer_encoding) {
      return make_json_error(version, false, http::status::bad_request, "bad_request",
                             "The request's Transfer-Encoding must end in chunked.");
    }
    return make_json_error(version, false, http::status::bad_request, "bad_request",
                           fmt::format("The request is not valid HTTP/1.1: {}.", ec.message()));
  }

  // Writes every answer that is ready at the front, in order, in one write: pipelined answers
  // share a system call. Each answer is serialized by hand into one flat buffer (status line,
  // fields, body), which costs a fraction of Beast's serializer over a buffer sequence.
  void do_write() {
    if (closed_ || lingering_ || writing_ || slots_.empty() || !slots_.front().response) return;
    write_buffer_.clear();
    std::size_t count = 0;
    bool last = false;
    for (Slot& slot : slots_) {
      if (!slot.response || last) break;
      HttpResponse& response = *slot.response;
      // The connection ends after this answer if the request or the handler says so, or if no
      // further request will be read and none is waiting after it.
      const bool handler_closes =
          http::token_list{response[http::field::connection]}.exists("close");
      last = !slot.keep_alive || handler_closes || (read_closed_ && count + 1 == slots_.size());
      response.version(slot.version);
      response.keep_alive(!last);
      response.set(http::field::server, options().server_name);
      response.prepare_payload();
      serialize(response, slot.head, write_buffer_);
      ++count;
    }
    writing_ = true;
    // A client that does not read its answers: the write gives up after read_timeout.
    write_deadline_.expires_after(options().read_timeout);
    write_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec != asio::error::operation_aborted && self->writing_) self->cancel_io();
    });
    asio::async_write(
        socket_, asio::buffer(write_buffer_),
        beast::bind_front_handler(&Session::on_write, shared_from_this(), count, last));
  }

  static void serialize(const HttpResponse& response, bool head, std::string& out) {
    out += response.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(response.result_int());
    out += ' ';
    const auto reason = response.reason();
    out.append(reason.data(), reason.size());
    out += "\r\n";
    for (const auto& field : response) {
      out.append(field.name_string().data(), field.name_string().size());
      out += ": ";
      out.append(field.value().data(), field.value().size());
      out += "\r\n";
    }
    out += "\r\n";
    // A HEAD answer announces the length of the body it does not carry.
    if (!head) out += response.body();
  }

  void on_write(std::size_t count, bool last, beast::error_code ec, std::size_t /*bytes*/) {
    writing_ = false;
    write_deadline_.cancel();
    if (closed_) return;
    if (ec) {
      fail(ec, "write");
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      slots_.pop_front();
      ++front_sequence_;
    }
    if (last) {
      read_closed_ = true;
      linger();
      return;
    }
    if (read_closed_ && reading_) cancel_io();  // shutdown came while writing
    if (finish_if_done()) return;
    if (slots_.empty() && reading_) arm_read_deadline();  // idle again: the clock restarts
    do_read();
    do_write();
  }

  // With no request left to read or answer, the connection ends. Returns whether it did.
  bool finish_if_done() {
    if (!read_closed_ || !slots_.empty() || writing_) return false;
    linger();
    return true;
  }

  void arm_read_deadline() {
    read_deadline_.expires_after(options().read_timeout);
    read_deadline_.async_wait(
        beast::bind_front_handler(&Session::on_read_deadline, shared_from_this()));
  }

  void on_read_deadline(beast::error_code ec) {
    if (ec == asio::error::operation_aborted || closed_ || lingering_) return;
    // A timer re-armed after this wait completed is not expired yet.
    if (read_deadline_.expiry() > std::chrono::steady_clock::now()) return;
    if (!slots_.empty()) return;  // a handler is working; re-armed when the queue drains
    close();
  }

  // Lingering close: FIN now, then read and discard until the client closes, for a short while.
  void linger() {
    if (closed_ || lingering_) return;
    lingering_ = true;
    read_deadline_.cancel();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    linger_timer_.expires_after(std::min(linger_timeout, options().read_timeout));
    linger_timer_.async_wait([self = shared_from_this()](beast::error_code timer_ec) {
      if (timer_ec != asio::error::operation_aborted) self->close();
    });
    if (reading_) {
      cancel_io();  // on_read continues with do_linger_read
    } else {
      do_linger_read();
    }
  }

  void do_linger_read() {
    if (closed_) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(linger_buffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                              self->reading_ = false;
                              self->linger_bytes_ += bytes;
                              if (ec || self->linger_bytes_ > linger_bytes_max) {
                                self->close();
                              } else {
                                self->do_linger_read();
                              }
                            });
  }

  // The one place a connection dies of an error. Routine ends (reset, timeout, abort) are not
  // logged: they are how clients go away.
  void fail(const beast::error_code& ec, std::string_view what) {
    if (ec != asio::error::operation_aborted && ec != asio::error::connection_reset &&
        ec != asio::error::eof && ec != beast::error::timeout && ec != asio::error::broken_pipe &&
        ec != http::error::partial_message) {
      log(fmt::format("connection {}: {}", what, ec.message()));
    }
    close();
  }

  std::shared_ptr<HttpServer::State> server_;
  // A plain socket, not beast::tcp_stream: the deadlines are the timers below (the stream's own
  // timer machinery cost a measurable share of every request).
  tcp::socket socket_;
  beast::flat_buffer buffer_;  // max_size() == read_buffer_bytes_max
  std::optional<http::request_parser<http::string_body>> parser_;  // the request being read
  std::deque<Slot> slots_;  // unanswered or unwritten requests in order; size <= depth max + 1
  std::uint64_t front_sequence_ = 0;  // the sequence number of slots_.front()
  asio::steady_timer read_deadline_;
  asio::steady_timer write_deadline_;
  asio::steady_timer linger_timer_;
  std::string write_buffer_;  // the answers being written (do_write)
  std::array<char, 4096> linger_buffer_{};
  std::size_t linger_bytes_ = 0;
  bool reading_ = false;      // a read is pending
  bool writing_ = false;      // a write of the answers at the front of slots_ is pending
  bool read_closed_ = false;  // no further request will be read
  bool lingering_ = false;    // the last answer is written; draining before close
  bool closed_ = false;       // the socket is closed and the session unregistered
};

}  // namespace

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
    auto session = std::make_shared<Session>(shared_from_this(), std::move(socket));
    sessions.emplace(session.get(), session);
    stats.connections_active = sessions.size();
    session->start();
  }
  do_accept();
}

// Over connections_max: answer 503 overloaded and close, in this one step, so that the refused
// connection holds its descriptor for no longer than the accept. The answer is far smaller than a
// socket's send buffer, so the non-blocking send writes it whole or fails (then the client sees
// the close). Request bytes that already arrived are read first: closing a socket with unread
// data sends a reset, which could overtake the answer.
void HttpServer::State::refuse(tcp::socket& socket) {
  ++stats.connections_refused;
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.send(asio::buffer(overloaded), 0, ignored);
  std::array<char, 4096> discard{};
  socket.receive(asio::buffer(discard), 0, ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void HttpServer::State::unregister(Session* session) {
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
  std::vector<std::shared_ptr<Session>> sessions;
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
  std::vector<std::shared_ptr<Session>> sessions;
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
