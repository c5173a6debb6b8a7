#include "api/api.h"

#include <algorithm>
#include <charconv>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace rpool::api {
namespace {

using nlohmann::json;

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Parses a JSON object body; nullopt and a message when it is not one.
std::optional<json> parse_object(std::string_view body, std::string& message) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    message = "The request body is not valid JSON.";
    return std::nullopt;
  }
  if (!j.is_object()) {
    message = "The request body must be a JSON object.";
    return std::nullopt;
  }
  return j;
}

bool only_fields(const json& j, std::initializer_list<std::string_view> allowed,
                 std::string& message) {
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const auto a : allowed) known = known || key == a;
    if (!known) {
      message = fmt::format("Unknown field {} in the request body.", json(key).dump());
      return false;
    }
  }
  return true;
}

// After "/v1/pools/": "{pool_id}", "{pool_id}/draw" or "{pool_id}/items/{item_id}", each part
// non-empty; anything else stays Route::not_found.
void parse_pool_path(std::string_view rest, Target& t) {
  const auto slash = rest.find('/');
  const std::string_view pool_id = rest.substr(0, slash);
  if (pool_id.empty()) return;
  const std::string_view tail = slash == std::string_view::npos ? "" : rest.substr(slash);
  constexpr std::string_view items_part = "/items/";
  if (slash == std::string_view::npos) {
    t.route = Route::named_pool;
  } else if (tail == "/draw") {
    t.route = Route::pool_draw;
  } else if (tail.starts_with(items_part) && tail.size() > items_part.size() &&
             tail.find('/', items_part.size()) == std::string_view::npos) {
    t.route = Route::pool_item;
    t.item_id = std::string(tail.substr(items_part.size()));
  } else {
    return;
  }
  t.pool_id = std::string(pool_id);
}

}  // namespace

Target parse_target(std::string_view target) {
  Target t;
  std::string_view path = target;
  std::string_view query;
  if (const auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  constexpr std::string_view items_prefix = "/v1/items/";
  constexpr std::string_view members_prefix = "/v1/cluster/members/";
  constexpr std::string_view pools_prefix = "/v1/pools/";
  constexpr std::string_view console_prefix = "/console/";
  if (path == "/v1/draw") t.route = Route::draw;
  else if (path == "/v1/pool") t.route = Route::pool;
  else if (path == "/v1/cluster") t.route = Route::cluster;
  else if (path == "/v1/cluster/members") t.route = Route::members;
  else if (path == "/v1/cluster/leader") t.route = Route::leader;
  else if (path == "/v1/snapshot") t.route = Route::snapshot;
  else if (path == "/healthz") t.route = Route::healthz;
  else if (path == "/readyz") t.route = Route::readyz;
  else if (path == "/metrics") t.route = Route::metrics;
  else if (path == "/v1/openapi.json") t.route = Route::openapi;
  else if (path == "/v1/status") t.route = Route::status;
  else if (path == "/") {
    t.route = Route::console;
    t.asset = "index.html";
  } else if (path.starts_with(items_prefix) && path.size() > items_prefix.size()) {
    t.route = Route::item;
    t.item_id = std::string(path.substr(items_prefix.size()));
  } else if (path.starts_with(members_prefix) && path.size() > members_prefix.size()) {
    t.route = Route::member;
    if (!parse_u64(path.substr(members_prefix.size()), t.member)) t.member = 0;
  } else if (path == "/v1/pools") {
    t.route = Route::pools;
  } else if (path.starts_with(pools_prefix)) {
    parse_pool_path(path.substr(pools_prefix.size()), t);
  } else if (path.starts_with(console_prefix) && path.size() > console_prefix.size()) {
    t.route = Route::console;
    t.asset = std::string(path.substr(console_prefix.size()));
  }
  // Query parameters: the reads of pools take consistency=stale|linearizable, /v1/status
  // from=leader.
  const bool reads_pool =
      t.route == Route::pool || t.route == Route::pools || t.route == Route::named_pool;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    if (reads_pool && param == "consistency=stale") {
      t.stale = true;
    } else if (reads_pool && param == "consistency=linearizable") {
      t.stale = false;
    } else if (t.route == Route::status && param == "from=leader") {
      t.from_leader = true;
    } else {
      t.bad_query = std::string(param);
    }
  }
  return t;
}

unsigned status_of(Error e) {
  switch (e) {
    case Error::bad_request: return 400;
    case Error::unauthorized: return 401;
    case Error::not_found: return 404;
    case Error::method_not_allowed: return 405;
    case Error::membership_change_in_progress: return 409;
    case Error::pool_exists: return 409;
    case Error::payload_too_large: return 413;
    case Error::idempotency_key_reused: return 422;
    case Error::no_leader: return 503;
    case Error::overloaded: return 503;
    case Error::outcome_unknown: return 504;
    case Error::insufficient_storage: return 507;
    case Error::internal: return 500;
  }
  return 500;
}

const char* code_of(Error e) {
  switch (e) {
    case Error::bad_request: return "bad_request";
    case Error::unauthorized: return "unauthorized";
    case Error::not_found: return "not_found";
    case Error::method_not_allowed: return "method_not_allowed";
    case Error::membership_change_in_progress: return "membership_change_in_progress";
    case Error::pool_exists: return "pool_exists";
    case Error::payload_too_large: return "payload_too_large";
    case Error::idempotency_key_reused: return "idempotency_key_reused";
    case Error::no_leader: return "no_leader";
    case Error::overloaded: return "overloaded";
    case Error::outcome_unknown: return "outcome_unknown";
    case Error::insufficient_storage: return "insufficient_storage";
    case Error::internal: return "internal";
  }
  return "internal";
}

std::string error_json(Error e, std::string_view message) {
  // A message may quote the request target, whose bytes need not be UTF-8: replaced, never thrown.
  return json{{"error", code_of(e)}, {"message", message}}.dump(-1, ' ', false,
                                                                json::error_handler_t::replace);
}

namespace {

// The body nearly every draw carries, {"count": N} with N a plain decimal in range and optional
// whitespace, read without building a JSON document (the hot path: a full parse costs more than
// the rest of the request's handling in the node). Anything else: nullopt, and the full parser
// decides.
std::optional<std::uint32_t> parse_plain_draw(std::string_view body) {
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
      ++i;
  };
  auto take = [&](std::string_view token) {
    skip_space();
    if (body.substr(i, token.size()) != token) return false;
    i += token.size();
    return true;
  };
  if (!take("{") || !take("\"count\"") || !take(":")) return std::nullopt;
  skip_space();
  std::uint32_t count = 0;
  std::size_t digits = 0;
  while (i < body.size() && body[i] >= '0' && body[i] <= '9' && digits < 5) {
    count = count * 10 + static_cast<std::uint32_t>(body[i] - '0');
    ++i;
    ++digits;
  }
  if (digits == 0 || (digits > 1 && body[i - digits] == '0'))
    return std::nullopt;  // JSON: no leading zeros
  if (!take("}")) return std::nullopt;
  skip_space();
  if (i != body.size() || count < 1 || count > pool::draw_count_max) return std::nullopt;
  return count;
}

}  // namespace

std::optional<std::uint32_t> parse_draw(std::string_view body, std::string& message) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return 1;
  if (const auto plain = parse_plain_draw(body)) return plain;
  const auto j = parse_object(body, message);
  if (!j || !only_fields(*j, {"count"}, message)) return std::nullopt;
  if (!j->contains("count")) return 1;
  const json& count = (*j)["count"];
  if (!count.is_number_integer() || count.get<std::int64_t>() < 1 ||
      count.get<std::int64_t>() > static_cast<std::int64_t>(pool::draw_count_max) ||
      (count.is_number_unsigned() && count.get<std::uint64_t>() > pool::draw_count_max)) {
    message = fmt::format("\"count\" must be an integer from 1 to {}.", pool::draw_count_max);
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(count.get<std::int64_t>());
}

namespace {

// Reads "quantity" and "probability" of `j` into `item`, within the contract's ranges; false and
// `message` when one is missing or out of range.
bool read_amounts(const json& j, pool::Item& item, std::string& message) {
  const auto q = j.find("quantity");
  if (q == j.end() || !q->is_number_integer() ||
      (q->is_number_unsigned()
           ? q->get<std::uint64_t>() > static_cast<std::uint64_t>(pool::quantity_max)
           : q->get<std::int64_t>() < -1)) {
    message = fmt::format("\"quantity\" must be an integer from 0 to {}, or -1 for unlimited.",
                          pool::quantity_max);
    return false;
  }
  item.quantity = q->get<std::int64_t>();
  const auto p = j.find("probability");
  if (p == j.end() || !p->is_number_integer() ||
      (!p->is_number_unsigned() && p->get<std::int64_t>() < 0) ||
      p->get<std::uint64_t>() > pool::probability_max) {
    message =
        fmt::format("\"probability\" must be an integer from 0 to {}.", pool::probability_max);
    return false;
  }
  item.probability = p->get<std::uint64_t>();
  return true;
}

// One item of a pool body: {"item_id", "quantity", "probability"}.
std::optional<pool::Item> pool_item(const json& j, std::string& message) {
  if (!j.is_object()) {
    message = "Each item must be a JSON object.";
    return std::nullopt;
  }
  if (!only_fields(j, {"item_id", "quantity", "probability"}, message)) return std::nullopt;
  const auto id = j.find("item_id");
  if (id == j.end() || !id->is_string() ||
      !pool::valid_item_id(id->get_ref<const std::string&>())) {
    message = "An item_id is 1 to 64 of A-Z a-z 0-9 _ . -";
    return std::nullopt;
  }
  pool::Item item;
  item.item_id = id->get<std::string>();
  if (!read_amounts(j, item, message)) return std::nullopt;
  return item;
}

}  // namespace

std::optional<pool::Item> parse_item(std::string_view item_id, std::string_view body,
                                     std::string& message) {
  if (!pool::valid_item_id(item_id)) {
    message = "An item_id is 1 to 64 of A-Z a-z 0-9 _ . -";
    return std::nullopt;
  }
  const auto j = parse_object(body, message);
  if (!j || !only_fields(*j, {"quantity", "probability"}, message)) return std::nullopt;
  pool::Item item;
  item.item_id = std::string(item_id);
  if (!read_amounts(*j, item, message)) return std::nullopt;
  return item;
}

std::optional<std::vector<pool::Item>> parse_pool(std::string_view body, std::string& message) {
  const auto j = parse_object(body, message);
  if (!j || !only_fields(*j, {"items"}, message)) return std::nullopt;
  const auto items = j->find("items");
  if (items == j->end() || !items->is_array()) {
    message = R"(The body must be {"items": [{"item_id", "quantity", "probability"}...]}.)";
    return std::nullopt;
  }
  // The body limit (body_bytes_max) keeps this far below items_max; checked all the same.
  if (items->size() > pool::items_max) {
    message = fmt::format("A pool holds at most {} items.", pool::items_max);
    return std::nullopt;
  }
  std::vector<pool::Item> out;
  out.reserve(items->size());
  std::set<std::string, std::less<>> seen;
  for (std::size_t i = 0; i < items->size(); ++i) {
    std::string why;
    auto item = pool_item((*items)[i], why);
    if (item && !seen.insert(item->item_id).second)
      why = fmt::format("item_id \"{}\" appears twice.", item->item_id);
    if (!why.empty()) {
      message = fmt::format("items[{}]: {}", i, why);
      return std::nullopt;
    }
    out.push_back(std::move(*item));
  }
  return out;
}

bool valid_idempotency_key(std::string_view key) { return pool::valid_idempotency_key(key); }

pool::Sha256 request_hash(std::string_view operation) {
  pool::Sha256 out;
  SHA256(reinterpret_cast<const unsigned char*>(operation.data()), operation.size(), out.data());
  return out;
}

std::string draw_operation(std::uint32_t count) { return fmt::format("draw count={}", count); }
std::string upsert_operation(const pool::Item& item) {
  return fmt::format("upsert item_id={} quantity={} probability={}", item.item_id, item.quantity,
                     item.probability);
}
std::string delete_operation(std::string_view item_id) {
  return fmt::format("delete item_id={}", item_id);
}
std::string create_pool_operation(std::vector<pool::Item> items) {
  std::sort(items.begin(), items.end(),
            [](const pool::Item& a, const pool::Item& b) { return a.item_id < b.item_id; });
  std::string out = "create_pool";
  for (const auto& item : items) {
    out += fmt::format(" item_id={} quantity={} probability={}", item.item_id, item.quantity,
                       item.probability);
  }
  return out;
}
std::string delete_pool_operation() { return "delete_pool"; }

// Item ids are restricted to [A-Za-z0-9_.-], so they go into JSON strings without escaping.
// Every draw's answer: built by appending, without a format string (it is on the hot path).
// item_ids need no escaping: they are 1-64 of A-Z a-z 0-9 _ . - (pool::valid_item_id).
std::string draw_json(const pool::Result& result, LogIndex index) {
  std::string out;
  out.reserve(32 + result.draws.size() * 48);
  auto number = [&out](std::uint64_t v) {
    char digits[20];
    const auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    out.append(digits, end);
  };
  out += R"({"draws":[)";
  bool first = true;
  for (const auto& d : result.draws) {
    if (!first) out += ',';
    first = false;
    out += R"({"request_id":)";
    number(d.request_id);
    if (d.item_id) {
      out += R"(,"item_id":")";
      out += *d.item_id;
      out += R"("})";
    } else {
      out += R"(,"item_id":null,"error":"pool_empty"})";
    }
  }
  out += R"(],"index":)";
  number(index.value());
  out += '}';
  return out;
}

std::string item_json(const pool::Item& item) {
  return fmt::format("{{\"item_id\":\"{}\",\"quantity\":{},\"probability\":{}}}", item.item_id,
                     item.quantity, item.probability);
}

std::string pool_json(const pool::StateMachine& pool, LogIndex index) {
  return pool_json(pool.default_pool(), index);
}

std::string pool_json(const pool::Pool& pool, LogIndex index) {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "{{\"items\":[");
  bool first = true;
  for (const auto& item : pool.items()) {
    if (!first) out.push_back(',');
    first = false;
    fmt::format_to(std::back_inserter(out),
                   "{{\"item_id\":\"{}\",\"quantity\":{},\"probability\":{}}}", item.item_id,
                   item.quantity, item.probability);
  }
  fmt::format_to(std::back_inserter(out),
                 "],\"last_request_id\":{},\"index\":{},\"digest\":\"{}\"}}",
                 pool.last_request_id(), index.value(), pool.digest_hex());
  return fmt::to_string(out);
}

// pool_ids need no escaping either: they follow the item_id rules (pool::valid_pool_id).
std::string pools_json(const std::vector<pool::PoolSummary>& pools, LogIndex index) {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "{{\"pools\":[");
  bool first = true;
  for (const auto& p : pools) {
    if (!first) out.push_back(',');
    first = false;
    fmt::format_to(std::back_inserter(out),
                   "{{\"pool_id\":\"{}\",\"item_count\":{},\"last_request_id\":{},"
                   "\"digest\":\"{}\"}}",
                   p.pool_id, p.item_count, p.last_request_id, pool::to_hex(p.digest));
  }
  fmt::format_to(std::back_inserter(out), "],\"index\":{}}}", index.value());
  return fmt::to_string(out);
}

bool token_matches(std::string_view given, std::string_view expected) {
  // Hash both so that the comparison takes the same time whatever the lengths.
  const pool::Sha256 a = request_hash(given);
  const pool::Sha256 b = request_hash(expected);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace rpool::api
