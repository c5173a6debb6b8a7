// Replica upkeep: snapshots and compaction, the tick (timeouts, request expiry), storage
// failures and their retry, and shutdown. Part of Replica (replica.h).
#include "node/replica.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "api/api.h"
#include "base/assert.h"
#include "node/planted_bugs.h"
#include "wal/errc.h"

namespace rpool::node {
namespace {

// After a full disk, the failed write is tried again this often.
constexpr auto storage_retry_interval = std::chrono::milliseconds(1000);

}  // namespace

// --- snapshots ----------------------------------------------------------------------------------

void Replica::maybe_snapshot() {
  const LogIndex applied = core_->log().applied_index();
  if (snapshot_in_progress_ || applied - snapshot_index_ < options_.config.raft.snapshot_entries)
    return;
  snapshot(false, {});
}

void Replica::snapshot(bool compact_all, SnapshotDone done) {
  RPOOL_ASSERT(!ready_outstanding_);
  const LogIndex index = core_->log().applied_index();
  if (applied_ != index) {
    // The core accepted a snapshot from the leader that the pool has not been restored from yet
    // (that comes with the next Ready): snapshot once it has. (Found by the node simulation: a
    // snapshot asked for in that window snapshotted the wrong state.)
    if (!done) return;  // the periodic one: next time
    env_.post([this, compact_all, done = std::move(done)]() mutable {
      auto shared = std::make_shared<SnapshotDone>(std::move(done));
      with_core([this, compact_all, shared] { snapshot(compact_all, std::move(*shared)); },
                [this, shared](const Outcome& outcome) {
                  if (*shared) (*shared)(outcome, snapshot_index_);
                });
    });
    return;
  }
  if (index <= snapshot_index_ || snapshot_in_progress_ || storage_failed_) {
    if (done) done(storage_failed_ ? storage_outcome() : Outcome{}, snapshot_index_);
    return;
  }
  snapshot_in_progress_ = true;
  const auto started = env_.now();
  // Encoded off the event loop, straight into the file: here the pool only shares its
  // idempotency keys with the snapshot (a few thousand pointers at a million keys, where encoding
  // them took 0.4 s), and nothing copies the image after.
  auto pending = std::make_shared<pool::StateMachine::PendingSnapshot>(pool_.begin_snapshot());
  const raft::SnapshotMeta meta = core_->snapshot_meta(index);
  auto file = std::make_shared<wal::SnapshotFile>(
      wal::SnapshotFile{meta.index, meta.term, raft::encode_membership(meta.membership), {}});
  env_.background([pending, file] { file->data = std::move(*pending).encode(); },
                  [this, compact_all, file, started, done = std::move(done)]() mutable {
                    auto shared = std::make_shared<SnapshotDone>(std::move(done));
                    with_core(
                        [this, compact_all, file, started, shared] {
                          snapshot_encoded(compact_all, file, started, std::move(*shared));
                        },
                        [this, shared](const Outcome& outcome) {
                          snapshot_in_progress_ = false;
                          if (*shared) (*shared)(outcome, snapshot_index_);
                        });
                  });
}

void Replica::snapshot_encoded(bool compact_all, std::shared_ptr<const wal::SnapshotFile> file,
                               Clock::time_point started, SnapshotDone done) {
  const LogIndex index = file->index;
  // The image, shared with the file that holds it.
  const std::shared_ptr<const Bytes> data(file, &file->data);
  if (closed_ || index <= snapshot_index_ || index <= core_->log().snapshot_index()) {
    // Closed meanwhile, or a newer snapshot came from the leader: this one is of no use.
    snapshot_in_progress_ = false;
    if (done) done(Outcome{}, snapshot_index_);
    return;
  }
  // The log is compacted up to the PREVIOUS snapshot, not this one: the entries in between stay,
  // so that a follower a little behind catches up from the log instead of by a whole snapshot
  // (which, with a million idempotency keys, is tens of megabytes). POST /v1/snapshot compacts
  // all the way. The core forgets entries in memory now; the WAL keeps them until the snapshot
  // file is durable, so a crash in between loses nothing.
  const LogIndex compact_to = compact_all ? index : margin_snapshot_.first;
  const auto compact_data = compact_all ? data : margin_snapshot_.second;
  if (compact_to > core_->log().snapshot_index()) {
    if (const auto ec = core_->compact(compact_to, compact_data)) {
      snapshot_in_progress_ = false;
      if (done) done({ec, ec.message()}, snapshot_index_);
      return;
    }
  }
  margin_snapshot_ = {index, data};
  const LogIndex wal_compact_to = std::max(compact_to, core_->log().snapshot_index());
  storage_->save_snapshot(
      file, wal_compact_to, [this, file, started, done = std::move(done)](SnapshotResult r) {
        snapshot_in_progress_ = false;
        if (r.ec) {
          logger_.error(
              "snapshot failed",
              {{"index", file->index.value()}, {"error", r.ec.message()}, {"detail", r.detail}});
          if (!retryable(r.ec)) {
            storage_failed(r.ec, r.detail);
          } else if (r.reopen_ec) {
            storage_failed(r.reopen_ec, r.reopen_detail);
          }
        } else {
          // A snapshot from the leader may have been installed while the file was written.
          snapshot_index_ = std::max(snapshot_index_, file->index);
          ++counters_.snapshots;
          counters_.snapshot_bytes_last = file->data.size();
          counters_.snapshot_seconds.observe(
              std::chrono::duration<double>(env_.now() - started).count());
          logger_.info("snapshot taken", {{"index", file->index.value()},
                                          {"bytes", std::uint64_t{file->data.size()}}});
        }
        if (done) {
          done(r.ec ? Outcome{make_error_code(errc::storage_full),
                              fmt::format("The snapshot failed: {}", r.ec.message())}
                    : Outcome{},
               snapshot_index_);
        }
      });
}

// --- time ---------------------------------------------------------------------------------------

void Replica::on_tick() {
  if (closed_) return;
  with_core([this] {
    core_->tick();
    drive_change();
    drive_transfer();
  });
  expire_requests();
  env_.after(std::chrono::milliseconds(options_.config.raft.heartbeat_ms), [this] { on_tick(); });
}

void Replica::expire_requests() {
  const auto now = env_.now();
  for (auto it = writes_.begin(); it != writes_.end();) {
    if (it->second.deadline <= now) {
      fail_write(it->second, errc::outcome_unknown,
                 "The write was not confirmed in time; retry it with its Idempotency-Key.");
      it = writes_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.deadline <= now) {
      const bool leaderless = core_->leader() == NodeId();
      Done done = std::move(it->second.done);
      it = reads_.erase(it);
      done(leaderless ? Outcome{make_error_code(errc::no_leader),
                                "No leader is known right now; retry shortly."}
                      : Outcome{make_error_code(errc::outcome_unknown),
                                "The leader did not confirm the read in time; retry it."});
    } else {
      ++it;
    }
  }
  if (stopping_) maybe_drained();
}

// --- storage failures ---------------------------------------------------------------------------

void Replica::storage_failed(std::error_code ec, const std::string& detail) {
  const bool recoverable = retryable(ec);
  if (!storage_failed_) {
    logger_.error(
        disk_full(ec) ? "the disk is full; this node stops writing and retries every second"
        : recoverable ? "out of file descriptors; this node stops writing and retries every second"
                      : "storage failed; this node stops",
        {{"error", ec.message()}, {"detail", detail}});
  }
  storage_failed_ = true;
  storage_error_ = ec;
  ++counters_.storage_failures;
  // Their entries may still commit (the followers may have them): the outcome is unknown.
  auto writes = std::move(writes_);
  writes_.clear();
  for (auto& [index, w] : writes) {
    fail_write(w, errc::outcome_unknown,
               "The log could not be written here; retry the write with its Idempotency-Key.");
  }
  if (!recoverable) {
    fatal_ = fmt::format("storage failed: {} {}", ec.message(), detail);
    abandon_requests();
    if (on_fatal_) on_fatal_();
    return;
  }
  // Requests waiting for the core get storage_full now rather than waiting for the disk.
  const Outcome outcome = storage_outcome();
  for (Input& input : deferred_) {
    if (input.abandon) input.abandon(outcome);
  }
  std::erase_if(deferred_, [](const Input& input) { return input.abandon != nullptr; });
  retry_storage();
}

void Replica::retry_storage() {
  env_.after(storage_retry_interval, [this] {
    if (stopping_ || closed_ || !storage_failed_ || fatal_) return;
    if (storage_retry_) {
      storage_retry_();  // on_persisted() ends the failure, or storage_failed() comes again
      return;
    }
    // No Ready failed (a snapshot or a reopen did): reopen, then carry on.
    storage_->reopen([this](StorageResult r) {
      if (r.ec) return storage_failed(r.ec, r.detail);
      storage_recovered();
    });
  });
}

void Replica::storage_recovered() {
  if (!storage_failed_) return;
  storage_failed_ = false;
  storage_retry_ = nullptr;
  logger_.info("the log is writable again; this node resumes");
  schedule_ready();
}

// --- shutdown -----------------------------------------------------------------------------------

void Replica::shutdown(std::function<void()> drained) {
  if (stopping_) return;
  stopping_ = true;
  drained_ = std::move(drained);
  logger_.info("shutting down");
  // A leader hands over first, so that its going away costs the cluster no election timeout.
  if (core_->role() == raft::Role::leader && core_->membership().voters.size() > 1)
    start_shutdown_transfer();
  maybe_drained();
}

void Replica::maybe_drained() {
  if (!stopping_ || drained_called_ || !writes_.empty() || !reads_.empty() || transfer_) return;
  drained_called_ = true;
  if (drained_) drained_();
}

void Replica::close(std::function<void()> done) {
  closed_ = true;
  storage_->close([this, done = std::move(done)] {
    logger_.info("stopped");
    done();
  });
}

}  // namespace rpool::node
