#include "replay.h"

#include <fmt/format.h>

#include "api/api.h"
#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/log.h"

namespace rpool::tools {

ReplaySource open_replay_source(const std::string& dir, std::ostream& err) {
  wal::Options options;
  options.read_only = true;
  options.warn = [&err](const std::string& line) { err << "rpool-wal: warning: " << line << "\n"; };
  wal::OpenResult opened = wal::Log::open(dir, options);
  if (opened.error) {
    err << fmt::format("rpool-wal: cannot open {}: {}{}{}\n", dir, opened.error.message(),
                       opened.detail.empty() ? "" : ": ", opened.detail);
    return {};
  }
  ReplaySource source;
  if (const auto ec = opened.log->load_latest_snapshot(source.snapshot)) {
    err << fmt::format("rpool-wal: cannot read the snapshot in {}: {} {}\n", dir, ec.message(),
                       opened.log->error_detail());
    return {};
  }
  source.log = std::move(opened.log);
  return source;
}

int wal_replay(const std::string& dir, const ReplayOptions& replay_options, std::ostream& out,
               std::ostream& err) {
  const std::optional<std::uint64_t>& at = replay_options.at;
  ReplaySource source = open_replay_source(dir, err);
  if (!source.log) return 1;
  const wal::Log& log = *source.log;
  const std::optional<wal::SnapshotFile>& snapshot = source.snapshot;

  pool::StateMachine pool;
  LogIndex from = LogIndex(1);
  if (snapshot) {
    if (const auto ec = pool.restore(snapshot->data)) {
      err << fmt::format("rpool-wal: snapshot {} in {}: the pool state does not decode: {}\n",
                         snapshot->index, dir, ec.message());
      return 1;
    }
    from = snapshot->index.next();
  }
  const LogIndex last = std::max(log.last_index(), from.prev());
  const LogIndex target = at ? LogIndex(*at) : last;
  if (target < from.prev()) {
    err << fmt::format(
        "rpool-wal: index {} is below the snapshot at {}; the entries before it are compacted\n",
        target, from.prev());
    return 1;
  }
  if (target > last) {
    err << fmt::format("rpool-wal: index {} is beyond the last entry in the log ({})\n", target,
                       last);
    return 1;
  }
  if (from <= target && log.first_index() > from) {
    err << fmt::format(
        "rpool-wal: the log starts at {} but replay needs {} (no snapshot covers the gap)\n",
        log.first_index(), from);
    return 1;
  }
  // Read and apply in bounded batches, so that a long log needs little memory.
  constexpr std::uint64_t batch_bytes = 16u << 20;
  LogIndex next = from;
  std::vector<wal::Entry> entries;
  while (next <= target) {
    entries.clear();
    if (const auto ec = log.read(next, target.next(), entries, batch_bytes)) {
      err << fmt::format("rpool-wal: cannot read entry {} in {}: {} {}\n", next, dir, ec.message(),
                         log.error_detail());
      return 1;
    }
    for (const wal::Entry& e : entries) {
      if (e.kind != static_cast<std::uint8_t>(raft::EntryType::normal)) continue;
      pool::Command command;
      if (const auto ec = pool::decode(e.payload, command)) {
        // The nodes skip such an entry too (and log it), so skipping keeps the replay exact.
        err << fmt::format(
            "rpool-wal: warning: entry {} does not decode as a pool command ({}); skipped\n",
            e.index, ec.message());
        continue;
      }
      (void)pool.apply(e.index.value(), command);
    }
    next = entries.back().index.next();
  }
  const pool::Pool* chosen = pool.pool(replay_options.pool_id);
  if (chosen == nullptr) {
    const std::optional<std::uint64_t> tombstone = pool.tombstone(replay_options.pool_id);
    err << fmt::format("rpool-wal: there is no pool {} at index {}{}\n", replay_options.pool_id,
                       target,
                       tombstone ? fmt::format(" (it was deleted after request_id {})", *tombstone)
                                 : std::string());
    return 1;
  }
  // The JSON of GET /v1/pools/{pool_id} (for "default", the same as GET /v1/pool's), byte for byte.
  out << api::pool_json(*chosen, target) << "\n";
  return 0;
}

}  // namespace rpool::tools
