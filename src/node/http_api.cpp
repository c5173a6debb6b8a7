// HttpApi: routing, validation, forwarding, and the answers of docs/api.md.
#include "node/http_api.h"

#include <cctype>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api/openapi.h"
#include "base/assert.h"
#include "node/planted_bugs.h"

namespace rpool::node {
namespace {

// The header a follower adds when it forwards a request to the leader; a node that receives a
// forwarded request while not leading answers 503 instead of forwarding again.
constexpr std::string_view forwarded_header = "Rpool-Forwarded-By";

bool is_admin(api::Route route, http::verb method) {
  if (route == api::Route::named_pool)  // reading a pool is not; creating and deleting one are
    return method == http::verb::put || method == http::verb::delete_;
  return route == api::Route::item || route == api::Route::members || route == api::Route::member ||
         route == api::Route::leader || route == api::Route::snapshot ||
         route == api::Route::pool_item;
}

HttpResponse render_draw(const HttpRequest& req, const pool::Result& result,
                         const Subject& subject) {
  if (result.error) {
    return HttpApi::error_response(req, error_of(result.error),
                                   pool_error_message(result.error, subject));
  }
  return HttpApi::json_response(req, 200, api::draw_json(result, LogIndex(result.index)));
}

HttpResponse render_item(const HttpRequest& req, const pool::Result& result,
                         const Subject& subject) {
  if (result.error) {
    return HttpApi::error_response(req, error_of(result.error),
                                   pool_error_message(result.error, subject));
  }
  if (result.item) return HttpApi::json_response(req, 200, api::item_json(*result.item));
  return HttpApi::json_response(req, 200,
                                fmt::format(R"({{"item_id":"{}","deleted":true,"index":{}}})",
                                            subject.item_id, result.index));
}

}  // namespace

bool take_key(const HttpRequest& request, pool::Command& command, std::string_view operation,
              const Respond& respond) {
  const auto it = request.find("Idempotency-Key");
  if (it == request.end()) return true;
  const std::string_view key = it->value();
  if (!api::valid_idempotency_key(key)) {
    respond(HttpApi::error_response(request, api::Error::bad_request,
                                    "An Idempotency-Key is 1 to 128 printable ASCII characters."));
    return false;
  }
  command.idempotency_key = std::string(key);
  command.body_hash = api::request_hash(operation);
  return true;
}

api::Error error_of(std::error_code ec) {
  if (ec.category() == pool::pool_category()) {
    switch (static_cast<pool::errc>(ec.value())) {
      case pool::errc::not_found:
      case pool::errc::pool_not_found: return api::Error::not_found;
      case pool::errc::pool_exists: return api::Error::pool_exists;
      case pool::errc::idempotency_key_reused: return api::Error::idempotency_key_reused;
      case pool::errc::bad_item:
      case pool::errc::too_many_items:
      case pool::errc::pool_undeletable:
      case pool::errc::bad_pool_id:
      case pool::errc::too_many_pools:
      case pool::errc::too_many_items_total:
      case pool::errc::pool_ids_exhausted: return api::Error::bad_request;
      // Failures of decoding: never the answer to a command that applied.
      case pool::errc::ok:
      case pool::errc::malformed:
      case pool::errc::unsupported_version:
      case pool::errc::checksum_mismatch: return api::Error::internal;
    }
    return api::Error::internal;
  }
  if (ec.category() == node_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::not_leader:
      case errc::no_leader:
      case errc::stopped:
      case errc::shutting_down: return api::Error::no_leader;
      case errc::outcome_unknown: return api::Error::outcome_unknown;
      case errc::storage_full: return api::Error::insufficient_storage;
      case errc::too_large: return api::Error::payload_too_large;
      case errc::overloaded: return api::Error::overloaded;
      case errc::change_in_progress: return api::Error::membership_change_in_progress;
      case errc::bad_request: return api::Error::bad_request;
      case errc::not_found: return api::Error::not_found;
    }
  }
  return api::Error::internal;
}

HttpApi::HttpApi(Replica& replica, net::HttpClient& client, const net::PeerTransport* transport)
    : replica_(replica),
      client_(client),
      transport_(transport),
      admin_token_(replica.options().config.admin_token) {}

HttpResponse HttpApi::json_response(const HttpRequest& request, unsigned status, std::string body) {
  HttpResponse res{static_cast<http::status>(status), request.version()};
  res.set(http::field::content_type, "application/json");
  // No Content-Length or Connection: the HTTP server writes both for every answer
  // (net::HttpServer), and setting them here cost a field allocation and a lookup per answer.
  res.body() = std::move(body);
  return res;
}

HttpResponse HttpApi::error_response(const HttpRequest& request, api::Error e,
                                     std::string_view message) {
  HttpResponse res = json_response(request, api::status_of(e), api::error_json(e, message));
  if (e == api::Error::no_leader || e == api::Error::overloaded)
    res.set(http::field::retry_after, "1");
  return res;
}

HttpResponse HttpApi::outcome_response(const HttpRequest& request, const Outcome& outcome) {
  RPOOL_ASSERT(outcome.ec);
  std::string message = outcome.message;
  if (message.empty()) {  // the code's own text, as a sentence
    message = outcome.ec.message();
    if (!message.empty())
      message[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(message[0])));
  }
  if (!message.empty() && message.back() != '.') message += '.';
  return error_response(request, error_of(outcome.ec), message);
}

bool HttpApi::authorized(const HttpRequest& request) const {
  const auto& token = admin_token_;
  if (!token) return true;
  const std::string_view header = request[http::field::authorization];
  // The scheme is case-insensitive (RFC 9110 §11.1); the token is compared exactly.
  constexpr std::string_view bearer = "bearer ";
  if (header.size() < bearer.size()) return false;
  for (std::size_t i = 0; i < bearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != bearer[i]) return false;
  }
  return api::token_matches(header.substr(bearer.size()), *token);
}

void HttpApi::handle(HttpRequest&& request, Respond answer) {
  const api::Target target = api::parse_target(request.target());
  // Every answer is counted by route and status, and timed.
  Respond respond = [this, route = target.route, started = Clock::now(),
                     answer = std::move(answer)](HttpResponse&& res) {
    count_answer(route, res.result_int(),
                 std::chrono::duration<double>(Clock::now() - started).count());
    answer(std::move(res));
  };
  const http::verb method = request.method();
  auto method_not_allowed = [&](const char* allow) {
    HttpResponse res = error_response(
        request, api::Error::method_not_allowed,
        fmt::format("{} accepts {} only.", std::string_view(request.target()), allow));
    res.set(http::field::allow, allow);
    respond(std::move(res));
  };
  if (!target.bad_query.empty()) {
    respond(error_response(request, api::Error::bad_request,
                           fmt::format("Unknown query parameter \"{}\".", target.bad_query)));
    return;
  }
  if (is_admin(target.route, method) && !authorized(request)) {
    respond(error_response(request, api::Error::unauthorized,
                           "This endpoint needs 'Authorization: Bearer <admin token>'."));
    return;
  }
  switch (target.route) {
    case api::Route::draw:
      if (method != http::verb::post) return method_not_allowed("POST");
      return handle_draw(std::move(request), std::move(respond), target.pool_id);
    case api::Route::pool:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_pool(std::move(request), std::move(respond), target.stale);
    case api::Route::item:
      if (method != http::verb::put && method != http::verb::delete_)
        return method_not_allowed("PUT, DELETE");
      return handle_item(std::move(request), std::move(respond),
                         Subject{target.pool_id, target.item_id});
    case api::Route::pools:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_pools(std::move(request), std::move(respond), target.stale);
    case api::Route::named_pool:
      if (method != http::verb::get && method != http::verb::put && method != http::verb::delete_)
        return method_not_allowed("GET, PUT, DELETE");
      return handle_named_pool(std::move(request), std::move(respond), target.pool_id,
                               target.stale);
    case api::Route::pool_draw:
      if (method != http::verb::post) return method_not_allowed("POST");
      if (!check_pool_id(request, respond, target.pool_id)) return;
      return handle_draw(std::move(request), std::move(respond), target.pool_id);
    case api::Route::pool_item:
      if (method != http::verb::put && method != http::verb::delete_)
        return method_not_allowed("PUT, DELETE");
      if (!check_pool_id(request, respond, target.pool_id)) return;
      return handle_item(std::move(request), std::move(respond),
                         Subject{target.pool_id, target.item_id});
    case api::Route::cluster:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_cluster(std::move(request), std::move(respond));
    case api::Route::leader:
      if (method != http::verb::post) return method_not_allowed("POST");
      return handle_transfer(std::move(request), std::move(respond));
    case api::Route::snapshot:
      if (method == http::verb::get) return handle_backup(std::move(request), std::move(respond));
      if (method != http::verb::post) return method_not_allowed("GET, POST");
      return handle_snapshot(std::move(request), std::move(respond));
    case api::Route::members:
      if (method != http::verb::post) return method_not_allowed("POST");
      return handle_add_member(std::move(request), std::move(respond));
    case api::Route::member:
      if (method != http::verb::delete_) return method_not_allowed("DELETE");
      return handle_remove_member(std::move(request), std::move(respond), NodeId(target.member));
    case api::Route::healthz:
      if (method != http::verb::get) return method_not_allowed("GET");
      respond(json_response(request, 200, R"({"status":"ok"})"));
      return;
    case api::Route::readyz:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_readyz(std::move(request), std::move(respond));
    case api::Route::metrics:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_metrics(std::move(request), std::move(respond));
    case api::Route::openapi:
      if (method != http::verb::get) return method_not_allowed("GET");
      respond(json_response(request, 200, std::string(api::openapi_json())));
      return;
    case api::Route::console:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_console(std::move(request), std::move(respond), target.asset);
    case api::Route::status:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_status(std::move(request), std::move(respond), target.from_leader);
    case api::Route::not_found: break;
  }
  respond(error_response(request, api::Error::not_found,
                         fmt::format("No such path: {}", std::string_view(request.target()))));
}

// --- writes -------------------------------------------------------------------------------------

void HttpApi::handle_draw(HttpRequest&& request, Respond respond, const std::string& pool_id) {
  std::string message;
  const auto count = api::parse_draw(request.body(), message);
  if (!count) {
    respond(error_response(request, api::Error::bad_request, message));
    return;
  }
  pool::Command command{pool::Draw{*count, 0}, 0, {}, {}, pool_id};
  if (!take_key(request, command, api::draw_operation(*count), respond)) return;
  write(std::move(request), std::move(respond), std::move(command), &render_draw,
        Subject{pool_id, {}});
}

void HttpApi::handle_item(HttpRequest&& request, Respond respond, Subject subject) {
  if (!pool::valid_item_id(subject.item_id)) {
    respond(error_response(request, api::Error::bad_request,
                           "An item_id is 1 to 64 of A-Z a-z 0-9 _ . -"));
    return;
  }
  pool::Command command;
  command.pool_id = subject.pool_id;
  std::string operation;
  if (request.method() == http::verb::put) {
    std::string message;
    auto item = api::parse_item(subject.item_id, request.body(), message);
    if (!item) {
      respond(error_response(request, api::Error::bad_request, message));
      return;
    }
    operation = api::upsert_operation(*item);
    command.op = pool::UpsertItem{std::move(*item)};
  } else {
    operation = api::delete_operation(subject.item_id);
    command.op = pool::DeleteItem{subject.item_id};
  }
  if (!take_key(request, command, operation, respond)) return;
  write(std::move(request), std::move(respond), std::move(command), &render_item,
        std::move(subject));
}

void HttpApi::write(HttpRequest&& request, Respond respond, pool::Command command, Render render,
                    Subject subject) {
  struct Write {
    HttpApi* api;
    HttpRequest request;
    Respond respond;
    Render render;
    Subject subject;
  };
  auto w = std::make_shared<Write>(
      Write{this, std::move(request), std::move(respond), render, std::move(subject)});
  replica_.write(std::move(command), [w](const Outcome& outcome, const pool::Result* result) {
    if (outcome.ec == errc::not_leader) {
      return w->api->forward(std::move(w->request), std::move(w->respond),
                             w->api->replica_.options().write_timeout);
    }
    if (outcome.ec) return w->respond(outcome_response(w->request, outcome));
    RPOOL_ASSERT(result != nullptr);
    w->respond(w->render(w->request, *result, w->subject));
  });
}

void HttpApi::forward(HttpRequest&& request, Respond respond, std::chrono::milliseconds timeout) {
  if (request.find(forwarded_header) != request.end()) {
    respond(
        error_response(request, api::Error::no_leader,
                       "The node this request was forwarded to is not the leader; retry shortly."));
    return;
  }
  const NodeId leader = replica_.core().leader();
  const Member* member =
      leader == NodeId() || leader == replica_.id() ? nullptr : replica_.member_info(leader);
  if (member == nullptr) {
    respond(error_response(request, api::Error::no_leader,
                           "No leader is known right now; retry shortly."));
    return;
  }
  auto original = std::make_shared<HttpRequest>(std::move(request));
  HttpRequest out{original->method(), original->target(), 11};
  for (const auto& field : *original) {
    if (field.name() == http::field::connection || field.name() == http::field::host) continue;
    out.set(field.name_string(), field.value());
  }
  out.set(forwarded_header, std::to_string(replica_.id().value()));
  out.body() = original->body();
  out.keep_alive(true);
  out.prepare_payload();
  ++forwarded_;
  client_.request(
      member->http.host, member->http.port, std::move(out), timeout,
      [original, respond = std::move(respond)](std::error_code ec, HttpResponse&& res) {
        if (ec == net::HttpErrc::queue_full) {
          respond(error_response(*original, api::Error::overloaded,
                                 "Too many requests wait for the leader; retry shortly."));
          return;
        }
        if (ec) {
          // A refused connection never delivered the request; anything else may have.
          const bool unsent = ec == std::errc::connection_refused;
          respond(error_response(
              *original, unsent ? api::Error::no_leader : api::Error::outcome_unknown,
              unsent ? "The leader cannot be reached; retry shortly."
                     : "The leader did not answer in time; retry with the same Idempotency-Key."));
          return;
        }
        res.version(original->version());
        res.keep_alive(original->keep_alive());
        respond(std::move(res));
      });
}

// --- reads --------------------------------------------------------------------------------------

const std::string& HttpApi::pool_json() {
  // Every change of the pool advances the applied index (an applied entry, an installed
  // snapshot), so the body rendered at an index stays right until it moves.
  if (pool_json_cache_.empty() || pool_json_cache_index_ != replica_.applied()) {
    pool_json_cache_ = api::pool_json(replica_.pool(), replica_.applied());
    pool_json_cache_index_ = replica_.applied();
  }
  return pool_json_cache_;
}

void HttpApi::handle_pool(HttpRequest&& request, Respond respond, bool stale) {
  if (stale || (planted("local_default_read") && replica_.core().role() != raft::Role::leader)) {
    respond(json_response(request, 200, pool_json()));
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.read([this, req, respond = std::move(respond)](const Outcome& outcome) {
    if (outcome.ec) return respond(outcome_response(*req, outcome));
    respond(json_response(*req, 200, pool_json()));
  });
}

void HttpApi::handle_cluster(HttpRequest&& request, Respond respond) {
  const raft::Core& core = replica_.core();
  const nlohmann::json body = {
      {"node_id", replica_.id().value()},
      {"role", role_name(core.role())},
      {"term", core.current_term().value()},
      {"leader_id", core.leader().value()},
      {"commit_index", core.log().commit_index().value()},
      {"applied_index", replica_.applied().value()},
      {"members", members_json()},
  };
  respond(json_response(request, 200, body.dump()));
}

void HttpApi::handle_readyz(HttpRequest&& request, Respond respond) {
  const raft::Core& core = replica_.core();
  const bool ready = !replica_.storage_failed() && !replica_.stopping() &&
                     core.leader() != NodeId() && replica_.applied() >= core.log().commit_index();
  if (ready) {
    respond(json_response(request, 200, R"({"status":"ready"})"));
  } else {
    respond(json_response(request, 503,
                          fmt::format(R"({{"error":"not_ready","message":"{}"}})",
                                      core.leader() == NodeId()
                                          ? "No leader is known."
                                          : "This node is still applying the log.")));
  }
}

// --- admin --------------------------------------------------------------------------------------

void HttpApi::handle_snapshot(HttpRequest&& request, Respond respond) {
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.take_snapshot(
      [req, respond = std::move(respond)](const Outcome& outcome, LogIndex index) {
        if (outcome.ec) return respond(outcome_response(*req, outcome));
        respond(json_response(*req, 200, fmt::format(R"({{"snapshot_index":{}}})", index.value())));
      });
}

nlohmann::json HttpApi::members_json() const {
  nlohmann::json members = nlohmann::json::array();
  const raft::Membership& m = replica_.core().membership();
  auto add = [&](NodeId id, bool voter) {
    const Member* member = replica_.member_info(id);
    members.push_back({{"id", id.value()},
                       {"raft", member ? member->raft.to_string() : ""},
                       {"http", member ? member->http.to_string() : ""},
                       {"voter", voter}});
  };
  for (NodeId id : m.voters) add(id, true);
  for (NodeId id : m.learners) add(id, false);
  return members;
}

void HttpApi::handle_add_member(HttpRequest&& request, Respond respond) {
  const auto body = nlohmann::json::parse(request.body(), nullptr, false);
  std::optional<Endpoint> raft_endpoint;
  std::optional<Endpoint> http_endpoint;
  if (body.is_object() && body.size() == 3 && body.contains("id") &&
      body["id"].is_number_unsigned() && body["id"].get<std::uint64_t>() != 0 &&
      body.contains("raft") && body["raft"].is_string() && body.contains("http") &&
      body["http"].is_string()) {
    raft_endpoint = parse_endpoint(body["raft"].get<std::string>());
    http_endpoint = parse_endpoint(body["http"].get<std::string>());
  }
  if (!raft_endpoint || !http_endpoint) {
    respond(error_response(
        request, api::Error::bad_request,
        R"(The body must be {"id": <node id>, "raft": "host:port", "http": "host:port"}.)"));
    return;
  }
  const NodeId id(body["id"].get<std::uint64_t>());
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.add_member(
      Member{id, std::move(*raft_endpoint), std::move(*http_endpoint)},
      [this, req, id, respond = std::move(respond)](const Outcome& outcome) mutable {
        const auto& o = replica_.options();
        if (outcome.ec == errc::not_leader)
          return forward(std::move(*req), std::move(respond), o.change_timeout + o.write_timeout);
        if (outcome.ec) return respond(outcome_response(*req, outcome));
        respond(json_response(*req, 200,
                              fmt::format(R"({{"id":{},"voter":true,"members":{}}})", id.value(),
                                          members_json().dump())));
      });
}

void HttpApi::handle_remove_member(HttpRequest&& request, Respond respond, NodeId id) {
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.remove_member(
      id, [this, req, id, respond = std::move(respond)](const Outcome& outcome) mutable {
        const auto& o = replica_.options();
        if (outcome.ec == errc::not_leader)
          return forward(std::move(*req), std::move(respond), o.change_timeout + o.write_timeout);
        if (outcome.ec) return respond(outcome_response(*req, outcome));
        respond(json_response(*req, 200,
                              fmt::format(R"({{"id":{},"removed":true,"members":{}}})", id.value(),
                                          members_json().dump())));
      });
}

void HttpApi::handle_transfer(HttpRequest&& request, Respond respond) {
  const auto body = nlohmann::json::parse(request.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("to") ||
      !body["to"].is_number_unsigned() || body.size() != 1) {
    respond(
        error_response(request, api::Error::bad_request, R"(The body must be {"to": <node id>}.)"));
    return;
  }
  const NodeId to(body["to"].get<std::uint64_t>());
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.transfer_leader(
      to, [this, req, to, respond = std::move(respond)](const Outcome& outcome) mutable {
        if (outcome.ec == errc::not_leader)
          return forward(std::move(*req), std::move(respond), replica_.options().write_timeout);
        if (outcome.ec) return respond(outcome_response(*req, outcome));
        respond(json_response(*req, 200,
                              fmt::format(R"({{"leader_id":{},"term":{}}})", to.value(),
                                          replica_.core().current_term().value())));
      });
}

}  // namespace rpool::node
