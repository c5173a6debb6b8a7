// verify beside a live node: a writer appends, rolls segments, snapshots, compacts and truncates
// while verify_directory_settled() runs again and again on the same directory. No scan may
// report a fault: every change the writer makes is one a node makes.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "helpers.h"
#include "wal/recovery.h"
#include "wal/verify.h"

namespace rpool::wal {
namespace {

TEST_CASE(
    "verify and read-only opens beside a writer that rolls, compacts and truncates never report a "
    "false fault") {
  test::TempDir tmp;
  const KindSet known = kinds({1});
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> rolls{0}, compactions{0}, truncations{0};
  {
    Options o = test::small(nullptr, 4096);
    RecoverResult r = recover(tmp.path(), o);
    REQUIRE_FALSE(r.error);
  }
  std::thread writer([&] {
    Options o = test::small(nullptr, 4096);
    RecoverResult r = recover(tmp.path(), o);
    REQUIRE_FALSE(r.error);
    Log& log = *r.state.log;
    std::uint64_t term = 1;
    std::mt19937_64 rng(7);
    while (!stop.load()) {
      const std::uint64_t last = log.last_index().value();
      const std::size_t segments = log.segments().size();
      REQUIRE_FALSE(log.append(test::entries(last + 1, 1 + rng() % 20, term, rng() % 300)));
      REQUIRE_FALSE(log.sync());
      if (log.segments().size() > segments) ++rolls;
      // The commit index trails the log by 5, so that a truncated suffix is never committed.
      const LogIndex commit(std::max<std::uint64_t>(log.last_index().value(), 5) - 5);
      REQUIRE_FALSE(log.save_hard_state({Term(term), NodeId(1), commit}));
      if (rng() % 4 == 0 && log.last_index().value() > 100) {
        const LogIndex at = log.last_index() - 50;
        Term t;
        REQUIRE_FALSE(log.term(at, t));
        REQUIRE_FALSE(log.save_snapshot({at, t, Bytes{1}, Bytes(100, 2)}));
        REQUIRE_FALSE(log.compact(at));
        ++compactions;
      }
      if (rng() % 15 == 0 && log.last_index() > commit + 1) {
        // A new leader's conflicting suffix: only entries past the commit index go.
        ++term;
        REQUIRE_FALSE(log.save_hard_state({Term(term), NodeId(2), commit}));
        REQUIRE_FALSE(log.truncate_suffix(log.last_index() - 2));
        ++truncations;
      }
    }
  });
  std::size_t scans = 0;
  std::vector<std::string> false_faults;
  while (scans < 300 || rolls.load() < 20 || compactions.load() < 5 || truncations.load() < 5) {
    const VerifyReport report = verify_directory_settled(tmp.path(), posix_file_system(), known);
    for (const auto& f : report.faults) false_faults.push_back(f.line());
    // And a read-only open, as rpool-wal stat and dump make.
    Options ro = test::small(nullptr, 4096);
    ro.read_only = true;
    OpenResult opened = Log::open(tmp.path(), ro);
    if (opened.error) false_faults.push_back("read-only open: " + opened.detail);
    ++scans;
  }
  stop = true;
  writer.join();
  MESSAGE(scans, " scans beside ", rolls.load(), " segment rolls, ", compactions.load(),
          " compactions and ", truncations.load(), " truncations");
  CHECK(rolls.load() >= 20);
  CHECK(compactions.load() >= 5);
  CHECK(truncations.load() >= 5);
  CHECK(false_faults.empty());
  for (std::size_t i = 0; i < false_faults.size() && i < 5; ++i) MESSAGE(false_faults[i]);
}

}  // namespace
}  // namespace rpool::wal
