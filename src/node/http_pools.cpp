// HttpApi's routes for many pools (/v1/pools...), and the sentences of the pool's refusals.
//
// A pool's draw, read and item routes are the default pool's handlers with another pool_id; what
// is here is the list of pools, creating and deleting one, and reading one by name.
#include <fmt/format.h>

#include "base/assert.h"
#include "node/http_api.h"

namespace rpool::node {
namespace {

HttpResponse render_created(const HttpRequest& req, const pool::Result& result,
                            const Subject& subject) {
  if (result.error) {
    return HttpApi::error_response(req, error_of(result.error),
                                   pool_error_message(result.error, subject));
  }
  return HttpApi::json_response(req, 200,
                                fmt::format(R"({{"pool_id":"{}","created":true,"index":{}}})",
                                            subject.pool_id, result.index));
}

HttpResponse render_deleted(const HttpRequest& req, const pool::Result& result,
                            const Subject& subject) {
  if (result.error) {
    return HttpApi::error_response(req, error_of(result.error),
                                   pool_error_message(result.error, subject));
  }
  return HttpApi::json_response(req, 200,
                                fmt::format(R"({{"pool_id":"{}","deleted":true,"index":{}}})",
                                            subject.pool_id, result.index));
}

constexpr std::string_view pool_id_rule = "A pool_id is 1 to 64 of A-Z a-z 0-9 _ . -";

}  // namespace

// The ids quoted here passed valid_pool_id() and valid_item_id() before the write was proposed,
// so they need no escaping.
std::string pool_error_message(std::error_code ec, const Subject& subject) {
  RPOOL_ASSERT(ec);
  if (ec.category() != pool::pool_category()) return ec.message();
  switch (static_cast<pool::errc>(ec.value())) {
    case pool::errc::idempotency_key_reused:
      return "This Idempotency-Key was used with a different request.";
    case pool::errc::not_found:  // an item, or a pool being deleted
      return subject.item_id.empty() ? fmt::format("No pool \"{}\".", subject.pool_id)
                                     : fmt::format("No item \"{}\".", subject.item_id);
    case pool::errc::pool_not_found: return fmt::format("No pool \"{}\".", subject.pool_id);
    case pool::errc::too_many_items:
      return fmt::format("The catalog holds at most {} items.", pool::items_max);
    case pool::errc::pool_exists:
      return fmt::format("The pool \"{}\" exists already.", subject.pool_id);
    case pool::errc::pool_undeletable:
      return fmt::format("The pool \"{}\" cannot be deleted.", pool::default_pool_id);
    case pool::errc::bad_pool_id: return std::string(pool_id_rule);
    case pool::errc::too_many_pools:
      return fmt::format("The cluster holds at most {} pools (pools_max).", pool::pools_max);
    case pool::errc::too_many_items_total:
      return fmt::format("The pools hold at most {} items in all (items_total_max).",
                         pool::items_total_max);
    case pool::errc::pool_ids_exhausted:
      return fmt::format(
          "{} deleted pool ids are remembered (tombstones_max): only those can be created.",
          pool::tombstones_max);
    default: return ec.message();  // bad_item: the handlers check items before the log
  }
}

bool HttpApi::check_pool_id(const HttpRequest& request, const Respond& respond,
                            const std::string& pool_id) {
  if (pool::valid_pool_id(pool_id)) return true;
  respond(error_response(request, api::Error::bad_request, pool_id_rule));
  return false;
}

// --- the list -----------------------------------------------------------------------------------

const std::string& HttpApi::pools_json() {
  // As pool_json(): every change of any pool advances the applied index.
  if (pools_json_cache_.empty() || pools_json_cache_index_ != replica_.applied()) {
    pools_json_cache_ = api::pools_json(replica_.pool().pools(), replica_.applied());
    pools_json_cache_index_ = replica_.applied();
  }
  return pools_json_cache_;
}

void HttpApi::handle_pools(HttpRequest&& request, Respond respond, bool stale) {
  if (stale) {
    respond(json_response(request, 200, pools_json()));
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.read([this, req, respond = std::move(respond)](const Outcome& outcome) {
    if (outcome.ec) return respond(outcome_response(*req, outcome));
    respond(json_response(*req, 200, pools_json()));
  });
}

// --- one pool -----------------------------------------------------------------------------------

void HttpApi::handle_named_pool(HttpRequest&& request, Respond respond, const std::string& pool_id,
                                bool stale) {
  if (!check_pool_id(request, respond, pool_id)) return;
  switch (request.method()) {
    case http::verb::get:
      return read_named_pool(std::move(request), std::move(respond), pool_id, stale);
    case http::verb::put: return create_pool(std::move(request), std::move(respond), pool_id);
    case http::verb::delete_: return delete_pool(std::move(request), std::move(respond), pool_id);
    default: RPOOL_ASSERT(false && "HttpApi::handle routes only GET, PUT and DELETE here");
  }
}

void HttpApi::read_named_pool(HttpRequest&& request, Respond respond, const std::string& pool_id,
                              bool stale) {
  // The answer is rendered from the state at the read's index: whether the pool exists is part
  // of what the read observes, so an unknown pool is a 404 only once that index is applied.
  auto answer = [this, pool_id](const HttpRequest& req) {
    if (pool_id == pool::default_pool_id) return json_response(req, 200, pool_json());
    const pool::Pool* p = replica_.pool().pool(pool_id);
    if (p == nullptr) {
      return error_response(req, api::Error::not_found, fmt::format("No pool \"{}\".", pool_id));
    }
    return json_response(req, 200, api::pool_json(*p, replica_.applied()));
  };
  if (stale) {
    respond(answer(request));
    return;
  }
  auto req = std::make_shared<HttpRequest>(std::move(request));
  replica_.read([req, answer, respond = std::move(respond)](const Outcome& outcome) {
    if (outcome.ec) return respond(outcome_response(*req, outcome));
    respond(answer(*req));
  });
}

void HttpApi::create_pool(HttpRequest&& request, Respond respond, const std::string& pool_id) {
  std::string message;
  auto items = api::parse_pool(request.body(), message);
  if (!items) {
    respond(error_response(request, api::Error::bad_request, message));
    return;
  }
  pool::Command command;
  command.pool_id = pool_id;
  const std::string operation = api::create_pool_operation(*items);
  command.op = pool::CreatePool{std::move(*items)};
  if (!take_key(request, command, operation, respond)) return;
  write(std::move(request), std::move(respond), std::move(command), &render_created,
        Subject{pool_id, {}});
}

void HttpApi::delete_pool(HttpRequest&& request, Respond respond, const std::string& pool_id) {
  // Decided by the request alone: refused before it reaches the log.
  if (pool_id == pool::default_pool_id) {
    respond(error_response(request, api::Error::bad_request,
                           pool_error_message(pool::errc::pool_undeletable, {pool_id, {}})));
    return;
  }
  pool::Command command;
  command.pool_id = pool_id;
  command.op = pool::DeletePool{};
  if (!take_key(request, command, api::delete_pool_operation(), respond)) return;
  write(std::move(request), std::move(respond), std::move(command), &render_deleted,
        Subject{pool_id, {}});
}

}  // namespace rpool::node
