#include "node/config.h"

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "raft/core.h"

namespace rpool::node {
namespace {

using nlohmann::json;

// Thrown inside the parser only; parse_config() turns it into the one-line error.
struct ConfigError {
  std::string message;
};

// An error is one line of text for a log: a field name or a value from the file may hold any
// character JSON can escape, so control characters go out escaped (\n, \x01).
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out;
}

[[noreturn]] void fail(const std::string& field, const std::string& why) {
  throw ConfigError{fmt::format("{}: {}", field, why)};
}

void only_fields(const json& object, const std::string& where,
                 std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) fail(where.empty() ? key : where + "." + key, "unknown field");
  }
}

const json& require_object(const json& j, const std::string& field) {
  if (!j.is_object()) fail(field, "expected an object");
  return j;
}

std::uint64_t unsigned_in(const json& j, const std::string& field, std::uint64_t lo,
                          std::uint64_t hi) {
  if (!j.is_number_integer() ||
      (j.is_number_integer() && !j.is_number_unsigned() && j.get<std::int64_t>() < 0)) {
    fail(field, fmt::format("expected an integer from {} to {}", lo, hi));
  }
  const auto v = j.get<std::uint64_t>();
  if (v < lo || v > hi)
    fail(field, fmt::format("expected an integer from {} to {}, got {}", lo, hi, v));
  return v;
}

Endpoint endpoint(const json& j, const std::string& field) {
  if (!j.is_string()) fail(field, "expected a string \"host:port\"");
  const auto e = parse_endpoint(j.get<std::string>());
  if (!e) fail(field, fmt::format("expected host:port, got \"{}\"", j.get<std::string>()));
  return *e;
}

pool::Item catalog_item(const json& j, const std::string& field) {
  require_object(j, field);
  only_fields(j, field, {"item_id", "quantity", "probability"});
  pool::Item item;
  if (!j.contains("item_id") || !j["item_id"].is_string())
    fail(field + ".item_id", "expected a string");
  item.item_id = j["item_id"].get<std::string>();
  if (!pool::valid_item_id(item.item_id)) {
    fail(field + ".item_id", "expected 1-64 of A-Z a-z 0-9 _ . -");
  }
  if (!j.contains("quantity") || !j["quantity"].is_number_integer()) {
    fail(field + ".quantity", "expected an integer >= 0, or -1 for unlimited");
  }
  const json& q = j["quantity"];
  if (q.is_number_unsigned()
          ? q.get<std::uint64_t>() > static_cast<std::uint64_t>(pool::quantity_max)
          : q.get<std::int64_t>() < -1) {
    fail(field + ".quantity", fmt::format("expected -1 or 0 to {}", pool::quantity_max));
  }
  item.quantity = q.get<std::int64_t>();
  if (!j.contains("probability")) fail(field + ".probability", "missing");
  item.probability =
      unsigned_in(j["probability"], field + ".probability", 0, pool::probability_max);
  return item;
}

// The items of one pool (`field` is "catalog" or "pools.<id>"): valid, no item_id twice.
std::vector<pool::Item> pool_items(const json& j, const std::string& field) {
  RPOOL_ASSERT(j.is_array());
  if (j.size() > pool::items_max)
    fail(field, fmt::format("at most {} items in one pool (items_max)", pool::items_max));
  std::vector<pool::Item> items;
  items.reserve(j.size());
  std::set<std::string, std::less<>> seen;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const std::string item_field = fmt::format("{}[{}]", field, i);
    pool::Item item = catalog_item(j[i], item_field);
    if (!seen.insert(item.item_id).second)
      fail(item_field + ".item_id", fmt::format("duplicate item_id \"{}\"", item.item_id));
    items.push_back(std::move(item));
  }
  return items;
}

// "pools": {"<pool_id>": [items...]}. The limits are checked on the counts first, so that a
// config over them is refused before a million items are looked at.
std::map<std::string, std::vector<pool::Item>, std::less<>> more_pools(const json& j,
                                                                       std::size_t catalog_items) {
  if (!j.is_object()) fail("pools", "expected an object {\"<pool_id>\": [items...]}");
  // "default" counts: it always exists.
  if (j.size() + 1 > pool::pools_max) {
    fail("pools", fmt::format("{} pools besides \"default\", over the limit of {} pools in all "
                              "(pools_max)",
                              j.size(), pool::pools_max));
  }
  std::size_t items_total = catalog_items;
  for (const auto& [id, items] : j.items()) {
    if (!pool::valid_pool_id(id)) {
      // Quoted as JSON: the id may hold any bytes the document could carry.
      fail("pools", fmt::format("pool_id {} is not 1-64 of A-Z a-z 0-9 _ . -",
                                json(id).dump(-1, ' ', false, json::error_handler_t::replace)));
    }
    const std::string field = "pools." + id;
    if (id == pool::default_pool_id) {
      fail(field, "the pool \"default\" is seeded by \"catalog\"; name this pool otherwise");
    }
    if (!items.is_array()) fail(field, "expected an array of items");
    items_total += items.size();
  }
  if (items_total > pool::items_total_max) {
    fail("pools", fmt::format("{} items with the catalog's, over the limit of {} items in all "
                              "pools (items_total_max)",
                              items_total, pool::items_total_max));
  }
  std::map<std::string, std::vector<pool::Item>, std::less<>> pools;
  for (const auto& [id, items] : j.items()) pools.emplace(id, pool_items(items, "pools." + id));
  return pools;
}

Config parse(const json& root) {
  if (!root.is_object()) throw ConfigError{"expected an object at the top level"};
  only_fields(root, "",
              {"members", "data_dir", "catalog", "pools", "admin_token", "admin_token_file", "tls",
               "raft", "wal"});
  Config c;

  if (!root.contains("members") || !root["members"].is_array() || root["members"].empty()) {
    fail("members", "expected a non-empty array");
  }
  std::set<std::uint64_t> ids;
  std::set<std::string> addresses;
  for (std::size_t i = 0; i < root["members"].size(); ++i) {
    const std::string field = fmt::format("members[{}]", i);
    const json& m = require_object(root["members"][i], field);
    only_fields(m, field, {"id", "raft", "http"});
    for (const char* required : {"id", "raft", "http"}) {
      if (!m.contains(required)) fail(field + "." + required, "missing");
    }
    Member member;
    member.id = NodeId(unsigned_in(m["id"], field + ".id", 1, 1'000'000));
    member.raft = endpoint(m["raft"], field + ".raft");
    member.http = endpoint(m["http"], field + ".http");
    if (!ids.insert(member.id.value()).second)
      fail(field + ".id", fmt::format("duplicate id {}", member.id));
    for (const Endpoint& e : {member.raft, member.http}) {
      if (!addresses.insert(e.to_string()).second) {
        fail(field, fmt::format("address {} is used twice", e.to_string()));
      }
    }
    c.members.push_back(std::move(member));
  }

  if (root.contains("data_dir")) {
    if (!root["data_dir"].is_string() || root["data_dir"].get<std::string>().empty()) {
      fail("data_dir", "expected a non-empty string");
    }
    c.data_dir = root["data_dir"].get<std::string>();
  }

  static_assert(catalog_bytes_max + 4096 <= raft::entry_bytes_max_default &&
                catalog_bytes_max + 4096 <= raft::message_bytes_max_default);
  if (root.contains("catalog")) {
    if (!root["catalog"].is_array()) fail("catalog", "expected an array of items");
    c.catalog = pool_items(root["catalog"], "catalog");
  }
  if (root.contains("pools")) c.pools = more_pools(root["pools"], c.catalog.size());
  // The catalog and the pools seed the cluster as ONE log entry: they must fit in one (with room
  // for the append message around it). More is put in through the API once the cluster runs.
  const std::size_t bytes = pool::encode(bootstrap_command(c, 0)).size();
  if (bytes > catalog_bytes_max && c.pools.empty()) {
    fail("catalog",
         fmt::format("{} items take {} bytes as one log entry, over the limit of {}; put the rest "
                     "in with PUT /v1/items once the cluster runs",
                     c.catalog.size(), bytes, catalog_bytes_max));
  }
  if (bytes > catalog_bytes_max) {
    std::size_t items = c.catalog.size();
    for (const auto& [id, pool_items] : c.pools) items += pool_items.size();
    fail("pools", fmt::format("{} pools with {} items in all (the catalog's included) take {} "
                              "bytes as one log entry, over the limit of {}; put the rest in with "
                              "PUT /v1/pools once the cluster runs",
                              c.pools.size(), items, bytes, catalog_bytes_max));
  }

  if (root.contains("admin_token")) {
    const json& t = root["admin_token"];
    if (!t.is_null()) {
      if (!t.is_string() || t.get<std::string>().empty())
        fail("admin_token", "expected a non-empty string");
      c.admin_token = t.get<std::string>();
    }
  }

  if (root.contains("admin_token_file")) {
    const json& t = root["admin_token_file"];
    if (!t.is_string() || t.get<std::string>().empty())
      fail("admin_token_file", "expected a non-empty string (a file path)");
    if (c.admin_token) fail("admin_token_file", "give admin_token or admin_token_file, not both");
    c.admin_token_file = t.get<std::string>();
  }

  if (root.contains("tls")) {
    const json& t = require_object(root["tls"], "tls");
    only_fields(t, "tls", {"ca", "cert", "key", "http"});
    TlsSettings tls;
    for (auto [name, field] :
         {std::pair{"ca", &tls.ca}, std::pair{"cert", &tls.cert}, std::pair{"key", &tls.key}}) {
      if (!t.contains(name) || !t[name].is_string() || t[name].get<std::string>().empty())
        fail(std::string("tls.") + name, "expected a non-empty string (a PEM file path)");
      *field = t[name].get<std::string>();
    }
    if (t.contains("http")) {
      if (!t["http"].is_boolean()) fail("tls.http", "expected true or false");
      tls.http = t["http"].get<bool>();
    }
    c.tls = std::move(tls);
  }

  if (root.contains("raft")) {
    const json& r = require_object(root["raft"], "raft");
    only_fields(r, "raft", {"heartbeat_ms", "election_timeout_ms", "snapshot_entries"});
    if (r.contains("heartbeat_ms"))
      c.raft.heartbeat_ms = static_cast<std::uint32_t>(
          unsigned_in(r["heartbeat_ms"], "raft.heartbeat_ms", 1, 10'000));
    if (r.contains("election_timeout_ms")) {
      c.raft.election_timeout_ms = static_cast<std::uint32_t>(
          unsigned_in(r["election_timeout_ms"], "raft.election_timeout_ms", 10, 60'000));
    }
    if (r.contains("snapshot_entries"))
      c.raft.snapshot_entries =
          unsigned_in(r["snapshot_entries"], "raft.snapshot_entries", 1, 1'000'000'000);
    if (c.raft.election_timeout_ms < 2 * c.raft.heartbeat_ms) {
      fail("raft.election_timeout_ms",
           fmt::format("must be at least twice raft.heartbeat_ms ({})", c.raft.heartbeat_ms));
    }
  }

  if (root.contains("wal")) {
    const json& w = require_object(root["wal"], "wal");
    only_fields(w, "wal", {"segment_bytes", "fsync"});
    if (w.contains("segment_bytes"))
      c.wal.segment_bytes = unsigned_in(w["segment_bytes"], "wal.segment_bytes", segment_bytes_min,
                                        segment_bytes_max);
    if (w.contains("fsync")) {
      if (!w["fsync"].is_boolean()) fail("wal.fsync", "expected true or false");
      c.wal.fsync = w["fsync"].get<bool>();
    }
  }
  return c;
}

}  // namespace

pool::Command bootstrap_command(const Config& config, std::uint64_t timestamp_ms) {
  return pool::Command{pool::Bootstrap{config.catalog, config.pools}, timestamp_ms, {}, {}};
}

std::string Endpoint::to_string() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

const Member* Config::member(NodeId id) const {
  for (const Member& m : members) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

namespace {

std::string replace_id(std::string text, NodeId id) {
  const std::string id_text = std::to_string(id.value());
  for (std::size_t at = text.find("{id}"); at != std::string::npos;
       at = text.find("{id}", at + id_text.size())) {
    text.replace(at, 4, id_text);
  }
  return text;
}

}  // namespace

std::string Config::data_dir_for(NodeId id) const { return replace_id(data_dir, id); }

TlsSettings Config::tls_for(NodeId id) const {
  TlsSettings out = tls.value();
  out.ca = replace_id(out.ca, id);
  out.cert = replace_id(out.cert, id);
  out.key = replace_id(out.key, id);
  return out;
}

std::optional<std::string> read_admin_token_file(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("admin_token_file: cannot read {}", path);
    return std::nullopt;
  }
  std::string token(admin_token_bytes_max + 2, '\0');
  in.read(token.data(), static_cast<std::streamsize>(token.size()));
  token.resize(static_cast<std::size_t>(in.gcount()));
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.empty()) {
    error = fmt::format("admin_token_file: {} is empty", path);
    return std::nullopt;
  }
  if (token.size() > admin_token_bytes_max) {
    error =
        fmt::format("admin_token_file: {} holds more than {} bytes", path, admin_token_bytes_max);
    return std::nullopt;
  }
  for (const char ch : token) {
    if (ch <= ' ' || ch > '~') {
      error = fmt::format(
          "admin_token_file: {} holds a character that is not printable ASCII "
          "(or a space); a token is one line",
          path);
      return std::nullopt;
    }
  }
  return token;
}

namespace {

// A DNS name or an IPv4 literal: dot-separated labels of letters, digits and hyphens.
bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      if (label == 0 || label > 63 || host[i - 1] == '-' || host[i - label] == '-') return false;
      label = 0;
      continue;
    }
    const char c = host[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
    ++label;
  }
  return true;
}

// The inside of "[...]": hex digits and colons, optionally ending in a dotted IPv4 part.
bool valid_ipv6_text(std::string_view host) {
  if (host.size() < 2 || host.find(':') == std::string_view::npos) return false;
  for (char c : host) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
          c == '.'))
      return false;
  }
  return true;
}

}  // namespace

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  std::string_view host, port;
  bool v6 = false;
  if (!text.empty() && text.front() == '[') {
    v6 = true;
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // v6 needs brackets
  }
  if (host.empty() || port.empty()) return std::nullopt;
  if (v6 ? !valid_ipv6_text(host) : !valid_host_name(host)) return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
    return std::nullopt;
  return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

std::optional<Config> parse_config(std::string_view text, std::string& error) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    // Not only parse_error: a number beyond a double (1e400) is an out_of_range.
    error = fmt::format("config: not valid JSON: {}", one_line(e.what()));
    return std::nullopt;
  }
  try {
    return parse(root);
  } catch (const ConfigError& e) {
    error = std::string("config: ").append(one_line(e.message));
    return std::nullopt;
  }
}

std::optional<Config> load_config(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("config: cannot read {}", path);
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto config = parse_config(text.str(), error);
  if (!config) error = fmt::format("{} ({})", error, path);
  return config;
}

}  // namespace rpool::node
