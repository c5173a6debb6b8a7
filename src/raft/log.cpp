#include "raft/log.h"

#include <algorithm>

#include "base/assert.h"

namespace rpool::raft {

Log::Log(LogIndex snapshot_index, Term snapshot_term, std::vector<Entry> entries)
    : snapshot_index_(snapshot_index),
      snapshot_term_(snapshot_term),
      entries_(std::move(entries)),
      commit_index_(snapshot_index),
      applied_index_(snapshot_index) {
  stable_index_ = last_index();
  check_invariants();
}

std::optional<Term> Log::term(LogIndex i) const {
  if (i < snapshot_index_ || i > last_index()) return std::nullopt;
  if (i == snapshot_index_) return snapshot_term_;
  return entries_[offset(i)].term;
}

bool Log::match_term(LogIndex i, Term t) const {
  const std::optional<Term> have = term(i);
  return have.has_value() && *have == t;
}

const Entry& Log::at(LogIndex i) const {
  RPOOL_ASSERT_OP(i, >=, first_index());
  RPOOL_ASSERT_OP(i, <=, last_index());
  return entries_[offset(i)];
}

bool Log::is_up_to_date(LogIndex index, Term t) const {
  // Raft §5.4.1: compare the terms of the last entries, then the lengths.
  return t > last_term() || (t == last_term() && index >= last_index());
}

LogIndex Log::find_conflict_by_term(LogIndex i, Term t) const {
  RPOOL_ASSERT_OP(i, >=, snapshot_index_);
  LogIndex at_index = std::min(i, last_index());
  while (at_index > snapshot_index_) {
    if (entries_[offset(at_index)].term <= t) return at_index;
    --at_index;
  }
  return snapshot_index_;
}

void Log::append(std::vector<Entry> entries) {
  RPOOL_ASSERT(!entries.empty());
  RPOOL_ASSERT_OP(entries.front().index, ==, last_index().next());
  for (Entry& e : entries) {
    RPOOL_ASSERT_OP(e.term, >=, last_term());
    entries_.push_back(std::move(e));
  }
}

LogIndex Log::append_after(LogIndex prev_index, std::vector<Entry> entries) {
  RPOOL_ASSERT_OP(prev_index, <=, last_index());
  const LogIndex last_new = prev_index + entries.size();
  std::size_t k = 0;
  // Skip entries we already have (same index and term: by Log Matching they are identical) and
  // entries covered by our snapshot (committed, hence identical).
  for (; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    RPOOL_ASSERT_OP(e.index, ==, prev_index + (k + 1));
    if (e.index <= snapshot_index_) continue;
    if (e.index > last_index()) break;
    if (entries_[offset(e.index)].term != e.term) {
      // Raft §5.3: delete the existing entry and all that follow it. A committed entry never
      // conflicts (Leader Completeness), so this is a bug if it happens.
      RPOOL_ASSERT_OP(e.index, >, commit_index_);
      entries_.resize(offset(e.index));
      if (stable_index_ >= e.index) stable_index_ = e.index.prev();
      break;
    }
  }
  for (; k < entries.size(); ++k) {
    RPOOL_ASSERT_OP(entries[k].index, ==, last_index().next());
    RPOOL_ASSERT_OP(entries[k].term, >=, last_term());
    entries_.push_back(std::move(entries[k]));
  }
  return last_new;
}

std::vector<Entry> Log::slice(LogIndex lo, LogIndex hi, std::size_t max_bytes) const {
  RPOOL_ASSERT_OP(lo, >=, first_index());
  RPOOL_ASSERT_OP(hi, <=, last_index().next());
  std::vector<Entry> out;
  if (max_bytes == SIZE_MAX) out.reserve(static_cast<std::size_t>(hi - lo));
  std::size_t bytes = 0;
  for (LogIndex i = lo; i < hi; ++i) {
    const Entry& e = entries_[offset(i)];
    bytes += entry_bytes(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

void Log::commit_to(LogIndex i) {
  if (i <= commit_index_) return;
  RPOOL_ASSERT_OP(i, <=, last_index());
  commit_index_ = i;
}

void Log::applied_to(LogIndex i) {
  RPOOL_ASSERT_OP(i, >=, applied_index_);
  RPOOL_ASSERT_OP(i, <=, commit_index_);
  RPOOL_ASSERT_OP(i, <=, stable_index_);
  applied_index_ = i;
}

void Log::stable_to(LogIndex i, Term t) {
  if (i <= stable_index_) return;
  if (!match_term(i, t)) return;  // truncated since the Ready was taken
  stable_index_ = i;
}

void Log::compact(LogIndex i) {
  RPOOL_ASSERT_OP(i, >, snapshot_index_);
  RPOOL_ASSERT_OP(i, <=, applied_index_);
  const Term t = *term(i);
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(offset(i) + 1));
  snapshot_index_ = i;
  snapshot_term_ = t;
  check_invariants();
}

void Log::restore(LogIndex index, Term t) {
  RPOOL_ASSERT_OP(index, >, commit_index_);
  if (match_term(index, t)) {
    // §7: the log has the snapshot's last entry; keep the entries that follow it.
    entries_.erase(entries_.begin(),
                   entries_.begin() + static_cast<std::ptrdiff_t>(offset(index) + 1));
    stable_index_ = std::max(stable_index_, index);
  } else {
    entries_.clear();
    stable_index_ = index;
  }
  snapshot_index_ = index;
  snapshot_term_ = t;
  commit_index_ = index;
  applied_index_ = index;
  check_invariants();
}

void Log::check_invariants() const {
  RPOOL_ASSERT_OP(snapshot_index_, <=, applied_index_);
  RPOOL_ASSERT_OP(applied_index_, <=, commit_index_);
  RPOOL_ASSERT_OP(applied_index_, <=, stable_index_);
  RPOOL_ASSERT_OP(stable_index_, <=, last_index());
  RPOOL_ASSERT_OP(commit_index_, <=, last_index());
  if (!entries_.empty()) {
    RPOOL_ASSERT_OP(entries_.front().index, ==, first_index());
    RPOOL_ASSERT_OP(entries_.back().index, ==, last_index());
    RPOOL_ASSERT_OP(entries_.front().term, >=, snapshot_term_);
    RPOOL_ASSERT_OP(entries_.back().term, >=, entries_.front().term);
  }
}

}  // namespace rpool::raft
