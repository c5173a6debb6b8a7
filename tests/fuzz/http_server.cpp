// Fuzzes the HTTP server: the bytes a client sends on one connection go through the node's real
// net::HttpServer (Beast's parser, the header, body, read-buffer and pipeline bounds, the
// Transfer-Encoding rule, the ordered write of pipelined answers, the lingering close), and the
// answers come back.
//
// The handler stands in for node::HttpApi without a replica: it routes with api::parse_target,
// checks the admin token, parses draw and item bodies and Idempotency-Keys with the api module,
// and applies the command to a local pool::StateMachine (encoded and decoded, as through the log),
// answering with the api module's JSON. Targets of odd length are answered later (posted), so
// that pipelined answers finish out of order.
//
// The server listens on 127.0.0.1 (it accepts only TCP). Each input is one connection: the
// harness writes the input, shuts down its sending side, and reads until the server closes. Then
// it checks the answers: each starts with a status line, and none is a 500 (a handler here never
// fails, so a 500 is the server's or the api module's bug).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "api/api.h"
#include "net/http/http.h"
#include "pool/command.h"
#include "pool/state_machine.h"

namespace {

using namespace rpool;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using net::HttpRequest;
using net::HttpResponse;

constexpr std::string_view admin_token = "fuzz-admin-token";

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_server: %s\n", what);
    std::abort();
  }
}

HttpResponse json(const HttpRequest& request, unsigned status, std::string body) {
  HttpResponse res{static_cast<http::status>(status), request.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse error(const HttpRequest& request, api::Error e, std::string_view message) {
  return json(request, api::status_of(e), api::error_json(e, message));
}

bool authorized(const HttpRequest& request) {
  const std::string_view header = request[http::field::authorization];
  constexpr std::string_view bearer = "bearer ";
  if (header.size() < bearer.size()) return false;
  for (std::size_t i = 0; i < bearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != bearer[i]) return false;
  }
  return api::token_matches(header.substr(bearer.size()), admin_token);
}

// node::HttpApi's routing and validation, over a local pool.
class StubApi {
 public:
  StubApi() {
    pool::Command bootstrap;
    bootstrap.op = pool::Bootstrap{{{"diamond", 100, 10}, {"gold", 1000, 20}, {"mud", -1, 70}}};
    (void)pool_.apply(++index_, bootstrap);
  }

  HttpResponse handle(const HttpRequest& request) {
    const api::Target target = api::parse_target(request.target());
    if (!target.bad_query.empty()) {
      return error(request, api::Error::bad_request, "Unknown query parameter " + target.bad_query);
    }
    const bool admin = target.route == api::Route::item || target.route == api::Route::members ||
                       target.route == api::Route::member || target.route == api::Route::leader ||
                       target.route == api::Route::snapshot;
    if (admin && !authorized(request)) {
      return error(request, api::Error::unauthorized, "This endpoint needs a token.");
    }
    const http::verb method = request.method();
    switch (target.route) {
      case api::Route::draw: {
        if (method != http::verb::post) return error(request, api::Error::method_not_allowed, "");
        std::string message;
        const auto count = api::parse_draw(request.body(), message);
        if (!count) return error(request, api::Error::bad_request, message);
        pool::Command command{pool::Draw{*count, index_}, index_, {}, {}};
        if (auto bad = take_key(request, command, api::draw_operation(*count))) return *bad;
        const pool::Result result = apply(command);
        return json(request, 200, api::draw_json(result, LogIndex(result.index)));
      }
      case api::Route::item: {
        if (!pool::valid_item_id(target.item_id)) {
          return error(request, api::Error::bad_request, "Bad item_id.");
        }
        pool::Command command;
        std::string operation;
        if (method == http::verb::put) {
          std::string message;
          auto item = api::parse_item(target.item_id, request.body(), message);
          if (!item) return error(request, api::Error::bad_request, message);
          operation = api::upsert_operation(*item);
          command.op = pool::UpsertItem{std::move(*item)};
        } else if (method == http::verb::delete_) {
          operation = api::delete_operation(target.item_id);
          command.op = pool::DeleteItem{target.item_id};
        } else {
          return error(request, api::Error::method_not_allowed, "");
        }
        if (auto bad = take_key(request, command, operation)) return *bad;
        const pool::Result result = apply(command);
        if (result.error) return error(request, api::Error::bad_request, result.error.message());
        if (result.item) return json(request, 200, api::item_json(*result.item));
        return json(request, 200, "{}");
      }
      case api::Route::pool: return json(request, 200, api::pool_json(pool_, LogIndex(index_)));
      case api::Route::not_found:
        return error(request, api::Error::not_found,
                     "No such path: " + std::string(request.target()));
      default: return json(request, 200, R"({"status":"ok"})");
    }
  }

 private:
  std::optional<HttpResponse> take_key(const HttpRequest& request, pool::Command& command,
                                       std::string_view operation) {
    const auto it = request.find("Idempotency-Key");
    if (it == request.end()) return std::nullopt;
    if (!api::valid_idempotency_key(it->value())) {
      return error(request, api::Error::bad_request, "Bad Idempotency-Key.");
    }
    command.idempotency_key = std::string(it->value());
    command.body_hash = api::request_hash(operation);
    return std::nullopt;
  }

  // Through the log's encoding, as a replica would apply it.
  pool::Result apply(const pool::Command& command) {
    pool::Command decoded;
    check(!pool::decode(pool::encode(command), decoded), "a command from the API does not decode");
    return pool_.apply(++index_, decoded);
  }

  pool::StateMachine pool_;
  std::uint64_t index_ = 0;
};

struct Harness {
  Harness() {
    net::HttpServerOptions options;
    options.host = "127.0.0.1";
    // Small bounds, so that inputs of a few KiB reach each of them.
    options.body_bytes_max = 1024;
    options.header_bytes_max = 512;
    options.read_buffer_bytes_max = 2048;
    options.pipeline_depth_max = 4;
    options.read_timeout = std::chrono::milliseconds(2000);
    options.log = [](std::string_view) {};
    server = std::make_unique<net::HttpServer>(
        io, options, [this](HttpRequest&& request, net::Respond respond) {
          const bool later = request.target().size() % 2 == 1;
          HttpResponse response = api.handle(request);
          if (later) {
            asio::post(io,
                       [respond = std::move(respond), response = std::move(response)]() mutable {
                         respond(std::move(response));
                       });
          } else {
            respond(std::move(response));
          }
        });
    check(!server->start(), "the server does not start");
    endpoint = tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port());
  }

  asio::io_context io;
  StubApi api;
  std::unique_ptr<net::HttpServer> server;
  tcp::endpoint endpoint;
};

Harness& harness() {
  static Harness* h = new Harness();  // never destroyed: the fuzzer exits without unwinding
  return *h;
}

void check_answers(std::string_view answers) {
  if (answers.empty()) return;  // e.g. nothing sent, or the connection ended mid-request
  check(answers.substr(0, 7) == "HTTP/1.", "the answer does not start with a status line");
  check(answers.find("HTTP/1.1 500 ") == std::string_view::npos &&
            answers.find("HTTP/1.0 500 ") == std::string_view::npos,
        "an answer 500");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Harness& h = harness();
  tcp::socket client(h.io);
  // libFuzzer's -timeout alarm (SIGALRM) may interrupt the blocking connect: start over.
  boost::system::error_code connected;
  do {
    boost::system::error_code ignored;
    client.close(ignored);
    client.connect(h.endpoint, connected);
  } while (connected == asio::error::interrupted);
  check(!connected, "cannot connect to the server");
  const std::string sent(reinterpret_cast<const char*>(data), size);
  std::string received;
  bool written = false;
  bool read_done = false;
  asio::async_write(client, asio::buffer(sent), [&](boost::system::error_code ec, std::size_t) {
    written = true;
    boost::system::error_code ignored;
    if (!ec) client.shutdown(tcp::socket::shutdown_send, ignored);
  });
  asio::async_read(client, asio::dynamic_buffer(received),
                   [&](boost::system::error_code, std::size_t) { read_done = true; });
  h.io.restart();
  while (!(written && read_done)) h.io.run_one();
  // Close with a reset, so that no connection of the millions a run makes waits in TIME_WAIT.
  boost::system::error_code ignored;
  client.set_option(asio::socket_base::linger(true, 0), ignored);
  client.close(ignored);
  while (h.server->stats().connections_active != 0) h.io.run_one();
  h.io.poll();  // handlers posted by the last answers
  check_answers(received);
  return 0;
}
