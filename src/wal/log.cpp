// How the log recovers, writes, truncates and compacts its segments. The format and the
// guarantees are documented in log.h.
#include "wal/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"

namespace rpool::wal {
namespace {

constexpr std::size_t zero_chunk_bytes = 1u << 20;
constexpr int read_only_retries_max =
    4;  // further recoveries of a read-only open (rpool-wal beside a node)
constexpr std::size_t zero_flush_bytes = 4u << 20;
static_assert(zero_flush_bytes % zero_chunk_bytes == 0);

ByteView zero_chunk() {
  static const Bytes zeros(zero_chunk_bytes, 0);
  return zeros;
}

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

// ---- recovery --------------------------------------------------------------------------------

std::error_code Log::recover() {
  std::vector<std::string> names;
  if (auto ec = fs_.list(dir_, names)) {
    error_detail_ = fmt::format("{}: cannot list the data directory: {}", dir_, ec.message());
    return ec;
  }
  struct Closed {
    LogIndex first, last;
    std::string name;
  };
  struct Open {
    std::uint64_t seq;
    std::string name;
  };
  std::vector<Closed> closed;
  std::vector<Open> opens;
  for (const auto& name : names) {
    const ParsedName p = parse_name(name);
    switch (p.kind) {
      case FileKind::closed_segment: closed.push_back({p.first, p.last, name}); break;
      case FileKind::open_segment: opens.push_back({p.seq, name}); break;
      case FileKind::temporary:
        if (!options_.read_only) {
          // Work files of an interrupted write: never part of the durable state.
          if (auto ec = fs_.remove(path(name)))
            return fail(ec, fmt::format("{}: cannot remove: {}", path(name), ec.message()));
        }
        break;
      default: break;
    }
  }
  std::sort(closed.begin(), closed.end(),
            [](const Closed& a, const Closed& b) { return a.first < b.first; });
  std::sort(opens.begin(), opens.end(), [](const Open& a, const Open& b) { return a.seq < b.seq; });

  std::optional<LogIndex> expected;
  for (const auto& c : closed) {
    if (c.last < c.first) return corrupt(c.name, 0, "segment name has an empty index range");
    if (auto ec = recover_segment(c.name, false, 0, false, expected)) return ec;
    if (segments_.back().first_index != c.first || segments_.back().last_index() != c.last) {
      return corrupt(c.name, segments_.back().data_end,
                     fmt::format("segment holds indexes {}-{} but its name says {}-{}",
                                 segments_.back().first_index, segments_.back().last_index(),
                                 c.first, c.last));
    }
    expected = c.last + 1;
  }
  for (std::size_t i = 0; i < opens.size(); ++i) {
    const bool last_open = i + 1 == opens.size();
    const std::size_t before = segments_.size();
    if (auto ec = recover_segment(opens[i].name, true, opens[i].seq, last_open, expected))
      return ec;
    next_seq_ = std::max(next_seq_, opens[i].seq + 1);
    if (segments_.size() == before) continue;  // discarded (torn header of a segment being created)
    if (!last_open) {
      // Only a crash between closing a segment and renaming it leaves an open segment that is
      // not the last; finish the close.
      if (segments_.back().offsets.empty()) {
        return corrupt(opens[i].name, segment_header_bytes,
                       "an open segment that is not the last one holds no records");
      }
      if (!options_.read_only) {
        if (auto ec = close_open_segment()) return ec;
      } else {
        segments_.back().open = false;
      }
    }
    expected = segments_.back().last_index() + 1;
  }
  if (segments_.empty()) empty_first_index_ = LogIndex(1);
  if (!options_.read_only) {
    // What recovery read may have come from the page cache of a previous run whose fsync failed
    // (the process then reopened the log without a power loss). Make it durable before anyone
    // relies on it: the open segment's data, and every name in the directory.
    if (!segments_.empty() && segments_.back().open) {
      if (auto ec = segments_.back().file->sync_data()) {
        return fail(
            ec, fmt::format("{}: fdatasync failed: {}", path(segments_.back().name), ec.message()));
      }
    }
    if (auto ec = fs_.sync_dir(dir_))
      return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
    kick_spare();
  }
  return {};
}

std::error_code Log::recover_segment(const std::string& name, bool open, std::uint64_t seq,
                                     bool last_open,
                                     const std::optional<LogIndex>& expected_first) {
  const bool write = open && !options_.read_only;
  std::unique_ptr<File> file;
  if (auto ec = fs_.open(path(name), write ? OpenMode::read_write : OpenMode::read_only, file)) {
    return fail(ec, fmt::format("{}: cannot open: {}", path(name), ec.message()));
  }
  std::uint64_t size = 0;
  if (auto ec = file->size(size))
    return fail(ec, fmt::format("{}: stat failed: {}", path(name), ec.message()));
  FileSource source(*file, size);
  const SegmentScan scan = scan_segment(source);
  if (scan.read_error) {
    return fail(scan.read_error,
                fmt::format("{}: read failed: {}", path(name), scan.read_error.message()));
  }

  if (!scan.header_ok) {
    // A crash while a new segment was being started can leave its header zero or torn, with
    // nothing after it; such a segment never held a record.
    if (last_open && scan.garbage_bytes <= segment_header_bytes) {
      warn(fmt::format(
          "{}: discarded a segment whose header was never completed ({}); it held no records",
          path(name), *scan.fault));
      if (!options_.read_only) {
        file.reset();
        if (auto ec = fs_.remove(path(name)))
          return fail(ec, fmt::format("{}: cannot remove: {}", path(name), ec.message()));
        if (auto ec = fs_.sync_dir(dir_))
          return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
      }
      return {};
    }
    return corrupt(name, 0, *scan.fault);
  }
  if (expected_first && scan.first_index != *expected_first) {
    return corrupt(name, 16,
                   fmt::format("segment starts at index {}, but the previous segment ends at {} "
                               "(a missing segment or an index gap)",
                               scan.first_index, *expected_first - 1));
  }
  std::uint64_t dirty_end = scan.data_end;
  if (scan.garbage_bytes > 0) {
    const std::string why =
        scan.fault ? *scan.fault : std::string("non-zero bytes after the last record");
    if (!last_open) return corrupt(name, scan.data_end, why);
    FileSource again(*file, size);
    const TailVerdict verdict = judge_tail(again, scan);
    if (!verdict.torn) return corrupt(name, scan.data_end, verdict.reason);
    warn(fmt::format("{}: cut a torn tail of {} bytes at offset {} ({}); the log ends at index {}",
                     path(name), scan.garbage_bytes, scan.data_end, verdict.reason,
                     scan.first_index + scan.records.size() - 1));
    dirty_end = scan.data_end + scan.garbage_bytes;
  }
  if (!open && scan.records.empty())
    return corrupt(name, segment_header_bytes, "closed segment holds no records");
  std::optional<Term> previous_last_term;
  if (!segments_.empty() && !segments_.back().terms.empty())
    previous_last_term = segments_.back().terms.back();
  if (const auto bad = check_records(scan, previous_last_term, options_.known_kinds)) {
    return corrupt(name, bad->offset, bad->reason);
  }
  Segment seg;
  seg.name = name;
  seg.open = open;
  seg.seq = seq;
  seg.first_index = scan.first_index;
  seg.offsets.reserve(scan.records.size());
  seg.payload_bytes.reserve(scan.records.size());
  seg.terms.reserve(scan.records.size());
  for (const auto& r : scan.records) {
    seg.offsets.push_back(r.offset);
    seg.payload_bytes.push_back(r.payload_bytes);
    seg.terms.push_back(r.term);
  }
  seg.data_end = scan.data_end;
  seg.dirty_end = dirty_end;
  seg.file_bytes = size;
  seg.file = std::move(file);
  segments_.push_back(std::move(seg));
  if (write && dirty_end > scan.data_end) {
    // Zero the torn bytes so that no stale record can ever line up behind a new one.
    if (auto ec = zero_range(segments_.back(), scan.data_end, dirty_end)) return ec;
    segments_.back().dirty_end = scan.data_end;
  }
  return {};
}

// ---- segment files ---------------------------------------------------------------------------

std::error_code Log::prepare_segment_file(const std::string& file_path) const {
  // Runs on the helper thread: touches only fs_ and options_, which never change.
  if (auto ec = fs_.remove(file_path); ec && ec != errc::not_found) return ec;
  std::unique_ptr<File> file;
  if (auto ec = fs_.open(file_path, OpenMode::create_new, file)) return ec;
  switch (options_.preallocation) {
    case Preallocation::zero_fill:
      for (std::uint64_t at = 0; at < options_.segment_bytes; at += zero_chunk_bytes) {
        const auto n = std::min<std::uint64_t>(zero_chunk_bytes, options_.segment_bytes - at);
        if (auto ec = file->write_at(at, zero_chunk().first(n))) return ec;
        // Flush in slices: one 64 MiB flush would hold the disk queue for a long time and show up
        // as a spike in the foreground's fdatasync latency.
        if ((at + n) % zero_flush_bytes == 0) {
          if (auto ec = file->sync_data()) return ec;
        }
      }
      break;
    case Preallocation::fallocate:
      if (auto ec = file->allocate(options_.segment_bytes)) return ec;
      break;
    case Preallocation::none: break;
  }
  return file->sync_data();
}

void Log::kick_spare() {
  RPOOL_ASSERT(!options_.read_only);
  if (!options_.prepare_in_background || spare_.valid() || spare_ready_) return;
  const std::string spare_path = path(std::string(spare_file_name));
  spare_ = std::async(std::launch::async,
                      [this, spare_path] { return prepare_segment_file(spare_path); });
}

std::error_code Log::wait_for_next_segment() {
  if (auto ec = writable()) return ec;
  if (!spare_.valid()) return {};
  const std::error_code ec = spare_.get();
  if (ec) {
    return fail(ec, fmt::format("{}: preparing the next segment failed: {}",
                                path(std::string(spare_file_name)), ec.message()));
  }
  spare_ready_ = true;
  return {};
}

std::error_code Log::take_spare(const std::string& file_path) {
  const std::string spare_path = path(std::string(spare_file_name));
  if (spare_.valid()) {
    const std::error_code ec = spare_.get();
    if (ec)
      return fail(
          ec, fmt::format("{}: preparing the next segment failed: {}", spare_path, ec.message()));
    spare_ready_ = true;
  }
  if (!spare_ready_) {
    if (auto ec = prepare_segment_file(spare_path)) {
      return fail(
          ec, fmt::format("{}: preparing the next segment failed: {}", spare_path, ec.message()));
    }
  }
  spare_ready_ = false;
  if (auto ec = fs_.rename(spare_path, file_path)) {
    return fail(ec, fmt::format("{}: rename failed: {}", spare_path, ec.message()));
  }
  return {};
}

std::error_code Log::start_segment(LogIndex first_index) {
  RPOOL_ASSERT(segments_.empty() || !segments_.back().open);
  if (!segments_.empty()) RPOOL_ASSERT_OP(first_index, ==, segments_.back().last_index() + 1);
  Segment seg;
  seg.seq = next_seq_++;
  seg.name = open_segment_name(seg.seq);
  seg.open = true;
  seg.first_index = first_index;
  const std::string p = path(seg.name);
  if (auto ec = take_spare(p)) return ec;
  if (auto ec = fs_.open(p, OpenMode::read_write, seg.file)) {
    // Without a header the file would be a stray open segment in front of the next one; it never
    // held a record, so it goes (best effort: recovery discards it if this fails too).
    (void)fs_.remove(p);
    return fail(ec, fmt::format("{}: cannot open: {}", p, ec.message()));
  }
  scratch_.clear();
  encode_segment_header(first_index, scratch_);
  // The header is durable before any record is written behind it, so a bad header with records
  // after it is corruption, never a crash artefact.
  if (auto ec = seg.file->write_at(0, scratch_))
    return fail(ec, fmt::format("{}: write failed: {}", p, ec.message()));
  if (auto ec = seg.file->sync_data())
    return fail(ec, fmt::format("{}: fdatasync failed: {}", p, ec.message()));
  if (auto ec = fs_.sync_dir(dir_))
    return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  if (auto ec = seg.file->size(seg.file_bytes))
    return fail(ec, fmt::format("{}: stat failed: {}", p, ec.message()));
  seg.data_end = segment_header_bytes;
  seg.dirty_end = segment_header_bytes;
  segments_.push_back(std::move(seg));
  kick_spare();
  return {};
}

std::error_code Log::close_open_segment() {
  Segment& seg = segments_.back();
  RPOOL_ASSERT(seg.open);
  RPOOL_ASSERT(!seg.offsets.empty());
  const std::string from = path(seg.name);
  // Cut the preallocated zeros so that a closed segment is exactly its records; then make data
  // and size durable before the name says "closed".
  if (auto ec = seg.file->truncate(seg.data_end))
    return fail(ec, fmt::format("{}: truncate failed: {}", from, ec.message()));
  if (auto ec = seg.file->sync_data())
    return fail(ec, fmt::format("{}: fdatasync failed: {}", from, ec.message()));
  const std::string name = closed_segment_name(seg.first_index, seg.last_index());
  if (auto ec = fs_.rename(from, path(name)))
    return fail(ec, fmt::format("{}: rename failed: {}", from, ec.message()));
  if (auto ec = fs_.sync_dir(dir_))
    return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  seg.name = name;
  seg.open = false;
  seg.seq = 0;
  seg.file_bytes = seg.data_end;
  seg.dirty_end = seg.data_end;
  unsynced_ = false;
  unsynced_bytes_ = 0;
  return {};
}

std::error_code Log::zero_range(Segment& seg, std::uint64_t from, std::uint64_t to) {
  RPOOL_ASSERT(seg.open);
  RPOOL_ASSERT_OP(from, <=, to);
  RPOOL_ASSERT_OP(zero_chunk_bytes, >=, write_window_bytes);
  // The record starts inside the range cut it into regions; slices are runs of whole regions.
  std::vector<std::uint64_t> starts{from};
  for (const std::uint64_t offset : seg.offsets) {
    if (offset > from && offset < to) starts.push_back(offset);
  }
  if (seg.data_end > from && seg.data_end < to) starts.push_back(seg.data_end);
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  auto zero = [&](std::uint64_t lo, std::uint64_t hi) -> std::error_code {
    if (auto ec = seg.file->write_at(lo, zero_chunk().first(static_cast<std::size_t>(hi - lo)))) {
      return fail(ec, fmt::format("{}: write failed: {}", path(seg.name), ec.message()));
    }
    if (auto ec = seg.file->sync_data()) {
      return fail(ec, fmt::format("{}: fdatasync failed: {}", path(seg.name), ec.message()));
    }
    return {};
  };
  std::uint64_t end = to;
  std::size_t k = starts.size();  // regions [starts[k..]) are zero already
  while (end > from) {
    std::size_t j = k;
    while (j > 0 && end - starts[j - 1] <= write_window_bytes) --j;
    if (j < k) {
      if (auto ec = zero(starts[j], end)) return ec;
      end = starts[j];
      k = j;
      continue;
    }
    // One region longer than a window: a long record. Its payload goes first, its header last, so
    // that until then the header still says how far the record reaches.
    const std::uint64_t lo = starts[k - 1];
    const std::uint64_t payload = std::min(end, lo + record_header_bytes);
    while (end > payload) {
      const std::uint64_t slice = std::max(payload, end - std::min(end, write_window_bytes));
      if (auto ec = zero(slice, end)) return ec;
      end = slice;
    }
    if (end > lo) {
      if (auto ec = zero(lo, end)) return ec;
    }
    end = lo;
    k = k - 1;
  }
  return {};
}

std::error_code Log::sync_window(Segment& seg) {
  RPOOL_ASSERT(seg.open);
  if (options_.fsync) {
    if (auto ec = seg.file->sync_data()) {
      return fail(ec, fmt::format("{}: fdatasync failed: {}", path(seg.name), ec.message()));
    }
  }
  unsynced_bytes_ = 0;
  unsynced_ = false;
  return {};
}

std::error_code Log::remove_last_segment() {
  RPOOL_ASSERT(!segments_.empty());
  Segment& seg = segments_.back();
  const std::string p = path(seg.name);
  seg.file.reset();
  if (seg.open) {
    unsynced_ = false;
    unsynced_bytes_ = 0;
  }
  // The removal is durable before the next one, so a crash leaves a prefix of the log, never a
  // log with a hole in it.
  if (auto ec = fs_.remove(p))
    return fail(ec, fmt::format("{}: remove failed: {}", p, ec.message()));
  segments_.pop_back();
  if (auto ec = fs_.sync_dir(dir_))
    return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  return {};
}

std::error_code Log::reopen_last_as_open() {
  Segment& seg = segments_.back();
  RPOOL_ASSERT(!seg.open);
  const std::uint64_t seq = next_seq_++;
  const std::string name = open_segment_name(seq);
  if (auto ec = fs_.rename(path(seg.name), path(name))) {
    return fail(ec, fmt::format("{}: rename failed: {}", path(seg.name), ec.message()));
  }
  if (auto ec = fs_.sync_dir(dir_))
    return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  // Closed segments found at open are read-only handles; the open segment is written.
  if (auto ec = fs_.open(path(name), OpenMode::read_write, seg.file)) {
    return fail(ec, fmt::format("{}: cannot open: {}", path(name), ec.message()));
  }
  seg.name = name;
  seg.open = true;
  seg.seq = seq;
  seg.dirty_end = seg.file_bytes;
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
  // Whole segments at or after `from` go first, newest first. The first segment always stays
  // (cut down to its header if need be), so that a crash cannot make the log forget its first
  // index.
  while (segments_.size() > 1 && segments_.back().first_index >= from) {
    if (auto ec = remove_last_segment()) return ec;
  }
  RPOOL_ASSERT(!segments_.empty());
  if (last_index() + 1 == from) return {};  // `from` was a segment boundary
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
  seg.data_end = cut;
  seg.dirty_end = cut;
  unsynced_ = false;
  unsynced_bytes_ = 0;
  return {};
}

std::error_code Log::compact(LogIndex up_to) {
  if (auto ec = writable()) return ec;
  // The last segment always stays, so that the log remembers where it is after a restart.
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

// ---- hard state and snapshots ----------------------------------------------------------------

std::error_code Log::replace_file(const std::string& tmp, const std::string& final_path,
                                  ByteView bytes) {
  if (auto ec = fs_.remove(tmp); ec && ec != errc::not_found)
    return fail(ec, fmt::format("{}: remove failed: {}", tmp, ec.message()));
  std::unique_ptr<File> file;
  if (auto ec = fs_.open(tmp, OpenMode::create_new, file))
    return fail(ec, fmt::format("{}: create failed: {}", tmp, ec.message()));
  if (auto ec = file->write_at(0, bytes))
    return fail(ec, fmt::format("{}: write failed: {}", tmp, ec.message()));
  if (auto ec = file->sync_data())
    return fail(ec, fmt::format("{}: fdatasync failed: {}", tmp, ec.message()));
  file.reset();
  if (auto ec = fs_.rename(tmp, final_path))
    return fail(ec, fmt::format("{}: rename failed: {}", tmp, ec.message()));
  if (auto ec = fs_.sync_dir(dir_))
    return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  return {};
}

std::error_code Log::save_hard_state(const HardState& state) {
  if (auto ec = writable()) return ec;
  const std::string tmp = path(std::string(hard_state_file_name) + ".tmp");
  const std::string final_path = path(std::string(hard_state_file_name));
  const Bytes bytes = encode_hard_state(state);
  return replace_file(tmp, final_path, bytes);
}

namespace {
bool application_file_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return parse_name(name).kind == FileKind::other;
}
}  // namespace

std::error_code Log::save_file(std::string_view name, ByteView bytes) {
  RPOOL_ASSERT(application_file_name(name));
  if (auto ec = writable()) return ec;
  return replace_file(path(std::string(name) + ".tmp"), path(std::string(name)), bytes);
}

std::error_code Log::load_file(std::string_view name, Bytes& out) const {
  RPOOL_ASSERT(application_file_name(name));
  const std::string p = path(std::string(name));
  if (auto ec = read_whole(fs_, p, out)) {
    if (ec != errc::not_found) error_detail_ = fmt::format("{}: read failed: {}", p, ec.message());
    return ec;
  }
  return {};
}

std::error_code Log::load_hard_state(HardState& out) const {
  const std::string p = path(std::string(hard_state_file_name));
  Bytes bytes;
  if (auto ec = read_whole(fs_, p, bytes)) {
    if (ec == errc::not_found) {
      out = HardState{};
      return {};
    }
    error_detail_ = fmt::format("{}: read failed: {}", p, ec.message());
    return ec;
  }
  std::string why;
  const auto state = decode_hard_state(bytes, why);
  if (!state) {
    error_detail_ = fmt::format("{}: offset 0: {}", p, why);
    return errc::corrupt;
  }
  out = *state;
  return {};
}

std::error_code Log::save_snapshot(const SnapshotFile& snapshot) {
  if (auto ec = writable()) return ec;
  RPOOL_ASSERT(snapshot.index.value() > 0);
  const std::string tmp = path("snapshot.tmp");
  const std::string final_path = path(snapshot_name(snapshot.index, snapshot.term));
  const Bytes bytes = encode_snapshot(snapshot);
  if (auto ec = replace_file(tmp, final_path, bytes)) return ec;

  std::vector<std::string> names;
  if (auto ec = fs_.list(dir_, names))
    return fail(ec, fmt::format("{}: list failed: {}", dir_, ec.message()));
  std::vector<std::pair<LogIndex, std::string>> snapshots;
  for (const auto& name : names) {
    const ParsedName p = parse_name(name);
    if (p.kind == FileKind::snapshot) snapshots.emplace_back(p.first, name);
  }
  std::sort(snapshots.begin(), snapshots.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  bool removed = false;
  for (std::size_t i = options_.snapshots_kept; i < snapshots.size(); ++i) {
    if (snapshots[i].second == snapshot_name(snapshot.index, snapshot.term)) continue;
    if (auto ec = fs_.remove(path(snapshots[i].second))) {
      return fail(ec,
                  fmt::format("{}: remove failed: {}", path(snapshots[i].second), ec.message()));
    }
    removed = true;
  }
  if (removed) {
    if (auto ec = fs_.sync_dir(dir_))
      return fail(ec, fmt::format("{}: fsync failed: {}", dir_, ec.message()));
  }
  return {};
}

std::error_code Log::load_latest_snapshot(std::optional<SnapshotFile>& out) const {
  out.reset();
  std::vector<std::string> names;
  if (auto ec = fs_.list(dir_, names)) {
    error_detail_ = fmt::format("{}: list failed: {}", dir_, ec.message());
    return ec;
  }
  std::optional<ParsedName> newest;
  std::string newest_name;
  for (const auto& name : names) {
    const ParsedName p = parse_name(name);
    if (p.kind == FileKind::snapshot && (!newest || p.first > newest->first)) {
      newest = p;
      newest_name = name;
    }
  }
  if (!newest) return {};
  Bytes bytes;
  if (auto ec = read_whole(fs_, path(newest_name), bytes)) {
    error_detail_ = fmt::format("{}: read failed: {}", path(newest_name), ec.message());
    return ec;
  }
  std::string why;
  auto snapshot = decode_snapshot(bytes, why);
  if (!snapshot) {
    error_detail_ = fmt::format("{}: offset 0: {}", path(newest_name), why);
    return errc::corrupt;
  }
  if (snapshot->index != newest->first || snapshot->term != newest->term) {
    error_detail_ = fmt::format("{}: offset 16: holds index {} term {}, the name disagrees",
                                path(newest_name), snapshot->index, snapshot->term);
    return errc::corrupt;
  }
  out = std::move(snapshot);
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
    std::uint64_t at = segment_header_bytes;
    for (std::size_t k = 0; k < s.offsets.size(); ++k) {
      RPOOL_ASSERT_OP(s.offsets[k], ==, at);
      RPOOL_ASSERT_OP(s.terms[k], >=, prev_term);
      prev_term = s.terms[k];
      at += record_bytes(s.payload_bytes[k]);
    }
    RPOOL_ASSERT_OP(s.data_end, ==, at);
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
