// Fuzzes the node's configuration parser (node::parse_config): JSON from an operator's file.
// Whatever the text, the parser answers a Config or one line of error, never an assertion or an
// exception; a Config it accepts holds what the node relies on when it starts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "node/config.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "config: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rpool;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto config = node::parse_config(text, error);
  if (!config) {
    check(!error.empty(), "a refusal without a reason");
    check(error.find('\n') == std::string::npos, "an error of more than one line");
    return 0;
  }
  check(!config->members.empty(), "a config without members");
  std::set<NodeId> ids;
  for (const node::Member& m : config->members) {
    check(m.id != NodeId(0), "member id 0");
    check(ids.insert(m.id).second, "a member id twice");
    check(config->member(m.id) == &m || config->member(m.id)->id == m.id, "member lookup");
    check(m.raft.port != 0 && m.http.port != 0, "port 0");
    check(node::parse_endpoint(m.raft.to_string()) == m.raft, "raft endpoint round trip");
    check(node::parse_endpoint(m.http.to_string()) == m.http, "http endpoint round trip");
    (void)config->data_dir_for(m.id);
  }
  check(config->wal.segment_bytes >= node::segment_bytes_min, "segment_bytes below the minimum");
  check(config->wal.segment_bytes <= node::segment_bytes_max, "segment_bytes above the maximum");
  return 0;
}
