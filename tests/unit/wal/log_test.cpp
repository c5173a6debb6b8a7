// The log's API on the real file system: rollover, reopen, truncation, compaction, hard state,
// snapshots, locking, reads.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "../aborts.h"
#include "helpers.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::entry;
using test::open_ok;
using test::read_all;
using test::small;
using test::TempDir;

std::size_t count_files(const std::string& dir, std::string_view suffix) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().string().ends_with(suffix)) ++n;
  }
  return n;
}

TEST_CASE("appends across many segment rollovers are read back after a reopen") {
  TempDir dir;
  std::mt19937_64 rng(42);
  std::vector<Entry> written;
  {
    auto log = open_ok(dir.path(), small());
    CHECK(log->first_index() == LogIndex(1));
    CHECK(log->last_index() == LogIndex(0));
    std::uint64_t term = 1;
    while (written.size() < 2000) {
      std::vector<Entry> batch;
      const std::size_t n = 1 + rng() % 20;
      if (rng() % 10 == 0) ++term;
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(entry(written.size() + batch.size() + 1, term, rng() % 300));
      }
      REQUIRE_FALSE(log->append(batch));
      log->check_invariants();
      if (rng() % 3 == 0) REQUIRE_FALSE(log->sync());
      written.insert(written.end(), batch.begin(), batch.end());
    }
    REQUIRE_FALSE(log->sync());
    log->check_invariants();
    CHECK(log->segments().size() > 50);
    CHECK(read_all(*log) == written);
  }
  auto log = open_ok(dir.path(), small());
  CHECK(log->warnings().empty());
  CHECK(log->first_index() == LogIndex(1));
  CHECK(log->last_index() == LogIndex(2000));
  CHECK(log->last_term() == written.back().term);
  CHECK(read_all(*log) == written);
  for (const auto& e : written) {
    Term t;
    REQUIRE_FALSE(log->term(e.index, t));
    CHECK(t == e.term);
  }
  // Exactly one open segment; the closed ones are named by their range.
  std::size_t open = 0;
  for (const auto& s : log->segments()) open += s.open ? 1 : 0;
  CHECK(open == 1);
  CHECK(count_files(dir.path(), ".wal") == log->segments().size());
}

TEST_CASE("truncate_suffix across a segment boundary, then new entries, survive a reopen") {
  TempDir dir;
  std::vector<Entry> expect = entries(1, 300, 1, 100);  // about 8 segments of 4 KiB
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->append(expect));
    REQUIRE_FALSE(log->sync());
    const auto segs = log->segments();
    REQUIRE(segs.size() > 4);
    // Cut inside the second segment: every later segment goes, the second becomes open again.
    const LogIndex from = segs[1].first_index + 3;
    REQUIRE_FALSE(log->truncate_suffix(from));
    log->check_invariants();
    CHECK(log->last_index() == from - 1);
    CHECK(log->segments().size() == 2);
    CHECK(log->segments().back().open);
    expect.resize(from.value() - 1);
    const auto more = entries(from.value(), 100, 2, 60);
    REQUIRE_FALSE(log->append(more));
    REQUIRE_FALSE(log->sync());
    log->check_invariants();
    expect.insert(expect.end(), more.begin(), more.end());
    CHECK(read_all(*log) == expect);
    // Truncating exactly at a segment's first index removes that segment whole.
    const LogIndex boundary = log->segments()[2].first_index;
    REQUIRE_FALSE(log->truncate_suffix(boundary));
    log->check_invariants();
    CHECK(log->last_index() == boundary - 1);
    expect.resize(boundary.value() - 1);
  }
  auto log = open_ok(dir.path(), small());
  CHECK(log->warnings().empty());
  CHECK(read_all(*log) == expect);
  REQUIRE_FALSE(log->append(entries(log->last_index().value() + 1, 5, 3)));
  REQUIRE_FALSE(log->sync());
  log->check_invariants();
}

TEST_CASE("a truncated tail never comes back behind new entries of the same size") {
  // Records 7..10 would line up exactly behind the new 5 and 6 if the tail were not zeroed.
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small(nullptr, 1 << 20));
    REQUIRE_FALSE(log->append(entries(1, 4, 1)));
    REQUIRE_FALSE(log->append(entries(5, 6, 3)));  // an old leader's entries, never committed
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->truncate_suffix(LogIndex(5)));
    log->check_invariants();
    std::vector<Entry> fresh = {entry(5, 2),
                                entry(6, 2)};  // the new leader's, from an earlier term
    REQUIRE_FALSE(log->append(fresh));
    REQUIRE_FALSE(log->sync());
  }
  auto log = open_ok(dir.path(), small(nullptr, 1 << 20));
  CHECK(log->last_index() == LogIndex(6));
  CHECK(log->warnings().empty());
}

TEST_CASE("truncate_suffix of the whole log and reset keep the next index across a reopen") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->append(entries(1, 100, 1, 100)));
    REQUIRE_FALSE(log->truncate_suffix(LogIndex(1)));
    log->check_invariants();
    CHECK(log->last_index() == LogIndex(0));
    REQUIRE_FALSE(log->reset(LogIndex(501)));
    log->check_invariants();
    CHECK(log->first_index() == LogIndex(501));
    CHECK(log->last_index() == LogIndex(500));
  }
  auto log = open_ok(dir.path(), small());
  CHECK(log->first_index() == LogIndex(501));
  CHECK(log->last_index() == LogIndex(500));
  REQUIRE_FALSE(log->append(entries(501, 3)));
  REQUIRE_FALSE(log->sync());
  CHECK(read_all(*log) == entries(501, 3));
}

TEST_CASE("compact deletes only segments wholly covered, and the log reopens") {
  TempDir dir;
  const auto all = entries(1, 400, 1, 100);
  LogIndex first_kept;
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->append(all));
    REQUIRE_FALSE(log->sync());
    const auto before = log->segments();
    REQUIRE(before.size() > 5);
    // up_to inside the fourth segment: the first three go.
    const LogIndex up_to = before[3].first_index + 2;
    REQUIRE_FALSE(log->compact(up_to));
    log->check_invariants();
    CHECK(log->segments().size() == before.size() - 3);
    first_kept = before[3].first_index;
    CHECK(log->first_index() == first_kept);
    std::vector<Entry> out;
    CHECK(log->read(LogIndex(1), LogIndex(5), out) == errc::compacted);
    Term t;
    CHECK(log->term(LogIndex(1), t) == errc::compacted);
    CHECK(log->term(LogIndex(401), t) == errc::unavailable);
    // Compacting past the end keeps the last segment, so the log still knows where it is.
    REQUIRE_FALSE(log->compact(LogIndex(10'000)));
    log->check_invariants();
    CHECK(log->segments().size() == 1);
    first_kept = log->first_index();
  }
  auto log = open_ok(dir.path(), small());
  CHECK(log->first_index() == first_kept);
  CHECK(log->last_index() == LogIndex(400));
  CHECK(read_all(*log) ==
        std::vector<Entry>(all.begin() + static_cast<std::ptrdiff_t>(first_kept.value() - 1),
                           all.end()));
}

TEST_CASE("read honours bytes_max but returns at least one entry") {
  TempDir dir;
  auto log = open_ok(dir.path(), small());
  REQUIRE_FALSE(log->append(entries(1, 50, 1, 100)));
  std::vector<Entry> out;
  REQUIRE_FALSE(log->read(LogIndex(1), LogIndex(51), out, 350));
  CHECK(out.size() == 3);
  out.clear();
  REQUIRE_FALSE(log->read(LogIndex(10), LogIndex(51), out, 1));
  CHECK(out.size() == 1);
  CHECK(out[0] == entry(10, 1, 100));
  out.clear();
  REQUIRE_FALSE(log->read(LogIndex(7), LogIndex(7), out));
  CHECK(out.empty());
  CHECK(log->read(LogIndex(40), LogIndex(52), out) == errc::unavailable);
}

TEST_CASE(
    "a read longer than one read chunk (4 MiB) returns every entry of the segment, in order") {
  TempDir dir;
  const std::vector<Entry> expect = entries(1, 2500, 3, 4000);  // ~10 MiB in one segment
  {
    auto log = open_ok(dir.path(), small(nullptr, 64u << 20));
    REQUIRE_FALSE(log->append(expect));
    REQUIRE_FALSE(log->sync());
    CHECK(log->segments().size() == 1);
  }
  auto log = open_ok(dir.path(), small(nullptr, 64u << 20));
  std::vector<Entry> out;
  REQUIRE_FALSE(log->read(LogIndex(1), LogIndex(2501), out));
  CHECK(out == expect);
  out.clear();
  REQUIRE_FALSE(log->read(LogIndex(700), LogIndex(2400), out));
  CHECK(out == std::vector<Entry>(expect.begin() + 699, expect.begin() + 2399));
  out.clear();
  REQUIRE_FALSE(log->read(LogIndex(5), LogIndex(2501), out, 6u << 20));  // bytes_max past a chunk
  CHECK(out.size() == (6u << 20) / 4000);
  CHECK(out.front() == expect[4]);
  CHECK(out.back() == expect[4 + out.size() - 1]);
}

TEST_CASE("an entry larger than a segment gets a segment of its own") {
  TempDir dir;
  std::vector<Entry> expect = {entry(1, 1, 10), entry(2, 1, 10'000), entry(3, 1, 10)};
  {
    auto log = open_ok(dir.path(), small());
    REQUIRE_FALSE(log->append(expect));
    REQUIRE_FALSE(log->sync());
    log->check_invariants();
    CHECK(log->segments().size() == 3);
  }
  auto log = open_ok(dir.path(), small());
  CHECK(read_all(*log) == expect);
}

TEST_CASE("every preallocation mode writes a log that reads back") {
  for (auto mode : {Preallocation::zero_fill, Preallocation::fallocate, Preallocation::none}) {
    TempDir dir;
    Options o = small();
    o.preallocation = mode;
    const auto all = entries(1, 200, 1, 80);
    {
      auto log = open_ok(dir.path(), o);
      for (std::size_t i = 0; i < all.size(); i += 10) {
        REQUIRE_FALSE(log->append(std::span(all).subspan(i, 10)));
        REQUIRE_FALSE(log->sync());
        log->check_invariants();
      }
    }
    auto log = open_ok(dir.path(), o);
    CHECK(log->warnings().empty());
    CHECK(read_all(*log) == all);
  }
}

TEST_CASE("hard state round trip, and a damaged hard state file is reported") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    HardState h;
    REQUIRE_FALSE(log->load_hard_state(h));
    CHECK(h == HardState{});
    REQUIRE_FALSE(log->save_hard_state({Term(7), NodeId(3), LogIndex(99)}));
    REQUIRE_FALSE(log->save_hard_state({Term(8), NodeId(2), LogIndex(120)}));
  }
  {
    auto log = open_ok(dir.path(), small());
    HardState h;
    REQUIRE_FALSE(log->load_hard_state(h));
    CHECK(h == HardState{Term(8), NodeId(2), LogIndex(120)});
    CHECK_FALSE(std::filesystem::exists(dir / "hardstate.tmp"));
  }
  {
    std::fstream f(dir / "hardstate", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x55');
  }
  auto log = open_ok(dir.path(), small());
  HardState h;
  CHECK(log->load_hard_state(h) == errc::corrupt);
  CHECK(log->error_detail().find("hardstate") != std::string::npos);
  CHECK(log->error_detail().find("checksum") != std::string::npos);
}

TEST_CASE(
    "an application file beside the log is saved atomically, replaced, read back, and ignored by "
    "the log") {
  TempDir dir;
  {
    auto log = open_ok(dir.path(), small());
    Bytes out;
    CHECK(log->load_file("cluster-id", out) == errc::not_found);
    REQUIRE_FALSE(log->save_file("cluster-id", as_bytes("first\n")));
    REQUIRE_FALSE(log->save_file("cluster-id", as_bytes("0123456789abcdef\n")));
    REQUIRE_FALSE(log->append(entries(1, 3)));
    REQUIRE_FALSE(log->sync());
  }
  auto log = open_ok(dir.path(), small());
  Bytes out;
  REQUIRE_FALSE(log->load_file("cluster-id", out));
  CHECK(std::string(as_chars(out)) == "0123456789abcdef\n");
  CHECK_FALSE(std::filesystem::exists(dir / "cluster-id.tmp"));
  CHECK(log->last_index() == LogIndex(3));
  CHECK(log->warnings().empty());
}

TEST_CASE("snapshots: the newest two are kept, the newest is loaded and checked") {
  TempDir dir;
  auto log = open_ok(dir.path(), small());
  std::optional<SnapshotFile> s;
  REQUIRE_FALSE(log->load_latest_snapshot(s));
  CHECK_FALSE(s.has_value());
  for (std::uint64_t i = 1; i <= 4; ++i) {
    SnapshotFile snap{LogIndex(100 * i), Term(i), Bytes{1, 2, 3},
                      Bytes(1000 * i, static_cast<std::uint8_t>(i))};
    REQUIRE_FALSE(log->save_snapshot(snap));
    REQUIRE_FALSE(log->load_latest_snapshot(s));
    REQUIRE(s.has_value());
    CHECK(*s == snap);
  }
  CHECK(count_files(dir.path(), ".snap") == 2);
  CHECK(std::filesystem::exists(dir / snapshot_name(LogIndex(300), Term(3))));
  CHECK(std::filesystem::exists(dir / snapshot_name(LogIndex(400), Term(4))));
  {
    std::fstream f(dir / snapshot_name(LogIndex(400), Term(4)),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3000);
    f.put('\x01');
  }
  CHECK(log->load_latest_snapshot(s) == errc::corrupt);
  CHECK(log->error_detail().find(snapshot_name(LogIndex(400), Term(4))) != std::string::npos);
}

TEST_CASE("a snapshot written in two steps, beside the log's appends, is loaded and kept alike") {
  TempDir dir;
  auto log = open_ok(dir.path(), small());
  REQUIRE_FALSE(log->append(entries(1, 50)));
  std::optional<SnapshotFile> s;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    // The last is written in three pieces (Log::snapshot_write_bytes), the last one short.
    const std::size_t size = i < 3 ? 5000 : 2 * Log::snapshot_write_bytes + 12345;
    SnapshotFile snap{LogIndex(10 * i), Term(1), Bytes{9},
                      Bytes(size, static_cast<std::uint8_t>(i))};
    for (std::size_t k = 0; k < size; k += 4093) snap.data[k] = static_cast<std::uint8_t>(k);
    std::string detail;
    REQUIRE_FALSE(Log::write_snapshot_file(posix_file_system(), dir.path(), snap, detail));
    CHECK(detail.empty());
    // Written beside the log: the log appends and syncs meanwhile, and loads the new file.
    REQUIRE_FALSE(log->append(entries(50 + i, 1)));
    REQUIRE_FALSE(log->sync());
    REQUIRE_FALSE(log->load_latest_snapshot(s));
    REQUIRE(s.has_value());
    CHECK(*s == snap);
    REQUIRE_FALSE(log->keep_snapshots(snap));
    CHECK(count_files(dir.path(), ".tmp") == 0);
  }
  CHECK(count_files(dir.path(), ".snap") == 2);
  CHECK_FALSE(std::filesystem::exists(dir / snapshot_name(LogIndex(10), Term(1))));

  // A write that fails names the file and changes nothing; the log is not poisoned by it.
  std::string detail;
  const SnapshotFile bad{LogIndex(40), Term(1), {}, Bytes(10, 1)};
  CHECK(Log::write_snapshot_file(posix_file_system(), dir.path() + "/absent", bad, detail));
  CHECK(detail.find("absent/" + snapshot_name(LogIndex(40), Term(1)) + ".tmp: create failed") !=
        std::string::npos);
  CHECK_FALSE(log->poisoned());
  REQUIRE_FALSE(log->load_latest_snapshot(s));
  CHECK(s->index == LogIndex(30));
}

TEST_CASE("a snapshot file that fails half-written is removed, and the one before stays") {
  SimFileSystem fs(5);
  auto log = open_ok("/d", small(&fs));
  const SnapshotFile first{LogIndex(10), Term(1), {}, Bytes(100, 1)};
  std::string detail;
  REQUIRE_FALSE(Log::write_snapshot_file(fs, "/d", first, detail));
  REQUIRE_FALSE(log->keep_snapshots(first));

  // The disk fills up on the second piece of the next one.
  int writes = 0;
  fs.set_fault_hook([&](SimFileSystem::Op op, const std::string& path) -> std::error_code {
    if (op == SimFileSystem::Op::write && path.ends_with(".snap.tmp") && ++writes == 2)
      return from_errno(ENOSPC);
    return {};
  });
  const SnapshotFile second{LogIndex(20), Term(1), {}, Bytes(Log::snapshot_write_bytes + 10, 2)};
  const std::error_code ec = Log::write_snapshot_file(fs, "/d", second, detail);
  CHECK(ec == errc::disk_full);
  CHECK(detail.find(snapshot_name(LogIndex(20), Term(1)) + ".tmp: write failed") !=
        std::string::npos);
  CHECK_FALSE(fs.exists("/d/" + snapshot_name(LogIndex(20), Term(1)) + ".tmp"));
  CHECK_FALSE(fs.exists("/d/" + snapshot_name(LogIndex(20), Term(1))));
  CHECK_FALSE(log->poisoned());
  std::optional<SnapshotFile> s;
  REQUIRE_FALSE(log->load_latest_snapshot(s));
  CHECK(*s == first);
}

TEST_CASE("a second open of a locked data directory fails with errc::locked") {
  TempDir dir;
  auto log = open_ok(dir.path(), small());
  OpenResult second = Log::open(dir.path(), small());
  CHECK(second.error == errc::locked);
  CHECK(second.detail.find("locked") != std::string::npos);
  // Read-only opens (rpool-wal) do not take the lock.
  Options ro = small();
  ro.read_only = true;
  OpenResult reader = Log::open(dir.path(), ro);
  CHECK_FALSE(reader.error);
  REQUIRE(reader.log != nullptr);
  CHECK(reader.log->append(entries(1, 1)) == errc::read_only);
  log.reset();
  CHECK_FALSE(Log::open(dir.path(), small()).error);
}

using rpool::test::aborts;

TEST_CASE("appending out of order or with a falling term is a caller bug that asserts") {
  TempDir dir;
  auto log = open_ok(dir.path(), small());
  REQUIRE_FALSE(log->append(entries(1, 3, 2)));
  CHECK(aborts([&] { (void)log->append(std::vector<Entry>{entry(5, 2)}); }));  // gap
  CHECK(aborts([&] { (void)log->append(std::vector<Entry>{entry(3, 2)}); }));  // overlap
  CHECK(aborts([&] { (void)log->append(std::vector<Entry>{entry(4, 1)}); }));  // term goes down
  CHECK_FALSE(aborts([&] { (void)log->append(std::vector<Entry>{entry(4, 2)}); }));
}

}  // namespace
}  // namespace rpool::wal
