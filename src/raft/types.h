// The vocabulary of the Raft core: log entries, membership, hard state, snapshots, messages,
// and the expected failures (errc). Everything here is plain data; the logic is in core.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "base/types.h"

namespace rpool::raft {

// The kind of a log entry. u8-backed so the node can store it as the WAL record's kind byte.
enum class EntryType : std::uint8_t {
  normal = 1,  // an application command (opaque bytes; the pool decodes them)
  noop = 2,    // appended by every new leader (Raft §8: commits the entries of earlier terms)
  config = 3,  // a Membership, encoded by encode_membership(); takes effect when appended (§4.1)
};

struct Entry {
  Term term;
  LogIndex index;
  EntryType type = EntryType::normal;
  Bytes data;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// Bytes of an entry counted against message_bytes_max: payload plus a fixed header allowance.
inline std::size_t entry_bytes(const Entry& e) { return e.data.size() + 24; }

// The servers of the cluster. Voters elect leaders and count toward commit; learners only
// receive the log (they join as learners and are promoted once caught up, thesis §4.2.1).
// Both lists are sorted and disjoint.
struct Membership {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  // Opaque to Raft: what the application records about a member when it is added (rpool: its
  // raft and HTTP addresses), so that it travels with the membership through the log and
  // snapshots. Keys are members; at most member_context_bytes_max bytes each.
  std::map<NodeId, std::string> context;

  bool is_voter(NodeId id) const;
  bool is_learner(NodeId id) const;
  bool contains(NodeId id) const { return is_voter(id) || is_learner(id); }
  std::size_t quorum() const { return voters.size() / 2 + 1; }
  // Sorted, disjoint, no zero id.
  bool valid() const;
  friend bool operator==(const Membership&, const Membership&) = default;
};

inline constexpr std::size_t member_context_bytes_max = 4096;

// Encoding of a Membership (the data of a config entry and part of snapshot metadata):
//   u8 version = 2, u32 voter count, u64 ids..., u32 learner count, u64 ids...,
//   u32 context count, then per context (ascending id): u64 id, u32 length, bytes.
// Version 1 (without the contexts) still decodes.
void encode_membership(const Membership& m, Bytes& out);
Bytes encode_membership(const Membership& m);
// False on malformed input (short, trailing bytes, unsorted or overlapping lists).
bool decode_membership(ByteView in, Membership& out);

// The state the node must make durable (Raft Figure 2 "persistent state", plus commit_index so a
// restarted node can apply what it knew committed without waiting for a leader).
struct HardState {
  Term current_term;
  NodeId voted_for;  // 0: none in current_term
  LogIndex commit_index;
  friend bool operator==(const HardState&, const HardState&) = default;
};

// What a snapshot stands for: the state machine after applying every entry up to `index`.
struct SnapshotMeta {
  LogIndex index;
  Term term;
  Membership membership;  // the latest configuration at or before `index`
  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

struct Snapshot {
  SnapshotMeta meta;
  // The application's state machine image. Shared: the core keeps it to send to lagging
  // followers and hands the same bytes to the node.
  std::shared_ptr<const Bytes> data;
};

enum class MessageType : std::uint8_t {
  pre_vote = 1,       // §9.6: "would you vote for me?"; changes no one's term
  pre_vote_resp = 2,  //
  vote = 3,           // RequestVote (§5.2); context = 1: leadership transfer, skip the lease check
  vote_resp = 4,      //
  // The leader's messages to a follower carry its round in context, and their answers echo it
  // (Progress::first_round).
  append = 5,  // AppendEntries (§5.3): index = prev_log_index, log_term = prev_log_term
  append_resp =
      6,  // index = match (success) or the rejected prev_log_index; reject_hint, log_term = hint
  heartbeat = 7,         // empty AppendEntries without the consistency check; context = read round
  heartbeat_resp = 8,    // context echoes the read round; index = the follower's commit index
  snapshot = 9,          // InstallSnapshot chunk (§7): snapshot meta, offset, data, done
  snapshot_resp = 10,    // offset = next byte wanted; reject = restart from 0; index = installed
  timeout_now = 11,      // §3.10: start an election now
  read_index = 12,       // follower -> leader: a ReadIndex request, context = caller's read id
  read_index_resp = 13,  // leader -> follower: index = read index, context = read id
};

const char* to_string(MessageType t);

struct Message {
  MessageType type = MessageType::append;
  NodeId from;
  NodeId to;
  Term term;
  Term log_term;
  LogIndex index;
  LogIndex commit;
  LogIndex reject_hint;
  bool reject = false;
  std::uint64_t context = 0;
  std::vector<Entry> entries;
  // InstallSnapshot chunk fields.
  SnapshotMeta snapshot;
  std::uint64_t offset = 0;
  std::uint64_t snapshot_bytes = 0;  // total size of the snapshot data
  Bytes data;
  bool done = false;
};

// Wire encoding of a Message, for the node's peer transport (little-endian, see types.cpp).
void encode_message(const Message& m, Bytes& out);
// False on malformed input; never reads out of bounds.
bool decode_message(ByteView in, Message& out);

// Expected failures of the core's public calls.
enum class errc {
  ok = 0,
  not_leader = 1,            // the call needs the leader (the node forwards or answers 503)
  no_leader = 2,             // a follower read with no leader known
  transfer_in_progress = 3,  // proposals pause during leadership transfer (§3.10)
  change_in_progress = 4,    // one membership change at a time (§4.1)
  not_caught_up = 5,         // a learner may be promoted only once caught up
  unknown_node = 6,          // change or transfer names a server outside the configuration
  already_member = 7,        // add of a server that is already a member
  invalid_change = 8,        // e.g. removing the last voter
  too_large = 9,             // a proposal over entry_bytes_max
  compacted = 10,            // compact() below the current snapshot
  overloaded = 11,           // the leader's uncommitted entries reached uncommitted_bytes_max:
                             // the proposal is refused (the node answers 503, retry later)
};

const std::error_category& raft_category();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), raft_category()}; }

}  // namespace rpool::raft

template <>
struct std::is_error_code_enum<rpool::raft::errc> : std::true_type {};
