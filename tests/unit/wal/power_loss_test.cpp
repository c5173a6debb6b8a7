// Power loss and disk faults: seeded random sequences of append / sync / truncate / compact over
// the simulated disk, interrupted by crashes that lose unsynced data (whole, or a prefix torn at
// a random byte) and by injected EIO / ENOSPC on any file-system call. After every reopen the log
// must hold every entry that was durable (synced, or kept by a completed truncate), nothing that
// a completed truncate removed, and otherwise only a prefix of what was appended.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <map>

#include "helpers.h"

namespace rpool::wal {
namespace {

using test::entry;
using test::open_ok;
using test::small;

const std::string dir = "/node";

// What the log may and must contain, by index.
struct Model {
  std::map<std::uint64_t, Entry> appended;  // every entry appended and not removed by a truncate
  std::uint64_t durable_last = 0;           // entries up to here must survive
  std::uint64_t compact_floor = 0;          // first_index() may be up to compact_floor + 1
};

struct Sequence {
  std::uint64_t seed;
  std::mt19937_64 rng;
  SimFileSystem fs;
  Options options;
  Model model;
  std::unique_ptr<Log> log;
  std::uint64_t term = 1;
  int fault_every = 0;  // 0: no injected faults; else about one call in `fault_every` fails
  bool faulted = false;
  std::size_t crashes = 0, faults = 0;

  explicit Sequence(std::uint64_t s) : seed(s), rng(s), fs(s) {
    options = small(&fs, rng() % 2 == 0 ? 4096 : 16384);
    const int p = static_cast<int>(rng() % 3);
    options.preallocation = p == 0   ? Preallocation::zero_fill
                            : p == 1 ? Preallocation::fallocate
                                     : Preallocation::none;
    fault_every = rng() % 2 == 0 ? 0 : 40 + static_cast<int>(rng() % 60);
    fs.set_fault_hook([this](SimFileSystem::Op, const std::string&) -> std::error_code {
      if (fault_every == 0 || faulted || rng() % static_cast<unsigned>(fault_every) != 0) return {};
      faulted = true;  // one fault per step; the test then reopens, with or without a crash
      return rng() % 2 == 0 ? std::error_code(errc::disk_full) : std::error_code(errc::io_error);
    });
  }

  void reopen(bool crash) {
    log.reset();
    if (crash) {
      ++crashes;
      const auto r = rng() % 3;
      fs.crash(r == 0   ? SimFileSystem::CrashMode::drop_unsynced
               : r == 1 ? SimFileSystem::CrashMode::torn_prefix
                        : SimFileSystem::CrashMode::sector_subsets);
    }
    const int saved = fault_every;
    fault_every = 0;  // recovery itself runs fault-free here; faults during recovery are below
    OpenResult r = Log::open(dir, options);
    fault_every = saved;
    INFO("seed ", seed, ": ", r.detail);
    REQUIRE_FALSE(r.error);
    log = std::move(r.log);
    log->check_invariants();
    check_against_model();
  }

  void check_against_model() {
    INFO("seed ", seed);
    const std::uint64_t first = log->first_index().value();
    const std::uint64_t last = log->last_index().value();
    REQUIRE(last >= model.durable_last);
    REQUIRE(first <= model.compact_floor + 1);
    std::vector<Entry> got;
    REQUIRE_FALSE(log->read(log->first_index(), log->last_index() + 1, got));
    for (const auto& e : got) {
      const auto it = model.appended.find(e.index.value());
      REQUIRE(it != model.appended.end());  // never an entry that a truncate removed
      REQUIRE(it->second == e);
    }
    // What survived is now the truth: durable, and nothing beyond it exists any more.
    model.appended.erase(model.appended.upper_bound(last), model.appended.end());
    model.durable_last = last;
  }

  void step() {
    faulted = false;
    std::error_code ec;
    const std::uint64_t roll = rng() % 100;
    const std::uint64_t last = log->last_index().value();
    if (roll < 50) {
      std::vector<Entry> batch;
      const std::size_t n = 1 + rng() % 8;
      if (rng() % 8 == 0) ++term;
      term = std::max(term, log->last_term().value());
      for (std::size_t i = 0; i < n; ++i) batch.push_back(entry(last + 1 + i, term, rng() % 200));
      for (const auto& e : batch) model.appended[e.index.value()] = e;
      ec = log->append(batch);
    } else if (roll < 80) {
      ec = log->sync();
      if (!ec) model.durable_last = last;
    } else if (roll < 90) {
      if (last >= log->first_index().value()) {
        const std::uint64_t from =
            log->first_index().value() + rng() % (last - log->first_index().value() + 1);
        ec = log->truncate_suffix(LogIndex(from));
        if (!ec) {
          // Completed: the tail is gone for good, and what stays is durable.
          model.appended.erase(model.appended.lower_bound(from), model.appended.end());
          model.durable_last = from - 1;
          ++term;
        } else {
          // Interrupted: some of the tail may be gone, even durable entries of it.
          model.durable_last = std::min(model.durable_last, from - 1);
        }
      }
    } else if (roll < 95) {
      if (model.durable_last > 0) {
        const std::uint64_t up_to = rng() % (model.durable_last + 1);
        ec = log->compact(LogIndex(up_to));
        model.compact_floor = std::max(model.compact_floor, up_to);
      }
    } else {
      reopen(true);
      return;
    }
    if (ec) {
      ++faults;
      // By value: reopen() below replaces the log that error_detail() refers to.
      const std::string why =
          fmt::format("seed {}: {}: {}", seed, ec.message(), log->error_detail());
      INFO(why);
      REQUIRE(faulted);  // only an injected fault may fail an operation
      REQUIRE((ec == errc::disk_full || ec == errc::io_error));
      // A failed write or fsync poisons the log until it is reopened.
      CHECK(log->poisoned());
      CHECK(log->sync() == errc::poisoned);
      CHECK(log->append(std::vector<Entry>{entry(log->last_index().value() + 1, term)}) ==
            errc::poisoned);
      reopen(rng() % 2 == 0);
      return;
    }
    log->check_invariants();
  }
};

TEST_CASE("power loss: every durable record survives 1,000 seeded crash sequences") {
  std::size_t crashes = 0, faults = 0, entries_checked = 0;
  for (std::uint64_t seed = 1; seed <= 1000; ++seed) {
    Sequence s(seed);
    s.reopen(false);
    const int steps = 30 + static_cast<int>(s.rng() % 60);
    for (int i = 0; i < steps; ++i) s.step();
    s.reopen(true);
    crashes += s.crashes;
    faults += s.faults;
    entries_checked += s.model.appended.size();
  }
  MESSAGE(fmt::format("{} crashes, {} injected faults, {} entries at the end", crashes, faults,
                      entries_checked));
  CHECK(crashes > 2000);
  CHECK(faults > 200);
}

TEST_CASE("a failed fsync is never retried as if it had succeeded") {
  SimFileSystem fs(9);
  auto log = open_ok(dir, small(&fs));
  REQUIRE_FALSE(log->append(std::vector<Entry>{entry(1, 1), entry(2, 1)}));
  fs.set_fault_hook([](SimFileSystem::Op op, const std::string&) -> std::error_code {
    return op == SimFileSystem::Op::sync_data ? std::error_code(errc::io_error) : std::error_code();
  });
  CHECK(log->sync() == errc::io_error);
  fs.set_fault_hook({});
  CHECK(log->sync() == errc::poisoned);
  CHECK(log->truncate_suffix(LogIndex(1)) == errc::poisoned);
  CHECK(log->save_hard_state({Term(1), NodeId(1), LogIndex(0)}) == errc::poisoned);
  log.reset();
  fs.crash(SimFileSystem::CrashMode::drop_unsynced);
  log = open_ok(dir, small(&fs));
  CHECK(log->last_index() == LogIndex(0));  // nothing was ever durable
}

TEST_CASE("ENOSPC while preparing the next segment fails the append cleanly") {
  SimFileSystem fs(10);
  auto log = open_ok(dir, small(&fs));
  REQUIRE_FALSE(log->append(test::entries(1, 10, 1, 100)));
  REQUIRE_FALSE(log->sync());
  fs.set_fault_hook([](SimFileSystem::Op op, const std::string& path) -> std::error_code {
    return op == SimFileSystem::Op::write && path.ends_with(".spare")
               ? std::error_code(errc::disk_full)
               : std::error_code();
  });
  CHECK(log->append(test::entries(11, 100, 1, 100)) == errc::disk_full);
  CHECK(log->error_detail().find("next.spare") != std::string::npos);
  fs.set_fault_hook({});
  log.reset();
  log = open_ok(dir, small(&fs));
  CHECK(log->last_index() >= LogIndex(10));
  REQUIRE_FALSE(log->append(test::entries(log->last_index().value() + 1, 100, 1, 100)));
  REQUIRE_FALSE(log->sync());
  log->check_invariants();
}

}  // namespace
}  // namespace rpool::wal

namespace rpool::wal {
namespace {

TEST_CASE("with fsync off, sync() issues no fdatasync; with it on, exactly one per call") {
  for (bool fsync : {false, true}) {
    SimFileSystem fs(11);
    Options o = small(&fs);
    o.fsync = fsync;
    auto log = open_ok(dir, o);
    REQUIRE_FALSE(log->append(test::entries(1, 3)));
    const std::uint64_t before = fs.data_syncs();
    REQUIRE_FALSE(log->sync());
    CHECK(fs.data_syncs() - before == (fsync ? 1u : 0u));
    REQUIRE_FALSE(log->sync());  // nothing pending: no second fdatasync either way
    CHECK(fs.data_syncs() - before == (fsync ? 1u : 0u));
    log->check_invariants();
  }
}

}  // namespace
}  // namespace rpool::wal
