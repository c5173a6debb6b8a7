#include "raft/core.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

const char* to_string(Role r) {
  switch (r) {
    case Role::follower: return "follower";
    case Role::pre_candidate: return "pre_candidate";
    case Role::candidate: return "candidate";
    case Role::leader: return "leader";
  }
  return "unknown";
}

Core::Core(Config config, BootState boot)
    : config_(std::move(config)), rng_(config_.random_seed ^ (config_.id.value() * 0x9e37ull)) {
  RPOOL_ASSERT(config_.id != NodeId(0));
  RPOOL_ASSERT(config_.heartbeat_ticks > 0);
  RPOOL_ASSERT_OP(config_.heartbeat_ticks, <, config_.election_ticks);
  RPOOL_ASSERT(config_.initial_membership.valid());
  RPOOL_ASSERT(config_.inflight_appends_max > 0);
  RPOOL_ASSERT(config_.inflight_bytes_max > 0);
  RPOOL_ASSERT(config_.snapshot_resend_ticks > 0);
  RPOOL_ASSERT(config_.uncommitted_bytes_max > 0);
  RPOOL_ASSERT(config_.committed_bytes_per_ready_max > 0);

  LogIndex snapshot_index;
  Term snapshot_term;
  base_membership_ = config_.initial_membership;
  if (boot.snapshot) {
    snapshot_index = boot.snapshot->meta.index;
    snapshot_term = boot.snapshot->meta.term;
    base_membership_ = boot.snapshot->meta.membership;
    snapshot_ = std::move(boot.snapshot);
  }
  log_ = Log(snapshot_index, snapshot_term, std::move(boot.entries));
  current_term_ = boot.hard_state.current_term;
  voted_for_ = boot.hard_state.voted_for;
  RPOOL_ASSERT_OP(boot.hard_state.commit_index, <=, log_.last_index());
  log_.commit_to(boot.hard_state.commit_index);
  persisted_hard_state_ = hard_state();
  rescan_membership();
  become_follower(current_term_, NodeId(0));
  check_invariants();
}

// --- role changes ------------------------------------------------------------------------------

void Core::become_follower(Term term, NodeId leader) {
  RPOOL_ASSERT_OP(term, >=, current_term_);
  if (term > current_term_) {
    current_term_ = term;
    voted_for_ = NodeId(0);
  }
  role_ = Role::follower;
  leader_ = leader;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_election_timeout();
  votes_.clear();
  progress_.clear();
  lead_transferee_ = NodeId(0);
  uncommitted_bytes_ = 0;
  broadcast_pending_ = false;
  reads_waiting_.clear();
  reads_.clear();
  read_round_pending_ = false;
}

void Core::become_pre_candidate() {
  RPOOL_ASSERT(role_ != Role::leader);
  RPOOL_ASSERT(promotable());
  // Thesis §9.6: a pre-candidate does not increment its term or change its vote.
  role_ = Role::pre_candidate;
  leader_ = NodeId(0);
  votes_.clear();
  election_elapsed_ = 0;
  reset_election_timeout();
}

void Core::become_candidate() {
  RPOOL_ASSERT(role_ != Role::leader);
  RPOOL_ASSERT(promotable());
  // Raft §5.2: increment currentTerm, vote for self.
  current_term_ = current_term_.next();
  voted_for_ = config_.id;
  role_ = Role::candidate;
  leader_ = NodeId(0);
  votes_.clear();
  election_elapsed_ = 0;
  reset_election_timeout();
}

void Core::become_leader() {
  RPOOL_ASSERT(role_ == Role::candidate);
  RPOOL_ASSERT_OP(voted_for_, ==, config_.id);
  role_ = Role::leader;
  leader_ = config_.id;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  votes_.clear();
  lead_transferee_ = NodeId(0);
  uncommitted_bytes_ = 0;
  read_round_ = 0;
  reset_progress();
  // Raft §8 / thesis §6.4: a new leader appends a no-op so that entries of earlier terms get
  // committed (by Log Matching) and it learns the commit index before serving reads.
  append_entries(EntryType::noop, {Bytes{}});
  // Conservatively treat everything up to the no-op as a possibly pending configuration change.
  pending_config_index_ = log_.last_index();
}

void Core::reset_progress() {
  progress_.clear();
  auto add = [&](NodeId id) {
    if (id == config_.id) return;
    Progress pr;
    pr.next_index = log_.last_index().next();
    progress_.emplace(id, pr);
  };
  for (NodeId id : membership_.voters) add(id);
  for (NodeId id : membership_.learners) add(id);
}

void Core::reset_election_timeout() {
  randomized_election_timeout_ =
      config_.election_ticks +
      static_cast<int>(rng_.below(static_cast<std::uint64_t>(config_.election_ticks)));
}

// --- ticks -------------------------------------------------------------------------------------

void Core::tick() {
  RPOOL_ASSERT(!ready_outstanding_);
  if (role_ == Role::leader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
  check_invariants();
}

void Core::tick_election() {
  RPOOL_ASSERT(role_ != Role::leader);
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    campaign(false);
  }
}

void Core::tick_heartbeat() {
  RPOOL_ASSERT(role_ == Role::leader);
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Thesis §6.2: a leader that has not heard from a quorum in an election timeout steps
      // down, so a partitioned leader stops accepting work it cannot commit.
      std::size_t active = membership_.is_voter(config_.id) ? 1 : 0;
      for (auto& [id, pr] : progress_) {
        if (membership_.is_voter(id) && pr.recent_active) ++active;
        pr.recent_active = false;
      }
      if (active < membership_.quorum()) {
        become_follower(current_term_, NodeId(0));
        return;
      }
    }
    // Thesis §3.10: a transfer that did not complete within an election timeout is aborted.
    abort_transfer();
    if (removal_committed()) {
      // Its handover did not complete: step down anyway; the others elect a leader.
      become_follower(current_term_, NodeId(0));
      return;
    }
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeat();
  }
  // A snapshot chunk (or its answer) may have been lost: resend it once it is overdue.
  for (auto& [id, pr] : progress_) {
    if (pr.state != Progress::State::snapshot) continue;
    if (++pr.snapshot_wait_ticks >= config_.snapshot_resend_ticks) send_snapshot_chunk(id, pr);
  }
}

void Core::campaign(bool transfer) {
  RPOOL_ASSERT(promotable());
  RPOOL_ASSERT(role_ != Role::leader);
  MessageType type = MessageType::vote;
  Term term;
  if (config_.pre_vote && !transfer) {
    become_pre_candidate();
    type = MessageType::pre_vote;
    term = current_term_.next();
  } else {
    become_candidate();
    term = current_term_;
  }
  if (poll(config_.id, true) == PollResult::won) {
    if (type == MessageType::pre_vote) {
      campaign(true);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId id : membership_.voters) {
    if (id == config_.id) continue;
    Message m;
    m.type = type;
    m.to = id;
    m.term = term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.context = transfer ? vote_context_transfer : 0;
    send(std::move(m));
  }
}

Core::PollResult Core::poll(NodeId from, bool granted) {
  RPOOL_ASSERT(role_ == Role::candidate || role_ == Role::pre_candidate);
  if (membership_.is_voter(from)) votes_.emplace(from, granted);
  std::size_t yes = 0;
  std::size_t no = 0;
  for (const auto& [id, v] : votes_) (v ? yes : no) += 1;
  const std::size_t quorum = membership_.quorum();
  if (yes >= quorum) return PollResult::won;
  if (no > membership_.voters.size() - quorum) return PollResult::lost;
  return PollResult::pending;
}

// --- step --------------------------------------------------------------------------------------

void Core::step(const Message& m) {
  RPOOL_ASSERT(!ready_outstanding_);
  RPOOL_ASSERT_OP(m.to, ==, config_.id);
  RPOOL_ASSERT(m.from != config_.id);
  RPOOL_ASSERT(m.term != Term(0));

  // All term handling lives here (Raft §5.1); the role handlers see only current-term messages
  // (and pre-votes for the next term).
  if (m.term > current_term_) {
    if (m.type == MessageType::pre_vote || m.type == MessageType::vote) {
      // Thesis §4.2.3: a server that heard from a leader within the minimum election timeout
      // ignores vote requests, so a removed or partitioned server cannot disrupt the cluster.
      const bool forced = m.type == MessageType::vote && m.context == vote_context_transfer;
      const bool in_lease = config_.check_quorum && leader_ != NodeId(0) &&
                            election_elapsed_ < config_.election_ticks;
      if (in_lease && !forced) return;
    }
    if (m.type == MessageType::pre_vote) {
      // §9.6: a pre-vote does not change our term.
    } else if (m.type == MessageType::pre_vote_resp && !m.reject) {
      // A granted pre-vote carries the term we would campaign in; it is not a newer leader.
    } else {
      const bool from_leader = m.type == MessageType::append || m.type == MessageType::heartbeat ||
                               m.type == MessageType::snapshot;
      become_follower(m.term, from_leader ? m.from : NodeId(0));
    }
  } else if (m.term < current_term_) {
    if (m.type == MessageType::append || m.type == MessageType::heartbeat ||
        m.type == MessageType::snapshot) {
      // A stale leader (e.g. back from a partition; with pre-vote our term did not tell it
      // anything) learns the newer term from this reply and steps down.
      Message r;
      r.type = MessageType::append_resp;
      r.to = m.from;
      r.reject = true;
      r.index = LogIndex(0);
      send(std::move(r));
    } else if (m.type == MessageType::pre_vote) {
      Message r;
      r.type = MessageType::pre_vote_resp;
      r.to = m.from;
      r.reject = true;
      send(std::move(r));
    }
    // Anything else from an old term is stale: drop it.
    check_invariants();
    return;
  }

  if (m.type == MessageType::pre_vote || m.type == MessageType::vote) {
    handle_vote(m);
  } else if (m.term > current_term_) {
    // Only a granted pre-vote response for the term we would campaign in gets here.
    RPOOL_ASSERT(m.type == MessageType::pre_vote_resp);
    if (role_ == Role::pre_candidate) step_candidate(m);
  } else {
    switch (role_) {
      case Role::leader: step_leader(m); break;
      case Role::pre_candidate:
      case Role::candidate: step_candidate(m); break;
      case Role::follower: step_follower(m); break;
    }
  }
  check_invariants();
}

void Core::handle_vote(const Message& m) {
  RPOOL_ASSERT(m.type == MessageType::vote || m.type == MessageType::pre_vote);
  RPOOL_ASSERT(m.term >= current_term_);
  const bool pre = m.type == MessageType::pre_vote;
  // Raft §5.2: at most one vote per term, first come first served. A pre-vote for a later term
  // promises nothing, so it may be granted regardless of our vote in this term.
  const bool can_vote = voted_for_ == m.from || (voted_for_ == NodeId(0) && leader_ == NodeId(0)) ||
                        (pre && m.term > current_term_);
  // Raft §5.4.1: only a candidate whose log is at least as up-to-date as ours.
  const bool grant = can_vote && log_.is_up_to_date(m.index, m.log_term);
  Message r;
  r.type = pre ? MessageType::pre_vote_resp : MessageType::vote_resp;
  r.to = m.from;
  if (grant) {
    r.term = m.term;
    if (!pre) {
      RPOOL_ASSERT_OP(m.term, ==, current_term_);
      voted_for_ = m.from;
      election_elapsed_ = 0;
    }
  } else {
    r.term = current_term_;
    r.reject = true;
  }
  send(std::move(r));
}

void Core::step_follower(const Message& m) {
  RPOOL_ASSERT(role_ == Role::follower);
  RPOOL_ASSERT_OP(m.term, ==, current_term_);
  switch (m.type) {
    case MessageType::append:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_append(m);
      break;
    case MessageType::heartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::snapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::timeout_now:
      // Thesis §3.10: the leader asks us to start an election now, skipping pre-vote.
      if (promotable()) campaign(true);
      break;
    case MessageType::read_index_resp: read_states_.push_back({m.context, m.index}); break;
    default: break;  // stale responses and requests meant for a leader
  }
}

void Core::step_candidate(const Message& m) {
  RPOOL_ASSERT(role_ == Role::candidate || role_ == Role::pre_candidate);
  switch (m.type) {
    case MessageType::append:
    case MessageType::heartbeat:
    case MessageType::snapshot:
      // Raft §5.2: a candidate that hears from the leader of its term returns to follower.
      RPOOL_ASSERT_OP(m.term, ==, current_term_);
      become_follower(m.term, m.from);
      step_follower(m);
      break;
    case MessageType::pre_vote_resp:
    case MessageType::vote_resp: {
      const bool mine = (role_ == Role::pre_candidate) == (m.type == MessageType::pre_vote_resp);
      if (!mine) break;
      // A granted pre-vote counts only for the term this pre-campaign would start.
      if (role_ == Role::pre_candidate && !m.reject && m.term != current_term_.next()) break;
      switch (poll(m.from, !m.reject)) {
        case PollResult::won:
          if (role_ == Role::pre_candidate) {
            campaign(true);
          } else {
            become_leader();
          }
          break;
        case PollResult::lost: become_follower(current_term_, NodeId(0)); break;
        case PollResult::pending: break;
      }
      break;
    }
    default: break;
  }
}

void Core::step_leader(const Message& m) {
  RPOOL_ASSERT(role_ == Role::leader);
  RPOOL_ASSERT_OP(m.term, ==, current_term_);
  // Election Safety (§5.2): there is no other leader in our term to hear entries from.
  RPOOL_ASSERT(m.type != MessageType::append);
  RPOOL_ASSERT(m.type != MessageType::heartbeat);
  if (m.type == MessageType::read_index) {
    if (membership_.contains(m.from)) start_read(m.context, m.from);
    return;
  }
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;  // not (or no longer) a member
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::append_resp: handle_append_resp(m, pr); break;
    case MessageType::heartbeat_resp: handle_heartbeat_resp(m, pr); break;
    case MessageType::snapshot_resp: handle_snapshot_resp(m, pr); break;
    default: break;
  }
}

// --- follower side of replication --------------------------------------------------------------

void Core::handle_append(const Message& m) {
  RPOOL_ASSERT(role_ == Role::follower);
  RPOOL_ASSERT_OP(leader_, ==, m.from);
  Message r;
  r.type = MessageType::append_resp;
  r.to = m.from;
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
    // A chunk is in flight. Resending it here would start one more send/answer loop per
    // heartbeat, each carrying a copy of the chunk, and divide the link among them; a lost
    // chunk is resent by tick_heartbeat() instead.
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

// --- reads -------------------------------------------------------------------------------------

void Core::start_read(std::uint64_t context, NodeId from) {
  RPOOL_ASSERT(role_ == Role::leader);
  if (!committed_in_current_term()) {
    // Thesis §6.4 step 1: the leader must know the commit index, which it does once an entry
    // of its own term (the no-op) has committed.
    reads_waiting_.push_back({context, from, LogIndex(0), 0});
    return;
  }
  const LogIndex index = log_.commit_index();
  if (membership_.voters.size() == 1 && membership_.is_voter(config_.id)) {
    answer_read(context, from, index);  // we are the quorum
    return;
  }
  // Thesis §6.4 step 2: confirm leadership with a heartbeat round started after the read.
  ++read_round_;
  reads_.push_back({context, from, index, read_round_});
  read_round_pending_ = true;
}

void Core::release_reads() {
  RPOOL_ASSERT(role_ == Role::leader);
  if (reads_.empty()) return;
  std::vector<std::uint64_t> acks;
  for (NodeId id : membership_.voters) {
    if (id == config_.id) {
      acks.push_back(read_round_);
    } else {
      acks.push_back(progress_.at(id).read_ack_round);
    }
  }
  const std::size_t quorum = membership_.quorum();
  std::nth_element(acks.begin(), acks.begin() + static_cast<std::ptrdiff_t>(quorum - 1), acks.end(),
                   std::greater<>());
  const std::uint64_t confirmed = acks[quorum - 1];
  std::size_t k = 0;
  for (; k < reads_.size() && reads_[k].round <= confirmed; ++k) {
    answer_read(reads_[k].context, reads_[k].from, reads_[k].index);
  }
  reads_.erase(reads_.begin(), reads_.begin() + static_cast<std::ptrdiff_t>(k));
}

void Core::answer_read(std::uint64_t context, NodeId from, LogIndex index) {
  RPOOL_ASSERT(role_ == Role::leader);
  RPOOL_ASSERT_OP(index, <=, log_.commit_index());
  if (from == config_.id) {
    read_states_.push_back({context, index});
    return;
  }
  Message m;
  m.type = MessageType::read_index_resp;
  m.to = from;
  m.context = context;
  m.index = index;
  send(std::move(m));
}

// --- public inputs -----------------------------------------------------------------------------

void Core::append_entries(EntryType type, std::vector<Bytes> payloads) {
  RPOOL_ASSERT(role_ == Role::leader);
  RPOOL_ASSERT(!payloads.empty());
  std::vector<Entry> entries;
  entries.reserve(payloads.size());
  LogIndex index = log_.last_index();
  for (Bytes& p : payloads) {
    ++index;
    uncommitted_bytes_ += p.size();
    entries.push_back(Entry{current_term_, index, type, std::move(p)});
  }
  log_.append(std::move(entries));
  broadcast_pending_ = true;
  // A single-voter cluster commits as soon as the entry is durable (in advance()).
}

std::error_code Core::propose(Bytes data, LogIndex* index) {
  RPOOL_ASSERT(!ready_outstanding_);
  if (role_ != Role::leader) return errc::not_leader;
  if (lead_transferee_ != NodeId(0)) return errc::transfer_in_progress;
  if (data.size() > config_.entry_bytes_max) return errc::too_large;
  if (uncommitted_bytes_ != 0 && uncommitted_bytes_ + data.size() > config_.uncommitted_bytes_max) {
    return errc::overloaded;
  }
  append_entries(EntryType::normal, {std::move(data)});
  if (index != nullptr) *index = log_.last_index();
  check_invariants();
  return {};
}

std::error_code Core::read_index(std::uint64_t context) {
  RPOOL_ASSERT(!ready_outstanding_);
  if (role_ == Role::leader) {
    start_read(context, config_.id);
  } else if (leader_ != NodeId(0)) {
    Message m;
    m.type = MessageType::read_index;
    m.to = leader_;
    m.context = context;
    send(std::move(m));
  } else {
    return errc::no_leader;
  }
  check_invariants();
  return {};
}

std::error_code Core::transfer_leader(NodeId to) {
  RPOOL_ASSERT(!ready_outstanding_);
  if (role_ != Role::leader) return errc::not_leader;
  if (lead_transferee_ != NodeId(0)) return errc::transfer_in_progress;
  if (to == config_.id) return {};
  if (!membership_.is_voter(to)) return errc::unknown_node;
  lead_transferee_ = to;
  election_elapsed_ = 0;  // the transfer gets one election timeout
  Progress& pr = progress_.at(to);
  if (pr.match_index == log_.last_index()) {
    Message t;
    t.type = MessageType::timeout_now;
    t.to = to;
    send(std::move(t));
  } else {
    send_append(to, pr, true);
  }
  check_invariants();
  return {};
}

void Core::abort_transfer() { lead_transferee_ = NodeId(0); }

std::error_code Core::change_membership(MembershipChange change) {
  RPOOL_ASSERT(!ready_outstanding_);
  RPOOL_ASSERT(change.node != NodeId(0));
  if (role_ != Role::leader) return errc::not_leader;
  if (lead_transferee_ != NodeId(0)) return errc::transfer_in_progress;
  // Thesis §4.1: one change at a time; and (errata to the single-server algorithm) not before
  // the leader has committed an entry of its own term.
  if (pending_config_index_ > log_.commit_index() || !committed_in_current_term()) {
    return errc::change_in_progress;
  }
  Membership next = membership_;
  auto insert_sorted = [](std::vector<NodeId>& v, NodeId id) {
    v.insert(std::lower_bound(v.begin(), v.end(), id), id);
  };
  auto erase = [](std::vector<NodeId>& v, NodeId id) {
    v.erase(std::find(v.begin(), v.end(), id));
  };
  switch (change.type) {
    case ChangeType::add_learner:
      if (membership_.contains(change.node)) return errc::already_member;
      if (change.context.size() > member_context_bytes_max) return errc::invalid_change;
      insert_sorted(next.learners, change.node);
      if (!change.context.empty()) next.context[change.node] = std::move(change.context);
      break;
    case ChangeType::promote: {
      if (!membership_.is_learner(change.node)) return errc::unknown_node;
      const Progress& pr = progress_.at(change.node);
      if (pr.match_index < log_.commit_index()) return errc::not_caught_up;
      erase(next.learners, change.node);
      insert_sorted(next.voters, change.node);
      break;
    }
    case ChangeType::remove:
      if (membership_.is_learner(change.node)) {
        erase(next.learners, change.node);
      } else if (membership_.is_voter(change.node)) {
        if (membership_.voters.size() == 1) return errc::invalid_change;
        erase(next.voters, change.node);
      } else {
        return errc::unknown_node;
      }
      next.context.erase(change.node);
      break;
  }
  RPOOL_ASSERT(next.valid());
  append_entries(EntryType::config, {encode_membership(next)});
  pending_config_index_ = log_.last_index();
  set_membership(std::move(next), log_.last_index(), current_term_);
  check_invariants();
  return {};
}

SnapshotMeta Core::snapshot_meta(LogIndex index) const {
  RPOOL_ASSERT_OP(log_.snapshot_index(), <=, index);
  RPOOL_ASSERT_OP(index, <=, log_.applied_index());
  return SnapshotMeta{index, *log_.term(index), membership_at(index)};
}

std::error_code Core::compact(LogIndex index, std::shared_ptr<const Bytes> data) {
  RPOOL_ASSERT(!ready_outstanding_);
  RPOOL_ASSERT(data != nullptr);
  if (index <= log_.snapshot_index()) return errc::compacted;
  RPOOL_ASSERT_OP(index, <=, log_.applied_index());
  Snapshot snap{snapshot_meta(index), std::move(data)};
  log_.compact(index);
  base_membership_ = snap.meta.membership;
  snapshot_ = std::move(snap);
  if (config_entry_.index <= index) config_entry_ = EntryId{};
  check_invariants();
  return {};
}

// --- membership --------------------------------------------------------------------------------

void Core::set_membership(Membership m, LogIndex config_index, Term config_term) {
  RPOOL_ASSERT(m.valid());
  membership_ = std::move(m);
  config_entry_ = EntryId{config_term, config_index};
  if (role_ != Role::leader) return;
  // Track exactly the members (but never ourselves).
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = membership_.contains(it->first) ? std::next(it) : progress_.erase(it);
  }
  auto add = [&](NodeId id) {
    if (id == config_.id || progress_.count(id) != 0) return;
    Progress pr;
    pr.next_index = log_.last_index().next();
    pr.recent_active = true;
    progress_.emplace(id, pr);
  };
  for (NodeId id : membership_.voters) add(id);
  for (NodeId id : membership_.learners) add(id);
  if (lead_transferee_ != NodeId(0) && !membership_.is_voter(lead_transferee_)) abort_transfer();
}

void Core::rescan_membership() {
  for (LogIndex i = log_.last_index(); i > log_.snapshot_index(); --i) {
    const Entry& e = log_.at(i);
    if (e.type != EntryType::config) continue;
    Membership m;
    RPOOL_ASSERT(decode_membership(e.data, m));
    set_membership(std::move(m), e.index, e.term);
    return;
  }
  set_membership(base_membership_, LogIndex(0), Term(0));
}

void Core::scan_membership_forward(LogIndex from) {
  for (LogIndex i = std::max(from, log_.first_index()); i <= log_.last_index(); ++i) {
    const Entry& e = log_.at(i);
    if (e.type != EntryType::config) continue;
    Membership m;
    RPOOL_ASSERT(decode_membership(e.data, m));
    set_membership(std::move(m), e.index, e.term);
  }
}

Membership Core::membership_at(LogIndex index) const {
  for (LogIndex i = index; i > log_.snapshot_index(); --i) {
    const Entry& e = log_.at(i);
    if (e.type != EntryType::config) continue;
    Membership m;
    RPOOL_ASSERT(decode_membership(e.data, m));
    return m;
  }
  return base_membership_;
}

// --- outputs -----------------------------------------------------------------------------------

void Core::send(Message m) {
  m.from = config_.id;
  if (m.term == Term(0)) m.term = current_term_;
  RPOOL_ASSERT(m.to != NodeId(0));
  RPOOL_ASSERT(m.to != config_.id);
  // Thesis §10.2.1: what the leader sends depends on nothing unsynced (it counts itself toward
  // commit only once durable), so it may go out before the write. Everything else — votes,
  // acknowledgements — promises durable state and waits for it.
  const bool immediate = role_ == Role::leader &&
                         (m.type == MessageType::append || m.type == MessageType::heartbeat ||
                          m.type == MessageType::snapshot || m.type == MessageType::timeout_now ||
                          m.type == MessageType::read_index_resp);
  (immediate ? messages_ : messages_after_persist_).push_back(std::move(m));
}

const Progress* Core::progress(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

bool Core::has_ready() const {
  return hard_state() != persisted_hard_state_ || pending_snapshot_.has_value() ||
         log_.stable_index() < log_.last_index() ||
         log_.applied_index() < std::min(log_.commit_index(), log_.stable_index()) ||
         !read_states_.empty() || !messages_.empty() || !messages_after_persist_.empty() ||
         (role_ == Role::leader && (broadcast_pending_ || read_round_pending_));
}

Ready Core::ready() {
  RPOOL_ASSERT(!ready_outstanding_);
  flush();
  Ready rd;
  const HardState hs = hard_state();
  if (hs != persisted_hard_state_) rd.hard_state = hs;
  rd.snapshot = std::move(pending_snapshot_);
  pending_snapshot_.reset();
  if (log_.stable_index() < log_.last_index()) {
    rd.entries = log_.slice(log_.stable_index().next(), log_.last_index().next(), SIZE_MAX);
  }
  const LogIndex apply_to = std::min(log_.commit_index(), log_.stable_index());
  if (log_.applied_index() < apply_to) {
    // Paged: at most committed_bytes_per_ready_max per Ready; has_ready() stays true until
    // the rest is handed out.
    rd.committed_entries = log_.slice(log_.applied_index().next(), apply_to.next(),
                                      config_.committed_bytes_per_ready_max);
  }
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.messages = std::move(messages_);
  messages_.clear();
  rd.messages_after_persist = std::move(messages_after_persist_);
  messages_after_persist_.clear();
  // If the term or vote changed, nothing may go out before it is durable (§5.1, §5.2).
  if (rd.hard_state && (rd.hard_state->current_term != persisted_hard_state_.current_term ||
                        rd.hard_state->voted_for != persisted_hard_state_.voted_for)) {
    for (Message& m : rd.messages) rd.messages_after_persist.push_back(std::move(m));
    rd.messages.clear();
  }
  ready_outstanding_ = true;
  return rd;
}

void Core::advance(const Ready& rd) {
  RPOOL_ASSERT(ready_outstanding_);
  ready_outstanding_ = false;
  if (rd.hard_state) persisted_hard_state_ = *rd.hard_state;
  if (!rd.entries.empty()) log_.stable_to(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) log_.applied_to(rd.committed_entries.back().index);
  if (role_ == Role::leader && !rd.entries.empty() && maybe_commit()) {
    if (role_ == Role::leader) broadcast_append();
  }
  check_invariants();
}

void Core::check_invariants() const {
  log_.check_invariants();
  RPOOL_ASSERT(membership_.valid());
  RPOOL_ASSERT_OP(persisted_hard_state_.current_term, <=, current_term_);
  switch (role_) {
    case Role::leader:
      RPOOL_ASSERT_OP(leader_, ==, config_.id);
      RPOOL_ASSERT_OP(voted_for_, ==, config_.id);
      for (const auto& [id, pr] : progress_) {
        RPOOL_ASSERT(membership_.contains(id));
        RPOOL_ASSERT_OP(pr.match_index, <, pr.next_index);
        RPOOL_ASSERT_OP(pr.match_index, <=, log_.last_index());
        RPOOL_ASSERT_OP(pr.inflight.size(), <=, config_.inflight_appends_max);
        std::size_t inflight_bytes = 0;
        for (const Progress::Inflight& f : pr.inflight) inflight_bytes += f.bytes;
        RPOOL_ASSERT_OP(inflight_bytes, ==, pr.inflight_bytes);
        if (pr.inflight.size() > 1)
          RPOOL_ASSERT_OP(pr.inflight_bytes, <=, config_.inflight_bytes_max);
        if (pr.state == Progress::State::snapshot) {
          RPOOL_ASSERT_OP(pr.snapshot_wait_ticks, <, config_.snapshot_resend_ticks);
        }
      }
      if (log_.commit_index() == log_.last_index()) RPOOL_ASSERT_OP(uncommitted_bytes_, ==, 0u);
      RPOOL_ASSERT_OP(progress_.size() + (membership_.contains(config_.id) ? 1 : 0), ==,
                      membership_.voters.size() + membership_.learners.size());
      break;
    case Role::candidate:
      RPOOL_ASSERT_OP(uncommitted_bytes_, ==, 0u);
      RPOOL_ASSERT_OP(voted_for_, ==, config_.id);
      RPOOL_ASSERT(progress_.empty());
      break;
    case Role::pre_candidate:
    case Role::follower:
      RPOOL_ASSERT_OP(uncommitted_bytes_, ==, 0u);
      RPOOL_ASSERT(progress_.empty());
      RPOOL_ASSERT(leader_ != config_.id);
      break;
  }
}

}  // namespace rpool::raft
