// Core's public inputs beyond step() and tick(): proposals, ReadIndex reads, leadership
// transfer, membership changes and compaction, and the membership they read. Part of Core.
#include "raft/core.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

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
    Progress pr = new_progress();
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

}  // namespace rpool::raft
