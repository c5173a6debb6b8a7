// rpool-wal draws: the audit trail, one line per unit drawn, recomputed offline from a node's
// snapshot and log.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace rpool::tools {

struct DrawsOptions {
  std::string pool_id = "default";
  std::optional<std::uint64_t> from_request;  // first request_id shown (default: the first held)
  std::optional<std::uint64_t> to_request;    // last request_id shown, inclusive
  enum class Format { text, csv, json } format = Format::text;
};

// Replays the pool state machine from the newest snapshot through every entry of the log, as the
// nodes apply them, and prints each unit drawn in `options.pool_id` with its request_id, the
// item it drew (or pool_empty), the index and term of the entry that drew it, the leader's
// timestamp stamped in the command, and the command's Idempotency-Key. A repeated key draws
// nothing (the nodes answer the first result again), so it prints nothing.
//
// Draws compacted into the snapshot are not in the log: a note on `err` names the request_ids
// they cover; asking for them (--from-request below the first held) is exit 1. Entries past the
// commit index recorded in the hard state are printed but named on `err`: a new leader may still
// overwrite them. Exit 0, or 1 with a line on `err` when the directory cannot be read.
int wal_draws(const std::string& dir, const DrawsOptions& options, std::ostream& out,
              std::ostream& err);

}  // namespace rpool::tools
