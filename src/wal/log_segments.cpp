// Log segment files: preparing (zero-filled, by a spare thread), starting, closing, zeroing
// ahead of the writes, and removing them. Part of Log (log.h).
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
constexpr std::size_t zero_flush_bytes = 4u << 20;
static_assert(zero_flush_bytes % zero_chunk_bytes == 0);

ByteView zero_chunk() {
  static const Bytes zeros(zero_chunk_bytes, 0);
  return zeros;
}

}  // namespace

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

}  // namespace rpool::wal
