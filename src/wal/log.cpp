// How the log opens, writes, truncates, compacts and reads its segments. The format and the
// guarantees are documented in log.h. Part of Log: log_recover.cpp (the scan at open),
// log_segments.cpp (segment files), log_files.cpp (hard state and snapshots).
#include "wal/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"

namespace rpool::wal {
namespace {

constexpr int read_only_retries_max =
    4;  // further recoveries of a read-only open (rpool-wal beside a node)

// Failures after which the log's view of its files may be out of step with the disk: the log
// refuses writes until reopened. descriptors_exhausted is among them (an open that fails midway
// through a roll-over leaves work half done); the caller retries by reopening, as for disk_full.
bool is_io_failure(std::error_code ec) {
  return ec == errc::io_error || ec == errc::disk_full || ec == errc::not_found ||
         ec == errc::descriptors_exhausted;
}

}  // namespace

OpenResult Log::open(const std::string& dir, Options options) {
  RPOOL_ASSERT_OP(options.segment_bytes, >=, segment_bytes_min);
  RPOOL_ASSERT_OP(options.segment_bytes, <=, segment_bytes_max);
  RPOOL_ASSERT(options.snapshots_kept >= 1);
  std::unique_ptr<Log> log(new Log(dir, std::move(options)));
  OpenResult result;
  if (!log->options_.read_only) {
    if (auto ec = log->fs_.make_dirs(dir)) {
      return {nullptr, ec,
              fmt::format("{}: cannot create the data directory: {}", dir, ec.message())};
    }
    if (auto ec = log->fs_.lock(log->path(std::string(lock_file_name)), log->lock_)) {
      return {
          nullptr, ec,
          ec == errc::locked
              ? fmt::format("{}: data directory is locked by another process (LOCK is held)", dir)
              : fmt::format("{}: cannot lock LOCK: {}", dir, ec.message())};
    }
  }
  std::error_code ec = log->recover();
  // Read-only, beside a live node: a segment renamed or removed during the scan, or a write in
  // flight that reads as a damaged record, changes on a second look; real damage does not.
  // There is no event to wait for across processes: back off a little (1, 2, 4, 8 ms) and retry.
  for (int attempt = 0; ec && log->options_.read_only && attempt < read_only_retries_max &&
                        (ec == errc::corrupt || ec == errc::not_found);
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1 << attempt));
    Options again = log->options_;
    log.reset(new Log(dir, std::move(again)));
    ec = log->recover();
  }
  if (ec) return {nullptr, ec, log->error_detail_};
  result.log = std::move(log);
  return result;
}

Log::Log(std::string dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      fs_(options_.fs != nullptr ? *options_.fs : posix_file_system()) {}

Log::~Log() {
  // The helper thread uses fs_ and options_; let it finish. Its file is removed at the next open.
  if (spare_.valid()) spare_.wait();
}

void Log::warn(const std::string& message) {
  warnings_.push_back(message);
  if (options_.warn) {
    options_.warn(message);
  } else {
    std::fprintf(stderr, "rpool-wal: warning: %s\n", message.c_str());
  }
}

std::error_code Log::fail(std::error_code ec, std::string detail) {
  RPOOL_ASSERT(ec);
  error_detail_ = std::move(detail);
  if (is_io_failure(ec)) poisoned_ = true;
  return ec;
}

std::error_code Log::corrupt(const std::string& file, std::uint64_t offset,
                             const std::string& why) {
  error_detail_ = fmt::format("{}: offset {}: {}", path(file), offset, why);
  return errc::corrupt;
}

std::error_code Log::writable() {
  if (options_.read_only) return errc::read_only;
  if (poisoned_) return errc::poisoned;
  return {};
}

// ---- writes ----------------------------------------------------------------------------------

std::error_code Log::append(std::span<const Entry> entries) {
  if (entries.empty()) return {};
  if (auto ec = writable()) return ec;
  RPOOL_ASSERT_OP(entries.front().index, ==, last_index() + 1);
  Term prev_term = last_term();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    RPOOL_ASSERT_OP(entries[i].index, ==, entries.front().index + i);
    RPOOL_ASSERT_OP(entries[i].term, >=, prev_term);
    RPOOL_ASSERT_OP(entries[i].payload.size(), <=, entry_payload_bytes_max);
    RPOOL_ASSERT(entries[i].kind != hard_state_record_kind);
    prev_term = entries[i].term;
  }
  std::size_t i = 0;
  while (i < entries.size()) {
    if (segments_.empty() || !segments_.back().open) {
      if (auto ec = start_segment(entries[i].index)) return ec;
    }
    Segment& seg = segments_.back();
    const std::size_t count_before = seg.offsets.size();
    const std::uint64_t start = seg.data_end;
    scratch_.clear();
    bool window_full = false;  // the next record would take the unsynced bytes past one window
    while (i < entries.size()) {
      const std::uint64_t bytes = record_bytes(entries[i].payload.size());
      const bool fits = start + scratch_.size() + bytes <= options_.segment_bytes;
      // A record bigger than a whole segment still gets one, alone.
      if (!fits && (!seg.offsets.empty() || !scratch_.empty())) break;
      // A record bigger than a window is written alone, after a sync.
      if (unsynced_bytes_ + scratch_.size() + bytes > write_window_bytes &&
          (unsynced_bytes_ > 0 || !scratch_.empty())) {
        window_full = true;
        break;
      }
      seg.offsets.push_back(start + scratch_.size());
      seg.payload_bytes.push_back(static_cast<std::uint32_t>(entries[i].payload.size()));
      seg.terms.push_back(entries[i].term);
      encode_record(entries[i], scratch_);
      ++i;
    }
    if (!scratch_.empty()) {
      seg.dirty_end = std::max(seg.dirty_end, start + scratch_.size());
      // A long record's header is made durable before its payload: until the record is whole,
      // its header tells recovery how far the unfinished write may reach.
      const bool long_record = scratch_.size() > write_window_bytes;
      std::error_code ec;
      if (long_record) {
        ec = seg.file->write_at(start, ByteView(scratch_).first(record_header_bytes));
        if (!ec) ec = sync_window(seg);
        if (!ec)
          ec = seg.file->write_at(start + record_header_bytes,
                                  ByteView(scratch_).subspan(record_header_bytes));
      } else {
        ec = seg.file->write_at(start, scratch_);
      }
      if (ec) {
        seg.offsets.resize(count_before);
        seg.payload_bytes.resize(count_before);
        seg.terms.resize(count_before);
        if (poisoned_) return ec;  // sync_window failed and said so
        return fail(ec, fmt::format("{}: write at offset {} failed: {}", path(seg.name), start,
                                    ec.message()));
      }
      seg.data_end = start + scratch_.size();
      seg.file_bytes = std::max(seg.file_bytes, seg.data_end);
      unsynced_ = true;
      unsynced_bytes_ += scratch_.size();
    }
    if (window_full) {
      if (auto ec = sync_window(seg)) return ec;
    } else if (i < entries.size()) {
      if (auto ec = close_open_segment()) return ec;
    }
  }
  return {};
}

std::error_code Log::sync() {
  if (auto ec = writable()) return ec;
  if (!unsynced_) return {};
  Segment& seg = segments_.back();
  RPOOL_ASSERT(seg.open);
  return sync_window(seg);
}

std::error_code Log::truncate_suffix(LogIndex from) {
  if (auto ec = writable()) return ec;
  RPOOL_ASSERT_OP(from, <=, last_index() + 1);
  if (from < first_index()) return errc::compacted;
  if (from == last_index() + 1) return {};
  // The cut point: the first removed entry record, or the whole segment when `from` starts one
  // that goes (hard-state records ahead of its first entry go with it). Every hard-state record
  // from there on is removed.
  {
    const Segment* at = segment_of(from);
    const std::size_t i = static_cast<std::size_t>(at - segments_.data());
    const std::uint64_t cut =
        i > 0 && from == at->first_index ? 0 : at->offsets[from - at->first_index];
    if (hard_state_record_at_or_after(i, cut)) {
      if (auto ec = checkpoint_hard_state()) return ec;
    }
  }
  // Whole segments at or after `from` go first, newest first. The first segment always stays
  // (cut down to its header if need be), so that a crash cannot make the log forget its first
  // index.
  while (segments_.size() > 1 && segments_.back().first_index >= from) {
    if (auto ec = remove_last_segment()) return ec;
  }
  RPOOL_ASSERT(!segments_.empty());
  if (last_index() + 1 == from) {
    // `from` was a segment boundary: the kept segment lost nothing, not even hard-state records.
    return {};
  }
  if (!segments_.back().open) {
    if (auto ec = reopen_last_as_open()) return ec;
  }
  Segment& seg = segments_.back();
  const std::size_t keep = from - seg.first_index;
  RPOOL_ASSERT_OP(keep, <, seg.offsets.size());
  const std::uint64_t cut = seg.offsets[keep];
  if (auto ec = zero_range(seg, cut, std::max(seg.dirty_end, seg.data_end))) return ec;
  seg.offsets.resize(keep);
  seg.payload_bytes.resize(keep);
  seg.terms.resize(keep);
  // Earlier hard-state records of the segment may survive the cut, but the latest state is in
  // the file now (checkpointed above) and the next record supersedes them.
  if (seg.hard_state_offset && *seg.hard_state_offset >= cut) seg.hard_state_offset.reset();
  seg.data_end = cut;
  seg.dirty_end = cut;
  unsynced_ = false;
  unsynced_bytes_ = 0;
  return {};
}

std::error_code Log::compact(LogIndex up_to) {
  if (auto ec = writable()) return ec;
  // The last segment always stays, so that the log remembers where it is after a restart.
  std::size_t removed = 0;
  while (removed + 1 < segments_.size() && segments_[removed].last_index() <= up_to) ++removed;
  if (removed > 0 && hard_state_record_at_or_after(0, 0) &&
      !hard_state_record_at_or_after(removed, 0)) {
    if (auto ec = checkpoint_hard_state()) return ec;
  }
  while (segments_.size() > 1 && segments_.front().last_index() <= up_to) {
    Segment& seg = segments_.front();
    RPOOL_ASSERT(!seg.open);
    const std::string p = path(seg.name);
    seg.file.reset();
    if (auto ec = fs_.remove(p))
      return fail(ec, fmt::format("{}: remove failed: {}", p, ec.message()));
    segments_.erase(segments_.begin());
    // One at a time, oldest first: a crash leaves a suffix of the segments, never a hole.
    if (auto ec = fs_.sync_dir(dir_))
      return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  }
  return {};
}

std::error_code Log::reset(LogIndex next_index) {
  if (auto ec = writable()) return ec;
  RPOOL_ASSERT(next_index.value() > 0);
  if (auto ec = checkpoint_hard_state()) return ec;
  while (!segments_.empty()) {
    if (auto ec = remove_last_segment()) return ec;
  }
  empty_first_index_ = next_index;
  return start_segment(next_index);
}

// ---- reads -----------------------------------------------------------------------------------

LogIndex Log::first_index() const {
  return segments_.empty() ? empty_first_index_ : segments_.front().first_index;
}

LogIndex Log::last_index() const {
  return segments_.empty() ? empty_first_index_ - 1 : segments_.back().last_index();
}

Term Log::last_term() const {
  for (auto it = segments_.rbegin(); it != segments_.rend(); ++it) {
    if (!it->terms.empty()) return it->terms.back();
  }
  return Term(0);
}

const Log::Segment* Log::segment_of(LogIndex index) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), index,
                             [](LogIndex i, const Segment& s) { return i < s.first_index; });
  RPOOL_ASSERT(it != segments_.begin());
  --it;
  RPOOL_ASSERT_OP(index, <=, it->last_index());
  return &*it;
}

std::error_code Log::term(LogIndex index, Term& out) const {
  if (index < first_index()) return errc::compacted;
  if (index > last_index()) return errc::unavailable;
  const Segment* seg = segment_of(index);
  out = seg->terms[index - seg->first_index];
  return {};
}

std::error_code Log::read(LogIndex lo, LogIndex hi, std::vector<Entry>& out,
                          std::uint64_t bytes_max) const {
  if (lo > hi) return errc::bad_argument;
  if (lo < first_index()) return errc::compacted;
  if (hi > last_index() + 1) return errc::unavailable;
  // The records are read a few MiB at a time: a whole segment in one buffer would be tens of MiB
  // of fresh memory, faulted in and zeroed, for a restart that reads the log once.
  constexpr std::uint64_t read_chunk_bytes = 4u << 20;
  if (bytes_max == UINT64_MAX) out.reserve(out.size() + static_cast<std::size_t>(hi - lo));
  std::uint64_t bytes = 0;
  bool first = true;
  Bytes buffer;
  LogIndex at = lo;
  while (at < hi) {
    const Segment* seg = segment_of(at);
    const std::size_t k0 = at - seg->first_index;
    std::size_t k1 = k0;  // exclusive
    const std::size_t k_end = std::min<std::uint64_t>(seg->offsets.size(), hi - seg->first_index);
    bool stop = false;
    std::uint64_t chunk = 0;
    while (k1 < k_end) {
      const std::uint64_t b = seg->payload_bytes[k1];
      if (!first && bytes + b > bytes_max) {
        stop = true;
        break;
      }
      if (k1 > k0 && chunk + record_bytes(b) > read_chunk_bytes)
        break;  // the rest in the next chunk
      bytes += b;
      chunk += record_bytes(b);
      first = false;
      ++k1;
    }
    if (k1 > k0) {
      const std::uint64_t from = seg->offsets[k0];
      const std::uint64_t to = seg->offsets[k1 - 1] + record_bytes(seg->payload_bytes[k1 - 1]);
      buffer.resize(to - from);
      if (auto ec = seg->file->read_at(from, buffer)) {
        error_detail_ =
            fmt::format("{}: read at offset {} failed: {}", path(seg->name), from, ec.message());
        return ec;
      }
      for (std::size_t k = k0; k < k1; ++k) {
        RecordMeta meta{seg->offsets[k] - from, seg->terms[k], seg->first_index + k, 0,
                        seg->payload_bytes[k]};
        Entry e;
        if (!decode_record(buffer, meta, e)) {
          error_detail_ = fmt::format("{}: offset {}: record of index {} no longer checks out",
                                      path(seg->name), seg->offsets[k], meta.index);
          return errc::corrupt;
        }
        out.push_back(std::move(e));
      }
    }
    at = seg->first_index + k1;
    if (stop) break;
  }
  return {};
}

// ---- inspection ------------------------------------------------------------------------------

std::vector<SegmentInfo> Log::segments() const {
  std::vector<SegmentInfo> out;
  for (const auto& s : segments_) {
    out.push_back({s.name, s.open, s.first_index, s.last_index(), s.data_end, s.file_bytes});
  }
  return out;
}

void Log::check_invariants() const {
  Term prev_term;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const Segment& s = segments_[i];
    const bool last = i + 1 == segments_.size();
    RPOOL_ASSERT(s.file != nullptr);
    RPOOL_ASSERT_OP(s.offsets.size(), ==, s.payload_bytes.size());
    RPOOL_ASSERT_OP(s.offsets.size(), ==, s.terms.size());
    RPOOL_ASSERT(s.first_index.value() > 0);
    if (!last) {
      RPOOL_ASSERT(!s.open);
      RPOOL_ASSERT(!s.offsets.empty());
    }
    if (i > 0) RPOOL_ASSERT_OP(s.first_index, ==, segments_[i - 1].last_index() + 1);
    // Entry records in order; hard-state records (hard_state_record_bytes each) may sit between.
    std::uint64_t at = segment_header_bytes;
    for (std::size_t k = 0; k < s.offsets.size(); ++k) {
      RPOOL_ASSERT_OP(s.offsets[k], >=, at);
      RPOOL_ASSERT_OP((s.offsets[k] - at) % hard_state_record_bytes, ==, 0u);
      RPOOL_ASSERT_OP(s.terms[k], >=, prev_term);
      prev_term = s.terms[k];
      at = s.offsets[k] + record_bytes(s.payload_bytes[k]);
    }
    RPOOL_ASSERT_OP(s.data_end, >=, at);
    RPOOL_ASSERT_OP((s.data_end - at) % hard_state_record_bytes, ==, 0u);
    if (s.hard_state_offset) {
      RPOOL_ASSERT_OP(*s.hard_state_offset + hard_state_record_bytes, <=, s.data_end);
    }
    RPOOL_ASSERT_OP(s.file_bytes, >=, s.data_end);
    if (s.open) {
      RPOOL_ASSERT_OP(s.dirty_end, >=, s.data_end);
      if (!options_.read_only) {
        RPOOL_ASSERT(s.name == open_segment_name(s.seq));
        RPOOL_ASSERT_OP(s.seq, <, next_seq_);
      }
    } else if (!options_.read_only) {
      RPOOL_ASSERT(s.name == closed_segment_name(s.first_index, s.last_index()));
      RPOOL_ASSERT_OP(s.file_bytes, ==, s.data_end);
    }
  }
  if (unsynced_) {
    RPOOL_ASSERT(!segments_.empty());
    RPOOL_ASSERT(segments_.back().open);
  }
  if (unsynced_bytes_ > write_window_bytes) {
    // Only one long record, alone since the last sync.
    RPOOL_ASSERT(!segments_.empty() && !segments_.back().offsets.empty());
    RPOOL_ASSERT_OP(unsynced_bytes_, ==, record_bytes(segments_.back().payload_bytes.back()));
  }
  if (segments_.empty()) RPOOL_ASSERT_OP(last_index() + 1, ==, empty_first_index_);
  if (options_.read_only) RPOOL_ASSERT(!unsynced_ && !spare_.valid());
  RPOOL_ASSERT_OP(last_index() + 1, >=, first_index());
}

}  // namespace rpool::wal
