#include "wal/verify.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "base/assert.h"
#include "wal/errc.h"
#include "wal/format.h"

namespace rpool::wal {
namespace {}  // namespace

VerifyReport verify_directory(const std::string& dir, FileSystem& fs,
                              const std::optional<KindSet>& known_kinds) {
  VerifyReport report;
  auto fault = [&](const std::string& name, std::uint64_t offset, std::string reason) {
    report.faults.push_back({join_path(dir, name), offset, std::move(reason)});
  };
  std::vector<std::string> names;
  if (auto ec = fs.list(dir, names)) {
    report.faults.push_back({dir, 0, fmt::format("cannot list the directory: {}", ec.message())});
    return report;
  }
  struct Seg {
    std::string name;
    ParsedName parsed;
  };
  std::vector<Seg> closed, opens, snapshots;
  for (const auto& name : names) {
    const ParsedName p = parse_name(name);
    if (p.kind == FileKind::closed_segment) closed.push_back({name, p});
    if (p.kind == FileKind::open_segment) opens.push_back({name, p});
    if (p.kind == FileKind::snapshot) snapshots.push_back({name, p});
    if (p.kind == FileKind::hard_state) report.hard_state = true;
  }
  std::sort(closed.begin(), closed.end(),
            [](const Seg& a, const Seg& b) { return a.parsed.first < b.parsed.first; });
  std::sort(opens.begin(), opens.end(),
            [](const Seg& a, const Seg& b) { return a.parsed.seq < b.parsed.seq; });
  std::vector<Seg> segments = closed;
  segments.insert(segments.end(), opens.begin(), opens.end());

  // The hard state first: its commit index was durable in the log before it was written, so a
  // log read after it reaches at least that far even while a node appends.
  Bytes bytes;
  StateFacts facts;
  facts.dir = dir;
  if (report.hard_state) {
    std::string why;
    const std::string name(hard_state_file_name);
    facts.hard_state_present = true;  // a damaged one is reported as itself, below
    if (auto ec = read_whole(fs, join_path(dir, name), bytes); ec == errc::not_found) {
      report.changed = true;  // replaced right now (a rename over it cannot make it vanish; a
                              // test's removal can)
      facts.hard_state_present = false;
    } else if (ec) {
      fault(name, 0, fmt::format("cannot read: {}", ec.message()));
    } else if (const auto hs = decode_hard_state(bytes, why)) {
      facts.hard_state = *hs;
    } else {
      fault(name, 0, why);
    }
  }

  std::optional<LogIndex> prev_last;  // last index of the previous segment
  std::optional<Term> prev_last_term;
  std::optional<LogIndex> first_segment_index;  // from the oldest segment's header
  std::string first_segment_name;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const Seg& seg = segments[i];
    const bool is_open = seg.parsed.kind == FileKind::open_segment;
    const bool last_open = is_open && i + 1 == segments.size();
    ++report.segments;
    std::unique_ptr<File> file;
    std::uint64_t size = 0;
    std::error_code ec = fs.open(join_path(dir, seg.name), OpenMode::read_only, file);
    if (ec == errc::not_found) {
      // Renamed (closed) or removed (compacted) by a live node since the listing: not a fault.
      report.changed = true;
      --report.segments;
      prev_last.reset();
      prev_last_term.reset();
      continue;
    }
    if (!ec) ec = file->size(size);
    SegmentScan scan;
    if (!ec) {
      FileSource source(*file, size);
      scan = scan_segment(source);
      ec = scan.read_error;
    }
    if (ec) {
      fault(seg.name, 0, fmt::format("cannot read: {}", ec.message()));
      prev_last.reset();
      continue;
    }
    report.record_bytes += size;
    if (!scan.header_ok) {
      if (last_open && scan.garbage_bytes <= segment_header_bytes) {
        report.warnings.push_back(
            fmt::format("{}: a segment whose header was never completed ({}); "
                        "it holds no records and is discarded at the next open",
                        join_path(dir, seg.name), *scan.fault));
      } else {
        fault(seg.name, 0, *scan.fault);
      }
      prev_last.reset();
      continue;
    }
    if (!first_segment_index) {
      first_segment_index = scan.first_index;
      first_segment_name = seg.name;
    }
    report.records += scan.records.size();
    // Hard-state records: the latest copy of the hard state wins (log.h, HARD STATE).
    for (const HardStateRecord& h : scan.hard_states) {
      ++report.hard_state_records;
      if (!hard_state_before(h.state, facts.hard_state)) facts.hard_state = h.state;
    }
    if (const auto bad = check_records(scan, prev_last_term, known_kinds))
      fault(seg.name, bad->offset, bad->reason);
    if (!scan.records.empty()) prev_last_term = scan.records.back().term;
    const LogIndex last = scan.first_index + scan.records.size() - 1;
    if (prev_last && scan.first_index != *prev_last + 1) {
      fault(seg.name, 16,
            fmt::format("segment starts at index {}, but the previous segment ends at {} "
                        "(a missing segment or an index gap)",
                        scan.first_index, *prev_last));
    }
    if (scan.garbage_bytes > 0) {
      const std::string why =
          scan.fault ? *scan.fault : std::string("non-zero bytes after the last record");
      if (last_open) {
        // The same rule as Log::open, so that verify and the node never disagree.
        FileSource again(*file, size);
        const TailVerdict verdict = judge_tail(again, scan);
        if (verdict.torn) {
          report.warnings.push_back(fmt::format(
              "{}: torn tail of {} bytes at offset {} ({}); the next open cuts it (or a node is "
              "writing it now)",
              join_path(dir, seg.name), scan.garbage_bytes, scan.data_end, verdict.reason));
        } else {
          fault(seg.name, scan.data_end, verdict.reason);
        }
      } else {
        fault(seg.name, scan.data_end, why);
      }
    }
    const bool already_faulty = scan.garbage_bytes > 0 && !last_open;  // reported once, above
    if (!is_open && !already_faulty) {
      if (scan.records.empty()) {
        fault(seg.name, segment_header_bytes, "closed segment holds no records");
      } else if (scan.first_index != seg.parsed.first || last != seg.parsed.last) {
        fault(seg.name, scan.data_end,
              fmt::format("segment holds indexes {}-{} but its name says {}-{}", scan.first_index,
                          last, seg.parsed.first, seg.parsed.last));
      }
    } else if (!last_open && scan.records.empty()) {
      fault(seg.name, segment_header_bytes,
            "an open segment that is not the last one holds no records");
    }
    if (report.first_index.value() == 0 && !scan.records.empty())
      report.first_index = scan.first_index;
    if (!scan.records.empty()) report.last_index = last;
    prev_last = last;
  }

  std::optional<LogIndex> newest_snapshot;
  for (const auto& snap : snapshots) {
    ++report.snapshots;
    // Coverage counts damaged snapshots too (by name): they are reported once, as themselves.
    newest_snapshot = std::max(newest_snapshot.value_or(LogIndex(0)), snap.parsed.first);
    std::string why;
    if (auto ec = read_whole(fs, join_path(dir, snap.name), bytes); ec == errc::not_found) {
      report.changed = true;  // an old snapshot removed by save_snapshot since the listing
      --report.snapshots;
      continue;
    } else if (ec) {
      fault(snap.name, 0, fmt::format("cannot read: {}", ec.message()));
      continue;
    }
    const auto s = decode_snapshot(bytes, why);
    if (!s) {
      fault(snap.name, 0, why);
      continue;
    }
    if (s->index != snap.parsed.first || s->term != snap.parsed.term) {
      fault(snap.name, 16,
            fmt::format("snapshot holds index {} term {}, but its name says index {} term {}",
                        s->index, s->term, snap.parsed.first, snap.parsed.term));
    }
  }
  // The cross-checks rpoold's recovery makes (recovery.h), on what this scan found.
  if (first_segment_index) {
    facts.oldest_segment = first_segment_name;
    facts.first_index = *first_segment_index;
    facts.last_index =
        report.last_index.value() == 0 ? *first_segment_index - 1 : report.last_index;
  }
  facts.snapshot_index = newest_snapshot;
  for (auto& f : check_state(facts)) report.faults.push_back(std::move(f));
  return report;
}

}  // namespace rpool::wal

namespace rpool::wal {

VerifyReport verify_directory_settled(const std::string& dir, FileSystem& fs,
                                      const std::optional<KindSet>& known_kinds, int attempts_max) {
  RPOOL_ASSERT(attempts_max >= 1);
  auto lines = [](const VerifyReport& r) {
    std::vector<std::string> out;
    for (const auto& f : r.faults) out.push_back(f.line());
    std::sort(out.begin(), out.end());
    return out;
  };
  VerifyReport report = verify_directory(dir, fs, known_kinds);
  std::vector<std::string> seen_every_time = lines(report);
  for (int attempt = 1; attempt < attempts_max; ++attempt) {
    if (report.faults.empty() && !report.changed) return report;
    // Another process changes the directory; there is no event to wait for, so back off a little
    // (1, 2, 4 ... ms) to let a write or a rename in flight finish, then look again.
    std::this_thread::sleep_for(std::chrono::milliseconds(1 << std::min(attempt - 1, 6)));
    VerifyReport again = verify_directory(dir, fs, known_kinds);
    const std::vector<std::string> now = lines(again);
    std::vector<std::string> both;
    std::set_intersection(seen_every_time.begin(), seen_every_time.end(), now.begin(), now.end(),
                          std::back_inserter(both));
    const bool settled = !again.changed && !report.changed && now == lines(report);
    seen_every_time = std::move(both);
    report = std::move(again);
    if (report.faults.empty() && !report.changed) return report;
    if (settled) return report;  // the same faults twice over an unchanged directory
  }
  // Still changing: a fault that is real shows in every scan; keep only those.
  std::erase_if(report.faults, [&](const Fault& f) {
    return !std::binary_search(seen_every_time.begin(), seen_every_time.end(), f.line());
  });
  report.warnings.push_back(
      fmt::format("{}: the directory changed during each of {} scans (a live node); only "
                  "faults seen in every scan are reported",
                  dir, attempts_max));
  return report;
}

}  // namespace rpool::wal
