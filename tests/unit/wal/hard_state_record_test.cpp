// Hard-state records (log.h, HARD STATE): the hard state written into the segments with the
// entries instead of a file replaced beside them. Their codec and scan, recovery picking the
// latest copy, and the log never losing the latest one to compaction, truncation or reset, also
// with a crash at every file-system call of those operations.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "base/bytes.h"
#include "helpers.h"
#include "wal/crc32c.h"
#include "wal/recovery.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::open_ok;
using test::small;
using test::steps;
using test::TempDir;

HardState load(const Log& log) {
  HardState h;
  INFO(log.error_detail());
  REQUIRE_FALSE(log.load_hard_state(h));
  return h;
}

TEST_CASE("a hard-state record encodes, scans between entries, and leaves the index sequence") {
  const HardState h{Term(7), NodeId(3), LogIndex(2)};
  Bytes file;
  encode_segment_header(LogIndex(1), file);
  encode_record(test::entry(1, 7), file);
  encode_hard_state_record(h, file);
  const std::uint64_t record_at = file.size() - hard_state_record_bytes;
  // The next entry follows the previous entry's index, and may have a lower term than the
  // hard state's (a leader of term 7 replicating an entry of term 5 is legal).
  encode_record(test::entry(2, 7), file);
  encode_hard_state_record({Term(9), NodeId(0), LogIndex(2)}, file);
  const SegmentScan scan = scan_segment(ByteView(file));
  REQUIRE_FALSE(scan.fault);
  CHECK(scan.data_end == file.size());
  REQUIRE(scan.records.size() == 2);
  CHECK(scan.records[1].index == LogIndex(2));
  REQUIRE(scan.hard_states.size() == 2);
  CHECK(scan.hard_states[0].offset == record_at);
  CHECK(scan.hard_states[0].state == h);
  CHECK(scan.hard_states[1].state == HardState{Term(9), NodeId(0), LogIndex(2)});
  CHECK_FALSE(check_records(scan, std::nullopt, kinds({1, 2, 3})));

  SUBCASE("a flipped byte fails its checksum") {
    file[record_at + 30] ^= 1;
    const SegmentScan bad = scan_segment(ByteView(file));
    CHECK(bad.stop == ScanStop::checksum);
    CHECK(bad.data_end == record_at);
  }
  SUBCASE("kind 0xff with an index or another length is not a hard-state record") {
    Bytes other;
    encode_segment_header(LogIndex(1), other);
    encode_record(Entry{Term(1), LogIndex(1), hard_state_record_kind, Bytes(16)}, other);
    const SegmentScan bad = scan_segment(ByteView(other));
    CHECK(bad.stop == ScanStop::other);
    REQUIRE(bad.fault);
    CHECK(bad.fault->find("hard-state record") != std::string::npos);
  }
}

Bytes read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Rewrites the header of segment file `path` to `version`, as a build before hard-state records
// (version 1) wrote it.
void set_segment_version(const std::filesystem::path& path, std::uint32_t version) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f);
  Bytes header(segment_header_bytes);
  f.read(reinterpret_cast<char*>(header.data()), static_cast<std::streamsize>(header.size()));
  store_u32le(header.data() + 8, version);
  store_u32le(header.data() + 28, crc32c(ByteView(header).first(28)));
  f.seekp(0);
  f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
}

TEST_CASE("segments are version 2; only they hold hard-state records, and 3 is refused") {
  // A build that knows only version 1 refuses a version-2 segment as corrupt; shown to it, a
  // hard-state record would stop its scan and could be cut as a torn tail.
  Bytes v2;
  encode_segment_header(LogIndex(1), v2);
  CHECK(load_u32le(v2.data() + 8) == segment_version);
  encode_record(test::entry(1, 7), v2);
  encode_hard_state_record({Term(7), NodeId(1), LogIndex(1)}, v2);
  encode_record(test::entry(2, 7), v2);
  const SegmentScan ok = scan_segment(ByteView(v2));
  REQUIRE_FALSE(ok.fault);
  CHECK(ok.version == 2);
  CHECK(ok.hard_states.size() == 1);

  Bytes v1 = v2;
  store_u32le(v1.data() + 8, 1);
  store_u32le(v1.data() + 28, crc32c(ByteView(v1).first(28)));
  const SegmentScan old = scan_segment(ByteView(v1));
  CHECK(old.header_ok);
  CHECK(old.version == 1);
  CHECK(old.hard_states.empty());  // in version 1 kind 0xff is an entry's, out of sequence here
  REQUIRE(old.fault);
  CHECK(*old.fault == "record holds index 0, expected 2");

  Bytes v3 = v2;
  store_u32le(v3.data() + 8, 3);
  store_u32le(v3.data() + 28, crc32c(ByteView(v3).first(28)));
  const SegmentScan future = scan_segment(ByteView(v3));
  CHECK_FALSE(future.header_ok);
  REQUIRE(future.fault);
  CHECK(*future.fault == "unsupported segment format version 3");
}

TEST_CASE("a version-1 open segment gets no hard-state record: closed, or the file takes it") {
  TempDir dir;
  const auto open_segment = [&] {
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
      if (e.path().filename().string().starts_with("open-")) return e.path();
    }
    FAIL("no open segment");
    return std::filesystem::path();
  };
  SUBCASE("with entries: closed, and the record starts a version-2 segment") {
    {
      auto log = open_ok(dir.path(), small());
      REQUIRE_FALSE(log->append(entries(1, 3, 2, 40)));
      REQUIRE_FALSE(log->sync());
    }
    set_segment_version(open_segment(), 1);
    {
      auto log = open_ok(dir.path(), small());
      REQUIRE_FALSE(log->append_hard_state({Term(2), NodeId(1), LogIndex(3)}));
      REQUIRE_FALSE(log->sync());
      const auto segments = log->segments();
      REQUIRE(segments.size() == 2);
      CHECK_FALSE(segments[0].open);
      CHECK(segments[0].last_index == LogIndex(3));
      CHECK(segments[1].open);
    }
    auto log = open_ok(dir.path(), small());
    CHECK(load(*log) == HardState{Term(2), NodeId(1), LogIndex(3)});
    CHECK(test::read_all(*log).size() == 3);
    CHECK(scan_segment(ByteView(read_file(open_segment()))).version == 2);
  }
  SUBCASE("without entries: the hardstate file, behind a sync") {
    {
      auto log = open_ok(dir.path(), small());
      REQUIRE_FALSE(log->reset(LogIndex(10)));  // an open segment from index 10, empty
    }
    set_segment_version(open_segment(), 1);
    {
      auto log = open_ok(dir.path(), small());
      REQUIRE_FALSE(log->append_hard_state({Term(3), NodeId(2), LogIndex(9)}));
      CHECK(scan_segment(ByteView(read_file(open_segment()))).hard_states.empty());
    }
    CHECK(scan_segment(ByteView(read_file(open_segment()))).version == 1);
    auto log = open_ok(dir.path(), small());
    CHECK(load(*log) == HardState{Term(3), NodeId(2), LogIndex(9)});
  }
}

TEST_CASE("the later of two hard states: term, then a vote cast, then the commit index") {
  CHECK(hard_state_before({Term(1), NodeId(2), LogIndex(90)}, {Term(2), NodeId(0), LogIndex(1)}));
  CHECK(hard_state_before({Term(2), NodeId(0), LogIndex(90)}, {Term(2), NodeId(1), LogIndex(1)}));
  CHECK(hard_state_before({Term(2), NodeId(1), LogIndex(1)}, {Term(2), NodeId(1), LogIndex(2)}));
  CHECK_FALSE(hard_state_before({Term(2), NodeId(1), LogIndex(2)}, {Term(2), NodeId(1), LogIndex(2)}));
  CHECK_FALSE(hard_state_before({Term(3), NodeId(0), LogIndex(0)}, {Term(2), NodeId(1), LogIndex(9)}));
}

TEST_CASE("recovery takes the latest hard state of the records and the file") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({Term(1), NodeId(0), LogIndex(0)}));  // a new directory
    // Records across several segment rollovers (4 KiB segments, 100-byte entries).
    for (std::uint64_t i = 1; i <= 200; ++i) {
      REQUIRE_FALSE(log->append(entries(i, 1, 2 + i / 50, 100)));
      if (i % 10 == 0) {
        REQUIRE_FALSE(log->append_hard_state({Term(2 + i / 50), NodeId(i % 3 + 1), LogIndex(i)}));
      }
      REQUIRE_FALSE(log->sync());
    }
    CHECK(log->segments().size() > 3);
    log->check_invariants();
    CHECK(load(*log) == HardState{Term(6), NodeId(3), LogIndex(200)});
  }
  auto log = open_ok(dir.path(), small());
  CHECK(load(*log) == HardState{Term(6), NodeId(3), LogIndex(200)});
  CHECK(test::read_all(*log).size() == 200);  // entries read past the records between them
  // wal::recover (what the node calls) and verify agree.
  log.reset();
  RecoverResult r = recover(dir.path(), small());
  REQUIRE_FALSE(r.error);
  CHECK(r.state.hard_state == HardState{Term(6), NodeId(3), LogIndex(200)});
}

TEST_CASE("a directory with only the hardstate file (the older format) boots from it") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->append(entries(1, 30, 4, 40)));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->save_hard_state({Term(4), NodeId(2), LogIndex(25)}));
  }
  {
    RecoverResult r = recover(dir.path(), small());
    REQUIRE_FALSE(r.error);
    CHECK(r.state.hard_state == HardState{Term(4), NodeId(2), LogIndex(25)});
    // The records that follow supersede the file; an older record never does.
    REQUIRE_FALSE(r.state.log->append(entries(31, 5, 4, 40)));
    REQUIRE_FALSE(r.state.log->append_hard_state({Term(5), NodeId(0), LogIndex(30)}));
    REQUIRE_FALSE(r.state.log->sync());
  }
  RecoverResult r = recover(dir.path(), small());
  REQUIRE_FALSE(r.error);
  CHECK(r.state.hard_state == HardState{Term(5), NodeId(0), LogIndex(30)});
}

TEST_CASE("compaction that deletes the segment of the latest record keeps the hard state") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({}));
    REQUIRE_FALSE(log->append(entries(1, 20, 3, 100)));
    REQUIRE_FALSE(log->append_hard_state({Term(3), NodeId(1), LogIndex(20)}));
    REQUIRE_FALSE(log->append(entries(21, 100, 3, 100)));  // several segments later, no record
    REQUIRE_FALSE(log->sync());
    REQUIRE(log->segments().front().last_index < LogIndex(60));
    REQUIRE_FALSE(log->compact(LogIndex(60)));
    REQUIRE(log->first_index() > LogIndex(20));
    log->check_invariants();
    CHECK(load(*log) == HardState{Term(3), NodeId(1), LogIndex(20)});
  }
  auto log = open_ok(dir.path(), small());
  CHECK(load(*log) == HardState{Term(3), NodeId(1), LogIndex(20)});
}

TEST_CASE("truncate_suffix and reset that cut the latest record keep the hard state") {
  TempDir dir;
  const HardState latest{Term(4), NodeId(2), LogIndex(10)};
  SUBCASE("truncate inside the open segment") {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({}));
    REQUIRE_FALSE(log->append(entries(1, 12, 4, 40)));
    REQUIRE_FALSE(log->append_hard_state(latest));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->truncate_suffix(LogIndex(11)));
    log->check_invariants();
  }
  SUBCASE("truncate whole segments") {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({}));
    REQUIRE_FALSE(log->append(entries(1, 120, 4, 100)));
    REQUIRE_FALSE(log->append_hard_state(latest));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->truncate_suffix(LogIndex(11)));
    log->check_invariants();
  }
  SUBCASE("truncate a segment whose first record is a hard-state record") {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({}));
    // 32 records of 125 bytes fill a 4 KiB segment to 4032 bytes: one hard-state record still
    // fits, the second rolls over and opens the next segment, ahead of its first entry.
    REQUIRE_FALSE(log->append(entries(1, 32, 4, 100)));
    REQUIRE_FALSE(log->append_hard_state({Term(4), NodeId(2), LogIndex(5)}));
    REQUIRE_FALSE(log->append_hard_state(latest));
    REQUIRE(log->segments().size() == 2);
    REQUIRE_FALSE(log->append(entries(33, 5, 4, 100)));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->truncate_suffix(LogIndex(33)));
    CHECK(log->segments().size() == 1);
    log->check_invariants();
  }
  SUBCASE("reset") {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->save_hard_state({}));
    REQUIRE_FALSE(log->append(entries(1, 12, 4, 40)));
    REQUIRE_FALSE(log->append_hard_state(latest));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->reset(LogIndex(500)));
    log->check_invariants();
  }
  auto log = open_ok(dir.path(), small());
  CHECK(load(*log) == latest);
}

// --- crashes ------------------------------------------------------------------------------------

const std::string sim_dir = "/h";
constexpr int seeds_per_point = 60;

// Runs setup, then `operation` with a crash at its n-th file-system call for every n (losing
// what was not durable in each of the simulated disk's ways), and checks that recovery finds a
// hard state at least as late as `acknowledged(acked steps)`.
void crash_everywhere(const std::function<void(Log&)>& setup,
                      const std::function<int(Log&)>& operation,
                      const std::function<HardState(int)>& acknowledged) {
  std::uint64_t calls = 0;
  {
    SimFileSystem fs(1);
    RecoverResult r = recover(sim_dir, small(&fs));
    REQUIRE_FALSE(r.error);
    setup(*r.state.log);
    fs.set_fault_hook([&](SimFileSystem::Op, const std::string&) -> std::error_code {
      ++calls;
      return {};
    });
    REQUIRE(operation(*r.state.log) >= 0);
  }
  REQUIRE(calls > 0);
  for (std::uint64_t point = 0; point <= calls; ++point) {
    for (std::uint64_t seed = 1; seed <= seeds_per_point; ++seed) {
      CAPTURE(point);
      CAPTURE(seed);
      SimFileSystem fs(seed * 1000 + point);
      int acked = 0;
      {
        RecoverResult r = recover(sim_dir, small(&fs));
        REQUIRE_FALSE(r.error);
        setup(*r.state.log);
        std::uint64_t n = 0;
        fs.set_fault_hook([&](SimFileSystem::Op, const std::string&) -> std::error_code {
          return n++ >= point ? std::error_code(errc::io_error) : std::error_code();
        });
        acked = operation(*r.state.log);
      }
      fs.set_fault_hook({});
      fs.crash(seed % 3 == 0   ? SimFileSystem::CrashMode::drop_unsynced
               : seed % 3 == 1 ? SimFileSystem::CrashMode::torn_prefix
                               : SimFileSystem::CrashMode::sector_subsets);
      RecoverResult r = recover(sim_dir, small(&fs));
      INFO(r.detail);
      REQUIRE_FALSE(r.error);
      r.state.log->check_invariants();
      CHECK_FALSE(hard_state_before(r.state.hard_state, acknowledged(acked)));
    }
  }
}

const HardState first{Term(3), NodeId(1), LogIndex(10)};

// A record in the oldest segment, entries after it up to index 120, and a snapshot at
// `snapshot_index` (so that a log compacted or reset behind it is whole).
void with_record_in_old_segment(Log& log, std::uint64_t snapshot_index) {
  REQUIRE_FALSE(log.save_snapshot({LogIndex(snapshot_index), Term(3), Bytes{1}, Bytes(8, 1)}));
  REQUIRE_FALSE(log.append(entries(1, 20, 3, 100)));
  REQUIRE_FALSE(log.append_hard_state(first));
  REQUIRE_FALSE(log.append(entries(21, 100, 3, 100)));
  REQUIRE_FALSE(log.sync());
}

TEST_CASE("crash at every call of a compaction past the latest record: the state survives") {
  crash_everywhere([](Log& log) { with_record_in_old_segment(log, 60); },
                   [](Log& log) { return steps({[&] { return log.compact(LogIndex(60)); }}); },
                   [](int) { return first; });
}

TEST_CASE("crash at every call of a truncation or reset past the latest record") {
  const HardState later{Term(4), NodeId(0), LogIndex(10)};
  crash_everywhere(
      [](Log& log) { with_record_in_old_segment(log, 299); },
      [&](Log& log) {
        return steps({[&] { return log.append_hard_state(later); }, [&] { return log.sync(); },
                      [&] { return log.truncate_suffix(LogIndex(15)); },
                      [&] { return log.reset(LogIndex(300)); }});
      },
      [&](int acked) { return acked >= 2 ? later : first; });
}

}  // namespace
}  // namespace rpool::wal
