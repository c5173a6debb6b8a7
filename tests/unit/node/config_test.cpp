#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include "node/config.h"

namespace rpool::node {
namespace {

// Every field set, none to its default, so a field that is read into the wrong place shows.
constexpr std::string_view full_config = R"({
  "members": [
    {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
    {"id": 2, "raft": "127.0.0.2:7002", "http": "127.0.0.2:8002"},
    {"id": 7, "raft": "[::1]:7007", "http": "[::1]:8007"}
  ],
  "data_dir": "/var/lib/rpool/{id}/data-{id}",
  "catalog": [
    {"item_id": "diamond", "quantity": 100, "probability": 10},
    {"item_id": "mud", "quantity": -1, "probability": 0}
  ],
  "admin_token": "s3cret",
  "raft": {"heartbeat_ms": 20, "election_timeout_ms": 900, "snapshot_entries": 5000},
  "wal": {"segment_bytes": 65536, "fsync": false}
})";

constexpr std::string_view minimal_members =
    R"("members": [{"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"}])";

// A config with one member and `extra` (",\"field\": ..." or "") after it.
std::string minimal(std::string_view extra = "") {
  return "{" + std::string(minimal_members) + std::string(extra) + "}";
}

// Parses `text`, which must fail; returns the error line.
std::string rejected(const std::string& text) {
  std::string error;
  const auto config = parse_config(text, error);
  CHECK_FALSE(config.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

TEST_CASE("a config with every field set parses into exactly those values") {
  std::string error;
  const auto config = parse_config(full_config, error);
  REQUIRE_MESSAGE(config.has_value(), error);
  CHECK(error.empty());
  REQUIRE(config->members.size() == 3);
  CHECK(config->members[0] ==
        Member{NodeId(1), Endpoint{"127.0.0.1", 7001}, Endpoint{"127.0.0.1", 8001}});
  CHECK(config->members[1] ==
        Member{NodeId(2), Endpoint{"127.0.0.2", 7002}, Endpoint{"127.0.0.2", 8002}});
  CHECK(config->members[2] == Member{NodeId(7), Endpoint{"::1", 7007}, Endpoint{"::1", 8007}});
  CHECK(config->members[2].raft.to_string() == "[::1]:7007");
  CHECK(config->members[0].http.to_string() == "127.0.0.1:8001");
  CHECK(config->data_dir == "/var/lib/rpool/{id}/data-{id}");
  CHECK(config->data_dir_for(NodeId(7)) == "/var/lib/rpool/7/data-7");
  REQUIRE(config->catalog.size() == 2);
  CHECK(config->catalog[0] == pool::Item{"diamond", 100, 10});
  CHECK(config->catalog[1] == pool::Item{"mud", pool::quantity_unlimited, 0});
  CHECK(config->admin_token == "s3cret");
  CHECK(config->raft.heartbeat_ms == 20);
  CHECK(config->raft.election_timeout_ms == 900);
  CHECK(config->raft.snapshot_entries == 5000);
  CHECK(config->wal.segment_bytes == 65536);
  CHECK(config->wal.fsync == false);
  REQUIRE(config->member(NodeId(2)) != nullptr);
  CHECK(config->member(NodeId(2))->raft.port == 7002);
  CHECK(config->member(NodeId(3)) == nullptr);
}

TEST_CASE("a config with only members gets the documented defaults") {
  std::string error;
  const auto config = parse_config(minimal(), error);
  REQUIRE_MESSAGE(config.has_value(), error);
  const Config defaults;
  CHECK(config->members.size() == 1);
  CHECK(config->data_dir == "data/node-{id}");
  CHECK(config->data_dir_for(NodeId(3)) == "data/node-3");
  CHECK(config->catalog.empty());
  CHECK_FALSE(config->admin_token.has_value());
  CHECK(config->raft.heartbeat_ms == defaults.raft.heartbeat_ms);
  CHECK(config->raft.election_timeout_ms == defaults.raft.election_timeout_ms);
  CHECK(config->wal.segment_bytes == defaults.wal.segment_bytes);
  CHECK(config->wal.fsync);
  // admin_token null means none.
  const auto no_token = parse_config(minimal(R"(, "admin_token": null)"), error);
  REQUIRE(no_token.has_value());
  CHECK_FALSE(no_token->admin_token.has_value());
}

TEST_CASE("the sample config in the repository parses") {
  // config/local-cluster.json as in the README, copied so the test does not depend on the cwd.
  constexpr std::string_view text = R"({
    "members": [
      {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
      {"id": 2, "raft": "127.0.0.2:7002", "http": "127.0.0.2:8002"},
      {"id": 3, "raft": "127.0.0.3:7003", "http": "127.0.0.3:8003"}
    ],
    "data_dir": "data/node-{id}",
    "catalog": [
      {"item_id": "diamond", "quantity": 100,  "probability": 10},
      {"item_id": "gold",    "quantity": 1000, "probability": 20},
      {"item_id": "mud",     "quantity": -1,   "probability": 70}
    ],
    "raft": {"heartbeat_ms": 50, "election_timeout_ms": 500, "snapshot_entries": 100000},
    "wal":  {"segment_bytes": 67108864, "fsync": true}
  })";
  std::string error;
  const auto config = parse_config(text, error);
  REQUIRE_MESSAGE(config.has_value(), error);
  CHECK(config->members.size() == 3);
  CHECK(config->catalog.size() == 3);
}

TEST_CASE(
    "the production example contrib/cluster.example.json parses, for the systemd unit's paths") {
  std::string error;
  const auto config = load_config(RPOOL_SOURCE_ROOT "/contrib/cluster.example.json", error);
  REQUIRE_MESSAGE(config.has_value(), error);
  CHECK(config->members.size() == 3);
  // contrib/rpoold@.service gives instance N the state directory /var/lib/rpool/node-N.
  CHECK(config->data_dir_for(NodeId(2)) == "/var/lib/rpool/node-2");
  CHECK(config->admin_token.has_value());
  CHECK(config->wal.fsync);
}

TEST_CASE("an unknown top-level field is an error naming it") {
  const std::string error = rejected(minimal(R"(, "data_dirs": "x")"));
  CHECK(error == "config: data_dirs: unknown field");
  // Unknown fields inside raft and wal too.
  CHECK(rejected(minimal(R"(, "raft": {"heartbeat": 10})")) ==
        "config: raft.heartbeat: unknown field");
  CHECK(rejected(minimal(R"(, "wal": {"sync": true})")) == "config: wal.sync: unknown field");
}

TEST_CASE("an error is one line even when a field name or a value holds control characters") {
  // Found by fuzz-config: "admi\n_token" decodes to a key with a newline, echoed in the error.
  CHECK(rejected(minimal(R"(, "admi\n_token": "t")")) == "config: admi\\n_token: unknown field");
  CHECK(rejected(minimal(R"(, "x\u0001\t": 1)")) == "config: x\\x01\\t: unknown field");
  const std::string error = rejected(R"({"members": [
      {"id": 1, "raft": "bad\r\nhost", "http": "127.0.0.1:8001"}]})");
  CHECK(error.find('\n') == std::string::npos);
  CHECK(error.find('\r') == std::string::npos);
  CHECK(error.find("bad\\r\\nhost") != std::string::npos);
}

TEST_CASE("an unknown member field is an error naming the member and the field") {
  const std::string error = rejected(R"({"members": [
      {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
      {"id": 2, "raft": "127.0.0.2:7002", "http": "127.0.0.2:8002", "voter": true}]})");
  CHECK(error == "config: members[1].voter: unknown field");
}

TEST_CASE("a bad endpoint is an error naming the field and quoting the value") {
  const auto member_with_raft = [](std::string_view raft) {
    return R"({"members": [{"id": 1, "raft": ")" + std::string(raft) +
           R"(", "http": "127.0.0.1:8001"}]})";
  };
  CHECK(rejected(member_with_raft("localhost")) ==
        "config: members[0].raft: expected host:port, got \"localhost\"");
  for (const char* bad :
       {"", ":7001", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:70x",
        "127.0.0.1:-1", "::1:7001", "[::1]7001", "[::1]:", "[]:7001", "[::1"}) {
    CAPTURE(std::string(bad));
    const std::string error = rejected(member_with_raft(bad));
    CHECK(error.starts_with("config: members[0].raft: expected host:port"));
  }
  CHECK(rejected(R"({"members": [{"id": 1, "raft": "127.0.0.1:7001", "http": 8001}]})") ==
        "config: members[0].http: expected a string \"host:port\"");
  // The edges that are fine.
  CHECK(parse_endpoint("h:1") == Endpoint{"h", 1});
  CHECK(parse_endpoint("127.0.0.1:65535") == Endpoint{"127.0.0.1", 65535});
  CHECK(parse_endpoint("[fe80::1]:80") == Endpoint{"fe80::1", 80});
}

TEST_CASE("a duplicate member id is an error naming the second member") {
  const std::string error = rejected(R"({"members": [
      {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
      {"id": 1, "raft": "127.0.0.2:7002", "http": "127.0.0.2:8002"}]})");
  CHECK(error == "config: members[1].id: duplicate id 1");
  // And one address used twice.
  CHECK(rejected(R"({"members": [
      {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
      {"id": 2, "raft": "127.0.0.1:8001", "http": "127.0.0.2:8002"}]})") ==
        "config: members[1]: address 127.0.0.1:8001 is used twice");
}

TEST_CASE("wal.segment_bytes outside 64 KiB to 1 GiB is an error; the bounds themselves are fine") {
  CHECK(rejected(minimal(R"(, "wal": {"segment_bytes": 65535})")) ==
        "config: wal.segment_bytes: expected an integer from 65536 to 1073741824, got 65535");
  CHECK(rejected(minimal(R"(, "wal": {"segment_bytes": 1073741825})")) ==
        "config: wal.segment_bytes: expected an integer from 65536 to 1073741824, got 1073741825");
  for (const char* bad : {"-1", "0", "1e6", "\"64k\"", "65536.5", "18446744073709551616"}) {
    CAPTURE(std::string(bad));
    CHECK(rejected(minimal(std::string(R"(, "wal": {"segment_bytes": )") + bad + "}"))
              .starts_with("config: "));
  }
  for (const char* bad : {"-1", "0", "1e6", "\"64k\""}) {
    CAPTURE(std::string(bad));
    CHECK(rejected(minimal(std::string(R"(, "wal": {"segment_bytes": )") + bad + "}"))
              .starts_with(
                  "config: wal.segment_bytes: expected an integer from 65536 to 1073741824"));
  }
  std::string error;
  for (const std::uint64_t ok : {segment_bytes_min, segment_bytes_max}) {
    const auto config =
        parse_config(minimal(R"(, "wal": {"segment_bytes": )" + std::to_string(ok) + "}"), error);
    REQUIRE_MESSAGE(config.has_value(), error);
    CHECK(config->wal.segment_bytes == ok);
  }
}

TEST_CASE("a bad catalog item is an error naming the item and its field") {
  const auto catalog = [](std::string_view items) {
    return minimal(R"(, "catalog": [)" + std::string(items) + "]");
  };
  struct Case {
    const char* items;
    const char* error;
  };
  const Case cases[] = {
      {R"({"item_id": "gold", "quantity": 1, "probability": 1, "weight": 2})",
       "config: catalog[0].weight: unknown field"},
      {R"({"quantity": 1, "probability": 1})", "config: catalog[0].item_id: expected a string"},
      {R"({"item_id": "", "quantity": 1, "probability": 1})",
       "config: catalog[0].item_id: expected 1-64 of A-Z a-z 0-9 _ . -"},
      {R"({"item_id": "a/b", "quantity": 1, "probability": 1})",
       "config: catalog[0].item_id: expected 1-64 of A-Z a-z 0-9 _ . -"},
      {R"({"item_id": "gold", "quantity": -2, "probability": 1})",
       "config: catalog[0].quantity: expected -1 or 0 to 9007199254740991"},
      {R"({"item_id": "gold", "quantity": 9007199254740992, "probability": 1})",
       "config: catalog[0].quantity: expected -1 or 0 to 9007199254740991"},
      {R"({"item_id": "gold", "quantity": 1.5, "probability": 1})",
       "config: catalog[0].quantity: expected an integer >= 0, or -1 for unlimited"},
      {R"({"item_id": "gold", "probability": 1})",
       "config: catalog[0].quantity: expected an integer >= 0, or -1 for unlimited"},
      {R"({"item_id": "gold", "quantity": 1})", "config: catalog[0].probability: missing"},
      {R"({"item_id": "gold", "quantity": 1, "probability": -1})",
       "config: catalog[0].probability: expected an integer from 0 to 1000000000000"},
      {R"({"item_id": "gold", "quantity": 1, "probability": 1000000000001})",
       "config: catalog[0].probability: expected an integer from 0 to 1000000000000, got "
       "1000000000001"},
      {R"({"item_id": "gold", "quantity": 1, "probability": 1}, {"item_id": "gold", "quantity": 2, "probability": 2})",
       "config: catalog[1].item_id: duplicate item_id \"gold\""},
      {R"("gold")", "config: catalog[0]: expected an object"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.items));
    CHECK(rejected(catalog(c.items)) == c.error);
  }
  CHECK(rejected(minimal(R"(, "catalog": {"gold": 1})")) ==
        "config: catalog: expected an array of items");
  // A catalog that does not fit in one log entry (it seeds the pool as one) is refused up front.
  std::string big;
  for (int i = 0; i < 20000; ++i) {
    big += (i ? "," : "") + std::string(R"({"item_id":"item-)") + std::to_string(i) +
           std::string(48, 'x') + R"(","quantity":-1,"probability":1})";
  }
  const std::string error = rejected(catalog(big));
  CHECK(error.find("config: catalog: 20000 items take") == 0);
  CHECK(error.find("PUT /v1/items") != std::string::npos);
}

TEST_CASE("other malformed configs are errors that name what is wrong") {
  CHECK(rejected("").starts_with("config: not valid JSON"));
  CHECK(rejected("{").starts_with("config: not valid JSON"));
  CHECK(rejected(minimal() + " trailing").starts_with("config: not valid JSON"));
  CHECK(rejected("{}") == "config: members: expected a non-empty array");
  CHECK(rejected(R"({"members": []})") == "config: members: expected a non-empty array");
  CHECK(rejected(R"({"members": [{"id": 1, "raft": "127.0.0.1:7001"}]})") ==
        "config: members[0].http: missing");
  CHECK(rejected(R"({"members": [{"id": 0, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"}]})")
            .starts_with("config: members[0].id: expected an integer from 1 to 1000000"));
  CHECK(rejected(minimal(R"(, "data_dir": "")")) ==
        "config: data_dir: expected a non-empty string");
  CHECK(rejected(minimal(R"(, "admin_token": "")")) ==
        "config: admin_token: expected a non-empty string");
  CHECK(rejected(minimal(R"(, "wal": {"fsync": 1})")) ==
        "config: wal.fsync: expected true or false");
  CHECK(rejected(minimal(R"(, "raft": {"heartbeat_ms": 300, "election_timeout_ms": 500})")) ==
        "config: raft.election_timeout_ms: must be at least twice raft.heartbeat_ms (300)");
  CHECK(rejected(minimal(R"(, "raft": [])")) == "config: raft: expected an object");
}

// Found by the config fuzzer (tests/fuzz/corpus/config/number-overflow): the JSON parser reports
// a number beyond a double as out_of_range, not parse_error, and it escaped parse_config().
TEST_CASE("a number too large for a double is an error, not an exception") {
  CHECK(rejected(minimal(R"(, "raft": {"heartbeat_ms": 1e400})"))
            .starts_with("config: not valid JSON"));
  CHECK(rejected("[-1e400]").starts_with("config: not valid JSON"));
}

TEST_CASE("a config that is not a JSON object is an error") {
  const std::string error = rejected("[1, 2]");
  CHECK(error.starts_with("config: "));
  CHECK(error.find("expected an object") != std::string::npos);
}

// SKIPPED, a bug for the owner of config.cpp: parse_endpoint() accepts any non-empty host text,
// so each input below parses (and parse_config() takes it) although config.h says the host is
// "an IPv4 or IPv6 literal, or a name". The mistake then shows only when the address is used
// (the listener's make_address/resolve, or a peer that never connects), not as the exit-2 line
// naming the field that the README asks of a bad config.
TEST_CASE("an endpoint whose host is neither an IP literal nor a name is rejected") {
  for (const char* bad : {"a b:7001", "127.0.0.1 :7001", "a]:7001", "[not v6]:7001", "host/x:7001",
                          "\t:7001", "-a:1", "a..b:1", ".a:1", "[]:1", "[1]:1"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(parse_endpoint(bad).has_value());
  }
  for (const char* good : {"127.0.0.1:7001", "localhost:1", "node-3.example.com:8003", "[::1]:7001",
                           "[fe80::1:2]:65535", "[::ffff:127.0.0.1]:80"}) {
    CAPTURE(std::string(good));
    CHECK(parse_endpoint(good).has_value());
  }
}

TEST_CASE("tls: paths with {id} replaced per node, http on by default") {
  std::string error;
  const auto config = parse_config(
      minimal(
          R"(, "tls": {"ca": "c/ca.pem", "cert": "c/node-{id}.pem", "key": "c/{id}/k-{id}.pem"})"),
      error);
  REQUIRE_MESSAGE(config.has_value(), error);
  REQUIRE(config->tls.has_value());
  const TlsSettings tls = config->tls_for(NodeId(12));
  CHECK(tls.ca == "c/ca.pem");
  CHECK(tls.cert == "c/node-12.pem");
  CHECK(tls.key == "c/12/k-12.pem");
  CHECK(tls.http);
  const auto off = parse_config(
      minimal(R"(, "tls": {"ca": "a", "cert": "b", "key": "c", "http": false})"), error);
  REQUIRE(off.has_value());
  CHECK_FALSE(off->tls->http);
  CHECK_FALSE(parse_config(minimal(), error)->tls.has_value());
}

TEST_CASE("tls: a missing path, an unknown field or a non-boolean http is an error naming it") {
  CHECK(rejected(minimal(R"(, "tls": {"ca": "a", "cert": "b"})")) ==
        "config: tls.key: expected a non-empty string (a PEM file path)");
  CHECK(rejected(minimal(R"(, "tls": {"ca": "", "cert": "b", "key": "c"})")) ==
        "config: tls.ca: expected a non-empty string (a PEM file path)");
  CHECK(rejected(minimal(R"(, "tls": {"ca": "a", "cert": "b", "key": "c", "crl": "d"})")) ==
        "config: tls.crl: unknown field");
  CHECK(rejected(minimal(R"(, "tls": {"ca": "a", "cert": "b", "key": "c", "http": 1})")) ==
        "config: tls.http: expected true or false");
  CHECK(rejected(minimal(R"(, "tls": "on")")) == "config: tls: expected an object");
}

TEST_CASE("admin_token_file: a path, never together with admin_token") {
  std::string error;
  const auto config = parse_config(minimal(R"(, "admin_token_file": "/etc/rpool/token")"), error);
  REQUIRE(config.has_value());
  CHECK(config->admin_token_file == "/etc/rpool/token");
  CHECK_FALSE(config->admin_token.has_value());
  CHECK(rejected(minimal(R"(, "admin_token": "x", "admin_token_file": "/t")")) ==
        "config: admin_token_file: give admin_token or admin_token_file, not both");
  CHECK(rejected(minimal(R"(, "admin_token_file": "")")) ==
        "config: admin_token_file: expected a non-empty string (a file path)");
}

TEST_CASE("read_admin_token_file: one line of printable ASCII, else an error naming the file") {
  const std::string path = "/tmp/rpool-config-test-token-" + std::to_string(::getpid());
  auto write = [&](const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  };
  std::string error;
  write("s3cret-token\n");
  CHECK(read_admin_token_file(path, error) == std::optional<std::string>("s3cret-token"));
  write("crlf\r\n");
  CHECK(read_admin_token_file(path, error) == std::optional<std::string>("crlf"));
  write("\n");
  CHECK_FALSE(read_admin_token_file(path, error).has_value());
  CHECK(error == "admin_token_file: " + path + " is empty");
  write("two\nlines\n");
  CHECK_FALSE(read_admin_token_file(path, error).has_value());
  CHECK(error.find("printable ASCII") != std::string::npos);
  write(std::string(admin_token_bytes_max + 1, 'x'));
  CHECK_FALSE(read_admin_token_file(path, error).has_value());
  CHECK(error.find("more than") != std::string::npos);
  std::remove(path.c_str());
  CHECK_FALSE(read_admin_token_file(path, error).has_value());
  CHECK(error == "admin_token_file: cannot read " + path);
}

// --- pools --------------------------------------------------------------------------------------

// `n` pools "p0".."p<n-1>", each with `items` items, as the text of a "pools" field.
std::string pools_field(std::size_t n, std::size_t items) {
  std::string out = R"(, "pools": {)";
  for (std::size_t p = 0; p < n; ++p) {
    out += p ? ",\"p" : "\"p";
    out += std::to_string(p);
    out += "\": [";
    for (std::size_t i = 0; i < items; ++i) {
      // Appended piece by piece: GCC 12 at -O3 misreads `literal + std::to_string(...)`
      // (-Wrestrict).
      out += i ? "," : "";
      out += R"({"item_id":"i)";
      out += std::to_string(i);
      out += R"(","quantity":1,"probability":1})";
    }
    out += "]";
  }
  return out + "}";
}

TEST_CASE("pools seed more pools, each with its items, and the bootstrap entry carries them") {
  std::string error;
  const auto config =
      parse_config(minimal(R"(, "catalog": [{"item_id": "mud", "quantity": -1, "probability": 1}],
                 "pools": {"spring-event": [{"item_id": "skin", "quantity": 50, "probability": 1},
                                            {"item_id": "gem", "quantity": 2, "probability": 9}],
                           "empty": []})"),
                   error);
  REQUIRE_MESSAGE(config.has_value(), error);
  REQUIRE(config->pools.size() == 2);
  CHECK(config->pools.at("spring-event") ==
        std::vector<pool::Item>{{"skin", 50, 1}, {"gem", 2, 9}});
  CHECK(config->pools.at("empty").empty());
  CHECK(config->catalog == std::vector<pool::Item>{{"mud", pool::quantity_unlimited, 1}});

  const pool::Command boot = bootstrap_command(*config, 42);
  CHECK(boot.pool_id == pool::default_pool_id);
  CHECK(boot.timestamp_ms == 42);
  const auto& b = std::get<pool::Bootstrap>(boot.op);
  CHECK(b.items == config->catalog);
  CHECK(b.pools == config->pools);

  // Without "pools", the bootstrap is the catalog alone, as before pools existed.
  const auto plain = parse_config(minimal(), error);
  REQUIRE(plain.has_value());
  CHECK(plain->pools.empty());
  CHECK(std::get<pool::Bootstrap>(bootstrap_command(*plain, 0).op).pools.empty());
}

TEST_CASE("a bad pools field is an error naming the pool, the item and the rule") {
  CHECK(rejected(minimal(R"(, "pools": [])")) ==
        R"(config: pools: expected an object {"<pool_id>": [items...]})");
  CHECK(rejected(minimal(R"(, "pools": {"a": {}})")) ==
        "config: pools.a: expected an array of items");
  CHECK(rejected(minimal(R"(, "pools": {"a/b": []})")) ==
        R"(config: pools: pool_id "a/b" is not 1-64 of A-Z a-z 0-9 _ . -)");
  CHECK(rejected(minimal(R"(, "pools": {"": []})")) ==
        R"(config: pools: pool_id "" is not 1-64 of A-Z a-z 0-9 _ . -)");
  CHECK(rejected(minimal(R"(, "pools": {")" + std::string(65, 'p') + R"(": []})"))
            .starts_with("config: pools: pool_id \"ppp"));
  // "default" is the catalog's: a "pools" entry of that name would seed it twice.
  CHECK(
      rejected(minimal(R"(, "pools": {"default": []})")) ==
      R"(config: pools.default: the pool "default" is seeded by "catalog"; name this pool otherwise)");
  CHECK(rejected(minimal(
            R"(, "pools": {"a": [{"item_id": "x", "quantity": 1, "probability": 1, "w": 1}]})")) ==
        "config: pools.a[0].w: unknown field");
  CHECK(rejected(minimal(R"(, "pools": {"a": [{"item_id": "x", "quantity": 1, "probability": 1},
                                             {"item_id": "x", "quantity": 2, "probability": 1}]})")) ==
        R"(config: pools.a[1].item_id: duplicate item_id "x")");
  // The same item_id in two pools is fine: items belong to their pool.
  std::string error;
  CHECK(parse_config(minimal(R"(, "catalog": [{"item_id": "x", "quantity": 1, "probability": 1}],
                                 "pools": {"a": [{"item_id": "x", "quantity": 1, "probability": 1}]})"),
                     error)
            .has_value());
}

TEST_CASE("pools over pools_max is an error naming the limit; pools_max itself is fine") {
  // "default" counts among the pools_max: pools_max - 1 more pools are the most a config holds.
  std::string error;
  const auto at_limit = parse_config(minimal(pools_field(pool::pools_max - 1, 0)), error);
  REQUIRE_MESSAGE(at_limit.has_value(), error);
  CHECK(at_limit->pools.size() == pool::pools_max - 1);
  CHECK(rejected(minimal(pools_field(pool::pools_max, 0))) ==
        "config: pools: 10000 pools besides \"default\", over the limit of 10000 pools in all "
        "(pools_max)");
}

TEST_CASE("items over items_total_max in all pools is an error naming the limit") {
  // Refused on the counts, before any item of a pool is looked at: those here are not even valid.
  const std::size_t per_pool = 1000;
  const std::size_t pools = pool::items_total_max / per_pool;
  std::string field =
      R"(, "catalog": [{"item_id": "x", "quantity": 1, "probability": 1}], "pools": {)";
  std::string items = "[";
  for (std::size_t i = 0; i < per_pool; ++i) items += i ? ",{}" : "{}";
  items += "]";
  for (std::size_t p = 0; p < pools; ++p)
    field += (p ? ",\"p" : "\"p") + std::to_string(p) + "\":" + items;
  field += "}";
  CHECK(rejected(minimal(field)) ==
        "config: pools: 1000001 items with the catalog's, over the limit of 1000000 items in all "
        "pools (items_total_max)");
}

TEST_CASE("pools that do not fit in one log entry with the catalog are refused up front") {
  // 10 pools of 6,000 items of ~21 bytes: about 1.2 MiB, over catalog_bytes_max.
  const std::string error = rejected(minimal(pools_field(10, 6000)));
  CHECK(
      error.starts_with("config: pools: 10 pools with 60000 items in all (the catalog's "
                        "included) take "));
  CHECK(error.find("PUT /v1/pools") != std::string::npos);
  // Half of that fits.
  std::string ok_error;
  CHECK(parse_config(minimal(pools_field(5, 6000)), ok_error).has_value());
}

}  // namespace
}  // namespace rpool::node
