#include "draws.h"

#include "replay.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/log.h"

namespace rpool::tools {
namespace {

// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a space.
std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\" ") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

struct Unit {
  std::uint64_t request_id;
  const std::optional<std::string>* item_id;
  const wal::Entry* entry;
  const pool::Command* command;
};

void print(const Unit& u, DrawsOptions::Format format, std::ostream& out) {
  const std::string& key = u.command->idempotency_key;
  const std::string item = u.item_id->has_value() ? **u.item_id : "pool_empty";
  switch (format) {
    case DrawsOptions::Format::text:
      out << fmt::format("request_id={} item={} index={} term={} leader_ts_ms={} key={}\n",
                         u.request_id, item, u.entry->index, u.entry->term, u.command->timestamp_ms,
                         key.empty() ? "-" : nlohmann::json(key).dump());
      return;
    case DrawsOptions::Format::csv:
      out << fmt::format("{},{},{},{},{},{}\n", u.request_id, item, u.entry->index, u.entry->term,
                         u.command->timestamp_ms, csv_field(key));
      return;
    case DrawsOptions::Format::json: {
      // As POST /v1/draw answers a unit, plus where and when it was drawn.
      nlohmann::json line = {
          {"request_id", u.request_id},
          {"item_id", u.item_id->has_value() ? nlohmann::json(**u.item_id) : nlohmann::json()},
          {"index", u.entry->index.value()},
          {"term", u.entry->term.value()},
          {"leader_ts_ms", u.command->timestamp_ms},
          {"idempotency_key", key.empty() ? nlohmann::json() : nlohmann::json(key)},
      };
      if (!u.item_id->has_value()) line["error"] = "pool_empty";
      out << line.dump() << "\n";
      return;
    }
  }
}

}  // namespace

int wal_draws(const std::string& dir, const DrawsOptions& options, std::ostream& out,
              std::ostream& err) {
  ReplaySource source = open_replay_source(dir, err);
  if (!source.log) return 1;
  const wal::Log& log = *source.log;
  const std::optional<wal::SnapshotFile>& snapshot = source.snapshot;
  wal::HardState hard;
  if (const auto ec = log.load_hard_state(hard)) {
    err << fmt::format("rpool-wal: cannot read the hard state in {}: {}\n", dir, ec.message());
    return 1;
  }

  pool::StateMachine state;
  LogIndex from = LogIndex(1);
  if (snapshot) {
    if (const auto ec = state.restore(snapshot->data)) {
      err << fmt::format("rpool-wal: snapshot {} in {}: the pool state does not decode: {}\n",
                         snapshot->index, dir, ec.message());
      return 1;
    }
    from = snapshot->index.next();
  }
  if (from <= log.last_index() && log.first_index() > from) {
    err << fmt::format(
        "rpool-wal: the log starts at {} but replay needs {} (no snapshot covers the gap)\n",
        log.first_index(), from);
    return 1;
  }
  // The request_ids the snapshot already issued: their draws were compacted away.
  const pool::Pool* at_snapshot = state.pool(options.pool_id);
  const std::uint64_t compacted = at_snapshot ? at_snapshot->last_request_id() : 0;
  if (compacted > 0) {
    err << fmt::format(
        "rpool-wal: note: request_ids 1..{} of pool {} were drawn before the snapshot at index {}; "
        "their entries are compacted and not listed\n",
        compacted, options.pool_id, snapshot->index);
    if (options.from_request && *options.from_request <= compacted) {
      err << fmt::format("rpool-wal: request_id {} is in the snapshot, not in the log\n",
                         *options.from_request);
      return 1;
    }
  }
  if (log.last_index() > hard.commit_index) {
    err << fmt::format(
        "rpool-wal: note: entries {}..{} are past the commit index this node recorded ({}); "
        "a new leader may still replace them\n",
        hard.commit_index.next(), log.last_index(), hard.commit_index);
  }
  if (options.format == DrawsOptions::Format::csv)
    out << "request_id,item_id,index,term,leader_ts_ms,idempotency_key\n";

  // Read and apply in bounded batches, so that a long log needs little memory.
  constexpr std::uint64_t batch_bytes = 16u << 20;
  const std::uint64_t lo = options.from_request.value_or(0);
  const std::uint64_t hi = options.to_request.value_or(UINT64_MAX);
  LogIndex next = from;
  std::vector<wal::Entry> entries;
  while (next <= log.last_index()) {
    entries.clear();
    if (const auto ec = log.read(next, log.last_index().next(), entries, batch_bytes)) {
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
      const pool::Result result = state.apply(e.index.value(), command);
      if (result.replayed || command.pool_id != options.pool_id) continue;
      for (const pool::DrawOutcome& d : result.draws) {
        if (d.request_id < lo || d.request_id > hi) continue;
        print({d.request_id, &d.item_id, &e, &command}, options.format, out);
      }
    }
    next = entries.back().index.next();
  }
  return 0;
}

}  // namespace rpool::tools
