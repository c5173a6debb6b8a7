// The storage side of the Ready contract: persist() and the reference MemoryStorage.
#include <doctest/doctest.h>

#include <string>

#include "harness.h"
#include "raft/storage.h"

namespace rpool::raft::test {
namespace {

// Records the primitive calls, and fails the one named in fail_at.
class RecordingStore final : public DurableStore {
 public:
  std::vector<std::string> calls;
  std::string fail_at;

  std::error_code save_snapshot(const Snapshot&) override { return record("snapshot"); }
  std::error_code append_entries(const std::vector<Entry>&) override { return record("entries"); }
  std::error_code save_hard_state(const HardState&) override { return record("hard_state"); }
  std::error_code sync() override { return record("sync"); }

 private:
  std::error_code record(const std::string& what) {
    calls.push_back(what);
    if (what == fail_at) return std::make_error_code(std::errc::no_space_on_device);
    return {};
  }
};

Snapshot snapshot_at(std::uint64_t index, std::uint64_t term) {
  return Snapshot{SnapshotMeta{LogIndex(index), Term(term), voters({1, 2, 3})},
                  std::make_shared<const Bytes>(bytes_of("image"))};
}

Ready full_ready() {
  Ready rd;
  rd.snapshot = snapshot_at(4, 1);
  rd.entries = {Entry{Term(2), LogIndex(5), EntryType::normal, bytes_of("x")}};
  rd.hard_state = HardState{Term(2), NodeId(1), LogIndex(5)};
  return rd;
}

std::vector<std::uint64_t> indexes(const std::vector<Entry>& es) {
  std::vector<std::uint64_t> out;
  for (const Entry& e : es) out.push_back(e.index.value());
  return out;
}

}  // namespace

TEST_CASE("persist writes snapshot, entries, hard state in that order, then syncs once") {
  RecordingStore store;
  CHECK(!persist(store, full_ready()));
  CHECK(store.calls == std::vector<std::string>{"snapshot", "entries", "hard_state", "sync"});
}

TEST_CASE("persist skips a Ready with nothing durable in it: no write, no sync") {
  RecordingStore store;
  Ready rd;
  rd.messages_after_persist.push_back(msg(MessageType::append_resp, 1, 2, 1));
  CHECK(!needs_persist(rd));
  CHECK(!persist(store, rd));
  CHECK(store.calls.empty());
}

TEST_CASE("persist stops at the first failing write and reports it") {
  RecordingStore store;
  store.fail_at = "entries";
  CHECK(persist(store, full_ready()) == std::errc::no_space_on_device);
  CHECK(store.calls == std::vector<std::string>{"snapshot", "entries"});
}

TEST_CASE("MemoryStorage loses the writes after the last sync in a crash, keeps the synced ones") {
  MemoryStorage s;
  Ready first;
  first.entries = log_with_terms({1, 1});
  first.hard_state = HardState{Term(1), NodeId(1), LogIndex(1)};
  REQUIRE(!persist(s, first));
  REQUIRE(!s.append_entries({Entry{Term(1), LogIndex(3), EntryType::normal, bytes_of("e3")}}));
  REQUIRE(!s.save_hard_state(HardState{Term(1), NodeId(1), LogIndex(3)}));
  CHECK(s.has_unsynced());
  CHECK(indexes(s.durable().entries) == std::vector<std::uint64_t>{1, 2});
  s.crash();
  const BootState boot = s.boot();
  CHECK(indexes(boot.entries) == std::vector<std::uint64_t>{1, 2});
  CHECK(boot.hard_state.commit_index == LogIndex(1));
}

TEST_CASE("MemoryStorage: entries overwriting a suffix truncate it first (§5.3)") {
  MemoryStorage s;
  REQUIRE(!s.append_entries(log_with_terms({1, 1, 1, 1})));
  REQUIRE(!s.append_entries({Entry{Term(2), LogIndex(3), EntryType::normal, bytes_of("new")}}));
  REQUIRE(!s.sync());
  const auto& es = s.durable().entries;
  CHECK(indexes(es) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(es.back().term == Term(2));
}

TEST_CASE("MemoryStorage: a snapshot keeps the log after it only if the log holds its entry (§7)") {
  MemoryStorage kept;
  REQUIRE(!kept.append_entries(log_with_terms({1, 1, 1, 1, 1, 1})));
  REQUIRE(!kept.save_snapshot(snapshot_at(4, 1)));
  REQUIRE(!kept.sync());
  CHECK(indexes(kept.durable().entries) == std::vector<std::uint64_t>{5, 6});
  // Saving the same snapshot again (a retried Ready) keeps the suffix too.
  REQUIRE(!kept.save_snapshot(snapshot_at(4, 1)));
  REQUIRE(!kept.sync());
  CHECK(indexes(kept.durable().entries) == std::vector<std::uint64_t>{5, 6});

  MemoryStorage dropped;
  REQUIRE(!dropped.append_entries(log_with_terms({1, 1, 1, 1, 1, 1})));
  REQUIRE(!dropped.save_snapshot(snapshot_at(4, 2)));  // entry 4 has term 1: a different history
  REQUIRE(!dropped.sync());
  CHECK(dropped.durable().entries.empty());
  CHECK(dropped.boot().snapshot->meta.index == LogIndex(4));
}

}  // namespace rpool::raft::test
