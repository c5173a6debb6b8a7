// rpool-wal replay: recomputes the pool offline from a node's snapshot and log.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace rpool::tools {

// Prints the pool as of log index `at` (default: the last entry in the log) as the same JSON as
// `GET /v1/pool`, recomputed from the newest snapshot at or below it plus the log entries after
// it. Every draw is recomputed from its recorded seed, exactly as the nodes applied it. Exit 0,
// or 1 with a line on `err` when the directory cannot be read or `at` is not covered.
int wal_replay(const std::string& dir, std::optional<std::uint64_t> at, std::ostream& out,
               std::ostream& err);

}  // namespace rpool::tools
