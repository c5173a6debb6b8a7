// Crashes at every file-system call of the metadata paths: a hard state replaced, a snapshot
// saved and the log compacted behind it, a log reset after a snapshot is installed. The call
// at the crash point and every later one fail (the process died there); then the simulated disk
// loses what was not durable (whole, a prefix torn at a sector, or any subset of the sectors of
// each file), and recover() must find the directory whole: every entry and hard state that was
// acknowledged (its call returned) is there, no term went back, the vote is kept.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <functional>

#include "helpers.h"
#include "wal/recovery.h"

namespace rpool::wal {
namespace {

using test::entries;
using test::steps;

const std::string dir = "/m";
constexpr int seeds_per_point = 200;

SimFileSystem::CrashMode mode_of(std::uint64_t seed) {
  switch (seed % 3) {
    case 0: return SimFileSystem::CrashMode::drop_unsynced;
    case 1: return SimFileSystem::CrashMode::torn_prefix;
    default: return SimFileSystem::CrashMode::sector_subsets;
  }
}

struct Scenario {
  // Writes the directory as it is before the operation.
  std::function<void(Log&)> setup;
  // The operation: its steps in order; returns how many returned ok (the rest failed).
  std::function<int(Log&)> operation;
  // Checks the recovered directory, knowing how many steps were acknowledged.
  std::function<void(Recovered&, int acked)> check;
};

struct Counts {
  std::uint64_t points = 0, runs = 0;
};

Counts crash_at_every_call(const Scenario& s) {
  Counts counts;
  // A run without a crash counts the calls.
  std::uint64_t calls = 0;
  {
    SimFileSystem fs(1);
    {
      RecoverResult r = recover(dir, test::small(&fs));
      REQUIRE_FALSE(r.error);
      s.setup(*r.state.log);
      fs.set_fault_hook([&](SimFileSystem::Op, const std::string&) -> std::error_code {
        ++calls;
        return {};
      });
      REQUIRE(s.operation(*r.state.log) >= 0);
    }
  }
  REQUIRE(calls > 0);
  for (std::uint64_t point = 0; point <= calls; ++point) {
    ++counts.points;
    for (std::uint64_t seed = 1; seed <= seeds_per_point; ++seed) {
      ++counts.runs;
      CAPTURE(point);
      CAPTURE(seed);
      SimFileSystem fs(seed * 1000 + point);
      int acked = 0;
      {
        RecoverResult r = recover(dir, test::small(&fs));
        REQUIRE_FALSE(r.error);
        s.setup(*r.state.log);
        std::uint64_t n = 0;
        fs.set_fault_hook([&](SimFileSystem::Op, const std::string&) -> std::error_code {
          return n++ >= point ? std::error_code(errc::io_error) : std::error_code();
        });
        acked = s.operation(*r.state.log);
      }
      fs.set_fault_hook({});
      fs.crash(mode_of(seed));
      RecoverResult r = recover(dir, test::small(&fs));
      INFO(r.detail);
      REQUIRE_FALSE(r.error);
      r.state.log->check_invariants();
      s.check(r.state, acked);
    }
  }
  return counts;
}

TEST_CASE("crash at every call of a hard state replace: the old or the new state, the vote kept") {
  const HardState before{Term(3), NodeId(2), LogIndex(40)};
  const HardState after{Term(4), NodeId(3), LogIndex(50)};
  Scenario s;
  s.setup = [&](Log& log) {
    REQUIRE_FALSE(log.append(entries(1, 50, 3, 40)));
    REQUIRE_FALSE(log.sync());
    REQUIRE_FALSE(log.save_hard_state(before));
  };
  s.operation = [&](Log& log) { return steps({[&] { return log.save_hard_state(after); }}); };
  s.check = [&](Recovered& r, int acked) {
    if (acked == 1) {
      CHECK(r.hard_state == after);
    } else {
      CHECK((r.hard_state == before ||
             r.hard_state == after));  // never a mix: no new term without its vote
    }
    CHECK(r.log->last_index() == LogIndex(50));
    CHECK(test::read_all(*r.log) == entries(1, 50, 3, 40));
  };
  const Counts c = crash_at_every_call(s);
  MESSAGE("hard state replace: ", c.points, " crash points x ", seeds_per_point,
          " seeds = ", c.runs, " recoveries");
}

TEST_CASE(
    "crash at every call of a snapshot save and the compaction behind it: nothing committed lost") {
  Scenario s;
  s.setup = [&](Log& log) {
    REQUIRE_FALSE(log.append(entries(1, 300, 2, 40)));
    REQUIRE_FALSE(log.sync());
    REQUIRE_FALSE(log.save_hard_state({Term(2), NodeId(1), LogIndex(300)}));
    REQUIRE_FALSE(log.save_snapshot({LogIndex(100), Term(2), Bytes{1}, Bytes(64, 1)}));
    REQUIRE_FALSE(log.compact(LogIndex(100)));
  };
  s.operation = [&](Log& log) {
    return steps({[&] {
                    return log.save_snapshot({LogIndex(200), Term(2), Bytes{2}, Bytes(64, 2)});
                  },
                  [&] { return log.compact(LogIndex(200)); },
                  [&] { return log.append(entries(301, 20, 2, 40)); }, [&] { return log.sync(); },
                  [&] {
                    return log.save_hard_state({Term(2), NodeId(1), LogIndex(320)});
                  }});
  };
  s.check = [&](Recovered& r, int acked) {
    REQUIRE(r.snapshot);
    const LogIndex snap = r.snapshot->index;
    CHECK((snap == LogIndex(100) || snap == LogIndex(200)));
    if (acked >= 1) CHECK(snap == LogIndex(200));
    CHECK(r.snapshot->data == Bytes(64, snap == LogIndex(100) ? 1 : 2));
    // The snapshot and the log together hold every entry up to the last acknowledged one.
    CHECK(r.log->first_index() <= snap + 1);
    CHECK(r.log->last_index() >= LogIndex(acked >= 4 ? 320 : 300));
    std::vector<Entry> got;
    REQUIRE_FALSE(r.log->read(snap + 1, r.log->last_index() + 1, got));
    std::vector<Entry> want = entries(1, 320, 2, 40);
    for (const auto& e : got) CHECK(e == want[e.index.value() - 1]);
    CHECK(r.hard_state.current_term == Term(2));
    CHECK(r.hard_state.voted_for == NodeId(1));
    CHECK(r.hard_state.commit_index >= LogIndex(acked >= 5 ? 320 : 300));
  };
  const Counts c = crash_at_every_call(s);
  MESSAGE("snapshot save + compaction: ", c.points, " crash points x ", seeds_per_point,
          " seeds = ", c.runs, " recoveries");
}

TEST_CASE(
    "crash at every call of a snapshot install and log reset: the node's continuity rule "
    "recovers") {
  Scenario s;
  s.setup = [&](Log& log) {
    REQUIRE_FALSE(log.append(entries(1, 50, 2, 40)));
    REQUIRE_FALSE(log.sync());
    REQUIRE_FALSE(log.save_hard_state({Term(2), NodeId(2), LogIndex(40)}));
  };
  // As the node does: term first (a new leader's message), then snapshot, reset, entries.
  s.operation = [&](Log& log) {
    return steps({[&] {
                    return log.save_hard_state({Term(3), NodeId(0), LogIndex(40)});
                  },
                  [&] {
                    return log.save_snapshot({LogIndex(500), Term(3), Bytes{3}, Bytes(64, 3)});
                  },
                  [&] { return log.reset(LogIndex(501)); },
                  [&] { return log.append(entries(501, 10, 3, 40)); }, [&] { return log.sync(); },
                  [&] {
                    return log.save_hard_state({Term(3), NodeId(0), LogIndex(510)});
                  }});
  };
  s.check = [&](Recovered& r, int acked) {
    // No term regression, and no vote change within a term.
    if (acked >= 1) CHECK(r.hard_state.current_term == Term(3));
    if (r.hard_state.current_term == Term(2)) CHECK(r.hard_state.voted_for == NodeId(2));
    if (r.hard_state.current_term == Term(3)) CHECK(r.hard_state.voted_for == NodeId(0));
    if (acked >= 2) REQUIRE(r.snapshot);
    if (r.snapshot) {
      CHECK(r.snapshot->index == LogIndex(500));
      // The node's rule (a log that does not continue the snapshot is reset) must find either a
      // log that continues it or one it may reset; what it holds comes from the writes made.
      Log& log = *r.log;
      const bool continues =
          log.first_index() <= LogIndex(501) && log.last_index() >= LogIndex(500);
      if (!continues) {
        CHECK(log.last_index() < LogIndex(500));
        REQUIRE_FALSE(log.reset(LogIndex(501)));
      }
      if (acked >= 5) CHECK(log.last_index() == LogIndex(510));
      std::vector<Entry> got;
      REQUIRE_FALSE(log.read(LogIndex(501), log.last_index() + 1, got));
      for (const auto& e : got) CHECK(e == entries(501, 10, 3, 40)[e.index.value() - 501]);
    } else {
      CHECK(r.log->last_index() == LogIndex(50));
    }
  };
  const Counts c = crash_at_every_call(s);
  MESSAGE("snapshot install + log reset: ", c.points, " crash points x ", seeds_per_point,
          " seeds = ", c.runs, " recoveries");
}

}  // namespace
}  // namespace rpool::wal
