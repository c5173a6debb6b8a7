// NodeHost's HTTP handlers: routing, validation, forwarding, and the answers of CONTRACT.md.
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "node/node_host.h"
#include "node/node_internal.h"
#include "node/planted_bugs.h"

namespace rpool::node {
namespace {

using Clock = std::chrono::steady_clock;
using detail::forwarded_header;

}  // namespace

HttpResponse NodeHost::json_response(const HttpRequest& request, unsigned status, std::string body) {
  HttpResponse res{static_cast<http::status>(status), request.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse NodeHost::error_response(const HttpRequest& request, api::Error e, std::string_view message) {
  HttpResponse res = json_response(request, api::status_of(e), api::error_json(e, message));
  if (e == api::Error::no_leader) res.set(http::field::retry_after, "1");
  return res;
}

bool NodeHost::authorized(const HttpRequest& request) const {
  if (!options_.config.admin_token) return true;
  const auto header = request[http::field::authorization];
  constexpr std::string_view bearer = "Bearer ";
  if (!header.starts_with(bearer)) return false;
  return api::token_matches(header.substr(bearer.size()), *options_.config.admin_token);
}

void NodeHost::handle(HttpRequest&& request, Respond answer) {
  const api::Target target = api::parse_target(request.target());
  // Every answer is counted by route and status, and timed.
  Respond respond = [this, route = target.route, started = Clock::now(), answer = std::move(answer)](HttpResponse&& res) {
    count_answer(route, res.result_int(), std::chrono::duration<double>(Clock::now() - started).count());
    answer(std::move(res));
  };
  const http::verb method = request.method();
  auto method_not_allowed = [&](const char* allow) {
    HttpResponse res = error_response(request, api::Error::method_not_allowed,
                                      fmt::format("{} accepts {} only.", std::string_view(request.target()), allow));
    res.set(http::field::allow, allow);
    respond(std::move(res));
  };
  if (!target.bad_query.empty()) {
    respond(error_response(request, api::Error::bad_request, fmt::format("Unknown query parameter \"{}\".", target.bad_query)));
    return;
  }
  const bool admin = target.route == api::Route::item || target.route == api::Route::members ||
                     target.route == api::Route::member || target.route == api::Route::leader ||
                     target.route == api::Route::snapshot;
  if (admin && !authorized(request)) {
    respond(error_response(request, api::Error::unauthorized, "This endpoint needs 'Authorization: Bearer <admin token>'."));
    return;
  }
  switch (target.route) {
    case api::Route::draw:
      if (method != http::verb::post) return method_not_allowed("POST");
      return handle_draw(std::move(request), std::move(respond));
    case api::Route::pool:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_pool(std::move(request), std::move(respond), target.stale);
    case api::Route::item:
      if (method != http::verb::put && method != http::verb::delete_) return method_not_allowed("PUT, DELETE");
      return handle_item(std::move(request), std::move(respond), target.item_id);
    case api::Route::cluster:
      if (method != http::verb::get) return method_not_allowed("GET");
      return handle_cluster(std::move(request), std::move(respond));
    case api::Route::leader:
      if (method != http::verb::post) return method_not_allowed("POST");
      return handle_transfer(std::move(request), std::move(respond));
    case api::Route::snapshot:
      if (method != http::verb::post) return method_not_allowed("POST");
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
    case api::Route::not_found:
      break;
  }
  respond(error_response(request, api::Error::not_found, fmt::format("No such path: {}", std::string_view(request.target()))));
}

// Reads the Idempotency-Key header into `command`; false (and answered 400) if it is malformed.
static bool take_key(const HttpRequest& request, pool::Command& command, std::string_view operation,
                     const Respond& respond, HttpResponse (*error)(const HttpRequest&, api::Error, std::string_view)) {
  const auto it = request.find("Idempotency-Key");
  if (it == request.end()) return true;
  const std::string_view key = it->value();
  if (!api::valid_idempotency_key(key)) {
    respond(error(request, api::Error::bad_request, "An Idempotency-Key is 1 to 128 printable ASCII characters."));
    return false;
  }
  command.idempotency_key = std::string(key);
  command.body_hash = api::request_hash(operation);
  return true;
}

void NodeHost::handle_draw(HttpRequest&& request, Respond respond) {
  std::string message;
  const auto count = api::parse_draw(request.body(), message);
  if (!count) {
    respond(error_response(request, api::Error::bad_request, message));
    return;
  }
  pool::Command command{pool::Draw{*count, detail::random_u64()}, detail::wall_clock_ms(), {}, {}};
  if (!take_key(request, command, api::draw_operation(*count), respond, &NodeHost::error_response)) return;
  write(std::move(request), std::move(respond), std::move(command),
        [](const HttpRequest& req, const pool::Result& result) {
          if (result.error == pool::errc::idempotency_key_reused) {
            return error_response(req, api::Error::idempotency_key_reused,
                                  "This Idempotency-Key was used with a different request.");
          }
          return json_response(req, 200, api::draw_json(result, LogIndex(result.index)));
        });
}

void NodeHost::handle_item(HttpRequest&& request, Respond respond, const std::string& item_id) {
  if (!pool::valid_item_id(item_id)) {
    respond(error_response(request, api::Error::bad_request, "An item_id is 1 to 64 of A-Z a-z 0-9 _ . -"));
    return;
  }
  pool::Command command;
  command.timestamp_ms = detail::wall_clock_ms();
  std::string operation;
  if (request.method() == http::verb::put) {
    std::string message;
    auto item = api::parse_item(item_id, request.body(), message);
    if (!item) {
      respond(error_response(request, api::Error::bad_request, message));
      return;
    }
    operation = api::upsert_operation(*item);
    command.op = pool::UpsertItem{std::move(*item)};
  } else {
    operation = api::delete_operation(item_id);
    command.op = pool::DeleteItem{item_id};
  }
  if (!take_key(request, command, operation, respond, &NodeHost::error_response)) return;
  write(std::move(request), std::move(respond), std::move(command),
        [item_id](const HttpRequest& req, const pool::Result& result) {
          if (result.error == pool::errc::idempotency_key_reused) {
            return error_response(req, api::Error::idempotency_key_reused,
                                  "This Idempotency-Key was used with a different request.");
          }
          if (result.error == pool::errc::not_found) {
            return error_response(req, api::Error::not_found, fmt::format("No item \"{}\".", item_id));
          }
          if (result.error == pool::errc::too_many_items) {
            return error_response(req, api::Error::bad_request,
                                  fmt::format("The catalog holds at most {} items.", pool::items_max));
          }
          if (result.error) return error_response(req, api::Error::bad_request, result.error.message());
          if (result.item) return json_response(req, 200, api::item_json(*result.item));
          return json_response(req, 200, fmt::format(R"({{"item_id":"{}","deleted":true,"index":{}}})", item_id, result.index));
        });
}

void NodeHost::write(HttpRequest&& request, Respond answer, pool::Command command, Render render) {
  if (storage_failed_) {
    if (fatal_) {
      answer(error_response(request, api::Error::no_leader, "This node stopped: its storage failed. Retry on another node."));
    } else {
      answer(error_response(request, api::Error::insufficient_storage, "This node cannot write its log; nothing was applied."));
    }
    return;
  }
  if (stopping_ && core_->role() == raft::Role::leader) {
    // Leadership is being handed over; a follower that is shutting down still forwards.
    answer(error_response(request, api::Error::no_leader, "This node is shutting down; retry on another node."));
    return;
  }
  if (core_->role() != raft::Role::leader) {
    forward(std::move(request), std::move(answer));
    return;
  }
  if (planted("skip_idempotency")) command.idempotency_key.clear();
  // Everything the core input needs, in one allocation; the input captures only this pointer, so
  // std::function keeps it without allocating, and `held` points into it (aliasing constructor).
  struct Input {
    NodeHost* host;
    Held held;
    Bytes bytes;
    Render render;
  };
  auto input = std::make_shared<Input>(Input{this, Held{std::make_shared<HttpRequest>(std::move(request)), std::move(answer)},
                                             pool::encode(command), std::move(render)});
  std::shared_ptr<Held> held(input, &input->held);
  with_core([input] {
    NodeHost& host = *input->host;
    HttpRequest& req = *input->held.request;
    Respond respond = std::move(input->held.respond);
    if (host.core_->role() != raft::Role::leader) {
      host.forward(std::move(req), std::move(respond));
      return;
    }
    host.ensure_bootstrap();
    LogIndex index;
    ++host.counters_.proposals;
    const std::error_code ec = host.core_->propose(std::move(input->bytes), &index);
    if (ec) {
      ++host.counters_.proposals_failed;
      if (ec == raft::errc::too_large) {
        respond(error_response(req, api::Error::payload_too_large, "The write is too large for one log entry."));
      } else {
        respond(error_response(req, api::Error::no_leader, "Leadership is moving; retry shortly."));
      }
      return;
    }
    PendingWrite pending;
    pending.term = host.core_->current_term();
    pending.deadline = Clock::now() + host.options_.write_timeout;
    pending.request = std::move(input->held.request);
    pending.respond = std::move(respond);
    pending.render = std::move(input->render);
    const auto [it, inserted] = host.writes_.emplace(index, std::move(pending));
    RPOOL_ASSERT(inserted);
  }, std::move(held));
}

void NodeHost::forward(HttpRequest&& request, Respond respond) {
  forward(std::move(request), std::move(respond), options_.write_timeout);
}

void NodeHost::forward(HttpRequest&& request, Respond respond, std::chrono::milliseconds timeout) {
  if (request.find(forwarded_header) != request.end()) {
    respond(error_response(request, api::Error::no_leader, "The node this request was forwarded to is not the leader; retry shortly."));
    return;
  }
  const NodeId leader = core_->leader();
  const Member* member = leader == NodeId() || leader == options_.id ? nullptr : member_info(leader);
  if (member == nullptr) {
    respond(error_response(request, api::Error::no_leader, "No leader is known right now; retry shortly."));
    return;
  }
  auto original = std::make_shared<HttpRequest>(std::move(request));
  HttpRequest out{original->method(), original->target(), 11};
  for (const auto& field : *original) {
    if (field.name() == http::field::connection || field.name() == http::field::host) continue;
    out.set(field.name_string(), field.value());
  }
  out.set(forwarded_header, std::to_string(options_.id.value()));
  out.body() = original->body();
  out.keep_alive(true);
  out.prepare_payload();
  ++counters_.forwarded;
  client_->request(member->http.host, member->http.port, std::move(out), timeout,
                   [original, respond = std::move(respond)](std::error_code ec, HttpResponse&& res) {
                     if (ec) {
                       // A refused connection never delivered the request; anything else may have.
                       const bool unsent = ec == std::errc::connection_refused;
                       respond(error_response(*original, unsent ? api::Error::no_leader : api::Error::outcome_unknown,
                                              unsent ? "The leader cannot be reached; retry shortly."
                                                     : "The leader did not answer in time; retry with the same Idempotency-Key."));
                       return;
                     }
                     res.version(original->version());
                     res.keep_alive(original->keep_alive());
                     respond(std::move(res));
                   });
}

void NodeHost::handle_pool(HttpRequest&& request, Respond respond, bool stale) {
  if (stale || (planted("local_default_read") && core_->role() != raft::Role::leader)) {
    respond(json_response(request, 200, pool_json()));
    return;
  }
  if (stopping_ || storage_failed_ || core_->leader() == NodeId()) {
    respond(error_response(request, api::Error::no_leader, "No leader is known right now; retry shortly."));
    return;
  }
  const std::uint64_t context = next_read_context_++;
  PendingRead read;
  read.deadline = Clock::now() + options_.read_timeout;
  read.respond = std::move(respond);
  read.request = std::move(request);
  reads_.emplace(context, std::move(read));
  with_core([this, context] {
    if (const std::error_code ec = core_->read_index(context)) {
      const auto it = reads_.find(context);
      if (it == reads_.end()) return;
      it->second.respond(error_response(it->second.request, api::Error::no_leader, "No leader is known right now; retry shortly."));
      reads_.erase(it);
    }
  });
}

void NodeHost::handle_cluster(HttpRequest&& request, Respond respond) {
  const nlohmann::json body = {
      {"node_id", options_.id.value()},
      {"role", detail::role_name(core_->role())},
      {"term", core_->current_term().value()},
      {"leader_id", core_->leader().value()},
      {"commit_index", core_->log().commit_index().value()},
      {"applied_index", applied_.value()},
      {"members", members_json()},
  };
  respond(json_response(request, 200, body.dump()));
}

void NodeHost::handle_readyz(HttpRequest&& request, Respond respond) {
  const bool ready = !storage_failed_ && !stopping_ && core_->leader() != NodeId() &&
                     applied_ >= core_->log().commit_index();
  if (ready) {
    respond(json_response(request, 200, R"({"status":"ready"})"));
  } else {
    respond(json_response(request, 503, fmt::format(R"({{"error":"not_ready","message":"{}"}})",
                                                   core_->leader() == NodeId() ? "No leader is known."
                                                                               : "This node is still applying the log.")));
  }
}

void NodeHost::handle_snapshot(HttpRequest&& request, Respond respond) {
  auto req = std::make_shared<HttpRequest>(std::move(request));
  auto held = std::make_shared<Held>(Held{req, std::move(respond)});
  with_core([this, req, held] {
    take_snapshot(true, [req, respond = std::move(held->respond)](std::error_code ec, LogIndex index) {
      if (ec) {
        respond(error_response(*req, api::Error::insufficient_storage, fmt::format("The snapshot failed: {}", ec.message())));
      } else {
        respond(json_response(*req, 200, fmt::format(R"({{"snapshot_index":{}}})", index.value())));
      }
    });
  }, held);
}

}  // namespace rpool::node
