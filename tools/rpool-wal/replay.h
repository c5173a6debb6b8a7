// rpool-wal replay: recomputes the pool offline from a node's snapshot and log.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "wal/log.h"

namespace rpool::tools {

// A node's log opened read-only with its newest snapshot, for the commands that recompute the
// pool from them (replay, draws). On failure `log` is null and a line naming the directory is
// on `err`.
struct ReplaySource {
  std::unique_ptr<wal::Log> log;
  std::optional<wal::SnapshotFile> snapshot;
};
ReplaySource open_replay_source(const std::string& dir, std::ostream& err);

struct ReplayOptions {
  std::optional<std::uint64_t> at;  // the log index to replay up to (default: the last entry)
  std::string pool_id = "default";  // the pool to print
};

// Prints pool `pool_id` as of log index `at` (default: the last entry in the log) as the same
// JSON as `GET /v1/pools/{pool_id}` (for "default", `GET /v1/pool`), recomputed from the newest
// snapshot at or below it plus the log entries after it. Every draw is recomputed from its
// recorded seed, exactly as the nodes applied it. Exit 0, or 1 with a line on `err` when the
// directory cannot be read, `at` is not covered, or the pool does not exist at `at`.
int wal_replay(const std::string& dir, const ReplayOptions& options, std::ostream& out,
               std::ostream& err);

}  // namespace rpool::tools
