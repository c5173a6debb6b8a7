// The log's other files: the hard state, application files (cluster id) and snapshots, each
// replaced atomically. Part of Log (log.h).
#include "wal/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"

namespace rpool::wal {

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
  if (auto ec = replace_file(tmp, final_path, bytes)) return ec;
  if (!hard_state_before(state, hard_state_)) {
    hard_state_ = state;
    hard_state_in_record_ = false;
  }
  return {};
}

std::error_code Log::append_hard_state(const HardState& state) {
  if (auto ec = writable()) return ec;
  if (segments_.empty() || !segments_.back().open) {
    if (auto ec = start_segment(last_index() + 1)) return ec;
  }
  Segment* seg = &segments_.back();
  // An open segment started by a build before hard-state records gets none: that build must keep
  // refusing this directory rather than misread it (format.h, segment_version).
  const bool old_version = seg->version < segment_version_hard_state;
  // A segment that holds no entry cannot be closed (its name is its index range). An old one
  // then sends the state, this once, to the file behind the entries' sync, as before
  // hard-state records; a current one grows instead of rolling over.
  if (old_version && seg->offsets.empty()) {
    if (auto ec = sync()) return ec;
    return save_hard_state(state);
  }
  // Like an entry, the record rolls over to a new segment when it does not fit, and also out of
  // an old segment.
  if ((old_version || seg->data_end + hard_state_record_bytes > options_.segment_bytes) &&
      !seg->offsets.empty()) {
    if (auto ec = close_open_segment()) return ec;
    if (auto ec = start_segment(last_index() + 1)) return ec;
    seg = &segments_.back();
  }
  if (unsynced_bytes_ + hard_state_record_bytes > write_window_bytes) {
    if (auto ec = sync_window(*seg)) return ec;
  }
  scratch_.clear();
  encode_hard_state_record(state, scratch_);
  const std::uint64_t start = seg->data_end;
  seg->dirty_end = std::max(seg->dirty_end, start + scratch_.size());
  if (auto ec = seg->file->write_at(start, scratch_)) {
    return fail(
        ec, fmt::format("{}: write at offset {} failed: {}", path(seg->name), start, ec.message()));
  }
  seg->data_end = start + scratch_.size();
  seg->file_bytes = std::max(seg->file_bytes, seg->data_end);
  seg->hard_state_offset = start;
  unsynced_ = true;
  unsynced_bytes_ += scratch_.size();
  hard_state_ = state;
  hard_state_in_record_ = true;
  return {};
}

bool Log::hard_state_record_at_or_after(std::size_t i, std::uint64_t offset) const {
  if (!hard_state_in_record_) return false;
  for (std::size_t k = segments_.size(); k-- > 0;) {
    if (segments_[k].hard_state_offset) {
      return k > i || (k == i && *segments_[k].hard_state_offset >= offset);
    }
  }
  return false;
}

std::error_code Log::checkpoint_hard_state() {
  if (!hard_state_in_record_) return {};
  const HardState state = hard_state_;
  return save_hard_state(state);
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
      out = hard_state_;
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
  out = hard_state_before(*state, hard_state_) ? hard_state_ : *state;
  return {};
}

std::error_code Log::save_snapshot(const SnapshotFile& snapshot) {
  if (auto ec = writable()) return ec;
  RPOOL_ASSERT(snapshot.index.value() > 0);
  const std::string tmp = path("snapshot.tmp");
  const std::string final_path = path(snapshot_name(snapshot.index, snapshot.term));
  const Bytes bytes = encode_snapshot(snapshot);
  if (auto ec = replace_file(tmp, final_path, bytes)) return ec;
  return keep_snapshots(snapshot);
}

std::error_code Log::write_snapshot_file(FileSystem& fs, const std::string& dir,
                                         const SnapshotFile& snapshot, std::string& detail) {
  RPOOL_ASSERT(snapshot.index.value() > 0);
  const std::string name = snapshot_name(snapshot.index, snapshot.term);
  // Its own temporary name (any *.tmp is removed at recovery): save_snapshot() may be writing
  // snapshot.tmp meanwhile (a snapshot from the leader).
  const std::string tmp = join_path(dir, name + ".tmp");
  const std::string final_path = join_path(dir, name);
  const auto failed = [&detail](std::error_code ec, const std::string& what) {
    detail = fmt::format("{} failed: {}", what, ec.message());
    return ec;
  };
  if (auto ec = fs.remove(tmp); ec && ec != errc::not_found) return failed(ec, tmp + ": remove");
  std::unique_ptr<File> file;
  if (auto ec = fs.open(tmp, OpenMode::create_new, file)) return failed(ec, tmp + ": create");
  // A file that was not finished does not keep its disk space until the next recovery (a full
  // disk is the likely failure); removing it is best effort.
  const auto abandon = [&](std::error_code ec, const std::string& what) {
    file.reset();
    (void)fs.remove(tmp);
    return failed(ec, what);
  };
  // In pieces, each made durable before the next is written: a file of tens of megabytes written
  // whole and then flushed fills the disk's queue, and the log's fdatasyncs wait behind it.
  const Bytes bytes = encode_snapshot(snapshot);
  for (std::size_t at = 0; at < bytes.size(); at += snapshot_write_bytes) {
    const std::size_t n = std::min(snapshot_write_bytes, bytes.size() - at);
    const ByteView piece = ByteView(bytes).subspan(at, n);
    if (auto ec = file->write_at(at, piece)) return abandon(ec, tmp + ": write");
    if (auto ec = file->sync_data()) return abandon(ec, tmp + ": fdatasync");
  }
  file.reset();
  if (auto ec = fs.rename(tmp, final_path)) return abandon(ec, tmp + ": rename");
  if (auto ec = fs.sync_dir(dir)) return failed(ec, dir + ": fsync");
  return {};
}

std::error_code Log::keep_snapshots(const SnapshotFile& newest) {
  if (auto ec = writable()) return ec;
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
    if (snapshots[i].second == snapshot_name(newest.index, newest.term)) continue;
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

}  // namespace rpool::wal
