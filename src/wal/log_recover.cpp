// Log::recover: the scan of the segments at open, which tells a torn tail from corruption
// (the rule is in log.h). Part of Log.
#include "wal/log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"

namespace rpool::wal {

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
  {
    // The file is the oldest copy of the hard state: records later than it supersede it. A
    // damaged file is load_hard_state()'s to report; it is not taken here.
    Bytes bytes;
    std::string why;
    if (!read_whole(fs_, path(std::string(hard_state_file_name)), bytes)) {
      if (const auto state = decode_hard_state(bytes, why)) hard_state_ = *state;
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
    if (hard_state_unordered_) {
      if (auto ec = checkpoint_hard_state()) return ec;
    }
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
  seg.version = scan.version;
  seg.first_index = scan.first_index;
  seg.offsets.reserve(scan.records.size());
  seg.payload_bytes.reserve(scan.records.size());
  seg.terms.reserve(scan.records.size());
  for (const auto& r : scan.records) {
    seg.offsets.push_back(r.offset);
    seg.payload_bytes.push_back(r.payload_bytes);
    seg.terms.push_back(r.term);
  }
  // The greatest hard state wins (log.h, HARD STATE); on a tie the later copy, so that the
  // segment holding the last record is the one a compaction must not lose.
  for (const HardStateRecord& h : scan.hard_states) {
    if (!hard_state_before(h.state, hard_state_)) {
      hard_state_ = h.state;
      hard_state_in_record_ = true;
    } else if (hard_state_in_record_) {
      // An older state behind the latest record: this log never writes one, but if it finds one,
      // the latest is not in the last record, and open() checkpoints it to the file.
      hard_state_unordered_ = true;
    }
    seg.hard_state_offset = h.offset;
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

}  // namespace rpool::wal
