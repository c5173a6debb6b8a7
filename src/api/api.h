// The HTTP API's vocabulary, without any I/O: routing of request targets, parsing and validation
// of request bodies, the idempotency hash of a request, and the JSON of every answer
// (docs/api.md). node::HttpApi does the I/O and calls these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/types.h"
#include "pool/command.h"
#include "pool/state_machine.h"

namespace rpool::api {

inline constexpr std::size_t body_bytes_max = 64 * 1024;

enum class Route {
  draw,      // /v1/draw
  pool,      // /v1/pool
  item,      // /v1/items/{item_id}
  cluster,   // /v1/cluster
  members,   // /v1/cluster/members
  member,    // /v1/cluster/members/{id}
  leader,    // /v1/cluster/leader
  snapshot,  // /v1/snapshot
  healthz,   // /healthz
  readyz,    // /readyz
  metrics,   // /metrics
  openapi,   // /v1/openapi.json
  // Many pools: the same operations on any pool (Target::pool_id names it).
  pools,       // /v1/pools
  named_pool,  // /v1/pools/{pool_id}: GET reads it; PUT creates it, DELETE deletes it (admin)
  pool_draw,   // /v1/pools/{pool_id}/draw
  pool_item,   // /v1/pools/{pool_id}/items/{item_id}
  // The web console and its status feed.
  console,  // / and /console/{asset}
  status,   // /v1/status
  not_found,
};

struct Target {
  Route route = Route::not_found;
  std::string item_id;  // item, pool_item: as given in the path (validated by the handler)
  // named_pool, pool_draw, pool_item: as given in the path (validated by the handler); the
  // default-pool routes (draw, pool, item) name "default".
  std::string pool_id = std::string(pool::default_pool_id);
  std::uint64_t member = 0;  // member: the id in the path, 0 if not a number
  bool stale = false;        // pool, pools, named_pool: ?consistency=stale
  std::string bad_query;     // a query parameter we do not know, or a bad value
  std::string asset;         // console: the asset's name ("index.html" for /)
  bool from_leader = false;  // status: ?from=leader, the leader's view (a follower forwards)
};

// Splits "/v1/pool?consistency=stale" into a route and its parameters.
Target parse_target(std::string_view target);

// The error codes of docs/api.md's table, with their HTTP status.
enum class Error {
  bad_request,                    // 400
  unauthorized,                   // 401
  not_found,                      // 404
  method_not_allowed,             // 405
  membership_change_in_progress,  // 409
  pool_exists,                    // 409: PUT /v1/pools/{pool_id} of an existing pool
  payload_too_large,              // 413
  idempotency_key_reused,         // 422
  no_leader,                      // 503
  overloaded,                     // 503: queues or connections full; carries Retry-After
  outcome_unknown,                // 504
  insufficient_storage,           // 507
  internal,                       // 500: a bug; never expected
};
unsigned status_of(Error e);
const char* code_of(Error e);
// {"error":"<code>","message":"<message>"}
std::string error_json(Error e, std::string_view message);

// Parses a draw body: empty or {"count": n} with 1 <= n <= 1000. On failure returns nullopt and
// sets `message` to the sentence for the 400 answer.
std::optional<std::uint32_t> parse_draw(std::string_view body, std::string& message);
// Parses an item body {"quantity": q, "probability": p} for `item_id`, within the contract's
// ranges. On failure returns nullopt and sets `message`.
std::optional<pool::Item> parse_item(std::string_view item_id, std::string_view body,
                                     std::string& message);
// Parses a pool body {"items": [{"item_id", "quantity", "probability"}...]}: each item within
// the contract's ranges, no item_id twice, at most pool::items_max. On failure returns nullopt
// and sets `message`.
std::optional<std::vector<pool::Item>> parse_pool(std::string_view body, std::string& message);
// Checks an Idempotency-Key header value (1-128 printable characters).
bool valid_idempotency_key(std::string_view key);

// The hash that decides whether two requests with one Idempotency-Key are "the same": it covers
// the operation and its parameters, not the spelling of the JSON (spaces, key order).
pool::Sha256 request_hash(std::string_view operation);
std::string draw_operation(std::uint32_t count);
std::string upsert_operation(const pool::Item& item);
std::string delete_operation(std::string_view item_id);
// Creating a pool: the items in item_id order, so that the order of the body does not matter.
std::string create_pool_operation(std::vector<pool::Item> items);
std::string delete_pool_operation();

// Answers.
std::string draw_json(const pool::Result& result, LogIndex index);
std::string item_json(const pool::Item& item);
std::string pool_json(const pool::StateMachine& pool, LogIndex index);  // the pool "default"
std::string pool_json(const pool::Pool& pool, LogIndex index);
// GET /v1/pools: {"pools":[{"pool_id","item_count","last_request_id","digest"}...],"index":I}
std::string pools_json(const std::vector<pool::PoolSummary>& pools, LogIndex index);

// Compares two secrets in time independent of where they differ.
bool token_matches(std::string_view given, std::string_view expected);

}  // namespace rpool::api
