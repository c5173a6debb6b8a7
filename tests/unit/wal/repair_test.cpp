// repair: the cut at the first fault, what is kept in .broken, and what the directory is after.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "helpers.h"
#include "wal/recovery.h"
#include "wal/repair.h"
#include "wal/verify.h"

namespace rpool::wal {
namespace {

const std::string dir = "/r";

TEST_CASE(
    "repair cuts a closed segment at a flipped byte, moves the later segments aside, and keeps "
    "every byte") {
  SimFileSystem fs(51);
  std::vector<SegmentInfo> segments;
  {
    RecoverResult r = recover(dir, test::small(&fs));
    REQUIRE_FALSE(r.error);
    REQUIRE_FALSE(r.state.log->append(test::entries(1, 300, 1, 40)));
    REQUIRE_FALSE(r.state.log->sync());
    REQUIRE_FALSE(r.state.log->save_hard_state({Term(1), NodeId(1), LogIndex(10)}));
    segments = r.state.log->segments();
  }
  REQUIRE(segments.size() >= 4);
  const std::string victim = join_path(dir, segments[1].name);
  Bytes bytes = fs.contents(victim);
  const std::uint64_t bad = segment_header_bytes + 3 * record_bytes(40);
  bytes[bad + 30] ^= 4;
  fs.set_contents(victim, bytes);
  std::vector<Bytes> later;
  for (std::size_t i = 2; i < segments.size(); ++i)
    later.push_back(fs.contents(join_path(dir, segments[i].name)));

  RepairPlan plan;
  std::string detail;
  REQUIRE_FALSE(plan_repair(dir, fs, std::nullopt, plan, detail));
  REQUIRE(plan.fault);
  CHECK(plan.fault->line() == fmt::format("{}: offset {}: record checksum mismatch", victim, bad));
  CHECK(plan.cut_at == bad);
  CHECK(plan.later.size() == segments.size() - 2);
  CHECK(plan.renamed_to ==
        closed_segment_name(segments[1].first_index, segments[1].first_index + 2));
  // Planning changed nothing.
  CHECK(fs.contents(victim) == bytes);

  REQUIRE_FALSE(apply_repair(dir, fs, plan, detail));
  CHECK(fs.contents(join_path(dir, plan.broken)) ==
        Bytes(bytes.begin() + static_cast<std::ptrdiff_t>(bad), bytes.end()));
  CHECK(fs.contents(join_path(dir, plan.renamed_to)) ==
        Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bad)));
  for (std::size_t i = 2; i < segments.size(); ++i) {
    CHECK(fs.contents(join_path(dir, segments[i].name + ".broken")) == later[i - 2]);
    CHECK_FALSE(fs.exists(join_path(dir, segments[i].name)));
  }
  // The directory now verifies and recovers to the records before the fault.
  CHECK(verify_directory(dir, fs).faults.empty());
  RecoverResult r = recover(dir, test::small(&fs));
  INFO(r.detail);
  REQUIRE_FALSE(r.error);
  CHECK(r.state.log->last_index() == segments[1].first_index + 2);
  CHECK(test::read_all(*r.state.log) == test::entries(1, r.state.log->last_index().value(), 1, 40));
  REQUIRE_FALSE(
      r.state.log->append(test::entries(r.state.log->last_index().value() + 1, 5, 2, 40)));
  REQUIRE_FALSE(r.state.log->sync());
}

TEST_CASE("repair refuses to run while the data directory is locked by a node") {
  SimFileSystem fs(52);
  RecoverResult r = recover(dir, test::small(&fs));
  REQUIRE_FALSE(r.error);
  RepairPlan plan;
  plan.fault = Fault{"x", 0, "y"};
  std::string detail;
  CHECK(apply_repair(dir, fs, plan, detail) == errc::locked);
  CHECK(detail.find("a node is running") != std::string::npos);
}

}  // namespace
}  // namespace rpool::wal
