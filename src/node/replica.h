// Replica: one rpool node's state machine. It is where the pool, the log and the consensus core
// meet, and it reaches the world only through the interfaces of env.h and storage.h, so the same
// code runs in rpoold (server.h: Asio, sockets, files) and in the whole-node simulation (tests/sim:
// simulated time, network and disk).
//
// A draw's path through it: the HTTP layer (http_api.h) parses the request into a pool::Command
// and calls write(); on the leader, write() proposes the command to the raft::Core (a follower
// answers errc::not_leader and the HTTP layer forwards the request to the leader). After a burst
// of inputs, one Ready collects everything (process_ready): its messages go to the transport, its
// entries, hard state and snapshot to Storage, all proposals made meanwhile in one append and one
// fdatasync (group commit), while the leader's AppendEntries go out before its own fsync finishes
// (thesis §10.2.1). When the entry commits, apply() runs it through the pool::StateMachine and
// answers the write with the pool's result.
//
// The Ready cycle (see raft/core.h for the contract). Inputs (peer messages, ticks, proposals,
// reads) go to the core at once unless a Ready is being persisted, in which case they wait in
// `deferred_` until advance(): the core accepts no input between ready() and advance(). The
// committed entries of a Ready are durable already (the core hands out only entries of earlier
// Readies), so they are applied and answered while that Ready's own write runs.
//
// A write whose entry is overwritten, or which does not apply within write_timeout, is answered
// errc::outcome_unknown: it may still apply, and the client retries with its Idempotency-Key.
// A linearizable read takes the ReadIndex path (a follower asks the leader for the read index),
// waits until applied >= read index, and is answered then, while the pool shows exactly that index.
//
// Threading: none of its own. Every call, and every callback it gets from Env, MessageTransport
// and Storage, runs on one thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/metrics.h"
#include "node/config.h"
#include "node/draw_stats.h"
#include "node/env.h"
#include "node/errc.h"
#include "node/logger.h"
#include "node/storage.h"
#include "pool/state_machine.h"
#include "raft/core.h"
#include "raft/validate.h"
#include "wal/log.h"

namespace rpool::node {

struct ReplicaOptions {
  Config config;
  NodeId id;
  std::string data_dir;  // empty: config.data_dir_for(id)
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds read_timeout{5000};
  // A membership change answers outcome_unknown if it does not finish in this time (the learner
  // may still be catching up: repeating the request waits again).
  std::chrono::milliseconds change_timeout{60000};
  // This node joins a running cluster (rpoold --join): it starts with no membership and an
  // unknown cluster id, and waits for the leader to add it.
  bool join = false;
  // The pool's options: rpoold keeps the defaults; the node simulation makes the idempotency
  // key log's blocks small, to cross them often.
  pool::Options pool;
};

// Counters for /metrics and tests.
struct ReplicaCounters {
  ReplicaCounters()
      : wal_fsync_seconds(metrics::latency_buckets()),
        snapshot_seconds(metrics::latency_buckets()) {}
  std::uint64_t proposals = 0;
  std::uint64_t proposals_failed = 0;
  std::uint64_t draws = 0;  // drawn units applied (request_ids handed out), all pools
  std::uint64_t draws_pool_empty = 0;
  // Per pool, the same counts are DrawStats::Pool::units and pool_empty (draw_stats()).
  std::uint64_t leader_changes = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t snapshot_bytes_last = 0;
  std::uint64_t snapshots_installed = 0;  // received from the leader
  std::uint64_t wal_bytes = 0;
  std::uint64_t wal_syncs = 0;
  std::uint64_t storage_failures = 0;
  // Peer messages refused by raft::validate before they reached the core, by reason.
  std::array<std::uint64_t, raft::reject_reason_count> peer_rejected{};
  metrics::Histogram wal_fsync_seconds;
  metrics::Histogram snapshot_seconds;
};

// One leader change as this node saw it, for the console.
struct LeaderChange {
  std::uint64_t wall_ms = 0;  // this node's wall clock when it learnt of it
  NodeId leader;              // NodeId() while no leader is known
  Term term;
};
// The changes kept, newest last; older ones are dropped.
inline constexpr std::size_t leader_changes_kept_max = 32;

// The cluster id in every peer handshake, so that nodes configured for another cluster never
// exchange messages: a hash of the founding members (ids and raft addresses), computed when the
// cluster forms and kept in the data directory (a node that joins later learns it from its first
// peer), so that later edits of the config's member list do not change it.
inline constexpr std::string_view cluster_id_file = "cluster-id";
std::uint64_t cluster_id_of(const Config& config);
// The file's content: 16 hex digits and a newline.
std::string cluster_id_text(std::uint64_t id);

class Replica {
 public:
  using Done = std::function<void(const Outcome&)>;
  // `result` is set when the write applied (its pool::Result may still carry a pool error).
  using WriteDone = std::function<void(const Outcome&, const pool::Result* result)>;
  using SnapshotDone = std::function<void(const Outcome&, LogIndex snapshot_index)>;

  Replica(Env& env, MessageTransport& transport, const Logger& logger, ReplicaOptions options);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Recovers the node's state from what wal::recover() found and checked (the log, the hard
  // state, the snapshot to start from) and the cluster id beside them, before the log is handed
  // to Storage. On failure returns false and sets `error` to one line.
  bool recover(wal::Log& log, const wal::HardState& hard, std::optional<wal::SnapshotFile> snapshot,
               std::string& error);
  // Starts ticking and the Ready loop on `storage`, which outlives the replica's use of it.
  void start(Storage& storage);

  // Inputs.
  void step(raft::Message&& message);  // from a peer
  // Proposes a command (the leader; elsewhere errc::not_leader) and answers once it applied.
  void write(pool::Command command, WriteDone done);
  // A linearizable read: done(ok) once this node has applied everything committed before the
  // read began; pool() and applied() then show the state to answer with.
  void read(Done done);
  // Snapshots the pool at the applied index and compacts the log all the way to it.
  void take_snapshot(SnapshotDone done);
  // Membership and leadership (membership.cpp); the leader only, elsewhere errc::not_leader.
  void add_member(Member member, Done done);
  void remove_member(NodeId id, Done done);
  void transfer_leader(NodeId to, Done done);
  // Graceful stop, first step: no new writes; a leader hands over; `drained` runs once no write,
  // read or transfer waits any more (bounded by their timeouts).
  void shutdown(std::function<void()> drained);
  // Second step: stops ticking, syncs and closes the storage; `done` runs after.
  void close(std::function<void()> done);

  // The transport learned the cluster id from a peer (a joining node): keep it.
  void adopt_cluster_id(std::uint64_t id);
  // Set when storage failed in a way the node cannot recover from; the process exits 1.
  const std::optional<std::string>& fatal() const { return fatal_; }
  void on_fatal(std::function<void()> callback) { on_fatal_ = std::move(callback); }

  // State, for answers and metrics.
  NodeId id() const { return options_.id; }
  const ReplicaOptions& options() const { return options_; }
  const raft::Core& core() const { return *core_; }
  const pool::StateMachine& pool() const { return pool_; }
  // The last committed entry applied. Ahead of the core's applied index while a Ready whose
  // committed entries were applied early is being written; equal to it otherwise.
  LogIndex applied() const { return applied_; }
  LogIndex snapshot_index() const { return snapshot_index_; }
  std::uint64_t cluster_id() const { return cluster_id_; }
  bool storage_failed() const { return storage_failed_; }
  bool stopping() const { return stopping_; }
  // A member's addresses (from the membership's context; founding members' from the config).
  const Member* member_info(NodeId id) const;

  // What a backup (GET /v1/snapshot, backup.h) is built from: the newest snapshot image (shared,
  // not copied) and the committed pool entries after it, up to applied(). Cheap on the event
  // loop (the entries since the last snapshot are copied, the state is not serialised); the
  // file is assembled and checksummed from it on another thread. Defined in backup.cpp.
  struct BackupSource {
    LogIndex index;                                   // applied()
    std::shared_ptr<const Bytes> image;               // pool::StateMachine::snapshot() bytes
    std::vector<std::pair<LogIndex, Bytes>> entries;  // normal entries after the image
  };
  BackupSource backup_source() const;
  Env& env() const { return env_; }
  const ReplicaCounters& counters() const { return counters_; }
  // Observed and expected draws per pool and item since this process started.
  const DrawStats& draw_stats() const { return draw_stats_; }
  // The last leader changes this node saw (at most leader_changes_kept_max), oldest first.
  const std::deque<LeaderChange>& leader_changes() const { return leader_changes_; }
  std::size_t writes_waiting() const { return writes_.size(); }

  // Crashes loudly if the replica's bookkeeping is inconsistent. Run after every event in tests
  // (set_check_invariants) and in debug builds.
  void check_invariants() const;
  void set_check_invariants(bool on) { check_invariants_ = on; }
  // Tests: called after every entry this replica applies (result: null for a noop or config entry,
  // or an entry that does not decode), with the pool as that entry left it.
  using ApplyObserver = std::function<void(const raft::Entry& entry, const pool::Result* result)>;
  void set_apply_observer(ApplyObserver observer) { apply_observer_ = std::move(observer); }

 private:
  struct PendingWrite {
    Term term;
    Clock::time_point deadline;
    WriteDone done;
  };
  struct PendingRead {
    Clock::time_point deadline;
    LogIndex index;  // 0 until the read index is known
    bool indexed = false;
    Done done;
  };
  // A core input, run now or after the Ready being persisted is advanced. `abandon`, when set,
  // answers the request the input carries if the input never runs (the log failed meanwhile).
  struct Input {
    std::function<void()> run;
    std::function<void(const Outcome&)> abandon;
  };

  void with_core(std::function<void()> run, std::function<void(const Outcome&)> abandon = nullptr);
  void after_event();  // invariants, then the next Ready
  // The log failed for good: every waiting request gets an answer before the process exits.
  void abandon_requests();
  Outcome storage_outcome() const;
  void schedule_ready();
  void process_ready();
  // Hands the Ready's writes to storage. Returns the Ready while its write is under way
  // (on_persisted() gets it back), or null when nothing needed writing and on_persisted() ran.
  std::shared_ptr<const raft::Ready> persist(raft::Ready ready);
  void write_ready(std::shared_ptr<const PersistJob> job, std::shared_ptr<raft::Ready> ready,
                   bool reopen);
  void retry_storage();
  void storage_recovered();
  void storage_failed(std::error_code ec, const std::string& detail);
  void on_persisted(raft::Ready ready);
  void apply(const raft::Entry& entry);
  void count_draws(const pool::Result& result);
  void fail_write(PendingWrite& write, errc e, std::string message);
  void observe_role();
  void ensure_bootstrap();
  void serve_reads();
  void maybe_snapshot();
  void snapshot(bool compact_all, SnapshotDone done);
  // The second half of snapshot(), on the event loop once the pool's image is encoded.
  void snapshot_encoded(bool compact_all, std::shared_ptr<const wal::SnapshotFile> file,
                        Clock::time_point started, SnapshotDone done);
  void on_tick();
  void expire_requests();
  void maybe_drained();

  // Membership (membership.cpp).
  void sync_peers();
  void drive_change();
  void end_change(const Outcome& outcome);
  bool busy(const Done& done);
  void drive_transfer();
  void end_transfer(bool done, std::string message);
  void start_shutdown_transfer();

  Env& env_;
  MessageTransport& transport_;
  const Logger& logger_;
  ReplicaOptions options_;
  Storage* storage_ = nullptr;  // set by start()
  std::uint64_t cluster_id_ = 0;
  bool check_invariants_ = false;
  ApplyObserver apply_observer_;

  std::unique_ptr<raft::Core> core_;
  pool::StateMachine pool_;

  bool ready_outstanding_ = false;  // a Ready is being persisted; inputs wait in deferred_
  bool ready_scheduled_ = false;
  std::deque<Input> deferred_;
  bool storage_failed_ = false;          // writes answer storage_full until a retry succeeds
  std::function<void()> storage_retry_;  // writes the failed Ready again (set only after a failure)
  std::error_code storage_error_;        // the last storage failure
  bool stopping_ = false;
  bool closed_ = false;
  std::optional<std::string> fatal_;
  std::function<void()> on_fatal_;

  LogIndex applied_;                            // applied_ <= commit index; see applied()
  std::map<LogIndex, PendingWrite> writes_;     // by the index their entry was proposed at
  std::map<std::uint64_t, PendingRead> reads_;  // by read context
  // Read contexts start at a random value in every process, so an answer to a read that a
  // previous process of this node asked for can never be taken for one of ours.
  std::uint64_t next_read_context_ = 0;

  raft::Role last_role_ = raft::Role::follower;
  NodeId last_leader_;
  LogIndex snapshot_index_;  // of the newest durable snapshot
  bool snapshot_in_progress_ = false;
  // The newest snapshot (index, image): the core is compacted to it only at the next snapshot.
  std::pair<LogIndex, std::shared_ptr<const Bytes>> margin_snapshot_;
  Term bootstrap_term_;  // the term in which this node proposed the catalog
  Term persisted_term_;  // the hard state last saved
  NodeId persisted_vote_;
  Clock::time_point last_commit_save_;
  std::function<void()> drained_;
  bool drained_called_ = false;
  ReplicaCounters counters_;
  DrawStats draw_stats_;
  std::deque<LeaderChange> leader_changes_;  // size() <= leader_changes_kept_max

  struct MemberChange {
    enum class Kind : std::uint8_t { add, remove } kind = Kind::add;
    Member member;   // add: the new node; remove: its id
    LogIndex entry;  // the config entry being committed; 0: none yet
    Term entry_term;
    bool committed = false;  // the entry applied with entry_term
    bool lost = false;       // another entry applied at its index (a leader change)
    bool promoting = false;  // add: the learner entry committed, promotion next
    Clock::time_point deadline;
    std::vector<Done> waiters;
  };
  std::optional<MemberChange> change_;
  struct Transfer {
    NodeId to;
    Clock::time_point deadline;
    std::vector<Done> waiters;
  };
  std::optional<Transfer> transfer_;
  bool peers_synced_ = false;
  raft::Membership synced_membership_;  // the membership and leader sync_peers() last saw
  NodeId synced_leader_;
  std::map<NodeId, Member> members_;  // addresses of every member (and config members)
  std::map<NodeId, Endpoint> peers_;  // what the transport was told
  // When a refused message was last logged, per peer (every stranger shares NodeId 0, so that
  // one cycling through ids cannot grow this map): at most one line a minute each.
  std::map<NodeId, Clock::time_point> rejected_logged_;
};

// A member's addresses as kept in raft::Membership::context:
// {"http":"host:port","raft":"host:port"}.
std::string member_context_json(const Member& m);
const char* role_name(raft::Role role);

}  // namespace rpool::node
