// The core's view of the replicated log: a snapshot point, the entries after it, and the
// durable / committed / applied watermarks.
//
// Storage model. The core keeps every entry after the latest snapshot in memory (the
// application bounds this by taking snapshots and calling Core::compact). The node does not
// implement a read interface: it persists what Ready hands it (snapshot, entries, hard state)
// and, at restart, reads its WAL once and passes everything back in BootState. This keeps the
// WAL write-only on the hot path and makes the core easy to simulate.
//
//   snapshot_index_  <  first_index()  ...  stable_index_  ...  last_index()
//   (compacted)         entries_[0]          durable prefix       may be unsynced
//
// Invariants: snapshot_index_ <= applied_index_ <= commit_index_; applied_index_ <= stable_index_
// (the node applies only durable entries); stable_index_ <= last_index(); entries_ are contiguous
// from snapshot_index_ + 1 with non-decreasing terms, all >= snapshot_term_.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "raft/types.h"

namespace rpool::raft {

class Log {
 public:
  Log() = default;
  // A log starting after a snapshot at (index, term) with the given entries (which must follow
  // it contiguously), all of them durable.
  Log(LogIndex snapshot_index, Term snapshot_term, std::vector<Entry> entries);

  LogIndex snapshot_index() const { return snapshot_index_; }
  Term snapshot_term() const { return snapshot_term_; }
  LogIndex first_index() const { return snapshot_index_.next(); }
  LogIndex last_index() const { return snapshot_index_ + entries_.size(); }
  Term last_term() const { return entries_.empty() ? snapshot_term_ : entries_.back().term; }
  EntryId last_id() const { return {last_term(), last_index()}; }
  LogIndex stable_index() const { return stable_index_; }
  LogIndex commit_index() const { return commit_index_; }
  LogIndex applied_index() const { return applied_index_; }

  // The term of entry i: known for snapshot_index_ <= i <= last_index() (term 0 at index 0).
  std::optional<Term> term(LogIndex i) const;
  bool match_term(LogIndex i, Term t) const;
  const Entry& at(LogIndex i) const;

  // §5.4.1: a candidate's log is at least as up-to-date as ours.
  bool is_up_to_date(LogIndex last_index, Term last_term) const;

  // The largest index <= i whose term is <= t, clamped at snapshot_index_ (fast backtracking).
  LogIndex find_conflict_by_term(LogIndex i, Term t) const;

  // Leader: appends entries that follow last_index() (not yet durable).
  void append(std::vector<Entry> entries);

  // Follower (§5.3): entries follow prev_index, whose term the caller has checked. Skips entries
  // already present, truncates at the first conflict and appends the rest. Never truncates a
  // committed entry (asserted). Returns the index of the last entry of the message.
  LogIndex append_after(LogIndex prev_index, std::vector<Entry> entries);

  // Entries in [lo, hi) up to max_bytes (at least one entry when lo < hi). lo >= first_index().
  std::vector<Entry> slice(LogIndex lo, LogIndex hi, std::size_t max_bytes) const;

  void commit_to(LogIndex i);
  void applied_to(LogIndex i);
  // The node reports entries up to (i, t) durable. Ignored if the entry at i changed since.
  void stable_to(LogIndex i, Term t);

  // Drops entries <= i (which must be applied); the snapshot now stands at (i, term(i)).
  void compact(LogIndex i);
  // Installs a received snapshot: keeps the suffix after (index, term) if the log has that
  // entry (§7), else discards the whole log. Moves commit and applied to index.
  void restore(LogIndex index, Term term);

  void check_invariants() const;

 private:
  std::size_t offset(LogIndex i) const { return i - first_index(); }

  LogIndex snapshot_index_;
  Term snapshot_term_;
  std::vector<Entry> entries_;  // entries_[k].index == snapshot_index_ + 1 + k
  LogIndex stable_index_;       // entries up to here are durable (or covered by a pending snapshot)
  LogIndex commit_index_;       // snapshot_index_ <= commit_index_ (may exceed last_index() never)
  LogIndex applied_index_;      // snapshot_index_ <= applied_index_ <= commit_index_
};

}  // namespace rpool::raft
