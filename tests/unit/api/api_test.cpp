#include <doctest/doctest.h>

#include <random>
#include <nlohmann/json.hpp>

#include <string>

#include "api/api.h"
#include "api/console.h"

namespace rpool::api {
namespace {

// --- parse_target ---------------------------------------------------------------------------

TEST_CASE("every path of the contract routes to its handler") {
  struct Case {
    const char* target;
    Route route;
  };
  const Case cases[] = {
      {"/v1/draw", Route::draw},
      {"/v1/pool", Route::pool},
      {"/v1/cluster", Route::cluster},
      {"/v1/cluster/members", Route::members},
      {"/v1/cluster/leader", Route::leader},
      {"/v1/snapshot", Route::snapshot},
      {"/healthz", Route::healthz},
      {"/readyz", Route::readyz},
      {"/metrics", Route::metrics},
      {"/v1/openapi.json", Route::openapi},
      {"/v1/items/gold", Route::item},
      {"/v1/cluster/members/3", Route::member},
      {"/v1/pools", Route::pools},
      {"/v1/pools/spring", Route::named_pool},
      {"/v1/pools/spring/draw", Route::pool_draw},
      {"/v1/pools/spring/items/gold", Route::pool_item},
      {"/v1/status", Route::status},
      {"/", Route::console},
      {"/console/console.js", Route::console},
      // Not routes.
      {"", Route::not_found},
      {"/console/", Route::not_found},
      {"/console", Route::not_found},
      {"/v1", Route::not_found},
      {"/v1/draw/", Route::not_found},
      {"/v1/pools/", Route::not_found},
      {"/v1/pools//draw", Route::not_found},
      {"/v1/pools/spring/", Route::not_found},
      {"/v1/pools/spring/draw/", Route::not_found},
      {"/v1/pools/spring/drawx", Route::not_found},
      {"/v1/pools/spring/items", Route::not_found},
      {"/v1/pools/spring/items/", Route::not_found},
      {"/v1/pools/spring/items/a/b", Route::not_found},
      {"/v1/pools/spring/pool", Route::not_found},
      {"/V1/draw", Route::not_found},
      {"/v1/items", Route::not_found},
      {"/v1/items/", Route::not_found},
      {"/v1/cluster/members/", Route::not_found},
      {"v1/draw", Route::not_found},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.target));
    const Target t = parse_target(c.target);
    CHECK(t.route == c.route);
    CHECK(t.bad_query.empty());
    CHECK_FALSE(t.stale);
  }
}

TEST_CASE("the console routes name their asset, and /v1/status takes from=leader only") {
  CHECK(parse_target("/").asset == "index.html");
  CHECK(parse_target("/console/charts.js").asset == "charts.js");
  CHECK(parse_target("/v1/status?from=leader").from_leader);
  CHECK(parse_target("/v1/status?from=leader").bad_query.empty());
  CHECK_FALSE(parse_target("/v1/status").from_leader);
  CHECK(parse_target("/v1/status?from=me").bad_query == "from=me");
  CHECK(parse_target("/v1/pool?from=leader").bad_query == "from=leader");
  const api::ConsoleAsset* page = api::console_asset("index.html");
  REQUIRE(page != nullptr);
  CHECK(page->content_type == "text/html; charset=utf-8");
  CHECK(page->body.find("/console/console.js") != std::string_view::npos);
  CHECK(api::console_asset("console.js") != nullptr);
  CHECK(api::console_asset("missing.js") == nullptr);
  CHECK(api::console_asset("") == nullptr);
}

TEST_CASE("the item and member routes carry their path parameter") {
  CHECK(parse_target("/v1/items/gold").item_id == "gold");
  CHECK(parse_target("/v1/items/a.b-c_9").item_id == "a.b-c_9");
  // The handler validates the id; the router hands over what was in the path.
  CHECK(parse_target("/v1/items/a/b").item_id == "a/b");
  CHECK(parse_target("/v1/items/gold?x=1").item_id == "gold");
  CHECK(parse_target("/v1/cluster/members/3").member == 3);
  CHECK(parse_target("/v1/cluster/members/1000000").member == 1000000);
  // Not a number: member 0 ("none"), still the member route.
  for (const char* bad :
       {"/v1/cluster/members/x", "/v1/cluster/members/3x", "/v1/cluster/members/-1",
        "/v1/cluster/members/18446744073709551616", "/v1/cluster/members/ 3"}) {
    CAPTURE(std::string(bad));
    const Target t = parse_target(bad);
    CHECK(t.route == Route::member);
    CHECK(t.member == 0);
  }
}

TEST_CASE("the pool routes carry the pool_id, and the default-pool routes name \"default\"") {
  CHECK(parse_target("/v1/pools/spring").pool_id == "spring");
  CHECK(parse_target("/v1/pools/spring/draw").pool_id == "spring");
  const Target item = parse_target("/v1/pools/spring/items/gold");
  CHECK(item.pool_id == "spring");
  CHECK(item.item_id == "gold");
  // The handler validates the id; the router hands over what was in the path.
  CHECK(parse_target("/v1/pools/a$b/draw").pool_id == "a$b");
  for (const char* target : {"/v1/draw", "/v1/pool", "/v1/items/gold"}) {
    CAPTURE(std::string(target));
    CHECK(parse_target(target).pool_id == pool::default_pool_id);
  }
  // Not a route: no pool_id either.
  CHECK(parse_target("/v1/pools/spring/x").pool_id == pool::default_pool_id);
}

TEST_CASE("the reads of pools take consistency=stale; the writes of pools take no query") {
  for (const char* path : {"/v1/pools", "/v1/pools/spring"}) {
    CAPTURE(std::string(path));
    const Target t = parse_target(std::string(path) + "?consistency=stale");
    CHECK(t.stale);
    CHECK(t.bad_query.empty());
    CHECK_FALSE(parse_target(std::string(path) + "?consistency=linearizable").stale);
    CHECK(parse_target(std::string(path) + "?consistency=eventual").bad_query ==
          "consistency=eventual");
  }
  CHECK(parse_target("/v1/pools/spring/draw?consistency=stale").bad_query == "consistency=stale");
  CHECK(parse_target("/v1/pools/spring/items/g?consistency=stale").bad_query ==
        "consistency=stale");
}

TEST_CASE("only /v1/pool takes a query parameter: consistency=stale or linearizable") {
  CHECK(parse_target("/v1/pool?consistency=stale").stale);
  CHECK(parse_target("/v1/pool?consistency=stale").route == Route::pool);
  CHECK(parse_target("/v1/pool?consistency=stale").bad_query.empty());
  CHECK_FALSE(parse_target("/v1/pool?consistency=linearizable").stale);
  CHECK(parse_target("/v1/pool?consistency=linearizable").bad_query.empty());
  // Empty queries and empty parameters are nothing.
  CHECK(parse_target("/v1/pool?").bad_query.empty());
  CHECK(parse_target("/v1/pool?&").bad_query.empty());
  CHECK(parse_target("/v1/pool?&consistency=stale&").stale);

  struct Case {
    const char* target;
    const char* bad_query;
  };
  const Case cases[] = {
      {"/v1/pool?consistency=eventual", "consistency=eventual"},
      {"/v1/pool?consistency", "consistency"},
      {"/v1/pool?consistency=STALE", "consistency=STALE"},
      {"/v1/pool?stale", "stale"},
      {"/v1/pool?consistency=stale&x=1", "x=1"},
      {"/v1/draw?consistency=stale", "consistency=stale"},
      {"/v1/draw?count=3", "count=3"},
      {"/v1/items/gold?x=1", "x=1"},
      {"/metrics?name[]=x", "name[]=x"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.target));
    CHECK(parse_target(c.target).bad_query == c.bad_query);
  }
}

// --- parse_pool -----------------------------------------------------------------------------

TEST_CASE("a pool body is {\"items\": [...]} with valid items, each item_id once") {
  std::string message;
  const auto items = parse_pool(
      R"({"items": [{"item_id": "gem", "quantity": 2, "probability": 9},
                    {"probability": 1, "quantity": -1, "item_id": "mud"}]})",
      message);
  REQUIRE_MESSAGE(items.has_value(), message);
  CHECK(*items == std::vector<pool::Item>{{"gem", 2, 9}, {"mud", pool::quantity_unlimited, 1}});
  const auto empty = parse_pool(R"({"items": []})", message);
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
}

TEST_CASE("a bad pool body is a 400 with a sentence naming the item") {
  struct Case {
    const char* body;
    const char* message;
  };
  const Case cases[] = {
      {"", "The request body is not valid JSON."},
      {"[]", "The request body must be a JSON object."},
      {"{}", R"(The body must be {"items": [{"item_id", "quantity", "probability"}...]}.)"},
      {R"({"items": {}})",
       R"(The body must be {"items": [{"item_id", "quantity", "probability"}...]}.)"},
      {R"({"items": [], "x": 1})", R"(Unknown field "x" in the request body.)"},
      {R"({"items": [1]})", "items[0]: Each item must be a JSON object."},
      {R"({"items": [{"item_id": "a/b", "quantity": 1, "probability": 1}]})",
       "items[0]: An item_id is 1 to 64 of A-Z a-z 0-9 _ . -"},
      {R"({"items": [{"quantity": 1, "probability": 1}]})",
       "items[0]: An item_id is 1 to 64 of A-Z a-z 0-9 _ . -"},
      {R"({"items": [{"item_id": "a", "quantity": -2, "probability": 1}]})",
       "items[0]: \"quantity\" must be an integer from 0 to 9007199254740991, or -1 for "
       "unlimited."},
      {R"({"items": [{"item_id": "a", "quantity": 1}]})",
       "items[0]: \"probability\" must be an integer from 0 to 1000000000000."},
      {R"({"items": [{"item_id": "a", "quantity": 1, "probability": 1, "w": 1}]})",
       R"(items[0]: Unknown field "w" in the request body.)"},
      {R"({"items": [{"item_id": "a", "quantity": 1, "probability": 1},
                     {"item_id": "a", "quantity": 2, "probability": 2}]})",
       R"(items[1]: item_id "a" appears twice.)"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.body));
    std::string message;
    CHECK_FALSE(parse_pool(c.body, message).has_value());
    CHECK(message == c.message);
  }
}

TEST_CASE("creating the same pool spelled in another order is the same request for a key") {
  const std::vector<pool::Item> a{{"gem", 2, 9}, {"mud", -1, 1}};
  const std::vector<pool::Item> b{{"mud", -1, 1}, {"gem", 2, 9}};
  CHECK(create_pool_operation(a) == create_pool_operation(b));
  CHECK(create_pool_operation(a) != create_pool_operation({{"gem", 3, 9}, {"mud", -1, 1}}));
  CHECK(create_pool_operation({}) != delete_pool_operation());
}

TEST_CASE("the pool list is the JSON of docs/api.md") {
  pool::StateMachine sm;
  pool::Command create{pool::CreatePool{{{"gem", 2, 9}}}, 1, {}, {}, "spring"};
  REQUIRE_FALSE(sm.apply(1, create).error);
  const auto parsed = nlohmann::json::parse(pools_json(sm.pools(), LogIndex(7)));
  const nlohmann::json want = {{"pools",
                                {{{"pool_id", "default"},
                                  {"item_count", 0},
                                  {"last_request_id", 0},
                                  {"digest", sm.default_pool().digest_hex()}},
                                 {{"pool_id", "spring"},
                                  {"item_count", 1},
                                  {"last_request_id", 0},
                                  {"digest", sm.pool("spring")->digest_hex()}}}},
                               {"index", 7}};
  CHECK(parsed == want);
  // One pool reads as the default pool does.
  CHECK(pool_json(*sm.pool("default"), LogIndex(3)) == pool_json(sm, LogIndex(3)));
}

// --- parse_draw -----------------------------------------------------------------------------

TEST_CASE("a draw body is empty or {\"count\": n} with 1 <= n <= 1000") {
  struct Case {
    const char* body;
    std::uint32_t count;
  };
  const Case cases[] = {
      {"", 1},
      {" \r\n\t", 1},
      {"{}", 1},
      {R"({"count": 1})", 1},
      {R"({"count":2})", 2},
      {R"( { "count" : 1000 } )", 1000},
      {R"({"count": 999})", 999},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.body));
    std::string message;
    const auto count = parse_draw(c.body, message);
    REQUIRE_MESSAGE(count.has_value(), message);
    CHECK(*count == c.count);
  }
}

TEST_CASE("a draw count out of 1..1000 or not an integer is a 400 with a sentence") {
  for (const char* body :
       {R"({"count": 0})", R"({"count": 1001})", R"({"count": -1})", R"({"count": 1.5})",
        R"({"count": 1.0})", R"({"count": 1e2})", R"({"count": "3"})", R"({"count": null})",
        R"({"count": true})", R"({"count": [3]})", R"({"count": 4294967297})",
        R"({"count": 9223372036854775808})", R"({"count": 18446744073709551615})",
        R"({"count": -9223372036854775808})"}) {
    CAPTURE(std::string(body));
    std::string message;
    CHECK_FALSE(parse_draw(body, message).has_value());
    CHECK(message == "\"count\" must be an integer from 1 to 1000.");
  }
}

TEST_CASE(
    "the plain-body fast path of parse_draw agrees with a full JSON parse on 200,000 near-miss "
    "bodies") {
  // Bodies built from the tokens of {"count": N} and its near misses; the reference is the
  // contract's rule applied to a full nlohmann parse.
  const std::vector<std::string> tokens = {
      "{",    "}",    "\"count\"", "\"Count\"", ":", ",",  " ",  "\t",   "\n",       "1", "0", "7",
      "1000", "1001", "01",        "-",         ".", "e2", "\"", "null", "\"seed\"", "[", "]"};
  std::mt19937_64 rng(20261129);
  auto reference = [](const std::string& body) -> std::optional<std::uint32_t> {
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) return 1;
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    for (const auto& [key, value] : j.items()) {
      if (key != "count") return std::nullopt;
    }
    if (!j.contains("count")) return 1;
    const auto& c = j["count"];
    if (!c.is_number_integer() || c.get<std::int64_t>() < 1 || c.get<std::int64_t>() > 1000 ||
        (c.is_number_unsigned() && c.get<std::uint64_t>() > 1000)) {
      return std::nullopt;
    }
    return static_cast<std::uint32_t>(c.get<std::int64_t>());
  };
  int accepted = 0;
  for (int n = 0; n < 200000; ++n) {
    std::string body;
    if (n % 2 == 0) {
      // Mostly well-formed: {"count": <digits>} with random spacing and one random mutation.
      body = "{\"count\":" + std::to_string(rng() % 1200) + "}";
      const std::size_t at = rng() % (body.size() + 1);
      body.insert(at, tokens[rng() % tokens.size()]);
    } else {
      const std::size_t length = 1 + rng() % 7;
      for (std::size_t k = 0; k < length; ++k) body += tokens[rng() % tokens.size()];
    }
    CAPTURE(body);
    std::string message;
    const auto got = parse_draw(body, message);
    const auto want = reference(body);
    REQUIRE(got == want);
    accepted += got.has_value();
  }
  CHECK(accepted > 5000);  // the generator reaches both sides
}

TEST_CASE("a draw body that is not a JSON object, or has another field, is a 400 with a sentence") {
  struct Case {
    const char* body;
    const char* message;
  };
  const Case cases[] = {
      {"{", "The request body is not valid JSON."},
      {R"({"count": 1,})", "The request body is not valid JSON."},
      {R"({"count": 1} {})", "The request body is not valid JSON."},
      {"count=1", "The request body is not valid JSON."},
      {"[1]", "The request body must be a JSON object."},
      {"3", "The request body must be a JSON object."},
      {"null", "The request body must be a JSON object."},
      {R"({"count": 1, "seed": 2})", "Unknown field \"seed\" in the request body."},
      {R"({"Count": 1})", "Unknown field \"Count\" in the request body."},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.body));
    std::string message;
    CHECK_FALSE(parse_draw(c.body, message).has_value());
    CHECK(message == c.message);
  }
}

// --- valid_idempotency_key, token_matches ---------------------------------------------------

TEST_CASE("an Idempotency-Key is 1 to 128 printable ASCII characters") {
  CHECK(valid_idempotency_key("a"));
  CHECK(valid_idempotency_key("key with spaces"));
  CHECK(valid_idempotency_key(" "));
  CHECK(valid_idempotency_key("~!@#$%^&*()_+{}|:\"<>?"));
  CHECK(valid_idempotency_key(std::string(128, 'k')));
  CHECK_FALSE(valid_idempotency_key(""));
  CHECK_FALSE(valid_idempotency_key(std::string(129, 'k')));
  CHECK_FALSE(valid_idempotency_key("tab\there"));
  CHECK_FALSE(valid_idempotency_key("line\n"));
  CHECK_FALSE(valid_idempotency_key(std::string("nul\0", 4)));
  CHECK_FALSE(valid_idempotency_key("\x7f"));
  CHECK_FALSE(valid_idempotency_key("caf\xc3\xa9"));
}

TEST_CASE("a token matches only the same token") {
  CHECK(token_matches("s3cret", "s3cret"));
  CHECK(token_matches(std::string(1000, 'x'), std::string(1000, 'x')));
  CHECK_FALSE(token_matches("s3cret", "s3cre"));
  CHECK_FALSE(token_matches("s3cre", "s3cret"));
  CHECK_FALSE(token_matches("s3cret", "S3cret"));
  CHECK_FALSE(token_matches("s3cret", "s3creu"));
  CHECK_FALSE(token_matches("", "s3cret"));
  CHECK_FALSE(token_matches("s3cret ", "s3cret"));
  CHECK_FALSE(token_matches(std::string("s3cret\0", 7), "s3cret"));
}

}  // namespace
}  // namespace rpool::api

namespace rpool::api {
namespace {

TEST_CASE("a draw answer is the JSON of docs/api.md, with pool_empty draws, for any count") {
  std::mt19937_64 rng(7);
  for (int n = 0; n < 2000; ++n) {
    pool::Result result;
    const std::size_t count = 1 + rng() % 12;
    for (std::size_t k = 0; k < count; ++k) {
      pool::DrawOutcome d;
      d.request_id = rng() >> (rng() % 64);
      if (rng() % 3 != 0) d.item_id = std::string(1 + rng() % 64, "Az09_.-"[rng() % 7]);
      result.draws.push_back(d);
    }
    const LogIndex index(rng());
    const auto parsed = nlohmann::json::parse(draw_json(result, index));
    nlohmann::json want = {{"draws", nlohmann::json::array()}, {"index", index.value()}};
    for (const auto& d : result.draws) {
      if (d.item_id) {
        want["draws"].push_back({{"request_id", d.request_id}, {"item_id", *d.item_id}});
      } else {
        want["draws"].push_back(
            {{"request_id", d.request_id}, {"item_id", nullptr}, {"error", "pool_empty"}});
      }
    }
    REQUIRE(parsed == want);
  }
}

}  // namespace
}  // namespace rpool::api
