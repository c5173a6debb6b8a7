// raft::validate — the gate between bytes from the network and Core::step().
//
// Core::step() trusts its input: it asserts what a correct peer never sends (a message at term 0,
// an AppendEntries to the leader of its own term, a commit index beyond the log, a snapshot
// chunk larger than its snapshot). A decoded message may be anything, so the node runs every
// received message through validate() immediately before step() (on the same core state:
// validate and step with no other input in between) and drops what it refuses. A message that
// passes cannot trip an assertion in step() or in the Ready cycle that follows it; a message a
// correct peer sends always passes (tests/unit/raft/validate_test.cpp checks both).
//
// What validate() does not do: authenticate. A sender that passed the transport's handshake can
// still claim any id and lie within the rules (vote, acknowledge, send a well-formed log); that
// needs authenticated connections, not validation.
#pragma once

#include <cstdint>
#include <optional>

#include "raft/core.h"
#include "raft/types.h"

namespace rpool::raft {

// Why a message was refused. The names (to_string) are stable: the node uses them as a metrics
// label. Append new reasons at the end.
enum class RejectReason : std::uint8_t {
  bad_receiver,           // `to` is not this node
  bad_sender,             // `from` is 0 or this node
  bad_term,               // term 0, or beyond term_max
  bad_index,              // an index (index, commit, hint, entry, snapshot) beyond index_max
  noncontiguous_entries,  // append entries not exactly prev_index + 1, + 2, ...
  bad_entry_term,         // append entry terms decreasing, below prev_log_term or above the term
  bad_config_entry,       // a config entry whose data is not a valid membership
  commit_beyond_log,      // heartbeat commit beyond this node's last index
  index_beyond_log,       // a reply to the leader acknowledging entries it does not have
  leader_conflict,        // append / heartbeat / snapshot to the leader at its own term
  snapshot_bounds,        // chunk outside its declared size, or disagreeing with the transfer
  bad_snapshot_meta,      // snapshot index or term 0, term above the message's, no voters
};
inline constexpr std::size_t reject_reason_count = 12;

const char* to_string(RejectReason r);

// Terms and indexes grow by one per election or entry; values near 2^64 would wrap in
// term.next() or prev_index + entries.size(). Nothing legitimate comes close to these.
inline constexpr std::uint64_t term_max = std::uint64_t{1} << 62;
inline constexpr std::uint64_t index_max = std::uint64_t{1} << 62;

// nullopt when `core` may step `m` now; else why not (drop the message). Pure: reads the core.
std::optional<RejectReason> validate(const Core& core, const Message& m);

}  // namespace rpool::raft
