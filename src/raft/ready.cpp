// Core's outputs: messages, the Ready handed to the node and its advance(), and the invariants
// checked after every input. Part of Core (core.h).
#include "raft/core.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

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
