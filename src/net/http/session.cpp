// One HTTP connection of the server, written the Beast way: a read loop (do_read/on_read) and a
// write loop (do_write/on_write) side by side. A template over its stream: a plain socket, or TLS
// over one (HttpServerOptions::tls), so the plaintext path pays nothing for TLS.
//
// Pipelining: the read loop reads requests ahead while handlers work, up to pipeline_depth_max
// unanswered requests per connection. Each request takes a slot in `slots_` in arrival order; a
// handler's answer fills its slot whenever it comes, and the write loop writes the answers ready at
// the front (all of them in one write), so answers go out in request order.
//
// Bounds: the header section (431), the body (413), the unparsed bytes in the read buffer (a
// chunk-size line or trailer section that never ends: 400), requests read ahead per connection,
// and a read deadline (which also bounds a TLS handshake).
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
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <boost/asio/ssl/stream.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "net/http/server_state.h"

namespace rpool::net {

namespace {

// After the last answer, how long and how much the server keeps reading and discarding.
constexpr std::chrono::milliseconds linger_timeout{1'000};
constexpr std::size_t linger_bytes_max = 256 * 1024;

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

using TlsStream = asio::ssl::stream<tcp::socket>;

template <class Stream>
class Session final : public SessionBase {
  static constexpr bool is_tls = std::is_same_v<Stream, TlsStream>;

 public:
  // `stream_args`: the accepted socket, and for TLS the context.
  template <class... StreamArgs>
  explicit Session(std::shared_ptr<HttpServer::State> server, StreamArgs&&... stream_args)
      : server_(std::move(server)),
        stream_(std::forward<StreamArgs>(stream_args)...),
        deadline_timer_(socket().get_executor()),
        linger_timer_(socket().get_executor()) {
    buffer_.max_size(server_->options.read_buffer_bytes_max);
  }

  void start() {
    if constexpr (is_tls) {
      // HTTP clients are not asked for a certificate (the admin token authenticates them); the
      // read deadline bounds the handshake.
      stream_.set_verify_mode(asio::ssl::verify_none);
      reading_ = true;
      start_deadline();
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = self()](beast::error_code ec) { self->on_handshake(ec); });
    } else {
      do_read();
    }
  }

  void shutdown() override {
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

  void close() override {
    if (closed_) return;
    const auto keep = self();  // unregister() drops the server's reference
    closed_ = true;
    deadline_ = no_deadline;
    deadline_timer_.cancel();
    linger_timer_.cancel();
    beast::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
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
  tcp::socket& socket() {
    if constexpr (is_tls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }
  std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }

  void on_handshake(beast::error_code ec) {
    reading_ = false;
    if (closed_) return;
    if (ec) {
      // Scanners, plaintext clients and clients that distrust our CA end here: counted, not
      // logged one by one.
      ++server_->stats.tls_handshake_failures;
      close();
      return;
    }
    do_read();
  }

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
    socket().cancel(ignored);
  }

  void do_read() {
    if (closed_ || lingering_ || read_closed_ || reading_) return;
    if (slots_.size() >= options().pipeline_depth_max) return;  // on_write resumes reading
    parser_.emplace();
    parser_->body_limit(options().body_bytes_max);
    parser_->header_limit(static_cast<std::uint32_t>(options().header_bytes_max));
    reading_ = true;
    // The read deadline runs only while no request of this connection is unanswered.
    if (slots_.empty()) start_deadline();
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, self()));
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
    if (!writing_) stop_deadline();  // a handler has work: the read clock stops
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

    auto responder = std::make_shared<Responder>(std::weak_ptr<Session>(self()), sequence);
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
      const HttpResponse& response = *slot.response;
      // The connection ends after this answer if the request or the handler says so, or if no
      // further request will be read and none is waiting after it.
      const auto connection = response.find(http::field::connection);
      const bool handler_closes =
          connection != response.end() && http::token_list{connection->value()}.exists("close");
      last = !slot.keep_alive || handler_closes || (read_closed_ && count + 1 == slots_.size());
      serialize(response, slot.version, !last, slot.head, options().server_name, write_buffer_);
      ++count;
    }
    writing_ = true;
    // A client that does not read its answers: the connection closes after read_timeout.
    start_deadline();
    asio::async_write(stream_, asio::buffer(write_buffer_),
                      beast::bind_front_handler(&Session::on_write, self(), count, last));
  }

  // Appends one answer to `out` as it goes on the wire: the status line in the request's
  // `version`, the handler's fields but the four the server owns, then `Server`,
  // `Content-Length` and `Connection` as the server decides them, then the body. The fields are
  // written, not set on the response: setting them would allocate a field each per answer.
  static void serialize(const HttpResponse& response, unsigned version, bool keep_alive,
                        bool head, std::string_view server_name, std::string& out) {
    out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    const unsigned status = response.result_int();
    RPOOL_ASSERT_OP(status, <=, 999u);  // Beast's status type holds three digits
    const char digits[3] = {static_cast<char>('0' + status / 100),
                            static_cast<char>('0' + status / 10 % 10),
                            static_cast<char>('0' + status % 10)};
    out.append(digits, sizeof digits);
    out += ' ';
    const auto reason = response.reason();
    out.append(reason.data(), reason.size());
    out += "\r\n";
    for (const auto& field : response) {
      switch (field.name()) {
        case http::field::connection:
        case http::field::content_length:
        case http::field::server:
        case http::field::transfer_encoding:  // the body is always sent whole, with its length
          continue;
        default:
          break;
      }
      out.append(field.name_string().data(), field.name_string().size());
      out += ": ";
      out.append(field.value().data(), field.value().size());
      out += "\r\n";
    }
    out += "Server: ";
    out += server_name;
    // RFC 9110 §6.4.1, §8.6: a 1xx, 204 or 304 answer has no body and a 204 or 1xx no length.
    const bool bodiless = status / 100 == 1 || status == 204 || status == 304;
    if (!bodiless) {
      out += "\r\nContent-Length: ";
      out += std::to_string(response.body().size());
    }
    if (!keep_alive) {
      out += "\r\nConnection: close";
    } else if (version == 10) {
      out += "\r\nConnection: keep-alive";
    }
    out += "\r\n\r\n";
    // A HEAD answer announces the length of the body it does not carry.
    if (!head && !bodiless) out += response.body();
  }

  void on_write(std::size_t count, bool last, beast::error_code ec, std::size_t /*bytes*/) {
    writing_ = false;
    stop_deadline();
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
    if (slots_.empty() && reading_) start_deadline();  // idle again: the clock restarts
    do_read();
    do_write();
  }

  // With no request left to read or answer, the connection ends. Returns whether it did.
  bool finish_if_done() {
    if (!read_closed_ || !slots_.empty() || writing_) return false;
    linger();
    return true;
  }

  // The deadline runs while the connection waits for its client: a read with no unanswered
  // request (an idle keep-alive connection, a request arriving too slowly, a TLS handshake), or a
  // write of answers. Each start gives the client a fresh read_timeout. Starting and stopping only
  // moves deadline_: re-arming the timer on every request would cost a timer-queue insert, a
  // cancellation and a completion handler per request. The timer is armed at most once at a time,
  // and when it fires it closes the connection if the deadline has passed, re-arms itself for a
  // later one, or stays unarmed while none runs (the next start_deadline arms it).
  void start_deadline() {
    deadline_ = std::chrono::steady_clock::now() + options().read_timeout;
    if (!deadline_armed_) arm_deadline_timer();
  }

  void stop_deadline() { deadline_ = no_deadline; }

  void arm_deadline_timer() {
    deadline_armed_ = true;
    deadline_timer_.expires_at(deadline_);
    deadline_timer_.async_wait(beast::bind_front_handler(&Session::on_deadline, self()));
  }

  void on_deadline(beast::error_code ec) {
    deadline_armed_ = false;
    if (ec == asio::error::operation_aborted || closed_ || lingering_) return;
    if (deadline_ == no_deadline) return;
    if (deadline_ > std::chrono::steady_clock::now()) {
      arm_deadline_timer();  // restarted since the timer was armed
      return;
    }
    // A write that did not finish is aborted with the socket: on_write sees closed_.
    close();
  }

  // Lingering close: FIN now, then read and discard until the client closes, for a short while.
  // Over TLS the FIN comes without a close_notify: every answer carries its length, so the client
  // cannot take a truncated answer for a whole one, and the socket is discarded anyway.
  void linger() {
    if (closed_ || lingering_) return;
    lingering_ = true;
    stop_deadline();  // the linger timer bounds what is left
    beast::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger_timer_.expires_after(std::min(linger_timeout, options().read_timeout));
    linger_timer_.async_wait([keep = self()](beast::error_code timer_ec) {
      if (timer_ec != asio::error::operation_aborted) keep->close();
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
    // The raw socket, also under TLS: the bytes are discarded unread.
    socket().async_read_some(asio::buffer(linger_buffer_),
                             [keep = self()](beast::error_code ec, std::size_t bytes) {
                               keep->reading_ = false;
                               keep->linger_bytes_ += bytes;
                               if (ec || keep->linger_bytes_ > linger_bytes_max) {
                                 keep->close();
                               } else {
                                 keep->do_linger_read();
                               }
                             });
  }

  // The one place a connection dies of an error. Routine ends (reset, timeout, abort, a TLS
  // client closing without close_notify) are not logged: they are how clients go away.
  void fail(const beast::error_code& ec, std::string_view what) {
    if (ec != asio::error::operation_aborted && ec != asio::error::connection_reset &&
        ec != asio::error::eof && ec != beast::error::timeout && ec != asio::error::broken_pipe &&
        ec != http::error::partial_message && ec != asio::ssl::error::stream_truncated) {
      log(fmt::format("connection {}: {}", what, ec.message()));
    }
    close();
  }

  std::shared_ptr<HttpServer::State> server_;
  // A plain socket (or TLS over one), not beast::tcp_stream: the deadline is deadline_ below
  // (the stream's own timer machinery cost a measurable share of every request).
  Stream stream_;
  beast::flat_buffer buffer_;  // max_size() == read_buffer_bytes_max
  std::optional<http::request_parser<http::string_body>> parser_;  // the request being read
  std::deque<Slot> slots_;  // unanswered or unwritten requests in order; size <= depth max + 1
  std::uint64_t front_sequence_ = 0;  // the sequence number of slots_.front()
  static constexpr std::chrono::steady_clock::time_point no_deadline =
      std::chrono::steady_clock::time_point::max();
  // When the connection closes unless the client reads or sends; no_deadline while the session
  // waits for its handlers only (see start_deadline).
  std::chrono::steady_clock::time_point deadline_ = no_deadline;
  asio::steady_timer deadline_timer_;
  bool deadline_armed_ = false;  // an async_wait of deadline_timer_ is pending
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

void start_session(const std::shared_ptr<HttpServer::State>& server, tcp::socket socket) {
  auto launch = [&server](auto session) {
    server->sessions.emplace(session.get(), session);
    server->stats.connections_active = server->sessions.size();
    session->start();
  };
  if (server->options.tls) {
    launch(std::make_shared<Session<TlsStream>>(server, std::move(socket), *server->options.tls));
  } else {
    launch(std::make_shared<Session<tcp::socket>>(server, std::move(socket)));
  }
}

}  // namespace rpool::net
