// The commands of rpool-wal, as functions that write to streams and return the exit code, so
// that main() stays a thin command line and new commands (replay) slot in beside these.
//
// They only read: the log is opened with Options::read_only (no lock, no repair), so they may run
// beside a live node. Exit codes: 0 ok, 1 the data directory is damaged or unreadable.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace rpool::tools {

int wal_stat(const std::string& dir, std::ostream& out, std::ostream& err);

struct DumpOptions {
  std::optional<std::uint64_t> from;  // first index shown (default: the log's first)
  std::optional<std::uint64_t> to;    // last index shown, inclusive (default: the log's last)
  bool json = false;                  // one JSON object per line instead of text
};
int wal_dump(const std::string& dir, const DumpOptions& options, std::ostream& out,
             std::ostream& err);

int wal_verify(const std::string& dir, std::ostream& out, std::ostream& err);
int wal_repair(const std::string& dir, bool yes, std::ostream& out, std::ostream& err);

// The one command that writes (it takes the LOCK, so never beside a live node): cuts the log at
// its first fault, keeping the cut bytes in <file>.broken. Without `yes` it prints what it would
// do and changes nothing. Exit 0 when the directory verifies afterwards (or, without `yes`,
// when there is something to cut or nothing wrong), 1 when faults remain that a cut cannot fix.

}  // namespace rpool::tools
