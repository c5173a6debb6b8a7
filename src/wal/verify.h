// verify_directory(): checks every file of a data directory and reports every fault, where
// Log::open() stops at the first. For `rpool-wal verify` and for tests; it only reads, takes no
// lock, and may run beside a live node.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/types.h"
#include "wal/file.h"
#include "wal/format.h"
#include "wal/recovery.h"

namespace rpool::wal {

struct VerifyReport {
  std::vector<Fault> faults;          // empty: everything checks out
  std::vector<std::string> warnings;  // not faults: a torn tail of the open segment (a crash, or
                                      // a node writing right now) and the like
  std::uint64_t segments = 0;
  std::uint64_t records = 0;
  std::uint64_t hard_state_records = 0;  // hard-state records among the segments' records
  std::uint64_t record_bytes = 0;  // bytes of segment files read
  std::uint64_t snapshots = 0;
  bool hard_state = false;
  LogIndex first_index;  // of the log, 0 when it holds no entry
  LogIndex last_index;
  bool changed = false;  // a listed file vanished during the scan (a live node)
};

// known_kinds: the entry kinds the application writes (see Options::known_kinds).
VerifyReport verify_directory(const std::string& dir, FileSystem& fs,
                              const std::optional<KindSet>& known_kinds = std::nullopt);

// verify_directory() for a directory a live node may be changing (`rpool-wal verify`): scans
// again while a scan saw a file vanish or found faults, until two scans agree, up to
// attempts_max scans; then reports only the faults every scan found. So a rename, a compaction
// or a write in flight never shows as a fault, while real damage (the same in every scan) does.
VerifyReport verify_directory_settled(const std::string& dir, FileSystem& fs,
                                      const std::optional<KindSet>& known_kinds,
                                      int attempts_max = 10);

}  // namespace rpool::wal
