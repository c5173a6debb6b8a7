#include "raft/storage.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

bool needs_persist(const Ready& ready) {
  return ready.snapshot.has_value() || !ready.entries.empty() || ready.hard_state.has_value();
}

std::error_code persist(DurableStore& store, const Ready& ready) {
  if (!needs_persist(ready)) return {};
  // 2. A received snapshot first: entries that follow it in this Ready append after it.
  if (ready.snapshot) {
    RPOOL_ASSERT(ready.snapshot->data != nullptr);
    if (const auto ec = store.save_snapshot(*ready.snapshot)) return ec;
  }
  // 3. Entries, truncating a conflicting suffix.
  if (!ready.entries.empty()) {
    if (ready.snapshot) RPOOL_ASSERT_OP(ready.entries.front().index, >, ready.snapshot->meta.index);
    if (const auto ec = store.append_entries(ready.entries)) return ec;
  }
  // 4. Hard state after the entries: its commit index may point into them.
  if (ready.hard_state) {
    if (const auto ec = store.save_hard_state(*ready.hard_state)) return ec;
  }
  // One sync for 2-4; only then may messages_after_persist (votes, acknowledgements) go out.
  return store.sync();
}

// --- MemoryStorage -----------------------------------------------------------------------------

void MemoryStorage::apply_snapshot(State& s, const Snapshot& snapshot) {
  const SnapshotMeta& meta = snapshot.meta;
  const bool at_snapshot =
      s.snapshot && s.snapshot->meta.index == meta.index && s.snapshot->meta.term == meta.term;
  const bool holds_entry = std::any_of(s.entries.begin(), s.entries.end(), [&](const Entry& e) {
    return e.index == meta.index && e.term == meta.term;
  });
  if (at_snapshot || holds_entry) {
    // Raft §7: the log continues past the snapshot; keep what follows it.
    std::erase_if(s.entries, [&](const Entry& e) { return e.index <= meta.index; });
  } else {
    s.entries.clear();
  }
  s.snapshot = snapshot;
}

void MemoryStorage::apply_entries(State& s, const std::vector<Entry>& entries) {
  RPOOL_ASSERT(!entries.empty());
  const LogIndex first = entries.front().index;
  const LogIndex base = s.snapshot ? s.snapshot->meta.index : LogIndex(0);
  const LogIndex last = s.entries.empty() ? base : s.entries.back().index;
  // The core never leaves a gap, and never rewrites what a snapshot covers.
  RPOOL_ASSERT_OP(first, >, base);
  RPOOL_ASSERT_OP(first, <=, last.next());
  std::erase_if(s.entries, [&](const Entry& e) { return e.index >= first; });
  s.entries.insert(s.entries.end(), entries.begin(), entries.end());
}

std::error_code MemoryStorage::save_snapshot(const Snapshot& snapshot) {
  RPOOL_ASSERT(snapshot.data != nullptr);
  apply_snapshot(written_, snapshot);
  ++unsynced_writes_;
  check_invariants();
  return {};
}

std::error_code MemoryStorage::append_entries(const std::vector<Entry>& entries) {
  apply_entries(written_, entries);
  ++unsynced_writes_;
  check_invariants();
  return {};
}

std::error_code MemoryStorage::save_hard_state(const HardState& hard_state) {
  written_.hard_state = hard_state;
  ++unsynced_writes_;
  check_invariants();
  return {};
}

std::error_code MemoryStorage::sync() {
  if (unsynced_writes_ != 0) {
    durable_ = written_;  // entries share nothing mutable; snapshot data is shared, immutable
    unsynced_writes_ = 0;
  }
  check_invariants();
  return {};
}

void MemoryStorage::crash() {
  if (unsynced_writes_ != 0) written_ = durable_;
  unsynced_writes_ = 0;
  check_invariants();
}

BootState MemoryStorage::boot() const {
  RPOOL_ASSERT(!has_unsynced());  // a restart follows a crash, which dropped them
  return BootState{durable_.hard_state, durable_.snapshot, durable_.entries};
}

void MemoryStorage::check_state(const State& s) {
  LogIndex expect = s.snapshot ? s.snapshot->meta.index.next() : LogIndex(1);
  Term term = s.snapshot ? s.snapshot->meta.term : Term(0);
  for (const Entry& e : s.entries) {
    RPOOL_ASSERT_OP(e.index, ==, expect);
    RPOOL_ASSERT_OP(e.term, >=, term);
    expect = e.index.next();
    term = e.term;
  }
  // The contract's point of ordering the hard state after the entries: a stored commit index
  // never points beyond the stored log.
  RPOOL_ASSERT_OP(s.hard_state.commit_index, <, expect);
}

void MemoryStorage::check_invariants() const {
  check_state(durable_);
  check_state(written_);
  if (unsynced_writes_ == 0) {
    RPOOL_ASSERT(written_.entries.size() == durable_.entries.size());
    RPOOL_ASSERT(written_.hard_state == durable_.hard_state);
  }
}

}  // namespace rpool::raft
