// Replica (replica.h): its inputs, the Ready cycle, apply and the invariants. Recovery is in
// recovery.cpp; snapshots, ticks, storage failures and shutdown in maintenance.cpp;
// membership and transfer in membership.cpp.
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

// Commit index advances are saved with the hard state at most this often: the commit index is
// advisory (a restarted node relearns it from the leader), and every save is a 41-byte record in
// the log (wal::Log::append_hard_state), written with the Ready's entries in one fdatasync.
constexpr auto commit_save_interval = std::chrono::seconds(1);

}  // namespace

const char* role_name(raft::Role role) {
  switch (role) {
    case raft::Role::leader: return "leader";
    case raft::Role::candidate: return "candidate";
    case raft::Role::pre_candidate: return "pre_candidate";
    case raft::Role::follower: return "follower";
  }
  return "follower";
}

Replica::Replica(Env& env, MessageTransport& transport, const Logger& logger,
                 ReplicaOptions options)
    : env_(env),
      transport_(transport),
      logger_(logger),
      options_(std::move(options)),
      pool_(options_.pool) {
  if (options_.data_dir.empty()) options_.data_dir = options_.config.data_dir_for(options_.id);
  next_read_context_ = env_.random_u64() >> 1;  // room for 2^63 reads before it could wrap
}

// --- inputs -------------------------------------------------------------------------------------

void Replica::step(raft::Message&& message) {
  auto m = std::make_shared<raft::Message>(std::move(message));
  with_core([this, m] {
    // Nothing from the network reaches the core unchecked: a message the core would assert on is
    // refused here, counted and logged (checked at step time, after any deferral, against the
    // core's state then).
    if (const auto why = raft::validate(*core_, *m)) {
      ++counters_.peer_rejected[static_cast<std::size_t>(*why)];
      // A heartbeat whose commit index is beyond our log is also what a node that was wiped and
      // added back gets from a leader that still counts its old match index: counted and logged,
      // but it still reaches the core without its commit index (the core commits nothing from it,
      // and its answer tells the leader to send entries). Dropping it would leave such a node
      // out of the cluster for good (found by the node simulation, seed 16).
      const bool stale_heartbeat =
          *why == raft::RejectReason::commit_beyond_log && m->type == raft::MessageType::heartbeat;
      const NodeId key = peers_.contains(m->from) ? m->from : NodeId();
      const auto [it, first] = rejected_logged_.try_emplace(key, env_.now());
      if (first || env_.now() - it->second >= std::chrono::minutes(1)) {
        it->second = env_.now();
        logger_.warn("refused a peer message", {{"from", m->from.value()},
                                                {"type", std::string(raft::to_string(m->type))},
                                                {"reason", std::string(raft::to_string(*why))}});
      }
      if (!stale_heartbeat) return;
      m->commit = core_->log().commit_index();
      RPOOL_ASSERT(!raft::validate(*core_, *m));
    }
    core_->step(*m);
  });
}

void Replica::write(pool::Command command, WriteDone done) {
  if (storage_failed_) return done(storage_outcome(), nullptr);
  if (stopping_ && core_->role() == raft::Role::leader) {
    // Leadership is being handed over; a follower that is shutting down still forwards.
    return done({make_error_code(errc::shutting_down),
                 "This node is shutting down; retry on another node."},
                nullptr);
  }
  if (core_->role() != raft::Role::leader)
    return done({make_error_code(errc::not_leader), {}}, nullptr);
  if (planted("skip_idempotency")) command.idempotency_key.clear();
  // The leader stamps every command: its wall clock (idempotency-key expiry) and, for a draw, a
  // seed nobody can predict before the entry commits (docs/design.md, "A draw, step by step").
  command.timestamp_ms = env_.wall_clock_ms();
  if (auto* draw = std::get_if<pool::Draw>(&command.op)) draw->seed = env_.random_u64();
  // Everything the core input needs, in one allocation; the input captures only this pointer, so
  // std::function keeps it without allocating.
  struct Proposal {
    Replica* replica;
    Bytes bytes;
    WriteDone done;
  };
  auto p = std::make_shared<Proposal>(Proposal{this, pool::encode(command), std::move(done)});
  with_core(
      [p] {
        Replica& r = *p->replica;
        if (!p->done) return;  // abandoned
        WriteDone answer = std::move(p->done);
        if (r.core_->role() != raft::Role::leader)
          return answer({make_error_code(errc::not_leader), {}}, nullptr);
        r.ensure_bootstrap();
        LogIndex index;
        ++r.counters_.proposals;
        const std::error_code ec = r.core_->propose(std::move(p->bytes), &index);
        if (ec) {
          ++r.counters_.proposals_failed;
          if (ec == raft::errc::too_large)
            return answer({make_error_code(errc::too_large), {}}, nullptr);
          if (ec == raft::errc::overloaded) {
            return answer({make_error_code(errc::overloaded),
                           "The leader holds too many uncommitted writes; retry shortly."},
                          nullptr);
          }
          return answer({make_error_code(errc::no_leader), "Leadership is moving; retry shortly."},
                        nullptr);
        }
        if (planted("answer_before_apply")) {
          pool::StateMachine guess = r.pool_;
          pool::Command proposed;
          if (!pool::decode(r.core_->log().at(index).data, proposed)) {
            const pool::Result result = guess.apply(index.value(), proposed);
            return answer({}, &result);
          }
        }
        // A write still waiting at this index was proposed in an earlier term of ours and its
        // entry has since been overwritten (this node lost leadership and won it back before the
        // index applied): its outcome is unknown. (Found by the node simulation, seed 234: the
        // leader aborted on a duplicate index.)
        if (const auto old = r.writes_.find(index); old != r.writes_.end()) {
          RPOOL_ASSERT_OP(old->second.term, <, r.core_->current_term());
          r.fail_write(old->second, errc::outcome_unknown,
                       "The write was lost in a leader change; retry it with its Idempotency-Key.");
          r.writes_.erase(old);
        }
        const auto [it, inserted] = r.writes_.emplace(
            index, PendingWrite{r.core_->current_term(), r.env_.now() + r.options_.write_timeout,
                                std::move(answer)});
        RPOOL_ASSERT(inserted);
      },
      [p](const Outcome& outcome) {
        if (!p->done) return;
        WriteDone answer = std::move(p->done);
        answer(outcome, nullptr);
      });
}

void Replica::read(Done done) {
  if (stopping_ || storage_failed_ || core_->leader() == NodeId()) {
    return done({make_error_code(errc::no_leader), "No leader is known right now; retry shortly."});
  }
  const std::uint64_t context =
      planted("reuse_read_id") ? next_read_context_ : next_read_context_++;
  reads_.insert_or_assign(
      context, PendingRead{env_.now() + options_.read_timeout, LogIndex(), false, std::move(done)});
  with_core([this, context] {
    if (core_->read_index(context)) {
      const auto it = reads_.find(context);
      if (it == reads_.end()) return;
      Done d = std::move(it->second.done);
      reads_.erase(it);
      d({make_error_code(errc::no_leader), "No leader is known right now; retry shortly."});
    }
  });
}

void Replica::take_snapshot(SnapshotDone done) {
  auto shared = std::make_shared<SnapshotDone>(std::move(done));
  with_core([this, shared] { snapshot(true, std::move(*shared)); },
            [this, shared](const Outcome& outcome) {
              if (*shared) (*shared)(outcome, snapshot_index_);
            });
}

// --- the Ready cycle ----------------------------------------------------------------------------

void Replica::with_core(std::function<void()> run, std::function<void(const Outcome&)> abandon) {
  if (storage_failed_) {  // the core is frozen with an unpersisted Ready
    if (abandon) abandon(storage_outcome());
    return;
  }
  if (ready_outstanding_) {
    deferred_.push_back(Input{std::move(run), std::move(abandon)});
    return;
  }
  run();
  after_event();
}

void Replica::after_event() {
  if (check_invariants_) check_invariants();
  schedule_ready();
}

Outcome Replica::storage_outcome() const {
  if (fatal_)
    return {make_error_code(errc::stopped),
            "This node stopped: its storage failed. Retry on another node."};
  if (storage_error_ == wal::errc::descriptors_exhausted) {
    return {make_error_code(errc::overloaded),
            "This node has no file descriptor to spare for its log; nothing was applied. Retry "
            "shortly."};
  }
  return {make_error_code(errc::storage_full),
          "This node cannot write its log; nothing was applied."};
}

void Replica::abandon_requests() {
  const Outcome outcome = storage_outcome();
  for (Input& input : deferred_) {
    if (input.abandon) input.abandon(outcome);
  }
  deferred_.clear();
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [context, read] : reads) read.done(outcome);
  if (change_)
    end_change({make_error_code(errc::outcome_unknown),
                "This node stopped: its storage failed. Repeat the request on another node."});
  if (transfer_) end_transfer(false, "This node stopped: its storage failed.");
}

void Replica::schedule_ready() {
  if (ready_scheduled_ || closed_) return;
  ready_scheduled_ = true;
  env_.post([this] { process_ready(); });
}

void Replica::process_ready() {
  ready_scheduled_ = false;
  if (ready_outstanding_ || storage_failed_ || closed_ || !core_->has_ready()) return;
  raft::Ready ready = core_->ready();
  ready_outstanding_ = true;
  for (raft::Message& m : ready.messages) transport_.send(std::move(m));
  ready.messages.clear();
  if (!ready.snapshot && ready.entries.empty() && !ready.hard_state) {
    on_persisted(std::move(ready));
    return;
  }
  const auto in_flight = persist(std::move(ready));
  // The committed entries of a Ready are durable already (the core hands out only entries of
  // earlier Readies, see raft::Core::ready), so they are applied and answered now, while this
  // Ready's write runs, instead of after it: the answers' work overlaps the write. Not with a
  // snapshot: the pool is restored from it first (on_persisted). Everything else of on_persisted
  // (read states, advance, deferred inputs) still waits for the write.
  if (in_flight && !in_flight->snapshot) {
    for (const raft::Entry& e : in_flight->committed_entries) apply(e);
    if (planted("apply_beyond_stable")) {
      for (const raft::Entry& e : in_flight->entries) {
        if (e.index > applied_) apply(e);
      }
    }
  }
  if (check_invariants_) check_invariants();
}

std::shared_ptr<const raft::Ready> Replica::persist(raft::Ready ready) {
  auto job = std::make_shared<PersistJob>();
  for (const raft::Entry& e : ready.entries) counters_.wal_bytes += e.data.size() + 25;
  job->hard_state = false;
  if (ready.hard_state) {
    // Term and vote must be durable before the messages that depend on them; a commit index
    // alone may wait (see commit_save_interval).
    const raft::HardState& h = *ready.hard_state;
    const bool vote_changed = h.current_term != persisted_term_ || h.voted_for != persisted_vote_;
    if (vote_changed || env_.now() - last_commit_save_ >= commit_save_interval) {
      job->hard_state = true;
      persisted_term_ = h.current_term;
      persisted_vote_ = h.voted_for;
      last_commit_save_ = env_.now();
    }
  }
  job->fsync = options_.config.wal.fsync;
  if (!ready.snapshot && ready.entries.empty() && !job->hard_state) {
    // Only a commit index that may wait (see commit_save_interval): nothing to write.
    on_persisted(std::move(ready));
    return nullptr;
  }
  auto in_flight = std::make_shared<raft::Ready>(std::move(ready));
  job->ready = in_flight;
  if (planted("apply_before_durable")) {
    storage_->write(std::move(job), false, [](StorageResult) {});
    on_persisted(std::move(*in_flight));
    return nullptr;
  }
  write_ready(std::move(job), in_flight, false);
  return in_flight;
}

void Replica::write_ready(std::shared_ptr<const PersistJob> job, std::shared_ptr<raft::Ready> ready,
                          bool reopen) {
  storage_->write(job, reopen, [this, job, ready](StorageResult result) {
    ++counters_.wal_syncs;
    if (result.fsync_seconds > 0) counters_.wal_fsync_seconds.observe(result.fsync_seconds);
    if (result.ec) {
      // Kept for retry_storage(): after a full disk the same Ready is written again, on a
      // reopened log (the failure poisoned the old one).
      storage_retry_ = [this, job, ready] { write_ready(job, ready, true); };
      storage_failed(result.ec, result.detail);
      return;
    }
    on_persisted(std::move(*ready));
  });
}

void Replica::on_persisted(raft::Ready ready) {
  storage_recovered();
  for (raft::Message& m : ready.messages_after_persist) transport_.send(std::move(m));
  ready.messages_after_persist.clear();
  if (ready.snapshot) {
    const raft::Snapshot& s = *ready.snapshot;
    if (const auto restore_ec = pool_.restore(*s.data)) {
      fatal_ = fmt::format("the snapshot at index {} from the leader does not decode: {}",
                           s.meta.index, restore_ec.message());
      logger_.error(*fatal_);
      storage_failed_ = true;  // the core is frozen with this Ready: nothing more may go in
      abandon_requests();
      if (on_fatal_) on_fatal_();
      return;
    }
    snapshot_index_ = s.meta.index;
    applied_ = s.meta.index;
    draw_stats_.resync(pool_);
    margin_snapshot_ = {s.meta.index, s.data};
    // Writes waiting for entries the snapshot covers can no longer be matched to their result.
    for (auto it = writes_.begin(); it != writes_.end() && it->first <= s.meta.index;) {
      fail_write(it->second, errc::outcome_unknown,
                 "The write was overtaken by a snapshot; retry it with its Idempotency-Key.");
      it = writes_.erase(it);
    }
    ++counters_.snapshots_installed;
    logger_.info("installed snapshot",
                 {{"index", s.meta.index.value()}, {"term", s.meta.term.value()}});
  }
  for (const raft::Entry& e : ready.committed_entries) {
    if (e.index > applied_) apply(e);  // else applied early, by process_ready
  }
  for (const raft::ReadState& rs : ready.read_states) {
    const auto it = reads_.find(rs.context);
    if (it == reads_.end()) continue;  // timed out meanwhile, or not ours
    it->second.index = rs.index;
    it->second.indexed = true;
  }
  core_->advance(ready);
  ready_outstanding_ = false;
  observe_role();
  sync_peers();
  drive_change();
  drive_transfer();
  serve_reads();
  auto inputs = std::move(deferred_);
  deferred_.clear();
  for (Input& input : inputs) input.run();
  maybe_snapshot();
  after_event();
  if (stopping_) maybe_drained();
}

void Replica::fail_write(PendingWrite& write, errc e, std::string message) {
  ++counters_.proposals_failed;
  write.done({make_error_code(e), std::move(message)}, nullptr);
}

void Replica::apply(const raft::Entry& entry) {
  RPOOL_ASSERT_OP(entry.index, >, applied_);
  if (!planted("apply_beyond_stable"))
    RPOOL_ASSERT_OP(entry.index, <=, core_->log().commit_index());
  applied_ = entry.index;
  const auto pending = writes_.find(entry.index);
  if (change_ && change_->entry == entry.index) {
    (entry.type == raft::EntryType::config && entry.term == change_->entry_term ? change_->committed
                                                                                : change_->lost) =
        true;
  }
  if (entry.type != raft::EntryType::normal) {
    if (apply_observer_) apply_observer_(entry, nullptr);
    if (pending != writes_.end()) {
      fail_write(pending->second, errc::outcome_unknown,
                 "The write was lost in a leader change; retry it with its Idempotency-Key.");
      writes_.erase(pending);
    }
    return;
  }
  pool::Command command;
  if (const auto ec = pool::decode(entry.data, command)) {
    // Every replica skips it alike, so they stay identical; it can only be a bug of ours.
    logger_.error("committed entry does not decode as a pool command; skipped",
                  {{"index", entry.index.value()}, {"error", ec.message()}});
    if (apply_observer_) apply_observer_(entry, nullptr);
    if (pending != writes_.end()) {
      fail_write(pending->second, errc::bad_request, "The write could not be applied.");
      writes_.erase(pending);
    }
    return;
  }
  const pool::Result result = pool_.apply(entry.index.value(), command);
  if (apply_observer_) apply_observer_(entry, &result);
  draw_stats_.on_apply(command, result, pool_);
  if (!result.replayed) count_draws(result);
  if (result.bootstrapped) {
    logger_.info("catalog seeded", {{"items", std::uint64_t{pool_.items().size()}},
                                    {"pools", std::uint64_t{pool_.pool_count()}}});
  }
  if (pending == writes_.end()) return;
  if (pending->second.term == entry.term) {
    WriteDone done = std::move(pending->second.done);
    writes_.erase(pending);
    done({}, &result);
  } else {
    fail_write(pending->second, errc::outcome_unknown,
               "The write was lost in a leader change; retry it with its Idempotency-Key.");
    writes_.erase(pending);
  }
}

void Replica::count_draws(const pool::Result& result) {
  counters_.draws += result.draws.size();
  for (const auto& d : result.draws) counters_.draws_pool_empty += d.item_id ? 0 : 1;
}

void Replica::observe_role() {
  const raft::Role role = core_->role();
  const NodeId leader = core_->leader();
  if (leader != last_leader_) {
    ++counters_.leader_changes;
    if (leader_changes_.size() == leader_changes_kept_max) leader_changes_.pop_front();
    leader_changes_.push_back({env_.wall_clock_ms(), leader, core_->current_term()});
    logger_.info("leader changed", {{"leader", leader.value()},
                                    {"term", core_->current_term().value()},
                                    {"role", std::string(role_name(role))}});
  }
  if (role == raft::Role::leader && last_role_ != raft::Role::leader) ensure_bootstrap();
  last_role_ = role;
  last_leader_ = leader;
}

void Replica::ensure_bootstrap() {
  // The catalog seeds the pool once, when the cluster first forms. Every new leader of a pool
  // not yet seeded proposes it before any write of its term; a duplicate is a no-op when applied.
  if (pool_.bootstrapped() || bootstrap_term_ == core_->current_term()) return;
  if (core_->role() != raft::Role::leader) return;
  const pool::Command command = bootstrap_command(options_.config, env_.wall_clock_ms());
  const auto ec = core_->propose(pool::encode(command));
  // A proposal refused for a while (a leadership transfer) is tried again before the next write;
  // one that can never succeed (too large: the config check prevents it) is not retried per write.
  if (!ec || ec == raft::errc::too_large) bootstrap_term_ = core_->current_term();
  if (ec == raft::errc::too_large) {
    logger_.error("the catalog and pools do not fit in one log entry; nothing is seeded",
                  {{"items", std::uint64_t{options_.config.catalog.size()}},
                   {"pools", std::uint64_t{options_.config.pools.size()}}});
  }
}

void Replica::serve_reads() {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.indexed && it->second.index <= applied_) {
      Done done = std::move(it->second.done);
      it = reads_.erase(it);
      done({});
    } else {
      ++it;
    }
  }
}

// --- invariants ---------------------------------------------------------------------------------

void Replica::check_invariants() const {
  core_->check_invariants();
  const raft::Log& log = core_->log();
  // Applied entries are committed, and durable: the core hands out committed entries only once
  // they are stable, so applied never passes what this node has persisted.
  RPOOL_ASSERT_OP(applied_, <=, log.commit_index());
  RPOOL_ASSERT_OP(snapshot_index_, <=, applied_);
  RPOOL_ASSERT_OP(leader_changes_.size(), <=, leader_changes_kept_max);
  draw_stats_.check_invariants();
  // Every pending write waits for an entry not yet applied, proposed in a term this node saw.
  for (const auto& [index, w] : writes_) {
    RPOOL_ASSERT_OP(index, >, applied_);
    RPOOL_ASSERT_OP(w.term, <=, core_->current_term());
    RPOOL_ASSERT(w.done != nullptr);
  }
  for (const auto& [context, r] : reads_) {
    RPOOL_ASSERT(r.done != nullptr);
  }
  if (!ready_outstanding_) RPOOL_ASSERT(deferred_.empty());
  if (fatal_) RPOOL_ASSERT(storage_failed_);
  if (closed_) RPOOL_ASSERT(stopping_ || fatal_);
}

}  // namespace rpool::node
