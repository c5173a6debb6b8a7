// The one writing repair of a data directory (`rpool-wal repair`): cut the log at its first
// fault, keeping every cut byte in a `.broken` file beside it. Never run beside a live node: it
// takes the data directory's LOCK.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "wal/file.h"
#include "wal/format.h"
#include "wal/recovery.h"

namespace rpool::wal {

struct RepairPlan {
  std::optional<Fault> fault;      // the first fault in the log's records; nullopt: nothing to cut
  std::string segment;             // the segment it is in
  std::uint64_t cut_at = 0;        // its bytes from here on go to `broken` (0: the whole file)
  std::uint64_t cut_bytes = 0;     // kept: up to the last non-zero byte (the rest is zeros)
  std::string broken;              // <segment>.broken
  std::string renamed_to;          // a closed segment left with records takes the name of its range
  std::vector<std::string> later;  // the segments after it, each moved whole to <name>.broken
  std::vector<Fault> other_faults;            // faults that cutting the log does not remove
  std::vector<std::string> describe() const;  // one line per step, for the tool
};

// Reads the directory (as verify_directory() does) and plans the cut. Only reads.
std::error_code plan_repair(const std::string& dir, FileSystem& fs,
                            const std::optional<KindSet>& known_kinds, RepairPlan& out,
                            std::string& detail);

// Carries the plan out, durably, under the LOCK: the later segments are moved aside newest first,
// then the cut bytes are written to the .broken file (synced) before the segment is cut, so a
// crash at any point loses no byte and leaves a log that is a prefix of the old one.
std::error_code apply_repair(const std::string& dir, FileSystem& fs, const RepairPlan& plan,
                             std::string& detail);

}  // namespace rpool::wal
