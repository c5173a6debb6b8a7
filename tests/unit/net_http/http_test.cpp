// HTTP server and client over real sockets on 127.0.0.1 (port 0). Nothing sleeps in place of an
// event: every test runs the io_context until its condition holds, with a deadline.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/fd_limit.h"
#include "net/http/http.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using rpool::net::HttpClient;
using rpool::net::HttpClientOptions;
using rpool::net::HttpRequest;
using rpool::net::HttpResponse;
using rpool::net::HttpServer;
using rpool::net::HttpServerOptions;
using rpool::net::Respond;
namespace http = rpool::net::http;

namespace {

// Runs the io_context until `condition` holds; false if `limit` passes first.
bool run_until(asio::io_context& io, const std::function<bool()>& condition,
               std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    io.restart();
    io.run_one_for(10ms);
  }
  return true;
}

HttpServerOptions local_options() {
  HttpServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  return options;
}

// Answers at once with "<method> <target> <body size>".
void echo(HttpRequest&& request, Respond respond) {
  HttpResponse response{http::status::ok, request.version()};
  response.set(http::field::content_type, "text/plain");
  response.body() = std::string(request.method_string()) + " " + std::string(request.target()) +
                    " " + std::to_string(request.body().size());
  respond(std::move(response));
}

HttpRequest make_request(http::verb verb, std::string target, std::string body = {}) {
  HttpRequest request{verb, target, 11};
  request.body() = std::move(body);
  return request;
}

struct Result {
  bool done = false;
  std::error_code ec;
  HttpResponse response;
};

// Starts a client request whose outcome lands in the returned Result.
std::shared_ptr<Result> send(HttpClient& client, std::uint16_t port, HttpRequest request,
                             std::chrono::milliseconds timeout = 5s) {
  auto result = std::make_shared<Result>();
  client.request("127.0.0.1", port, std::move(request), timeout,
                 [result](std::error_code ec, HttpResponse&& response) {
                   CHECK_FALSE(result->done);  // exactly once
                   result->done = true;
                   result->ec = ec;
                   result->response = std::move(response);
                 });
  return result;
}

// A raw TCP client on the test's io_context: writes bytes as given and collects what comes back
// until the server closes.
class RawClient {
 public:
  RawClient(asio::io_context& io, std::uint16_t port) : socket_(io) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    do_read();
  }
  void write(std::string bytes) {
    auto data = std::make_shared<std::string>(std::move(bytes));
    asio::async_write(socket_, asio::buffer(*data),
                      [data](boost::system::error_code, std::size_t) {});
  }
  const std::string& received() const { return received_; }
  bool closed() const { return closed_; }

 private:
  void do_read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [this](boost::system::error_code ec, std::size_t bytes) {
                              received_.append(buffer_.data(), bytes);
                              if (ec) {
                                closed_ = true;
                              } else {
                                do_read();
                              }
                            });
  }
  tcp::socket socket_;
  std::array<char, 4096> buffer_{};
  std::string received_;
  bool closed_ = false;
};

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// A port on 127.0.0.1 with nothing listening on it.
std::uint16_t closed_port(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

}  // namespace

TEST_CASE("a request goes from the client to the server and back") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto result = send(client, server.port(), make_request(http::verb::post, "/v1/draw", "{}"));
  REQUIRE(run_until(io, [&] { return result->done; }));
  REQUIRE_FALSE(result->ec);
  CHECK(result->response.result() == http::status::ok);
  CHECK(result->response.body() == "POST /v1/draw 2");
  CHECK(result->response[http::field::server] == "rpool");
  CHECK(result->response[http::field::content_length] == "15");
  CHECK(result->response.keep_alive());
  CHECK(server.stats().requests == 1);
}

TEST_CASE("sequential requests reuse one kept-alive connection") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  for (int i = 0; i < 20; ++i) {
    auto result =
        send(client, server.port(), make_request(http::verb::get, "/n" + std::to_string(i)));
    REQUIRE(run_until(io, [&] { return result->done; }));
    REQUIRE_FALSE(result->ec);
    CHECK(result->response.body() == "GET /n" + std::to_string(i) + " 0");
  }
  CHECK(server.stats().connections_accepted == 1);
  CHECK(server.stats().requests == 20);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().requests_on_reused_connection == 19);
}

TEST_CASE("pipelined answers go out in request order when handlers finish in reverse") {
  asio::io_context io;
  std::vector<std::pair<std::string, Respond>> pending;
  HttpServer server(io, local_options(), [&](HttpRequest&& request, Respond respond) {
    pending.emplace_back(std::string(request.target()), std::move(respond));
  });
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write(
      "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /third HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(io, [&] { return pending.size() == 3; }));
  CHECK(raw.received().empty());

  for (int i = 2; i >= 0; --i) {
    HttpResponse response{http::status::ok, 11};
    response.body() = "answer-to-" + pending[static_cast<std::size_t>(i)].first.substr(1);
    pending[static_cast<std::size_t>(i)].second(std::move(response));
    if (i > 0) CHECK(raw.received().empty());  // the first answer is not there yet
  }
  REQUIRE(run_until(io, [&] { return count(raw.received(), "HTTP/1.1 200 OK") == 3; }));
  const std::string& text = raw.received();
  const auto first = text.find("answer-to-first");
  const auto second = text.find("answer-to-second");
  const auto third = text.find("answer-to-third");
  REQUIRE(first != std::string::npos);
  REQUIRE(second != std::string::npos);
  REQUIRE(third != std::string::npos);
  CHECK(first < second);
  CHECK(second < third);
  CHECK_FALSE(raw.closed());
  CHECK(server.stats().connections_accepted == 1);
}

TEST_CASE("a connection reads at most pipeline_depth_max requests ahead") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.pipeline_depth_max = 2;
  std::vector<Respond> pending;
  HttpServer server(io, options,
                    [&](HttpRequest&&, Respond respond) { pending.push_back(std::move(respond)); });
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write(
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(io, [&] { return pending.size() == 2; }));
  // The third request waits in the buffer while two are unanswered.
  CHECK_FALSE(run_until(
      io, [&] { return pending.size() == 3; }, 200ms));
  pending[0](HttpResponse{http::status::ok, 11});
  REQUIRE(run_until(io, [&] { return pending.size() == 3; }));
  pending[1](HttpResponse{http::status::ok, 11});
  pending[2](HttpResponse{http::status::ok, 11});
  REQUIRE(run_until(io, [&] { return count(raw.received(), "HTTP/1.1 200 OK") == 3; }));
  CHECK(server.stats().requests == 3);
}

TEST_CASE("a Connection: close request answered later still gets its answer") {
  asio::io_context io;
  std::optional<Respond> held;
  HttpServer server(io, local_options(),
                    [&](HttpRequest&&, Respond respond) { held = std::move(respond); });
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write(
      "POST /v1/draw HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
  REQUIRE(run_until(io, [&] { return held.has_value(); }));
  CHECK_FALSE(run_until(
      io, [&] { return raw.closed(); }, 100ms));
  HttpResponse response{http::status::ok, 11};
  response.body() = "later";
  (*held)(std::move(response));
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(raw.received().find("Connection: close\r\n") != std::string::npos);
  CHECK(raw.received().find("\r\n\r\nlater") != std::string::npos);
}

TEST_CASE("a body of exactly 64 KiB is accepted and one byte more is 413 payload_too_large") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto exact = send(client, server.port(),
                    make_request(http::verb::post, "/v1/draw", std::string(64 * 1024, 'x')));
  REQUIRE(run_until(io, [&] { return exact->done; }));
  REQUIRE_FALSE(exact->ec);
  CHECK(exact->response.result() == http::status::ok);
  CHECK(exact->response.body() == "POST /v1/draw 65536");

  auto over = send(client, server.port(),
                   make_request(http::verb::post, "/v1/draw", std::string(64 * 1024 + 1, 'x')));
  REQUIRE(run_until(io, [&] { return over->done; }));
  REQUIRE_FALSE(over->ec);
  CHECK(over->response.result() == http::status::payload_too_large);
  CHECK(over->response[http::field::content_type] == "application/json");
  CHECK_FALSE(over->response.keep_alive());
  const auto body = nlohmann::json::parse(over->response.body());
  CHECK(body.at("error") == "payload_too_large");
  CHECK_FALSE(body.at("message").get<std::string>().empty());
  CHECK(server.stats().bad_requests == 1);
  CHECK(server.stats().requests == 1);
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 0; }));
}

// The JSON body of a raw answer.
nlohmann::json body_of(const std::string& text) {
  const auto at = text.find("\r\n\r\n");
  REQUIRE(at != std::string::npos);
  return nlohmann::json::parse(text.substr(at + 4));
}

TEST_CASE("a chunk-size line that never ends is refused 400 once it fills the read buffer") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write("POST /v1/draw HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=" +
            std::string(200 * 1024, 'a'));
  // Refused long before the 30 s read deadline: the buffer holds 16 KiB, then the answer comes.
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  const std::string& text = raw.received();
  CHECK(text.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  CHECK(text.find("Connection: close") != std::string::npos);
  CHECK(body_of(text).at("error") == "bad_request");
  CHECK(server.stats().requests == 0);
  CHECK(server.stats().bad_requests == 1);
}

TEST_CASE("a trailer section that never ends is refused 400 once it fills the read buffer") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write(
      "POST /v1/draw HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\nx\r\n0\r\nX-Trailer: " +
      std::string(200 * 1024, 'a'));
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received().rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  CHECK(body_of(raw.received()).at("error") == "bad_request");
  CHECK(server.stats().requests == 0);
}

TEST_CASE("a chunked body in many chunks with extensions is read whole") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  // 64 chunks of 1 KiB, each with a 1 KiB extension: 128 KiB on the wire, far over the read
  // buffer in all, each line well within it.
  std::string request =
      "POST /v1/draw HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n";
  for (int i = 0; i < 64; ++i) {
    request += "400;ext=" + std::string(1024, 'e') + "\r\n" + std::string(1024, 'x') + "\r\n";
  }
  request += "0\r\n\r\n";
  RawClient raw(io, server.port());
  raw.write(request);
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received().find("POST /v1/draw 65536") != std::string::npos);
}

TEST_CASE("a header section over header_bytes_max is 431 headers_too_large; one within is served") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  RawClient within(io, server.port());
  within.write("GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(7 * 1024, 'b') +
               "\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return within.closed(); }));
  CHECK(within.received().find("GET /ok 0") != std::string::npos);

  RawClient over(io, server.port());
  over.write("GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(9 * 1024, 'b') + "\r\n\r\n");
  REQUIRE(run_until(io, [&] { return over.closed(); }));
  const std::string& text = over.received();
  CHECK(text.rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);
  CHECK(text.find("Content-Type: application/json") != std::string::npos);
  CHECK(text.find("Connection: close") != std::string::npos);
  CHECK(body_of(text).at("error") == "headers_too_large");
  CHECK(server.stats().requests == 1);
}

TEST_CASE("a header section that never ends is refused 431, not buffered") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  RawClient raw(io, server.port());
  raw.write("GET / HTTP/1.1\r\nHost: a\r\nX-Endless: " + std::string(200 * 1024, 'h'));
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received().rfind("HTTP/1.1 431 ", 0) == 0);
  CHECK(body_of(raw.received()).at("error") == "headers_too_large");
}

TEST_CASE(
    "a Transfer-Encoding whose final coding is not chunked is 400 and closes the connection") {
  // RFC 9112 §6.3: its length cannot be known. Its body is never read as a next request.
  for (const std::string codings : {"gzip", "chunked, gzip", "identity", ""}) {
    CAPTURE(codings);
    asio::io_context io;
    HttpServer server(io, local_options(), echo);
    REQUIRE_FALSE(server.start());
    RawClient raw(io, server.port());
    raw.write("POST /v1/draw HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + codings +
              "\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
    REQUIRE(run_until(io, [&] { return raw.closed(); }));
    const std::string& text = raw.received();
    CHECK(text.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(count(text, "HTTP/1.1 ") == 1);
    CHECK(text.find("smuggled") == std::string::npos);
    CHECK(text.find("Connection: close") != std::string::npos);
    CHECK(body_of(text).at("error") == "bad_request");
    CHECK(server.stats().requests == 0);
  }
}

TEST_CASE("a Transfer-Encoding ending in chunked is read as chunked") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  RawClient raw(io, server.port());
  raw.write(
      "POST /v1/draw HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received().find("POST /v1/draw 3") != std::string::npos);
}

TEST_CASE("a target that is not UTF-8 quoted in a JSON error is answered, not a 500") {
  asio::io_context io;
  HttpServer server(io, local_options(), [](HttpRequest&& request, Respond respond) {
    respond(rpool::net::json_error(&request, http::status::not_found, "not_found",
                                   "No such path: " + std::string(request.target())));
  });
  REQUIRE_FALSE(server.start());
  RawClient raw(io, server.port());
  raw.write("GET /v1/\xff\xfe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  const std::string& text = raw.received();
  CHECK(text.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  const auto body = body_of(text);
  CHECK(body.at("error") == "not_found");
  CHECK(body.at("message") == "No such path: /v1/\uFFFD\uFFFD");
}

TEST_CASE("garbage bytes are answered 400 bad_request and the connection is closed") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write("\x01\x02 this is not HTTP at all\r\n\r\n");
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  const std::string& text = raw.received();
  CHECK(text.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  CHECK(text.find("Connection: close") != std::string::npos);
  const auto body = nlohmann::json::parse(text.substr(text.find("\r\n\r\n") + 4));
  CHECK(body.at("error") == "bad_request");
  CHECK(server.stats().bad_requests == 1);
  CHECK(server.stats().requests == 0);
}

TEST_CASE("a client that sends half a request is disconnected after the read deadline") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.read_timeout = 200ms;
  HttpServer server(io, options, echo);
  REQUIRE_FALSE(server.start());

  const auto started = std::chrono::steady_clock::now();
  RawClient raw(io, server.port());
  raw.write("GET /v1/pool HTTP/1.1\r\nHost: a\r\n");  // no blank line: the header never ends
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(elapsed >= 200ms);
  CHECK(elapsed < 3s);
  CHECK(raw.received().empty());
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 0; }));
}

TEST_CASE("an idle keep-alive connection is closed after the read deadline, not while busy") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.read_timeout = 200ms;
  std::optional<Respond> held;
  HttpServer server(io, options, [&](HttpRequest&& request, Respond respond) {
    if (request.target() == "/slow") {
      held = std::move(respond);
    } else {
      echo(std::move(request), std::move(respond));
    }
  });
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(io, [&] { return held.has_value(); }));
  // Three read deadlines pass while the handler works: the connection stays.
  const auto busy_until = std::chrono::steady_clock::now() + 600ms;
  CHECK_FALSE(run_until(
      io, [&] { return raw.closed(); }, 600ms));
  CHECK(std::chrono::steady_clock::now() >= busy_until);
  (*held)(HttpResponse{http::status::ok, 11});
  REQUIRE(run_until(io, [&] { return count(raw.received(), "HTTP/1.1 200 OK") == 1; }));
  // Now idle: closed after one deadline.
  REQUIRE(run_until(
      io, [&] { return raw.closed(); }, 3s));
}

TEST_CASE("a connection that keeps sending requests outlives many read deadlines") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.read_timeout = 200ms;
  HttpServer server(io, options, echo);
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  // A request every 50 ms for 800 ms: four read deadlines' worth of time, but never one idle.
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 1; i <= 16; ++i) {
    raw.write("GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    REQUIRE(run_until(io, [&] { return count(raw.received(), "GET /again 0") == i; }));
    CHECK_FALSE(run_until(
        io, [&] { return raw.closed(); }, 50ms));
  }
  CHECK(std::chrono::steady_clock::now() - started >= 800ms);
  CHECK_FALSE(raw.closed());
  CHECK(server.stats().connections_accepted == 1);
  // Idle now: closed after one deadline.
  REQUIRE(run_until(
      io, [&] { return raw.closed(); }, 3s));
}

TEST_CASE("a client that does not read its answers is disconnected after the read deadline") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.read_timeout = 200ms;
  HttpServer server(io, options, [](HttpRequest&& request, Respond respond) {
    HttpResponse response{http::status::ok, request.version()};
    response.body() = std::string(64 * 1024 * 1024, 'x');  // far more than the socket buffers
    respond(std::move(response));
  });
  REQUIRE_FALSE(server.start());

  tcp::socket silent(io);
  silent.open(tcp::v4());
  silent.set_option(asio::socket_base::receive_buffer_size(4096));
  silent.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  const std::string request = "GET /big HTTP/1.1\r\nHost: a\r\n\r\n";
  asio::write(silent, asio::buffer(request));
  REQUIRE(run_until(io, [&] { return server.stats().requests == 1; }));
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 0; }));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(elapsed >= 150ms);  // the deadline started when the write did, just before `started`
  CHECK(elapsed < 3s);
}

TEST_CASE("the server owns Server, Content-Length and Connection of every answer it writes") {
  asio::io_context io;
  HttpServer server(io, local_options(), [](HttpRequest&& request, Respond respond) {
    HttpResponse response{request.target() == "/empty" ? http::status::no_content
                                                       : http::status::ok,
                          request.version()};
    response.set(http::field::content_type, "text/plain");
    response.set(http::field::content_length, "999");          // wrong: replaced
    response.set(http::field::server, "someone-else");         // replaced by the server's name
    response.set(http::field::connection, "keep-alive");       // the server decides
    response.set(http::field::transfer_encoding, "chunked");   // the body goes whole
    response.set("Rpool-Custom", "kept");
    if (request.target() != "/empty") response.body() = "hello";
    respond(std::move(response));
  });
  REQUIRE_FALSE(server.start());

  RawClient raw(io, server.port());
  raw.write(
      "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /empty HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return raw.closed(); }));
  CHECK(raw.received() ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nRpool-Custom: kept\r\nServer: rpool\r\n"
        "Content-Length: 5\r\n\r\nhello"
        "HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\nRpool-Custom: kept\r\n"
        "Server: rpool\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nRpool-Custom: kept\r\nServer: rpool\r\n"
        "Content-Length: 5\r\nConnection: close\r\n\r\nhello");

  RawClient old(io, server.port());
  old.write("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  REQUIRE(run_until(io, [&] { return count(old.received(), "hello") == 1; }));
  CHECK(old.received() ==
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nRpool-Custom: kept\r\nServer: rpool\r\n"
        "Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello");
}

TEST_CASE("a handler that throws gets a 500 internal and the server keeps serving") {
  asio::io_context io;
  std::vector<std::string> logged;
  HttpServerOptions options = local_options();
  options.log = [&](std::string_view message) { logged.emplace_back(message); };
  HttpServer server(io, options, [](HttpRequest&& request, Respond respond) {
    if (request.target() == "/throw") throw std::runtime_error("boom");
    echo(std::move(request), std::move(respond));
  });
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto thrown = send(client, server.port(), make_request(http::verb::get, "/throw"));
  REQUIRE(run_until(io, [&] { return thrown->done; }));
  REQUIRE_FALSE(thrown->ec);
  CHECK(thrown->response.result() == http::status::internal_server_error);
  CHECK(nlohmann::json::parse(thrown->response.body()).at("error") == "internal");
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find("boom") != std::string::npos);

  auto next = send(client, server.port(), make_request(http::verb::get, "/after"));
  REQUIRE(run_until(io, [&] { return next->done; }));
  REQUIRE_FALSE(next->ec);
  CHECK(next->response.body() == "GET /after 0");
  CHECK(server.stats().connections_accepted == 1);  // the same connection served both
}

TEST_CASE("a request dropped by its handler without an answer gets a 500 internal") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.log = [](std::string_view) {};
  HttpServer server(io, options, [](HttpRequest&&, Respond) {});
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto result = send(client, server.port(), make_request(http::verb::get, "/"));
  REQUIRE(run_until(io, [&] { return result->done; }));
  REQUIRE_FALSE(result->ec);
  CHECK(result->response.result() == http::status::internal_server_error);
}

TEST_CASE("HTTP/1.0 and Connection: close get one answer, then the connection closes") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  RawClient old(io, server.port());
  old.write("GET /old HTTP/1.0\r\n\r\n");
  RawClient closing(io, server.port());
  closing.write("GET /close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return old.closed() && closing.closed(); }));
  CHECK(old.received().rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(old.received().find("GET /old 0") != std::string::npos);
  CHECK(closing.received().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(closing.received().find("Connection: close\r\n") != std::string::npos);

  // HTTP/1.0 with keep-alive asked for keeps the connection.
  RawClient kept(io, server.port());
  kept.write("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  REQUIRE(run_until(io, [&] { return count(kept.received(), "GET /a 0") == 1; }));
  CHECK(kept.received().find("Connection: keep-alive\r\n") != std::string::npos);
  kept.write("GET /b HTTP/1.0\r\n\r\n");
  REQUIRE(run_until(io, [&] { return kept.closed(); }));
  CHECK(kept.received().find("GET /b 0") != std::string::npos);
}

TEST_CASE("a connection over connections_max is answered 503 overloaded and closed at once") {
  asio::io_context io;
  HttpServerOptions options = local_options();
  options.connections_max = 1;
  HttpServer server(io, options, echo);
  REQUIRE_FALSE(server.start());

  RawClient first(io, server.port());
  first.write("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(run_until(io, [&] { return count(first.received(), "GET /1 0") == 1; }));
  {
    RawClient second(io, server.port());
    REQUIRE(run_until(io, [&] { return second.closed(); }));
    const std::string& text = second.received();
    CHECK(text.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
    CHECK(text.find("Retry-After: 1\r\n") != std::string::npos);
    CHECK(text.find("Connection: close\r\n") != std::string::npos);
    const auto body = nlohmann::json::parse(text.substr(text.find("\r\n\r\n") + 4));
    CHECK(body.at("error") == "overloaded");
    CHECK_FALSE(first.closed());
    CHECK(server.stats().connections_accepted == 2);
    CHECK(server.stats().connections_refused == 1);
    CHECK(server.stats().connections_active == 1);
  }
  // Below the cap again, a new connection is served.
  first.write("GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return first.closed(); }));
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 0; }));
  RawClient third(io, server.port());
  third.write("GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(io, [&] { return third.closed(); }));
  CHECK(third.received().find("GET /3 0") != std::string::npos);
}

TEST_CASE("the connection cap leaves the node's reserve of descriptors under the file limit") {
  using rpool::net::connections_max_for_fd_limit;
  using rpool::net::fds_reserved_for_node;
  CHECK(connections_max_for_fd_limit(1024) == 1024 - fds_reserved_for_node);
  CHECK(connections_max_for_fd_limit(4096) == 4096 - fds_reserved_for_node);
  CHECK(connections_max_for_fd_limit(1'048'576) == rpool::net::connections_max_default);
  CHECK(connections_max_for_fd_limit(UINT64_MAX) == rpool::net::connections_max_default);
  CHECK(connections_max_for_fd_limit(256) == 128);  // a small limit: half of it
  CHECK(connections_max_for_fd_limit(1) == 1);
  CHECK(connections_max_for_fd_limit(0) == 1);
}

TEST_CASE("raise_fd_limit raises the soft file limit to the hard one and returns it") {
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  if (before.rlim_max == RLIM_INFINITY || before.rlim_max < 128) return;  // nothing to lower
  rlimit lowered = before;
  lowered.rlim_cur = 64;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  const std::uint64_t limit = rpool::raise_fd_limit();
  rlimit after{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &after) == 0);
  CHECK(after.rlim_cur == before.rlim_max);
  CHECK(limit == before.rlim_max);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &before) == 0);
}

TEST_CASE("out of descriptors, accepting pauses with a backoff and resumes when they are back") {
  asio::io_context io;
  std::vector<std::string> logged;
  HttpServerOptions options = local_options();
  options.log = [&](std::string_view line) { logged.emplace_back(line); };
  HttpServer server(io, options, echo);
  REQUIRE_FALSE(server.start());
  // The client's socket first, then every free descriptor taken: the server's accept of it
  // fails with EMFILE while its handshake completes in the backlog.
  RawClient raw(io, server.port());
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  rlimit lowered = before;
  lowered.rlim_cur = std::min<rlim_t>(before.rlim_cur, 256);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  std::vector<int> taken;
  for (int fd = ::dup(0); fd >= 0; fd = ::dup(0)) taken.push_back(fd);
  CHECK(errno == EMFILE);

  // Over 400 ms the pauses (50, 100, 200 ms, ...) allow at most 4 attempts; a retry without a
  // pause would fail thousands of times.
  const auto until = std::chrono::steady_clock::now() + 400ms;
  run_until(
      io, [&] { return std::chrono::steady_clock::now() >= until; }, 1s);
  const auto errors = server.stats().accept_errors;
  for (const int fd : taken) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &before) == 0);
  CHECK(errors >= 1);
  CHECK(errors <= 4);
  CHECK(server.stats().connections_accepted == 0);
  REQUIRE_FALSE(logged.empty());
  CHECK(logged.front().find("accept") != std::string::npos);

  raw.write("GET /back HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  REQUIRE(run_until(
      io, [&] { return raw.closed(); }, 3s));
  CHECK(raw.received().find("GET /back 0") != std::string::npos);
}

TEST_CASE("a taken address is a clear error from start") {
  asio::io_context io;
  HttpServer first(io, local_options(), echo);
  REQUIRE_FALSE(first.start());
  HttpServerOptions options = local_options();
  options.port = first.port();
  HttpServer second(io, options, echo);
  const std::error_code ec = second.start();
  CHECK(ec == std::errc::address_in_use);
}

TEST_CASE("the client reports a refused connection as an error") {
  asio::io_context io;
  HttpClient client(io, {});
  auto result = send(client, closed_port(io), make_request(http::verb::get, "/"));
  REQUIRE(run_until(io, [&] { return result->done; }));
  CHECK(result->ec == std::errc::connection_refused);
}

TEST_CASE("the client times out on a server that never answers") {
  asio::io_context io;
  // Listening, but nothing ever accepts or answers: the connection completes in the backlog.
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  HttpClient client(io, {});
  const auto started = std::chrono::steady_clock::now();
  auto result =
      send(client, silent.local_endpoint().port(), make_request(http::verb::get, "/"), 200ms);
  REQUIRE(run_until(io, [&] { return result->done; }));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(result->ec == std::errc::timed_out);
  CHECK(elapsed >= 200ms);
  CHECK(elapsed < 2s);
}

TEST_CASE("a request over waiting_per_host_max fails at once with queue_full, unsent") {
  asio::io_context io;
  std::vector<Respond> pending;
  HttpServer server(io, local_options(),
                    [&](HttpRequest&&, Respond respond) { pending.push_back(std::move(respond)); });
  REQUIRE_FALSE(server.start());
  HttpClientOptions options;
  options.connections_per_host_max = 1;
  options.waiting_per_host_max = 2;
  HttpClient client(io, options);

  auto busy = send(client, server.port(), make_request(http::verb::get, "/busy"), 30s);
  REQUIRE(run_until(io, [&] { return pending.size() == 1; }));
  auto wait1 = send(client, server.port(), make_request(http::verb::get, "/w1"), 30s);
  auto wait2 = send(client, server.port(), make_request(http::verb::get, "/w2"), 30s);
  auto refused = send(client, server.port(), make_request(http::verb::get, "/over"), 30s);
  REQUIRE(run_until(io, [&] { return refused->done; }));
  CHECK(refused->ec == rpool::net::HttpErrc::queue_full);
  CHECK(refused->ec.category() == rpool::net::http_category());
  CHECK_FALSE(refused->ec.message().empty());
  CHECK_FALSE(busy->done);
  CHECK_FALSE(wait1->done);
  CHECK_FALSE(wait2->done);

  // The queued ones still go through, in order, on the one connection.
  for (const char* target : {"/busy", "/w1", "/w2"}) {
    REQUIRE(run_until(io, [&] { return !pending.empty(); }));
    HttpResponse response{http::status::ok, 11};
    response.body() = target;
    Respond respond = std::move(pending.front());
    pending.erase(pending.begin());
    respond(std::move(response));
  }
  REQUIRE(run_until(io, [&] { return wait2->done; }));
  CHECK(busy->response.body() == "/busy");
  CHECK(wait1->response.body() == "/w1");
  CHECK(wait2->response.body() == "/w2");
  CHECK(server.stats().requests == 3);
}

TEST_CASE("the client bounds connections per host and queues the rest") {
  asio::io_context io;
  std::vector<Respond> pending;
  HttpServer server(io, local_options(),
                    [&](HttpRequest&&, Respond respond) { pending.push_back(std::move(respond)); });
  REQUIRE_FALSE(server.start());
  HttpClientOptions options;
  options.connections_per_host_max = 2;
  HttpClient client(io, options);

  std::vector<std::shared_ptr<Result>> results;
  for (int i = 0; i < 5; ++i) {
    results.push_back(send(client, server.port(), make_request(http::verb::get, "/")));
  }
  REQUIRE(run_until(io, [&] { return pending.size() == 2; }));
  std::size_t answered = 0;
  REQUIRE(run_until(io, [&] {
    while (answered < pending.size()) {
      pending[answered++](HttpResponse{http::status::ok, 11});
    }
    for (auto& result : results) {
      if (!result->done) return false;
    }
    return true;
  }));
  for (auto& result : results) CHECK_FALSE(result->ec);
  CHECK(server.stats().connections_accepted == 2);
  CHECK(client.stats().connections_opened == 2);
}

TEST_CASE("bursts of as many requests as connections reuse the same connections") {
  // A follower forwards bursts of writes to the leader: after a burst the connections wait idle
  // and the next burst takes them again, instead of connecting (and binding) anew.
  asio::io_context io;
  std::vector<Respond> pending;
  HttpServer server(io, local_options(),
                    [&](HttpRequest&&, Respond respond) { pending.push_back(std::move(respond)); });
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});  // the node's settings: 64 connections per host
  const std::size_t burst = 64;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::shared_ptr<Result>> results;
    for (std::size_t i = 0; i < burst; ++i) {
      results.push_back(send(client, server.port(), make_request(http::verb::get, "/")));
    }
    REQUIRE(run_until(io, [&] { return pending.size() == burst; }));
    for (auto& respond : pending) respond(HttpResponse{http::status::ok, 11});
    pending.clear();
    REQUIRE(run_until(io, [&] {
      return std::all_of(results.begin(), results.end(), [](const auto& r) { return r->done; });
    }));
    for (auto& result : results) CHECK_FALSE(result->ec);
  }
  CHECK(client.stats().connections_opened == burst);
  CHECK(server.stats().connections_accepted == burst);
  CHECK(client.stats().requests_on_reused_connection == 2 * burst);
}

TEST_CASE("the client does not reuse a connection the server closed") {
  asio::io_context io;
  HttpServerOptions server_options = local_options();
  server_options.read_timeout = 100ms;
  HttpServer server(io, server_options, echo);
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto first = send(client, server.port(), make_request(http::verb::get, "/1"));
  REQUIRE(run_until(io, [&] { return first->done; }));
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 0; }));
  auto second = send(client, server.port(), make_request(http::verb::get, "/2"));
  REQUIRE(run_until(io, [&] { return second->done; }));
  REQUIRE_FALSE(second->ec);
  CHECK(second->response.body() == "GET /2 0");
  CHECK(client.stats().connections_opened == 2);
}

TEST_CASE("graceful shutdown delivers the in-flight answer, refuses new connections, then done") {
  asio::io_context io;
  std::optional<Respond> held;
  HttpServer server(io, local_options(), [&](HttpRequest&& request, Respond respond) {
    if (request.target() == "/slow") {
      held = std::move(respond);
    } else {
      echo(std::move(request), std::move(respond));
    }
  });
  REQUIRE_FALSE(server.start());
  const std::uint16_t port = server.port();
  HttpClient idle_client(io, {});
  HttpClient busy_client(io, {});

  auto warm = send(idle_client, port, make_request(http::verb::get, "/warm"));  // stays idle
  REQUIRE(run_until(io, [&] { return warm->done; }));
  auto slow = send(busy_client, port, make_request(http::verb::post, "/slow", "{}"));
  REQUIRE(run_until(io, [&] { return held.has_value(); }));
  CHECK(server.stats().connections_active == 2);

  bool done = false;
  server.stop_accepting();
  server.shutdown([&] { done = true; });
  // The idle connection closes at once; the busy one waits for its answer.
  REQUIRE(run_until(io, [&] { return server.stats().connections_active == 1; }));
  auto refused = send(busy_client, port, make_request(http::verb::get, "/new"));
  REQUIRE(run_until(io, [&] { return refused->done; }));
  CHECK(refused->ec == std::errc::connection_refused);
  CHECK_FALSE(done);
  CHECK_FALSE(slow->done);

  HttpResponse response{http::status::ok, 11};
  response.body() = "late";
  (*held)(std::move(response));
  REQUIRE(run_until(io, [&] { return slow->done && done; }));
  REQUIRE_FALSE(slow->ec);
  CHECK(slow->response.body() == "late");
  CHECK_FALSE(slow->response.keep_alive());
  CHECK(server.stats().connections_active == 0);
}

TEST_CASE("the client binds to bind_host and reports a bad one as an error") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());

  HttpClientOptions bound;
  bound.bind_host = "127.0.0.1";
  HttpClient good(io, bound);
  auto ok = send(good, server.port(), make_request(http::verb::get, "/bound"));
  REQUIRE(run_until(io, [&] { return ok->done; }));
  REQUIRE_FALSE(ok->ec);
  CHECK(ok->response.body() == "GET /bound 0");

  HttpClientOptions bad;
  bad.bind_host = "not an address";
  HttpClient broken(io, bad);
  auto failed = send(broken, server.port(), make_request(http::verb::get, "/"));
  REQUIRE(run_until(io, [&] { return failed->done; }));
  CHECK(failed->ec);
}

TEST_CASE("a HEAD answer carries the length of the body it does not send") {
  asio::io_context io;
  HttpServer server(io, local_options(), echo);
  REQUIRE_FALSE(server.start());
  HttpClient client(io, {});

  auto head = send(client, server.port(), make_request(http::verb::head, "/h"));
  REQUIRE(run_until(io, [&] { return head->done; }));
  REQUIRE_FALSE(head->ec);
  CHECK(head->response[http::field::content_length] == "9");  // "HEAD /h 0"
  CHECK(head->response.body().empty());
  auto after = send(client, server.port(), make_request(http::verb::get, "/g"));
  REQUIRE(run_until(io, [&] { return after->done; }));
  REQUIRE_FALSE(after->ec);
  CHECK(after->response.body() == "GET /g 0");  // the connection was not desynchronised
  CHECK(server.stats().connections_accepted == 1);
}

TEST_CASE("json_error writes the JSON body and follows the request's version and keep-alive") {
  const auto none =
      rpool::net::json_error(nullptr, http::status::not_found, "not_found", "No such path.");
  CHECK(none.result() == http::status::not_found);
  CHECK(none.version() == 11);
  CHECK_FALSE(none.keep_alive());
  CHECK(none[http::field::content_type] == "application/json");
  CHECK(none[http::field::content_length] == std::to_string(none.body().size()));
  const auto body = nlohmann::json::parse(none.body());
  CHECK(body == nlohmann::json{{"error", "not_found"}, {"message", "No such path."}});

  HttpRequest old{http::verb::get, "/", 10};
  old.keep_alive(true);
  const auto kept = rpool::net::json_error(&old, http::status::service_unavailable, "no_leader",
                                           "No leader is known right now.");
  CHECK(kept.version() == 10);
  CHECK(kept.keep_alive());
}
