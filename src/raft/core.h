// raft::Core — the Raft consensus algorithm as a pure, deterministic state machine.
//
// The core does no I/O: it reads no clock (time is tick()), opens no file and sends nothing.
// The node feeds it inputs (step, tick, propose, read_index, transfer_leader,
// change_membership, compact) and collects its outputs with ready() / advance(). Randomness (the
// randomized election timeout, Raft §5.2) comes from a PRNG seeded through Config, so a whole
// cluster replays exactly from one seed.
//
// Implemented: leader election with randomized timeouts, pre-vote (thesis §9.6) and check-quorum
// (thesis §6.2); log replication with the consistency check and fast backtracking (§5.3), commit
// of current-term entries only (§5.4.2), a no-op entry per new leader (§8); per-follower flow
// control (probe / replicate / snapshot, an in-flight window bounded in appends and in bytes,
// batching, entry and byte limits per message, one snapshot chunk in flight); snapshots and log
// compaction with chunked InstallSnapshot (§7); linearizable ReadIndex reads (thesis §6.4);
// leadership transfer (thesis §3.10); single-server membership changes with learners (thesis
// §4.1, §4.2.1), a removed leader handing over before it steps down. Bounds on what the leader
// holds and hands out: uncommitted bytes (propose() answers overloaded beyond them) and
// committed bytes per Ready.
//
// Storage: see log.h. The core keeps the log since the last snapshot in memory; the node persists
// Ready's outputs and gives them back in BootState on restart. What the node implements:
//   - at start: read the WAL once into BootState {hard state (term, vote, commit), the latest
//     snapshot (meta + data), every entry after it}; restore the state machine from the
//     snapshot; the core then re-emits committed entries after it in committed_entries;
//   - per Ready: the steps listed at struct Ready (one fsync covers snapshot, entries, hard state);
//     steps 2-4 are raft::persist() (storage.h) over the node's implementation of DurableStore;
//     an Entry maps to a WAL record as (index, term, kind = static_cast<u8>(EntryType), data);
//   - to compact: write the state machine snapshot durably, call compact(index, data), then
//     delete WAL segments wholly at or below index.
//
// Threading: none. One caller, one thread (the node's strand).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "base/splitmix64.h"
#include "raft/log.h"
#include "raft/types.h"

namespace rpool::raft {

// Named bounds and defaults.
inline constexpr int election_ticks_default = 10;
inline constexpr int heartbeat_ticks_default = 1;
inline constexpr std::size_t entries_per_append_max_default = 4096;
inline constexpr std::size_t message_bytes_max_default = std::size_t{1} << 20;  // 1 MiB
inline constexpr std::size_t inflight_appends_max_default = 256;
// Bytes of entries (entry_bytes) in appends sent to one follower and not yet acknowledged. What
// is in flight includes everything the node's peer transport holds queued for that peer, and
// the transport refuses a message beyond its per-peer queue bound (PeerTransport::Options::
// queue_bytes_max, 64 MiB): half of it leaves room for frame headers, heartbeats and a snapshot
// chunk, so a full window is never refused. The node sets Config::inflight_bytes_max from the
// transport's bound. (A count alone did not bound this: 256 appends of 1 MiB are 256 MiB.)
inline constexpr std::size_t transport_queue_bytes_max_default = std::size_t{64} << 20;
inline constexpr std::size_t inflight_bytes_max_default = transport_queue_bytes_max_default / 2;
inline constexpr std::size_t snapshot_chunk_bytes_default = std::size_t{1} << 20;
// A snapshot chunk goes out only when the previous one is acknowledged (one chunk in flight per
// follower); if no answer comes within this many ticks, the chunk is sent again. It must exceed
// a chunk's time on the slowest link plus a round trip, or chunks go out twice: 40 ticks is 2 s
// at the node's 50 ms tick, enough for a 1 MiB chunk at 0.5 MB/s.
inline constexpr int snapshot_resend_ticks_default = 4 * election_ticks_default;
inline constexpr std::size_t entry_bytes_max_default = std::size_t{1} << 20;
// Payload bytes of entries the leader appended in its term that are not committed yet. Beyond
// it propose() refuses with errc::overloaded (one proposal is always accepted when nothing is
// uncommitted), so a leader that cannot reach a quorum, or is fed faster than a quorum writes,
// stops growing its log in memory and tells clients to come back.
inline constexpr std::size_t uncommitted_bytes_max_default = std::size_t{64} << 20;
// Bytes (entry_bytes) of committed_entries in one Ready; the rest comes in the next ones (at
// least one entry per Ready). Bounds the memory and the time of one apply round, e.g. after a
// restart that finds a long committed log.
inline constexpr std::size_t committed_bytes_per_ready_max_default = std::size_t{16} << 20;
static_assert(heartbeat_ticks_default < election_ticks_default);
static_assert(entry_bytes_max_default <= uncommitted_bytes_max_default);
// One append of the largest size always fits the byte window.
static_assert(message_bytes_max_default <= inflight_bytes_max_default);
static_assert(entry_bytes_max_default + 24 <= inflight_bytes_max_default);

// Vote context marking an election forced by leadership transfer (thesis §3.10): voters skip the
// check-quorum lease that would otherwise make them ignore it (thesis §4.2.3).
inline constexpr std::uint64_t vote_context_transfer = 1;

// The core's seeded PRNG: the project's SplitMix64, from which it draws its election timeouts.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : source_(seed) {}
  std::uint64_t next() { return source_.next(); }
  // Uniform in [0, n) (n > 0); the tiny modulo bias is irrelevant for timeouts.
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  SplitMix64 source_;
};

struct Config {
  NodeId id;
  // The membership used when neither the snapshot nor the log holds a config entry, i.e. the
  // cluster's founding members. A node joining later starts with an empty one.
  Membership initial_membership;
  int election_ticks = election_ticks_default;  // timeout drawn from [e, 2e)
  int heartbeat_ticks = heartbeat_ticks_default;
  std::size_t entries_per_append_max = entries_per_append_max_default;
  std::size_t message_bytes_max = message_bytes_max_default;
  std::size_t inflight_appends_max = inflight_appends_max_default;
  std::size_t inflight_bytes_max = inflight_bytes_max_default;
  std::size_t snapshot_chunk_bytes = snapshot_chunk_bytes_default;
  int snapshot_resend_ticks = snapshot_resend_ticks_default;
  std::size_t uncommitted_bytes_max = uncommitted_bytes_max_default;
  std::size_t committed_bytes_per_ready_max = committed_bytes_per_ready_max_default;
  std::size_t entry_bytes_max = entry_bytes_max_default;
  bool pre_vote = true;
  bool check_quorum = true;
  std::uint64_t random_seed = 0;
  // Never set outside tests/chaos's planted-bug build: the leader commits an entry as soon as it
  // is on its own disk, without a majority. It breaks Raft on purpose, to show the checker notices.
  bool unsafe_commit_alone = false;
};

// Everything the node read back from its durable storage at start-up.
struct BootState {
  HardState hard_state;
  std::optional<Snapshot> snapshot;  // the latest snapshot, if any
  std::vector<Entry> entries;        // every durable entry after the snapshot, contiguous
};

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };
const char* to_string(Role r);

// A linearizable read is safe to serve once the state machine has applied `index`.
struct ReadState {
  std::uint64_t context = 0;  // the id passed to read_index()
  LogIndex index;
  friend bool operator==(const ReadState&, const ReadState&) = default;
};

// What the node must do next. Handle the fields in this order, then call advance(ready):
//
//  1. messages: send now. These are the leader's AppendEntries, heartbeats, snapshot chunks,
//     TimeoutNow and read answers. They depend on nothing unsynced here: the leader may send its
//     entries before its own write finishes (thesis §10.2.1), because the core counts the leader
//     toward commit only once advance() reports the entries durable.
//  2. snapshot (if set): a snapshot received from the leader. Persist it (then drop WAL
//     entries at or below its index unless the log continues with the same (index, term) entry),
//     and restore the state machine from it.
//  3. entries: append to stable storage. entries.front().index may be <= the last stored
//     index: truncate the stored log from there first (a new leader overwrote a suffix, §5.3).
//  4. hard_state (if set): persist AFTER the entries (a torn write must not leave a commit index
//     beyond the stored log). Then sync (one fsync for 2-4).
//  5. messages_after_persist: send only once 2-4 are durable. These are votes (§5.2: a vote must
//     survive a crash), append/snapshot acknowledgements, and everything a follower or
//     candidate sends.
//  6. committed_entries: apply in order to the state machine (entries of type noop and config
//     carry nothing for it). All are durable and committed. At most
//     Config::committed_bytes_per_ready_max of them (at least one): has_ready() stays true
//     until the rest has been handed out.
//  7. read_states: answer each read once the applied index reaches its index.
//
// Between ready() and advance() the caller makes no other call on the core: inputs that
// arrive while the write is in flight wait for it.
struct Ready {
  std::optional<HardState> hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> read_states;
  std::vector<Message> messages;
  std::vector<Message> messages_after_persist;
};

// Single-server membership changes (thesis §4.1).
enum class ChangeType : std::uint8_t { add_learner, promote, remove };
struct MembershipChange {
  ChangeType type = ChangeType::add_learner;
  NodeId node;
  std::string context;  // add_learner: recorded as membership.context[node] (if not empty)
};

// The leader's view of one follower (thesis §5.3, etcd-style flow control).
struct Progress {
  enum class State : std::uint8_t {
    probe,      // one append at a time until the follower's log position is found
    replicate,  // optimistic pipelining, at most inflight_appends_max appends in flight
    snapshot,   // sending InstallSnapshot chunks, one in flight at a time
  };
  State state = State::probe;
  LogIndex match_index;     // highest index known replicated (durable) on the follower
  LogIndex next_index;      // next index to send; match_index < next_index
  bool probe_sent = false;  // probe: an append is outstanding
  struct Inflight {
    LogIndex last;      // the append's last entry
    std::size_t bytes;  // entry_bytes() of its entries
  };
  // replicate: the appends in flight, ascending; at most inflight_appends_max of them, and
  // inflight_bytes <= inflight_bytes_max unless a single append is larger by itself.
  std::vector<Inflight> inflight;
  std::size_t inflight_bytes = 0;     // sum of inflight[k].bytes
  bool recent_active = false;         // heard from since the last check-quorum round
  LogIndex snapshot_index;            // snapshot: the snapshot being sent
  std::uint64_t snapshot_offset = 0;  // snapshot: offset of the chunk in flight
  // snapshot: ticks since the chunk in flight was sent; at Config::snapshot_resend_ticks it is
  // sent again (it or its answer was lost).
  int snapshot_wait_ticks = 0;
  // snapshot: the leader round the chunk in flight carries. Sending a chunk starts a round, so a
  // heartbeat answer echoing this round or a later one answers a heartbeat sent after the chunk.
  std::uint64_t snapshot_round = 0;
  std::uint64_t read_ack_round = 0;  // highest read round the follower acknowledged
  // The leader's round when this Progress began. Every message to the follower carries the round
  // (context) and its answer echoes it: an answer from below first_round was sent to an earlier
  // incarnation of this member (removed, wiped and added back while the answer was in flight)
  // and says nothing about the node now behind the id.
  std::uint64_t first_round = 0;
};

class Core {
 public:
  Core(Config config, BootState boot);

  // --- inputs -------------------------------------------------------------------------------
  // One unit of logical time. Followers and candidates count toward an election; the leader
  // sends heartbeats and, every election timeout, checks that a quorum is still active.
  void tick();
  // Processes one message addressed to this node.
  void step(const Message& m);
  // Leader only: appends an entry. On success `index` (if non-null) receives its log index;
  // the entry is committed once it appears in committed_entries with the same term. Refused
  // with errc::overloaded while the uncommitted entries hold uncommitted_bytes_max.
  std::error_code propose(Bytes data, LogIndex* index = nullptr);
  // Starts a linearizable read (thesis §6.4). The answer comes back as a ReadState with the same
  // context, from read_states of a later Ready; on a follower it is the leader's read index.
  // A read may be lost (leader change, message loss): the caller times out and retries.
  std::error_code read_index(std::uint64_t context);
  // Leader only: hands leadership to `to` (thesis §3.10). Proposals fail with
  // transfer_in_progress until it succeeds or an election timeout passes.
  std::error_code transfer_leader(NodeId to);
  // Leader only: one membership change at a time, once an entry of the leader's term is
  // committed (thesis §4.1 and its errata). Add makes a learner; promote requires the learner to
  // have caught up with the commit index; a leader that removes itself steps down once the
  // change commits, after handing leadership to the most up-to-date remaining voter (TimeoutNow).
  std::error_code change_membership(MembershipChange change);
  // The application has a durable snapshot of its state at `index` (<= applied index): the
  // core discards the log up to it and sends the data to followers that need it.
  std::error_code compact(LogIndex index, std::shared_ptr<const Bytes> data);
  // What a snapshot of the state machine at `index` (snapshot index <= index <= applied index)
  // stands for: its term and the membership in force there. For a snapshot the application
  // saves without compacting the core to it (yet).
  SnapshotMeta snapshot_meta(LogIndex index) const;

  // --- outputs ------------------------------------------------------------------------------
  bool has_ready() const;
  Ready ready();
  void advance(const Ready& ready);

  // --- observers ----------------------------------------------------------------------------
  NodeId id() const { return config_.id; }
  Role role() const { return role_; }
  Term current_term() const { return current_term_; }
  NodeId voted_for() const { return voted_for_; }
  NodeId leader() const { return leader_; }
  const Log& log() const { return log_; }
  const Membership& membership() const { return membership_; }
  // The log index of the config entry membership() came from (0: from the snapshot or the
  // initial membership). The membership is committed once the commit index reaches it.
  LogIndex config_index() const { return config_entry_.index; }
  const Progress* progress(NodeId id) const;
  NodeId lead_transferee() const { return lead_transferee_; }
  HardState hard_state() const { return {current_term_, voted_for_, log_.commit_index()}; }
  const std::optional<Snapshot>& snapshot() const { return snapshot_; }
  // The InstallSnapshot transfer being received, if any (validate() checks that a further chunk
  // agrees with it before step() appends it).
  struct SnapshotReceiving {
    LogIndex index;
    Term term;
    std::uint64_t total = 0;     // declared size, from the transfer's first chunk
    std::uint64_t received = 0;  // bytes so far, <= total
  };
  std::optional<SnapshotReceiving> snapshot_receiving() const {
    if (!receiving_) return std::nullopt;
    return SnapshotReceiving{receiving_->meta.index, receiving_->meta.term, receiving_->total,
                             receiving_->data.size()};
  }
  // Crashes loudly if the state is inconsistent. Run after every input.
  void check_invariants() const;

 private:
  // Role changes: the only functions that assign role_.
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();

  void tick_election();
  void tick_heartbeat();
  void campaign(bool transfer);
  enum class PollResult { pending, won, lost };
  PollResult poll(NodeId from, bool granted);

  void step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);

  void handle_vote(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_resp(const Message& m, Progress& pr);
  void handle_heartbeat_resp(const Message& m, Progress& pr);
  // The follower holds our log up to `committed` after a snapshot: back to probing from there.
  // True when this leader stepped down on the way (the caller must stop).
  bool snapshot_installed(NodeId from, Progress& pr, LogIndex committed);
  void handle_snapshot_resp(const Message& m, Progress& pr);

  void send(Message m);
  bool send_append(NodeId to, Progress& pr, bool allow_empty);
  void send_snapshot_chunk(NodeId to, Progress& pr);
  void send_heartbeat(NodeId to, const Progress& pr);
  bool inflight_full(const Progress& pr) const;
  static void clear_inflight(Progress& pr);
  void broadcast_append();
  void broadcast_heartbeat();
  void flush();

  bool maybe_commit();
  void on_commit_advanced();
  bool committed_in_current_term() const;
  bool removal_committed() const;
  void hand_over_and_step_down();
  LogIndex self_match() const;

  void start_read(std::uint64_t context, NodeId from);
  void release_reads();
  void answer_read(std::uint64_t context, NodeId from, LogIndex index);

  void append_entries(EntryType type, std::vector<Bytes> payloads);
  void set_membership(Membership m, LogIndex config_index, Term config_term);
  void rescan_membership();
  void scan_membership_forward(LogIndex from);
  Membership membership_at(LogIndex index) const;
  void reset_progress();
  // A Progress for a member this leader starts replicating to now (see Progress::first_round).
  Progress new_progress();
  void abort_transfer();
  void reset_election_timeout();
  bool promotable() const { return membership_.is_voter(config_.id); }

  Config config_;
  Rng rng_;

  // Raft Figure 2 persistent state (durable once handed out in a Ready and advanced).
  Term current_term_;
  NodeId voted_for_;  // none (0) or the candidate voted for in current_term_
  Log log_;
  HardState persisted_hard_state_;

  Role role_ = Role::follower;
  NodeId leader_;  // known leader of current_term_, 0 if none

  // The configuration in force: the latest config entry in the log (§4.1: used as soon as it is
  // appended), else the snapshot's, else the initial one.
  Membership membership_;
  EntryId config_entry_;        // the config entry membership_ came from; index 0: not from the log
  Membership base_membership_;  // the snapshot's membership (or the initial one)
  LogIndex pending_config_index_;  // leader: latest config entry; no new change until committed

  std::optional<Snapshot> snapshot_;          // latest snapshot (compacted or received)
  std::optional<Snapshot> pending_snapshot_;  // received, not yet handed out in a Ready
  struct SnapshotReceive {
    SnapshotMeta meta;
    std::uint64_t total = 0;
    Bytes data;
  };
  std::optional<SnapshotReceive> receiving_;  // InstallSnapshot chunks so far (volatile)

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;  // in [election_ticks, 2 * election_ticks)

  std::map<NodeId, bool> votes_;         // candidate / pre-candidate: responses received
  std::map<NodeId, Progress> progress_;  // leader: every member except itself
  NodeId lead_transferee_;               // leader: transfer target, 0 if none
  // leader: payload bytes of the entries of current_term_ after the commit index (0 otherwise)
  std::size_t uncommitted_bytes_ = 0;
  bool broadcast_pending_ = false;  // leader: new entries to send at the next flush()

  struct PendingRead {
    std::uint64_t context = 0;
    NodeId from;
    LogIndex index;
    std::uint64_t round = 0;
  };
  std::vector<PendingRead> reads_waiting_;  // leader: waiting for a commit in the current term
  std::vector<PendingRead> reads_;          // leader: waiting for a quorum to ack their round
  // leader: the current round. Messages to followers carry it (context) and their answers echo
  // it. A round starts with each read (requests.cpp), each Progress (Progress::first_round) and
  // each snapshot chunk sent (Progress::snapshot_round).
  std::uint64_t read_round_ = 0;
  bool read_round_pending_ = false;         // leader: a heartbeat round to send at flush()

  std::vector<Message> messages_;
  std::vector<Message> messages_after_persist_;
  std::vector<ReadState> read_states_;
  bool ready_outstanding_ = false;
};

}  // namespace rpool::raft
