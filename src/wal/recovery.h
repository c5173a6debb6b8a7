// recover(): what a node calls at start to open its data directory: the log, the hard state and
// the snapshot to start from, checked against each other. The cross-checks are check_state(),
// which `rpool-wal verify` runs too, so that the tool and the node cannot disagree.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/types.h"
#include "wal/log.h"

namespace rpool::wal {

// One fault: the file (a path), the offset in it, and why.
struct Fault {
  std::string file;
  std::uint64_t offset = 0;
  std::string reason;
  std::string line() const;  // "<file>: offset <offset>: <reason>"
};

// What the cross-checks look at, as recovery (or verify) found it.
struct StateFacts {
  std::string dir;
  std::string oldest_segment;  // name of the oldest segment file; empty when there is none
  LogIndex first_index{1};     // of the durable log (after a torn tail is cut)
  LogIndex last_index{0};      // first_index - 1 when it holds no entry
  bool hard_state_present = false;
  HardState hard_state;                    // when present (and valid)
  std::optional<LogIndex> snapshot_index;  // of the snapshot recovery starts from
};

// The cross-checks of a data directory, each a corrupt directory:
//   - a missing oldest segment: the log starts after snapshot index + 1 (0 without a snapshot);
//   - a missing hard state beside a log holding entries, or beside a snapshot (the term and vote
//     would be forgotten: the node could vote twice in one term);
//   - a commit index beyond the durable log (and the snapshot): committed entries are gone.
// (A term going down inside the log or across segments, and an unknown entry kind, are checked
// per segment: check_records() in format.h, by Log::open and verify alike.) Pure.
std::vector<Fault> check_state(const StateFacts& facts);

// A data directory, recovered and checked.
struct Recovered {
  std::unique_ptr<Log> log;
  HardState hard_state;                  // the zero state only for a new, empty directory
  std::optional<SnapshotFile> snapshot;  // the snapshot to start from; nullopt: none
  std::vector<std::string> warnings;     // also given to Options::warn as they happen
};

struct RecoverResult {
  Recovered state;  // meaningful only when !error
  std::error_code error;
  std::string detail;  // one line naming the file, offset and reason, when error
};

// Opens the log in `dir` (Log::open, torn-tail rule included; set options.known_kinds to the
// application's entry kinds), loads the hard state and the snapshot, and runs check_state().
//
// Snapshot fallback: when the newest snapshot file does not check out, the previous one is used
// instead if the log holds every entry after it up to the newest one's index (the node keeps
// the log from the previous snapshot on, so this is the normal case), with a warning naming the
// damaged file; otherwise recovery fails naming it.
//
// A new directory (no entries, no snapshot, no hard state) gets a zero hard state written at
// once, so that from then on a missing hard state always means a lost file.
//
// Errors: errc::corrupt (detail "<file>: offset <n>: <reason>"; nothing on disk was changed),
// errc::locked, errc::descriptors_exhausted (retryable), and I/O errors (detail names the file).
RecoverResult recover(const std::string& dir, Options options);

}  // namespace rpool::wal
