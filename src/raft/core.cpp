// Core (core.h): construction, role changes, ticks, elections and step(). The rest of Core is
// in replication.cpp (both sides of log replication), requests.cpp (proposals, reads,
// transfer, membership, compaction) and ready.cpp (outputs, Ready, invariants).
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

Progress Core::new_progress() {
  Progress pr;
  pr.next_index = log_.last_index().next();
  // A round of its own: nothing sent before it can be answered at it or above. Pending reads
  // wait for acks at their own (lower) rounds, which this round's messages also give.
  pr.first_round = ++read_round_;
  return pr;
}

void Core::reset_progress() {
  progress_.clear();
  auto add = [&](NodeId id) {
    if (id == config_.id) return;
    progress_.emplace(id, new_progress());
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
  // A node that knows no configuration yet (started empty to join, or wiped and added back under
  // its old id) does not vote: a candidate whose configuration is stale may still list the id as
  // a voter and count the vote, though the node behind the id lost the log that the vote must
  // protect (node simulation, seed 101303: a stale node won with the vote of a wiped one and
  // overwrote committed entries). Every other node votes, learners and removed nodes included:
  // a learner refusing left a cluster without an electable majority when the entry promoting it
  // had not reached it (seeds 111424 and 112023, --single-pool), and so did nodes whose
  // uncommitted latest configuration removed them (seed 101588, --single-pool).
  const bool voter = !membership_.voters.empty();
  // Raft §5.4.1: only a candidate whose log is at least as up-to-date as ours.
  const bool grant = voter && can_vote && log_.is_up_to_date(m.index, m.log_term);
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
  // An answer to a message sent before this Progress began: from an earlier incarnation of the
  // member, whose log the node behind the id may no longer have (node simulation, seed 6411: an
  // acknowledgement from before a wipe set match_index beyond the new node's log, and the
  // leader never sent it the entries in between).
  if (m.context < pr.first_round) return;
  switch (m.type) {
    case MessageType::append_resp: handle_append_resp(m, pr); break;
    case MessageType::heartbeat_resp: handle_heartbeat_resp(m, pr); break;
    case MessageType::snapshot_resp: handle_snapshot_resp(m, pr); break;
    default: break;
  }
}

}  // namespace rpool::raft
