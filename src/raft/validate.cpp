// The checks mirror Core::step(): first what the message must satisfy on its own, then where
// step() will take it given the core's role and term, and what that path asserts. Each check
// names the assertion it keeps out of reach.
#include "raft/validate.h"

namespace rpool::raft {

const char* to_string(RejectReason r) {
  switch (r) {
    case RejectReason::bad_receiver: return "bad_receiver";
    case RejectReason::bad_sender: return "bad_sender";
    case RejectReason::bad_term: return "bad_term";
    case RejectReason::bad_index: return "bad_index";
    case RejectReason::noncontiguous_entries: return "noncontiguous_entries";
    case RejectReason::bad_entry_term: return "bad_entry_term";
    case RejectReason::bad_config_entry: return "bad_config_entry";
    case RejectReason::commit_beyond_log: return "commit_beyond_log";
    case RejectReason::index_beyond_log: return "index_beyond_log";
    case RejectReason::leader_conflict: return "leader_conflict";
    case RejectReason::snapshot_bounds: return "snapshot_bounds";
    case RejectReason::bad_snapshot_meta: return "bad_snapshot_meta";
  }
  return "unknown";
}

namespace {

bool index_ok(LogIndex i) { return i.value() < index_max; }

// An AppendEntries on its own: Log::append_after asserts contiguity, Log::append and the log
// invariants assert non-decreasing terms, and the membership scans assert that a config entry
// decodes.
std::optional<RejectReason> check_append(const Message& m) {
  if (m.log_term > m.term) return RejectReason::bad_entry_term;
  Term previous = m.log_term;
  for (std::size_t k = 0; k < m.entries.size(); ++k) {
    const Entry& e = m.entries[k];
    if (e.index != m.index + (k + 1)) return RejectReason::noncontiguous_entries;
    // Terms never decrease along a log, and a leader's log holds no term after its own: an
    // entry from the future would later make this node's own appends go backwards in term.
    if (e.term < previous || e.term > m.term) return RejectReason::bad_entry_term;
    previous = e.term;
    if (e.type == EntryType::config) {
      Membership decoded;
      if (!decode_membership(e.data, decoded)) return RejectReason::bad_config_entry;
    }
  }
  return std::nullopt;
}

// One InstallSnapshot chunk on its own: handle_snapshot asserts that the received bytes never
// exceed the declared size and equal it when done.
std::optional<RejectReason> check_snapshot_chunk(const Message& m) {
  const SnapshotMeta& meta = m.snapshot;
  if (meta.index == LogIndex(0) || meta.term == Term(0) || meta.term > m.term ||
      meta.membership.voters.empty()) {
    return RejectReason::bad_snapshot_meta;
  }
  if (m.offset > m.snapshot_bytes) return RejectReason::snapshot_bounds;
  if (m.data.size() > m.snapshot_bytes - m.offset) return RejectReason::snapshot_bounds;
  if (m.done && m.offset + m.data.size() != m.snapshot_bytes) return RejectReason::snapshot_bounds;
  return std::nullopt;
}

}  // namespace

std::optional<RejectReason> validate(const Core& core, const Message& m) {
  // step() asserts these first; every reply goes to m.from, and send() asserts it is neither 0
  // nor ourselves.
  if (m.to != core.id()) return RejectReason::bad_receiver;
  if (m.from == NodeId(0) || m.from == core.id()) return RejectReason::bad_sender;
  if (m.term == Term(0) || m.term.value() >= term_max) return RejectReason::bad_term;
  if (!index_ok(m.index) || !index_ok(m.commit) || !index_ok(m.reject_hint) ||
      !index_ok(m.snapshot.index)) {
    return RejectReason::bad_index;
  }
  for (const Entry& e : m.entries) {
    if (!index_ok(e.index) || e.term.value() >= term_max) return RejectReason::bad_index;
  }
  if (m.type == MessageType::append) {
    if (auto r = check_append(m)) return r;
  }
  if (m.type == MessageType::snapshot) {
    if (auto r = check_snapshot_chunk(m)) return r;
  }

  // From here on it depends on where step() takes the message. An older term is answered from
  // the term alone (step() reads nothing else of it).
  if (m.term < core.current_term()) return std::nullopt;
  const bool from_leader = m.type == MessageType::append || m.type == MessageType::heartbeat ||
                           m.type == MessageType::snapshot;
  const Log& log = core.log();
  if (from_leader) {
    // Election Safety (§5.2): there is one leader per term. step_leader asserts it.
    if (m.term == core.current_term() && core.role() == Role::leader) {
      return RejectReason::leader_conflict;
    }
    // Anything else becomes (or stays) a follower of m.from at m.term and handles it as one.
    if (m.type == MessageType::heartbeat && m.commit > log.commit_index() &&
        m.commit > log.last_index()) {
      return RejectReason::commit_beyond_log;  // Log::commit_to asserts commit <= last index
    }
    if (m.type == MessageType::snapshot && m.snapshot.index > log.commit_index() && m.offset != 0) {
      // A continuation is appended to the transfer in progress, whose size came with its first
      // chunk: the chunk must agree with that size, not only with its own.
      const auto receiving = core.snapshot_receiving();
      if (receiving && receiving->index == m.snapshot.index && receiving->term == m.snapshot.term &&
          receiving->received == m.offset && receiving->total != m.snapshot_bytes) {
        return RejectReason::snapshot_bounds;
      }
    }
    return std::nullopt;
  }
  if (core.role() == Role::leader && m.term == core.current_term()) {
    // A follower acknowledges at most what this leader sent it in this term. An index beyond the
    // log would become match_index (check_invariants: match_index <= last index) or next_index
    // (send_append would find no term for prev_log_index and take it for a compacted one).
    if (m.type == MessageType::append_resp && m.index > log.last_index()) {
      return RejectReason::index_beyond_log;
    }
    if (m.type == MessageType::heartbeat_resp && m.index > log.last_index()) {
      return RejectReason::index_beyond_log;  // a follower's commit index is in our log
    }
    if (m.type == MessageType::snapshot_resp && m.done && !m.reject && m.index > log.last_index()) {
      return RejectReason::index_beyond_log;
    }
  }
  return std::nullopt;
}

}  // namespace rpool::raft
