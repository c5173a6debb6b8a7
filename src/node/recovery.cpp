// Replica::recover: the data directory read back into a core, a pool and a cluster id.
#include "node/replica.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "api/api.h"
#include "base/assert.h"
#include "node/planted_bugs.h"
#include "wal/errc.h"

namespace rpool::node {

std::string cluster_id_text(std::uint64_t id) { return fmt::format("{:016x}\n", id); }

std::uint64_t cluster_id_of(const Config& config) {
  std::string text;
  std::vector<const Member*> members;
  for (const Member& m : config.members) members.push_back(&m);
  std::sort(members.begin(), members.end(),
            [](const Member* a, const Member* b) { return a->id < b->id; });
  for (const Member* m : members) text += fmt::format("{}={};", m->id, m->raft.to_string());
  const pool::Sha256 h = api::request_hash(text);
  return load_u64le(h.data());
}

// --- recovery -----------------------------------------------------------------------------------

bool Replica::recover(wal::Log& log, const wal::HardState& hard,
                      std::optional<wal::SnapshotFile> snapshot_file, std::string& error) {
  const std::string& dir = options_.data_dir;
  const auto recover_started = env_.now();
  raft::BootState boot;
  LogIndex from = log.first_index();
  LogIndex snapshot_index;
  if (snapshot_file) {
    raft::Membership membership;
    if (!raft::decode_membership(snapshot_file->metadata, membership)) {
      error = fmt::format("snapshot {} in {}: its membership does not decode", snapshot_file->index,
                          dir);
      return false;
    }
    auto data = std::make_shared<const Bytes>(std::move(snapshot_file->data));
    if (const auto ec = pool_.restore(*data)) {
      error = fmt::format("snapshot {} in {}: its pool state does not decode: {}",
                          snapshot_file->index, dir, ec.message());
      return false;
    }
    snapshot_index = snapshot_file->index;
    margin_snapshot_ = {snapshot_index, data};
    boot.snapshot =
        raft::Snapshot{{snapshot_file->index, snapshot_file->term, std::move(membership)}, data};
    // The log must continue right after the snapshot. A log that ends before it, or holds a
    // different entry at its index, is what a crash while installing a snapshot leaves: drop it.
    Term term_at;
    const bool continues = log.first_index() <= snapshot_index.next() &&
                           log.last_index() >= snapshot_index &&
                           (log.first_index() > snapshot_index ||
                            (!log.term(snapshot_index, term_at) && term_at == snapshot_file->term));
    if (!continues) {
      if (const auto ec = log.reset(snapshot_index.next())) {
        error = fmt::format("cannot reset the log in {} after snapshot {}: {}", dir, snapshot_index,
                            ec.message());
        return false;
      }
    }
    from = snapshot_index.next();
  } else if (log.first_index() != LogIndex(1)) {
    error = fmt::format("the log in {} starts at index {} but there is no snapshot before it", dir,
                        log.first_index());
    return false;
  }
  if (log.last_index() >= from) {
    std::vector<wal::Entry> entries;
    if (const auto ec = log.read(from, log.last_index().next(), entries)) {
      error =
          fmt::format("cannot read the log in {}: {} {}", dir, ec.message(), log.error_detail());
      return false;
    }
    boot.entries.reserve(entries.size());
    for (wal::Entry& e : entries) {
      if (e.kind < 1 || e.kind > 3) {
        error = fmt::format("log entry {} in {} has unknown kind {}", e.index, dir, e.kind);
        return false;
      }
      boot.entries.push_back(
          raft::Entry{e.term, e.index, static_cast<raft::EntryType>(e.kind), std::move(e.payload)});
    }
  }
  const LogIndex last = boot.entries.empty() ? snapshot_index : boot.entries.back().index;
  boot.hard_state = raft::HardState{hard.current_term, hard.voted_for,
                                    std::clamp(hard.commit_index, snapshot_index, last)};
  snapshot_index_ = snapshot_index;
  applied_ = snapshot_index;
  persisted_term_ = hard.current_term;
  persisted_vote_ = hard.voted_for;

  // The cluster id: kept in the data directory; a founding node computes it the first time, a
  // joining node learns it from the leader (adopt_cluster_id).
  Bytes id_file;
  if (const auto ec = log.load_file(cluster_id_file, id_file); !ec) {
    const std::string_view text = as_chars(id_file);
    std::from_chars(text.data(), text.data() + text.size(), cluster_id_, 16);
    if (cluster_id_ == 0 || cluster_id_text(cluster_id_) != text) {  // exactly what we write
      error = fmt::format("{}/{} does not hold a cluster id", dir, cluster_id_file);
      return false;
    }
  } else if (ec != wal::errc::not_found) {
    error = fmt::format("cannot read {}/{}: {}", dir, cluster_id_file, ec.message());
    return false;
  } else if (!options_.join) {
    cluster_id_ = cluster_id_of(options_.config);
    if (const auto save_ec =
            log.save_file(cluster_id_file, as_bytes(cluster_id_text(cluster_id_)))) {
      error = fmt::format("cannot write {}/{}: {} {}", dir, cluster_id_file, save_ec.message(),
                          log.error_detail());
      return false;
    }
  }

  raft::Config rc;
  rc.id = options_.id;
  if (!options_.join) {
    // The founding members, until the log or a snapshot holds a membership.
    for (const Member& m : options_.config.members) {
      rc.initial_membership.voters.push_back(m.id);
      rc.initial_membership.context[m.id] = member_context_json(m);
    }
    std::sort(rc.initial_membership.voters.begin(), rc.initial_membership.voters.end());
  }
  rc.heartbeat_ticks = 1;
  rc.election_ticks = std::max<int>(2, static_cast<int>(options_.config.raft.election_timeout_ms /
                                                        options_.config.raft.heartbeat_ms));
  // An unanswered snapshot chunk is resent only after two election timeouts, and at least 2 s: a
  // 1 MiB chunk on a link of 0.5 MB/s or more is never sent twice.
  const int ticks_in_2s = static_cast<int>((2000 + options_.config.raft.heartbeat_ms - 1) /
                                           options_.config.raft.heartbeat_ms);
  rc.snapshot_resend_ticks = std::max(2 * rc.election_ticks, ticks_in_2s);
  rc.random_seed = env_.random_u64();
  rc.unsafe_commit_alone = planted("ack_before_quorum");
  core_ = std::make_unique<raft::Core>(rc, std::move(boot));
  logger_.info(
      "recovered",
      {{"data_dir", dir},
       {"snapshot_index", snapshot_index.value()},
       {"last_index", last.value()},
       {"term", hard.current_term.value()},
       {"last_request_id", pool_.last_request_id()},
       {"ms", static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             env_.now() - recover_started)
                                             .count())}});
  return true;
}

void Replica::start(Storage& storage) {
  RPOOL_ASSERT(core_ != nullptr);  // recover() first
  RPOOL_ASSERT(storage_ == nullptr);
  storage_ = &storage;
  sync_peers();
  on_tick();
  schedule_ready();
}

void Replica::adopt_cluster_id(std::uint64_t id) {
  RPOOL_ASSERT(id != 0);
  cluster_id_ = id;
  const std::string text = cluster_id_text(id);
  storage_->save_file(std::string(cluster_id_file), Bytes(text.begin(), text.end()),
                      [this](std::error_code ec, const std::string& detail) {
                        if (ec)
                          logger_.error("cannot save the cluster id",
                                        {{"error", ec.message()}, {"detail", detail}});
                      });
}

}  // namespace rpool::node
