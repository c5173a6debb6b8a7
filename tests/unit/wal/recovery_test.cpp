// recover() and check_state(): the cross-checks between the log, the hard state and the
// snapshots, made the same way by the node's recovery and by verify_directory().
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "helpers.h"
#include "wal/recovery.h"
#include "wal/verify.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::entry;
using test::small;

const std::string dir = "/n";
const KindSet raft_kinds = kinds({1, 2, 3});

Options checked(SimFileSystem& fs) {
  Options o = small(&fs);
  o.known_kinds = raft_kinds;
  return o;
}

// recover() fails with errc::corrupt and `line` ("<file>: offset <n>: <reason>" containing
// `reason`), and verify_directory() reports the very same line among its faults.
void expect_corrupt(SimFileSystem& fs, const std::string& file, std::uint64_t offset,
                    const std::string& reason) {
  RecoverResult r = recover(dir, checked(fs));
  INFO(r.detail);
  CHECK(r.error == errc::corrupt);
  CHECK(r.state.log == nullptr);
  const std::string prefix = fmt::format("{}: offset {}: ", join_path(dir, file), offset);
  CHECK(r.detail.starts_with(prefix));
  CHECK(r.detail.find(reason) != std::string::npos);
  const VerifyReport report = verify_directory(dir, fs, raft_kinds);
  bool same = false;
  for (const auto& f : report.faults) same = same || f.line() == r.detail;
  CHECK(same);
}

// A log of 300 entries in 4 KiB segments with a hard state, synced.
void write_log(SimFileSystem& fs, std::uint64_t commit = 300) {
  RecoverResult r = recover(dir, checked(fs));
  REQUIRE_FALSE(r.error);
  Log& log = *r.state.log;
  REQUIRE_FALSE(log.append(entries(1, 300, 1, 40)));
  REQUIRE_FALSE(log.sync());
  REQUIRE_FALSE(log.save_hard_state({Term(1), NodeId(2), LogIndex(commit)}));
}

TEST_CASE(
    "recover on a new directory writes a hard state first, so a missing one later means a loss") {
  SimFileSystem fs(31);
  RecoverResult r = recover(dir, checked(fs));
  REQUIRE_FALSE(r.error);
  CHECK(fs.exists(join_path(dir, "hardstate")));
  CHECK(r.state.hard_state == HardState{});
  CHECK_FALSE(r.state.snapshot);
}

TEST_CASE("an intact directory recovers with its hard state, and verify finds nothing") {
  SimFileSystem fs(32);
  write_log(fs);
  RecoverResult r = recover(dir, checked(fs));
  REQUIRE_FALSE(r.error);
  CHECK(r.state.hard_state == HardState{Term(1), NodeId(2), LogIndex(300)});
  CHECK(r.state.log->last_index() == LogIndex(300));
  r.state.log.reset();
  CHECK(verify_directory(dir, fs, raft_kinds).faults.empty());
}

TEST_CASE("a missing oldest segment is corruption naming the segment that is now first") {
  SimFileSystem fs(33);
  write_log(fs);
  std::vector<SegmentInfo> segments;
  {
    RecoverResult r = recover(dir, checked(fs));
    REQUIRE_FALSE(r.error);
    segments = r.state.log->segments();
  }
  REQUIRE(segments.size() >= 3);
  REQUIRE_FALSE(fs.remove(join_path(dir, segments[0].name)));
  expect_corrupt(
      fs, segments[1].name, 16,
      fmt::format("the log starts at index {}, but with no snapshot the log ends at index 0",
                  segments[1].first_index));
}

TEST_CASE("a missing hard state beside a log holding entries is corruption") {
  SimFileSystem fs(34);
  write_log(fs);
  REQUIRE_FALSE(fs.remove(join_path(dir, "hardstate")));
  expect_corrupt(
      fs, "hardstate", 0,
      "missing, beside a log holding entries 1..300: the term and vote would be forgotten");
}

TEST_CASE("a commit index beyond the durable log is corruption, not clamped") {
  SimFileSystem fs(35);
  write_log(fs, 305);
  expect_corrupt(fs, "hardstate", 32,
                 "commit index 305 is beyond the durable log, which ends at index 300");
}

TEST_CASE("a torn tail cut below the commit index is reported, not forgotten") {
  SimFileSystem fs(36);
  std::string path;
  std::uint64_t end = 0;
  {
    RecoverResult r = recover(dir, checked(fs));
    REQUIRE_FALSE(r.error);
    REQUIRE_FALSE(r.state.log->append(entries(1, 20, 1, 40)));
    REQUIRE_FALSE(r.state.log->sync());
    REQUIRE_FALSE(r.state.log->save_hard_state({Term(1), NodeId(0), LogIndex(20)}));
    path = join_path(dir, r.state.log->segments().back().name);
    end = r.state.log->segments().back().data_bytes;
  }
  Bytes image = fs.contents(path);
  image.resize(end - 10);  // the last record cut short: a torn tail by the rule
  fs.set_contents(path, image);
  RecoverResult r = recover(dir, checked(fs));
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.find("commit index 20 is beyond the durable log, which ends at index 19") !=
        std::string::npos);
}

void write_segment(SimFileSystem& fs, const std::string& name, LogIndex first,
                   const std::vector<Entry>& list) {
  Bytes seg;
  encode_segment_header(first, seg);
  for (const auto& e : list) encode_record(e, seg);
  std::unique_ptr<File> f;
  REQUIRE_FALSE(fs.open(join_path(dir, name), OpenMode::create, f));
  REQUIRE_FALSE(f->write_at(0, seg));
  REQUIRE_FALSE(f->sync_data());
  REQUIRE_FALSE(fs.sync_dir(dir));
}

TEST_CASE("a term going down across segments is corruption, for open and verify alike") {
  SimFileSystem fs(37);
  {
    RecoverResult r = recover(dir, checked(fs));
    REQUIRE_FALSE(r.error);
    REQUIRE_FALSE(r.state.log->save_hard_state({Term(5), NodeId(0), LogIndex(0)}));
  }
  write_segment(fs, closed_segment_name(LogIndex(1), LogIndex(2)), LogIndex(1),
                {entry(1, 5), entry(2, 5)});
  write_segment(fs, closed_segment_name(LogIndex(3), LogIndex(4)), LogIndex(3),
                {entry(3, 4), entry(4, 4)});
  expect_corrupt(fs, closed_segment_name(LogIndex(3), LogIndex(4)), segment_header_bytes,
                 "record term 4 is below the previous segment's last term 5");
}

TEST_CASE("an entry of a kind the application never writes is corruption when kinds are given") {
  SimFileSystem fs(38);
  std::string name;
  {
    RecoverResult r = recover(dir, checked(fs));
    REQUIRE_FALSE(r.error);
    REQUIRE_FALSE(r.state.log->append(entries(1, 5, 1, 40)));
    REQUIRE_FALSE(r.state.log->append(std::vector<Entry>{entry(6, 1, 40, 7)}));
    REQUIRE_FALSE(r.state.log->sync());
    REQUIRE_FALSE(r.state.log->save_hard_state({Term(1), NodeId(0), LogIndex(6)}));
    name = r.state.log->segments().back().name;
  }
  expect_corrupt(fs, name, segment_header_bytes + 5 * record_bytes(40),
                 "entry 6 has kind 7, which is not a kind this log holds");
  // Opaque to the log without a set of kinds.
  CHECK_FALSE(recover(dir, small(&fs)).error);
}

// Snapshots at 100 and 200; the log keeps entries from the previous snapshot on (100..300).
void write_snapshotted(SimFileSystem& fs, std::uint64_t compact_to) {
  RecoverResult r = recover(dir, checked(fs));
  REQUIRE_FALSE(r.error);
  Log& log = *r.state.log;
  REQUIRE_FALSE(log.append(entries(1, 300, 1, 40)));
  REQUIRE_FALSE(log.sync());
  REQUIRE_FALSE(log.save_hard_state({Term(1), NodeId(2), LogIndex(300)}));
  REQUIRE_FALSE(log.save_snapshot({LogIndex(100), Term(1), Bytes{1}, Bytes(50, 1)}));
  REQUIRE_FALSE(log.save_snapshot({LogIndex(200), Term(1), Bytes{2}, Bytes(50, 2)}));
  REQUIRE_FALSE(log.compact(LogIndex(compact_to)));
}

void damage(SimFileSystem& fs, const std::string& name) {
  Bytes bytes = fs.contents(join_path(dir, name));
  bytes[60] ^= 0x10;
  fs.set_contents(join_path(dir, name), bytes);
}

TEST_CASE("a damaged newest snapshot falls back to the previous one and the log, loudly") {
  SimFileSystem fs(39);
  write_snapshotted(fs, 100);
  const std::string newest = snapshot_name(LogIndex(200), Term(1));
  damage(fs, newest);
  RecoverResult r = recover(dir, checked(fs));
  INFO(r.detail);
  REQUIRE_FALSE(r.error);
  REQUIRE(r.state.snapshot);
  CHECK(r.state.snapshot->index == LogIndex(100));
  CHECK(r.state.snapshot->data == Bytes(50, 1));
  REQUIRE(r.state.warnings.size() == 1);
  CHECK(r.state.warnings[0].find("SNAPSHOT DAMAGED: " + join_path(dir, newest) +
                                 ": offset 0: snapshot checksum mismatch") == 0);
  CHECK(r.state.log->first_index() <= LogIndex(101));
  // verify still names the damaged file.
  r.state.log.reset();
  const VerifyReport report = verify_directory(dir, fs, raft_kinds);
  REQUIRE(report.faults.size() == 1);
  CHECK(report.faults[0].file == join_path(dir, newest));
}

TEST_CASE("a damaged newest snapshot without the log behind the previous one fails naming it") {
  SimFileSystem fs(40);
  write_snapshotted(fs,
                    200);  // compacted past 101: the previous snapshot plus the log do not cover
  const std::string newest = snapshot_name(LogIndex(200), Term(1));
  damage(fs, newest);
  RecoverResult r = recover(dir, checked(fs));
  CHECK(r.error == errc::corrupt);
  CHECK(r.detail.starts_with(join_path(dir, newest) +
                             ": offset 0: snapshot checksum mismatch (and no fallback: the log"));
}

TEST_CASE("check_state: each cross-check alone, on facts") {
  StateFacts f;
  f.dir = "/x";
  f.oldest_segment = "seg";
  f.first_index = LogIndex(1);
  f.last_index = LogIndex(10);
  f.hard_state_present = true;
  f.hard_state = {Term(1), NodeId(1), LogIndex(10)};
  CHECK(check_state(f).empty());
  StateFacts g = f;
  g.first_index = LogIndex(5);
  CHECK(check_state(g).size() == 1);
  g.snapshot_index = LogIndex(4);
  CHECK(check_state(g).empty());
  g = f;
  g.hard_state.commit_index = LogIndex(11);
  CHECK(check_state(g).size() == 1);
  g.snapshot_index = LogIndex(11);  // the snapshot holds it
  CHECK(check_state(g).empty());
  g = f;
  g.hard_state_present = false;
  CHECK(check_state(g).size() == 1);
  g.last_index = LogIndex(0);  // an empty log, no snapshot: a new directory
  CHECK(check_state(g).empty());
}

}  // namespace
}  // namespace rpool::wal
