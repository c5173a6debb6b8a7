// The storage side of the Ready contract, written once.
//
// The core hands the node a Ready; steps 2-4 of its contract (core.h, struct Ready) make the
// snapshot, the entries and the hard state durable, in that order, before anything in
// messages_after_persist is sent. DurableStore is the set of primitive operations a durable
// store offers, and persist() is the one function that applies a Ready to such a store in the
// order the contract requires. Every user goes through it: the node (over its WAL), the unit
// test harness and the simulator (over MemoryStorage below). Reading the store back happens once,
// at start-up, into a BootState.
//
// Ordering model. A store may buffer writes, but it must make them durable in the order they
// were issued: after a crash, what survives of the writes since the last successful sync() is a
// prefix of them (possibly empty), and everything before that sync() survives. A store whose
// hard state lives apart from its log (a separate, atomically replaced file) gets this by making
// the log durable before it replaces the hard-state file: persist() issues the hard state after
// the entries, so a crash can never leave a commit index beyond the durable log (§5.3, Figure 2).
//
// Errors: a store reports an expected failure (disk full, I/O error) as an error_code; persist()
// stops at the first one. The caller then retries the same Ready whole (the operations are
// idempotent: a snapshot already saved is kept, appended entries are rewritten) or stops the node;
// it must not advance() the core or send messages_after_persist until persist() succeeds.
#pragma once

#include <cstddef>
#include <optional>
#include <system_error>
#include <vector>

#include "raft/core.h"
#include "raft/types.h"

namespace rpool::raft {

class DurableStore {
 public:
  virtual ~DurableStore() = default;

  // Makes `snapshot` the latest snapshot (Raft §7). If the stored log holds the snapshot's last
  // entry (same index and term), or the stored snapshot already stands there, the entries after
  // it are kept and those at or below it may be dropped; otherwise every stored entry is
  // discarded and the next append starts at snapshot.meta.index + 1.
  virtual std::error_code save_snapshot(const Snapshot& snapshot) = 0;

  // Appends `entries` (non-empty, contiguous). entries.front().index is at most one past the
  // last stored index (or past the snapshot); if it is at or below the last stored index, the
  // stored suffix from there is removed first (a new leader overwrote it, §5.3).
  virtual std::error_code append_entries(const std::vector<Entry>& entries) = 0;

  // Replaces the stored hard state (term, vote, commit index).
  virtual std::error_code save_hard_state(const HardState& hard_state) = 0;

  // Makes every write issued so far durable.
  virtual std::error_code sync() = 0;
};

// True if the Ready carries anything for the store (steps 2-4). A Ready without it needs no write
// and no sync: its messages_after_persist may go out at once.
bool needs_persist(const Ready& ready);

// Steps 2-4 of the Ready contract: snapshot, then entries, then hard state, then one sync.
// When it returns ok, the Ready's messages_after_persist may be sent and advance() called (after
// the application restored the snapshot and applied committed_entries, steps 6-7).
std::error_code persist(DurableStore& store, const Ready& ready);

// The reference store: everything in memory, with the crash model the simulator needs. Writes
// since the last sync() are pending; crash() loses them (all of them: the harshest prefix the
// ordering model allows), synced state survives. boot() is what a restart reads back.
class MemoryStorage final : public DurableStore {
 public:
  // What a store holds. Entries are contiguous after the snapshot (or from index 1).
  struct State {
    HardState hard_state;
    std::optional<Snapshot> snapshot;
    std::vector<Entry> entries;
  };

  std::error_code save_snapshot(const Snapshot& snapshot) override;
  std::error_code append_entries(const std::vector<Entry>& entries) override;
  std::error_code save_hard_state(const HardState& hard_state) override;
  std::error_code sync() override;

  // The power goes out: the writes since the last sync() are lost.
  void crash();
  // The durable state as a restarted node reads it.
  BootState boot() const;
  // The state that survives a crash now (reads only; for checkers).
  const State& durable() const { return durable_; }
  // Whether writes are waiting for sync().
  bool has_unsynced() const { return unsynced_writes_ != 0; }

  void check_invariants() const;

 private:
  static void apply_snapshot(State& s, const Snapshot& snapshot);
  static void apply_entries(State& s, const std::vector<Entry>& entries);
  static void check_state(const State& s);

  State durable_;                    // what survives a crash
  State written_;                    // durable_ plus the writes since the last sync()
  std::size_t unsynced_writes_ = 0;  // 0 iff written_ equals durable_
};

}  // namespace rpool::raft
