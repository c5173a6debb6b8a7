// The node's configuration file (README, "Configuration"), parsed strictly: an unknown field, a
// wrong type or a value out of range is an error that names the field, so a typo is never
// silently ignored.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/types.h"
#include "pool/command.h"

namespace rpool::node {

struct Endpoint {
  std::string host;  // an IPv4 or IPv6 literal, or a name
  std::uint16_t port = 0;
  std::string to_string() const;  // "host:port", "[v6]:port"
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct Member {
  NodeId id;
  Endpoint raft;
  Endpoint http;
  friend bool operator==(const Member&, const Member&) = default;
};

struct RaftSettings {
  std::uint32_t heartbeat_ms = 50;
  std::uint32_t election_timeout_ms = 500;
  std::uint64_t snapshot_entries = 100'000;
};

struct WalSettings {
  std::uint64_t segment_bytes = 64ull << 20;
  bool fsync = true;
};

// The config's `tls` block: paths with "{id}" not yet replaced (Config::tls_files_for).
struct TlsSettings {
  std::string ca;
  std::string cert;
  std::string key;
  bool http = true;  // the HTTP port serves HTTPS only, followers forward over HTTPS
};

struct Config {
  std::vector<Member> members;
  std::string data_dir = "data/node-{id}";  // "{id}" is replaced by the node id
  std::vector<pool::Item> catalog;          // seeds the pool "default"
  // Seed more pools when the cluster first forms, with the catalog (config field "pools").
  std::map<std::string, std::vector<pool::Item>, std::less<>> pools;
  std::optional<std::string> admin_token;
  // A file holding the admin token, read at start and again on SIGHUP (read_admin_token_file);
  // never together with admin_token.
  std::optional<std::string> admin_token_file;
  std::optional<TlsSettings> tls;  // absent: plaintext on both ports
  RaftSettings raft;
  WalSettings wal;

  const Member* member(NodeId id) const;
  // data_dir with "{id}" replaced.
  std::string data_dir_for(NodeId id) const;
  // tls with "{id}" replaced in every path; requires tls.
  TlsSettings tls_for(NodeId id) const;
};

// The admin token in `path`: its content without the trailing newline(s). It must be 1 to
// admin_token_bytes_max printable ASCII characters without spaces. On failure returns nullopt
// and sets `error` to one line naming the file and why.
std::optional<std::string> read_admin_token_file(const std::string& path, std::string& error);
inline constexpr std::size_t admin_token_bytes_max = 4096;

// The encoded catalog and pools are one log entry (pool::Bootstrap): under raft's entry and
// message limits
// (raft::entry_bytes_max_default, message_bytes_max_default: 1 MiB), with room for the rest of
// an append message.
inline constexpr std::size_t catalog_bytes_max = (std::size_t{1} << 20) - 4096;

inline constexpr std::uint64_t segment_bytes_min = 64 << 10;
inline constexpr std::uint64_t segment_bytes_max = 1ull << 30;

// The one log entry that seeds the pools when the cluster forms: the catalog and `pools`.
pool::Command bootstrap_command(const Config& config, std::uint64_t timestamp_ms);

// Parses a config document. On failure returns nullopt and sets `error` to one line naming the
// field and why, e.g. "members[1].raft: expected host:port, got \"localhost\"".
std::optional<Config> parse_config(std::string_view text, std::string& error);
// Reads and parses a file; the error names the file when it cannot be read.
std::optional<Config> load_config(const std::string& path, std::string& error);

// "host:port" or "[v6]:port".
std::optional<Endpoint> parse_endpoint(std::string_view text);

}  // namespace rpool::node
