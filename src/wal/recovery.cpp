#include "wal/recovery.h"

#include <algorithm>

#include <fmt/format.h>

#include "wal/errc.h"

namespace rpool::wal {

std::string Fault::line() const { return fmt::format("{}: offset {}: {}", file, offset, reason); }

std::vector<Fault> check_state(const StateFacts& f) {
  std::vector<Fault> faults;
  const LogIndex snapshot_index = f.snapshot_index.value_or(LogIndex(0));
  const bool has_entries = f.last_index >= f.first_index;
  if (!f.oldest_segment.empty() && f.first_index > snapshot_index + 1) {
    faults.push_back(
        {join_path(f.dir, f.oldest_segment), 16,
         fmt::format("the log starts at index {}, but {} ends at index {}: entries {}..{} are "
                     "missing (a missing oldest segment)",
                     f.first_index, f.snapshot_index ? "the snapshot" : "with no snapshot the log",
                     snapshot_index, snapshot_index + 1, f.first_index - 1)});
  }
  const std::string hard_state_path = join_path(f.dir, std::string(hard_state_file_name));
  if (!f.hard_state_present && (has_entries || f.snapshot_index)) {
    faults.push_back(
        {hard_state_path, 0,
         has_entries
             ? fmt::format("missing, beside a log holding entries {}..{}: the term and vote would "
                           "be forgotten",
                           f.first_index, f.last_index)
             : fmt::format(
                   "missing, beside a snapshot at index {}: the term and vote would be forgotten",
                   snapshot_index)});
  }
  const LogIndex durable = std::max(has_entries ? f.last_index : LogIndex(0), snapshot_index);
  if (f.hard_state_present && f.hard_state.commit_index > durable) {
    // Offset 32: the commit index field (log.h, hardstate layout).
    faults.push_back(
        {hard_state_path, 32,
         fmt::format("commit index {} is beyond the durable log, which ends at index {}: committed "
                     "entries {}..{} are missing",
                     f.hard_state.commit_index, durable, durable + 1, f.hard_state.commit_index)});
  }
  return faults;
}

namespace {

struct SnapshotName {
  LogIndex index;
  std::string name;
};

// Snapshot files by index, newest first.
std::error_code list_snapshots(FileSystem& fs, const std::string& dir,
                               std::vector<SnapshotName>& out, std::string& detail) {
  std::vector<std::string> names;
  if (auto ec = fs.list(dir, names)) {
    detail = fmt::format("{}: cannot list the data directory: {}", dir, ec.message());
    return ec;
  }
  for (const auto& name : names) {
    const ParsedName p = parse_name(name);
    if (p.kind == FileKind::snapshot) out.push_back({p.first, name});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.index > b.index; });
  return {};
}

// Reads and checks one snapshot file; `why` is set when it does not check out (a read error too).
std::optional<SnapshotFile> read_snapshot(FileSystem& fs, const std::string& path,
                                          const ParsedName& p, std::string& why,
                                          std::error_code& read_error) {
  Bytes bytes;
  if (auto ec = read_whole(fs, path, bytes)) {
    read_error = ec;
    why = fmt::format("{}: read failed: {}", path, ec.message());
    return std::nullopt;
  }
  std::string reason;
  auto s = decode_snapshot(bytes, reason);
  if (!s) {
    why = fmt::format("{}: offset 0: {}", path, reason);
    return std::nullopt;
  }
  if (s->index != p.first || s->term != p.term) {
    why = fmt::format("{}: offset 16: holds index {} term {}, the name disagrees", path, s->index,
                      s->term);
    return std::nullopt;
  }
  return s;
}

}  // namespace

RecoverResult recover(const std::string& dir, Options options) {
  RecoverResult result;
  Recovered& state = result.state;
  auto user_warn = options.warn;
  options.warn = [&state, user_warn](const std::string& w) {
    state.warnings.push_back(w);
    if (user_warn) {
      user_warn(w);
    } else {
      std::fprintf(stderr, "rpool-wal: warning: %s\n", w.c_str());
    }
  };
  auto warn = options.warn;
  FileSystem& fs = options.fs != nullptr ? *options.fs : posix_file_system();
  const bool read_only = options.read_only;
  OpenResult opened = Log::open(dir, std::move(options));
  if (opened.error) {
    result.error = opened.error;
    result.detail = opened.detail;
    return result;
  }
  Log& log = *opened.log;
  auto fail = [&](std::error_code ec, std::string detail) {
    result.error = ec;
    result.detail = std::move(detail);
    state = Recovered{};
    return std::move(result);
  };

  // The hard state: absent is told apart from zero.
  StateFacts facts;
  facts.dir = dir;
  const std::string hard_state_path = join_path(dir, std::string(hard_state_file_name));
  {
    Bytes bytes;
    if (auto ec = read_whole(fs, hard_state_path, bytes)) {
      if (ec != errc::not_found)
        return fail(ec, fmt::format("{}: read failed: {}", hard_state_path, ec.message()));
    } else {
      std::string why;
      const auto hs = decode_hard_state(bytes, why);
      if (!hs) return fail(errc::corrupt, fmt::format("{}: offset 0: {}", hard_state_path, why));
      facts.hard_state_present = true;
    }
    // The latest of the file and the hard-state records in the segments (log.h, HARD STATE).
    if (auto ec = log.load_hard_state(state.hard_state)) return fail(ec, log.error_detail());
    facts.hard_state = state.hard_state;
  }

  // The snapshot, newest first, with the one fallback described in the header.
  std::vector<SnapshotName> snapshots;
  {
    std::string detail;
    if (auto ec = list_snapshots(fs, dir, snapshots, detail)) return fail(ec, detail);
  }
  if (!snapshots.empty()) {
    const std::string newest_path = join_path(dir, snapshots[0].name);
    std::string why;
    std::error_code read_error;
    state.snapshot = read_snapshot(fs, newest_path, parse_name(snapshots[0].name), why, read_error);
    if (!state.snapshot) {
      if (read_error && read_error != errc::corrupt) return fail(read_error, why);
      // The previous snapshot plus the log cover the state when the log holds every entry after
      // the previous snapshot up to the newest one's index.
      std::optional<SnapshotFile> previous;
      std::string previous_why = "there is no previous snapshot";
      if (snapshots.size() > 1) {
        std::error_code ignored;
        previous = read_snapshot(fs, join_path(dir, snapshots[1].name),
                                 parse_name(snapshots[1].name), previous_why, ignored);
      }
      const bool covered = previous && log.first_index() <= previous->index + 1 &&
                           log.last_index() >= snapshots[0].index;
      if (!covered) {
        if (previous) {
          previous_why = fmt::format(
              "the log (indexes {}..{}) does not hold entries {}..{} after the previous "
              "snapshot",
              log.first_index(), log.last_index(), previous->index + 1, snapshots[0].index);
        }
        return fail(errc::corrupt, fmt::format("{} (and no fallback: {})", why, previous_why));
      }
      warn(fmt::format(
          "SNAPSHOT DAMAGED: {}; recovering from the previous snapshot {} and the log's entries "
          "{}..{} instead. Replace the damaged file (`rpool-wal verify` names it).",
          why, snapshots[1].name, previous->index + 1, log.last_index()));
      state.snapshot = std::move(previous);
    }
    facts.snapshot_index = state.snapshot->index;
  }

  const auto segments = log.segments();
  if (!segments.empty()) facts.oldest_segment = segments.front().name;
  facts.first_index = log.first_index();
  facts.last_index = log.last_index();
  const auto faults = check_state(facts);
  if (!faults.empty()) return fail(errc::corrupt, faults.front().line());

  if (!read_only && !facts.hard_state_present && !facts.snapshot_index &&
      facts.last_index < facts.first_index) {
    if (auto ec = log.save_hard_state(HardState{})) return fail(ec, log.error_detail());
  }
  state.log = std::move(opened.log);
  return result;
}

}  // namespace rpool::wal
