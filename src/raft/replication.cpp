// Log replication, both sides: a follower taking appends, heartbeats and snapshot chunks; the
// leader answering their replies, keeping each follower's Progress, and advancing the commit
// index. Part of Core (core.h); elections and step() are in core.cpp.
#include "raft/core.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

// --- follower side of replication --------------------------------------------------------------

void Core::handle_append(const Message& m) {
  RPOOL_ASSERT(role_ == Role::follower);
  RPOOL_ASSERT_OP(leader_, ==, m.from);
  Message r;
  r.type = MessageType::append_resp;
  r.to = m.from;
  r.context = m.context;  // the leader's round: see Progress::first_round
  if (m.index < log_.commit_index()) {
    // Everything up to our commit index matches the leader's log already (Leader Completeness);
    // tell it where we are.
    r.index = log_.commit_index();
    send(std::move(r));
    return;
  }
  if (log_.match_term(m.index, m.log_term)) {
    // Raft §5.3: the logs match at prev_log_index; append, truncating any conflicting suffix.
    const LogIndex before_last = log_.last_index();
    const EntryId config_before = config_entry_;
    const LogIndex last_new = log_.append_after(m.index, m.entries);
    if (config_before.index != LogIndex(0) &&
        !log_.match_term(config_before.index, config_before.term)) {
      rescan_membership();  // the config entry we used was truncated
    } else if (!m.entries.empty()) {
      scan_membership_forward(std::min(before_last.next(), m.index.next()));
    }
    // Raft Figure 2: commitIndex = min(leaderCommit, index of last new entry).
    log_.commit_to(std::min(m.commit, last_new));
    r.index = last_new;
  } else {
    // Consistency check failed. Hint the leader toward the last entry that might match: the
    // largest index <= prev_log_index whose term is <= prev_log_term (fast backtracking).
    r.reject = true;
    r.index = m.index;
    r.reject_hint = log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
    r.log_term = *log_.term(r.reject_hint);
  }
  send(std::move(r));
}

void Core::handle_heartbeat(const Message& m) {
  RPOOL_ASSERT(role_ == Role::follower);
  RPOOL_ASSERT_OP(leader_, ==, m.from);
  // The leader sends min(match_index, commit_index) and its term there. Our log holds the same
  // entry unless this node lost its log since (it was wiped and rejoined at the same address
  // while this heartbeat was in flight) and may hold other entries there now: commit only when
  // the entry matches, so by Log Matching everything up to it is the leader's. (Found by the
  // node simulation, seeds 5078 and 6168: a commit beyond the log, then a divergent commit.)
  if (m.commit <= log_.last_index() && m.log_term != Term(0) &&
      log_.match_term(m.commit, m.log_term)) {
    log_.commit_to(m.commit);
  }
  Message r;
  r.type = MessageType::heartbeat_resp;
  r.to = m.from;
  r.context = m.context;
  r.index = log_.commit_index();  // lets a leader see an installed snapshot whose answer was lost
  send(std::move(r));
}

void Core::handle_snapshot(const Message& m) {
  RPOOL_ASSERT(role_ == Role::follower);
  RPOOL_ASSERT_OP(leader_, ==, m.from);
  Message r;
  r.type = MessageType::snapshot_resp;
  r.to = m.from;
  r.context = m.context;
  if (m.snapshot.index <= log_.commit_index()) {
    // We already have everything the snapshot covers.
    receiving_.reset();
    r.done = true;
    r.index = log_.commit_index();
    send(std::move(r));
    return;
  }
  r.index = m.snapshot.index;
  const bool same = receiving_ && receiving_->meta.index == m.snapshot.index &&
                    receiving_->meta.term == m.snapshot.term;
  if (m.offset == 0) {
    receiving_ = SnapshotReceive{m.snapshot, m.snapshot_bytes, m.data};
  } else if (same && receiving_->data.size() == m.offset) {
    receiving_->data.insert(receiving_->data.end(), m.data.begin(), m.data.end());
  } else {
    // Out of order or duplicate: tell the leader which byte we want next.
    r.reject = true;
    r.offset = same ? receiving_->data.size() : 0;
    send(std::move(r));
    return;
  }
  RPOOL_ASSERT_OP(receiving_->data.size(), <=, receiving_->total);
  if (!m.done) {
    r.offset = receiving_->data.size();
    send(std::move(r));
    return;
  }
  RPOOL_ASSERT_OP(receiving_->data.size(), ==, receiving_->total);
  // Raft §7: install. Keep log entries after the snapshot if the log has its last entry.
  SnapshotReceive got = std::move(*receiving_);
  receiving_.reset();
  log_.restore(got.meta.index, got.meta.term);
  base_membership_ = got.meta.membership;
  rescan_membership();
  Snapshot snap{got.meta, std::make_shared<const Bytes>(std::move(got.data))};
  snapshot_ = snap;
  pending_snapshot_ = std::move(snap);
  r.done = true;
  r.index = log_.commit_index();
  send(std::move(r));
}

// --- leader side of replication ----------------------------------------------------------------

void Core::handle_append_resp(const Message& m, Progress& pr) {
  RPOOL_ASSERT(role_ == Role::leader);
  pr.recent_active = true;
  if (m.reject) {
    // Stale rejections (of an append we already moved past) are ignored.
    if (pr.state == Progress::State::replicate && m.index <= pr.match_index) return;
    if (pr.state == Progress::State::probe && m.index != pr.next_index.prev()) return;
    if (pr.state == Progress::State::snapshot) return;
    LogIndex probe = m.reject_hint;
    if (m.log_term != Term(0) && probe > log_.snapshot_index()) {
      probe = log_.find_conflict_by_term(probe, m.log_term);
    }
    pr.next_index = std::max(std::min(m.index, probe.next()), pr.match_index.next());
    pr.state = Progress::State::probe;
    pr.probe_sent = false;
    clear_inflight(pr);
    send_append(m.from, pr, true);
    return;
  }
  // In probe state the one append in flight starts at next_index - 1, so its success says at
  // least that. A lower one answers an append from before (or, for a node removed, wiped and
  // added back under the same id, one its previous incarnation received): counting it would
  // credit the follower with entries it may no longer hold, towards the commit quorum. (Found by
  // the node simulation, seed 2341: a fresh learner credited with its old match index.)
  if (pr.state == Progress::State::probe && m.index < pr.next_index.prev()) return;
  const bool updated = m.index > pr.match_index;
  if (updated) {
    pr.match_index = m.index;
    pr.next_index = std::max(pr.next_index, m.index.next());
  }
  if (pr.state == Progress::State::replicate) {
    // Acknowledged up to m.index: free the appends that end there or before.
    auto end = std::find_if(pr.inflight.begin(), pr.inflight.end(),
                            [&](const Progress::Inflight& f) { return f.last > m.index; });
    for (auto it = pr.inflight.begin(); it != end; ++it) pr.inflight_bytes -= it->bytes;
    pr.inflight.erase(pr.inflight.begin(), end);
  } else if (pr.state == Progress::State::probe && (updated || m.index == pr.match_index)) {
    pr.state = Progress::State::replicate;
    pr.probe_sent = false;
    pr.next_index = pr.match_index.next();
    clear_inflight(pr);
  }
  if (updated && maybe_commit()) {
    if (role_ != Role::leader) return;  // removed itself; the change committed
    broadcast_append();
  } else {
    while (send_append(m.from, pr, false)) {
    }
  }
  // Thesis §3.10: once the target has the whole log, tell it to time out now.
  if (m.from == lead_transferee_ && pr.match_index == log_.last_index()) {
    Message t;
    t.type = MessageType::timeout_now;
    t.to = m.from;
    send(std::move(t));
    // A removed leader was only waiting for this handover.
    if (removal_committed()) become_follower(current_term_, NodeId(0));
  }
}

void Core::handle_heartbeat_resp(const Message& m, Progress& pr) {
  RPOOL_ASSERT(role_ == Role::leader);
  pr.recent_active = true;
  pr.probe_sent = false;
  if (pr.state == Progress::State::replicate && inflight_full(pr)) {
    // The window is full and the follower is idle: appends were lost. Probe again.
    pr.state = Progress::State::probe;
    clear_inflight(pr);
    pr.next_index = pr.match_index.next();
  }
  if (pr.state == Progress::State::snapshot && m.index >= pr.snapshot_index) {
    // The follower committed what the snapshot covers, so it installed it (or no longer needs
    // it) and the answer saying so was lost. Without this, a lossy link waits for the resend in
    // tick_heartbeat() once per lost answer (the node simulation, seed 3000).
    if (snapshot_installed(m.from, pr, m.index)) return;
  } else if (pr.state == Progress::State::snapshot) {
    // A chunk is in flight. The follower answers in the order it receives, so if this answers a
    // heartbeat sent after the chunk (its round), the chunk or its answer was lost: send it
    // again now rather than when it is overdue (the node simulation, seed 3609, lost one chunk
    // three times in a row). An answer to an earlier heartbeat resends nothing: every resend
    // starts a round, so there is at most one copy per heartbeat round trip, and a duplicate's
    // answer moves nothing (handle_snapshot_resp), so no second send/answer loop begins.
    if (m.context >= pr.snapshot_round) send_snapshot_chunk(m.from, pr);
  } else if (pr.match_index < log_.last_index()) {
    // Possibly an append was lost: an (even empty) append makes the follower report where it
    // is, so a lost message cannot stall replication.
    send_append(m.from, pr, true);
  }
  if (m.context > pr.read_ack_round) {
    pr.read_ack_round = m.context;
    release_reads();
  }
}

void Core::handle_snapshot_resp(const Message& m, Progress& pr) {
  RPOOL_ASSERT(role_ == Role::leader);
  pr.recent_active = true;
  if (m.done && !m.reject) {
    snapshot_installed(m.from, pr, m.index);
    return;
  }
  if (pr.state != Progress::State::snapshot || m.index != pr.snapshot_index) return;
  // One chunk in flight: an answer that asks for the chunk in flight answers a duplicate (or a
  // resent copy) and sends nothing, and an acknowledgement below it is stale. Only an answer
  // that moves the transfer (the next chunk, or a follower that lost what it had and asks for
  // an earlier offset) sends the one chunk that follows.
  if (m.offset == pr.snapshot_offset) return;
  if (!m.reject && m.offset < pr.snapshot_offset) return;
  pr.snapshot_offset = m.offset;
  send_snapshot_chunk(m.from, pr);
}

bool Core::snapshot_installed(NodeId from, Progress& pr, LogIndex committed) {
  // The follower's log matches ours up to `committed`, its commit index: committed entries are
  // in every leader's log (Leader Completeness, §5.4).
  if (committed > pr.match_index) pr.match_index = committed;
  pr.state = Progress::State::probe;
  pr.probe_sent = false;
  clear_inflight(pr);
  pr.next_index = pr.match_index.next();
  if (maybe_commit()) {
    if (role_ != Role::leader) return true;
    broadcast_append();
  }
  send_append(from, pr, true);
  return false;
}

bool Core::send_append(NodeId to, Progress& pr, bool allow_empty) {
  RPOOL_ASSERT(role_ == Role::leader);
  RPOOL_ASSERT_OP(pr.match_index, <, pr.next_index);
  switch (pr.state) {
    case Progress::State::probe:
      if (pr.probe_sent) return false;
      break;
    case Progress::State::replicate:
      if (inflight_full(pr)) return false;
      break;
    case Progress::State::snapshot: return false;
  }
  const LogIndex prev = pr.next_index.prev();
  const std::optional<Term> prev_term = log_.term(prev);
  if (!prev_term) {
    // The entries this follower needs are compacted away: send the snapshot (§7).
    RPOOL_ASSERT(snapshot_.has_value());
    pr.state = Progress::State::snapshot;
    clear_inflight(pr);
    pr.snapshot_index = snapshot_->meta.index;
    pr.snapshot_offset = 0;
    send_snapshot_chunk(to, pr);
    return false;
  }
  const LogIndex hi =
      std::min(log_.last_index().next(), pr.next_index + config_.entries_per_append_max);
  Message m;
  m.type = MessageType::append;
  m.context = read_round_;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  std::size_t bytes_max = config_.message_bytes_max;
  if (pr.state == Progress::State::replicate) {
    // Only what fits the byte window (but one append always may go when none is in flight).
    bytes_max = std::min(bytes_max, config_.inflight_bytes_max - pr.inflight_bytes);
  }
  if (pr.next_index < hi) m.entries = log_.slice(pr.next_index, hi, bytes_max);
  std::size_t bytes = 0;
  for (const Entry& e : m.entries) bytes += entry_bytes(e);
  if (pr.state == Progress::State::replicate && !pr.inflight.empty() &&
      pr.inflight_bytes + bytes > config_.inflight_bytes_max) {
    // The next entry alone overflows the window: it waits for acknowledgements. An empty
    // append may still go (allow_empty): if the appends in flight were lost, its answer is
    // what moves the follower back to probe.
    m.entries.clear();
    bytes = 0;
  }
  if (m.entries.empty() && !allow_empty) return false;
  m.commit = log_.commit_index();
  if (pr.state == Progress::State::replicate) {
    if (!m.entries.empty()) {
      pr.next_index = m.entries.back().index.next();
      pr.inflight.push_back({m.entries.back().index, bytes});
      pr.inflight_bytes += bytes;
    }
  } else {
    pr.probe_sent = true;
  }
  const bool more = pr.state == Progress::State::replicate && !m.entries.empty() &&
                    pr.next_index <= log_.last_index();
  send(std::move(m));
  return more;
}

void Core::send_snapshot_chunk(NodeId to, Progress& pr) {
  RPOOL_ASSERT(pr.state == Progress::State::snapshot);
  RPOOL_ASSERT(snapshot_.has_value());
  if (pr.snapshot_index != snapshot_->meta.index) {
    // We compacted again since this transfer began: start over with the newer snapshot.
    pr.snapshot_index = snapshot_->meta.index;
    pr.snapshot_offset = 0;
  }
  const Bytes& data = *snapshot_->data;
  const std::uint64_t total = data.size();
  const std::uint64_t offset = std::min<std::uint64_t>(pr.snapshot_offset, total);
  const std::uint64_t end = std::min<std::uint64_t>(total, offset + config_.snapshot_chunk_bytes);
  Message m;
  m.type = MessageType::snapshot;
  m.context = ++read_round_;  // see Progress::snapshot_round
  pr.snapshot_round = m.context;
  m.to = to;
  m.snapshot = snapshot_->meta;
  m.offset = offset;
  m.snapshot_bytes = total;
  m.data.assign(data.begin() + static_cast<std::ptrdiff_t>(offset),
                data.begin() + static_cast<std::ptrdiff_t>(end));
  m.done = end == total;
  pr.snapshot_wait_ticks = 0;
  send(std::move(m));
}

bool Core::inflight_full(const Progress& pr) const {
  return pr.inflight.size() >= config_.inflight_appends_max ||
         pr.inflight_bytes >= config_.inflight_bytes_max;
}

void Core::clear_inflight(Progress& pr) {
  pr.inflight.clear();
  pr.inflight_bytes = 0;
}

void Core::send_heartbeat(NodeId to, const Progress& pr) {
  RPOOL_ASSERT(role_ == Role::leader);
  Message m;
  m.type = MessageType::heartbeat;
  m.to = to;
  // Only what the follower is known to hold: its log may still be shorter than our commit.
  m.commit = std::min(pr.match_index, log_.commit_index());
  // With the term of our entry there, so the follower commits only if its own entry matches
  // (Log Matching, §5.3): a node that lost its log and rejoined at the same address may hold
  // other entries at that index by the time this arrives. 0 when the entry is compacted away:
  // the follower then does not commit from this heartbeat.
  m.log_term = log_.term(m.commit).value_or(Term(0));
  m.context = read_round_;
  send(std::move(m));
}

void Core::broadcast_append() {
  RPOOL_ASSERT(role_ == Role::leader);
  for (auto& [id, pr] : progress_) {
    if (!send_append(id, pr, true)) continue;
    while (send_append(id, pr, false)) {
    }
  }
}

void Core::broadcast_heartbeat() {
  RPOOL_ASSERT(role_ == Role::leader);
  read_round_pending_ = false;
  for (const auto& [id, pr] : progress_) send_heartbeat(id, pr);
}

void Core::flush() {
  if (role_ != Role::leader) return;
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    for (auto& [id, pr] : progress_) {
      while (send_append(id, pr, false)) {
      }
    }
  }
  if (read_round_pending_) broadcast_heartbeat();
}

LogIndex Core::self_match() const {
  // Thesis §10.2.1: the leader counts itself only for entries on its own stable storage.
  return log_.stable_index();
}

bool Core::maybe_commit() {
  RPOOL_ASSERT(role_ == Role::leader);
  std::vector<LogIndex> matches;
  matches.reserve(membership_.voters.size());
  for (NodeId id : membership_.voters) {
    if (id == config_.id) {
      matches.push_back(self_match());
    } else {
      auto it = progress_.find(id);
      RPOOL_ASSERT(it != progress_.end());
      matches.push_back(it->second.match_index);
    }
  }
  RPOOL_ASSERT(!matches.empty());
  const std::size_t quorum = config_.unsafe_commit_alone ? 1 : membership_.quorum();
  std::nth_element(matches.begin(), matches.begin() + static_cast<std::ptrdiff_t>(quorum - 1),
                   matches.end(), std::greater<>());
  const LogIndex candidate = matches[quorum - 1];
  if (candidate <= log_.commit_index()) return false;
  // Raft §5.4.2: never commit an entry from an earlier term by counting replicas; it becomes
  // committed only together with an entry of the current term.
  if (*log_.term(candidate) != current_term_) return false;
  for (LogIndex i = log_.commit_index().next(); i <= candidate; ++i) {
    const Entry& e = log_.at(i);
    if (e.term != current_term_) continue;  // appended by an earlier leader: never counted
    RPOOL_ASSERT_OP(e.data.size(), <=, uncommitted_bytes_);
    uncommitted_bytes_ -= e.data.size();
  }
  log_.commit_to(candidate);
  on_commit_advanced();
  return true;
}

void Core::on_commit_advanced() {
  RPOOL_ASSERT(role_ == Role::leader);
  if (committed_in_current_term() && !reads_waiting_.empty()) {
    std::vector<PendingRead> waiting = std::move(reads_waiting_);
    reads_waiting_.clear();
    for (const PendingRead& r : waiting) start_read(r.context, r.from);
  }
  // Thesis §4.2.2: a leader removed from the configuration steps down once the change commits.
  if (removal_committed()) hand_over_and_step_down();
}

bool Core::removal_committed() const {
  return role_ == Role::leader && pending_config_index_ <= log_.commit_index() &&
         !membership_.is_voter(config_.id);
}

void Core::hand_over_and_step_down() {
  RPOOL_ASSERT(removal_committed());
  // Stepping down alone would leave the cluster without a leader until a follower's election
  // timeout fires (1-2 timeouts). Instead hand over first (thesis §3.10): TimeoutNow to the
  // remaining voter with the most of the log, which campaigns at once; if none has all of it,
  // bring the best one up to date and send TimeoutNow from handle_append_resp. Proposals wait
  // (transfer_in_progress); tick_heartbeat steps down anyway after an election timeout.
  NodeId best;
  LogIndex best_match;
  for (NodeId id : membership_.voters) {
    RPOOL_ASSERT(id != config_.id);
    const Progress& pr = progress_.at(id);
    if (best == NodeId(0) || pr.match_index > best_match) {
      best = id;
      best_match = pr.match_index;
    }
  }
  RPOOL_ASSERT(best != NodeId(0));  // the last voter cannot be removed
  if (best_match == log_.last_index()) {
    Message t;
    t.type = MessageType::timeout_now;
    t.to = best;
    send(std::move(t));
    become_follower(current_term_, NodeId(0));
    return;
  }
  if (lead_transferee_ == best) return;  // already bringing it up to date
  lead_transferee_ = best;
  election_elapsed_ = 0;
  send_append(best, progress_.at(best), true);
}

bool Core::committed_in_current_term() const {
  return *log_.term(log_.commit_index()) == current_term_;
}

}  // namespace rpool::raft
