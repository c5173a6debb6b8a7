// The backup file (node/backup.h) and --force-new-cluster's rewrite of a survivor's directory
// (node/disaster.h), on the simulated file system.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "node/backup.h"
#include "node/config.h"
#include "node/disaster.h"
#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/recovery.h"
#include "wal/sim_file.h"

namespace rpool::node {
namespace {

Bytes some_state() {
  pool::StateMachine sm;
  pool::Command seed{pool::Bootstrap{{{"gold", 10, 1}, {"mud", -1, 3}}}, 1000, {}, {}};
  sm.apply(1, seed);
  pool::Command draw{pool::Draw{3, 42}, 1001, "key-1", {}};
  sm.apply(2, draw);
  return sm.snapshot();
}

std::vector<std::pair<LogIndex, Bytes>> some_commands() {
  return {{LogIndex(5), pool::encode(pool::Command{pool::Draw{2, 7}, 1002, "key-2", {}})},
          {LogIndex(9), pool::encode(pool::Command{pool::Draw{1, 8}, 1003, {}, {}})}};
}

TEST_CASE("a backup decodes to what was encoded, and restores to the state its commands reach") {
  const Bytes state = some_state();
  const auto commands = some_commands();
  const std::string file = encode_backup(LogIndex(77), 0xabcdef, state, commands);
  Backup out;
  const auto why = decode_backup(as_bytes(file), out);
  REQUIRE_FALSE(why.has_value());
  CHECK(out.index == LogIndex(77));
  CHECK(out.cluster_id == 0xabcdef);
  CHECK(out.state == state);
  CHECK(out.entries == commands);
  pool::StateMachine restored;
  REQUIRE_FALSE(restore_backup(out, restored).has_value());
  // What a replica that applied the same commands holds.
  pool::StateMachine replica;
  REQUIRE_FALSE(replica.restore(state));
  for (const auto& [i, bytes] : commands) {
    pool::Command c;
    REQUIRE_FALSE(pool::decode(bytes, c));
    replica.apply(i.value(), c);
  }
  CHECK(restored.snapshot() == replica.snapshot());
  CHECK(restored.last_request_id() == 6);
  CHECK(restored.idempotency_keys() == 2);
}

TEST_CASE("a damaged, truncated, foreign or future backup is refused with its reason") {
  const std::string good = encode_backup(LogIndex(9), 1, some_state(), some_commands());
  auto refused = [](const std::string& file) {
    Backup out;
    const auto why = decode_backup(as_bytes(file), out);
    REQUIRE(why.has_value());
    return *why;
  };
  // Every single flipped byte is caught (the header by its fields or the checksum, the rest by
  // the checksum).
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    CAPTURE(i);
    CHECK_FALSE(refused(bad).empty());
  }
  CHECK(refused(good.substr(0, good.size() - 1)).find("SHA-256") != std::string::npos);
  CHECK(refused(good.substr(0, 10)).find("shorter than any backup") != std::string::npos);
  std::string foreign = good;
  foreign[0] = 'X';
  CHECK(refused(foreign).find("not an rpool backup") != std::string::npos);
  std::string future = good;
  future[8] = 2;
  CHECK(refused(future).find("format version 2") != std::string::npos);
  std::string flipped = good;
  flipped[backup_header_bytes + 3] ^= 0x10;
  CHECK(refused(flipped).find("SHA-256") != std::string::npos);
  // Commands out of order, or beyond the backup's index, are refused even with a good checksum.
  auto commands = some_commands();
  std::swap(commands[0], commands[1]);
  CHECK(refused(encode_backup(LogIndex(9), 1, some_state(), commands)).find("out of order") !=
        std::string::npos);
}

// --- force_new_cluster --------------------------------------------------------------------------

const std::string dir = "/survivor";
constexpr std::uint8_t normal = 1;
constexpr std::uint8_t config_kind = 3;

Config three_members() {
  std::string error;
  auto config = parse_config(R"({"members": [
    {"id": 1, "raft": "127.0.0.1:7001", "http": "127.0.0.1:8001"},
    {"id": 2, "raft": "127.0.0.2:7002", "http": "127.0.0.2:8002"},
    {"id": 3, "raft": "127.0.0.3:7003", "http": "127.0.0.3:8003"}]})",
                             error);
  REQUIRE(config.has_value());
  return *config;
}

wal::Options options(wal::SimFileSystem& fs) {
  wal::Options o;
  o.fs = &fs;
  o.segment_bytes = 64 << 10;
  o.known_kinds = wal::kinds({1, 2, 3});
  return o;
}

wal::Recovered recovered(wal::SimFileSystem& fs) {
  wal::RecoverResult r = wal::recover(dir, options(fs));
  INFO(r.detail);
  REQUIRE_FALSE(r.error);
  return std::move(r.state);
}

// A survivor's directory: entries 1..5 (term 2; entry 3 adds a learner 4), hard state term 3,
// vote 2, commit 4.
void write_survivor(wal::SimFileSystem& fs) {
  wal::Recovered r = recovered(fs);
  wal::Log& log = *r.log;
  REQUIRE_FALSE(log.reset(LogIndex(1)));
  raft::Membership with_learner;
  with_learner.voters = {NodeId(1), NodeId(2), NodeId(3)};
  with_learner.learners = {NodeId(4)};
  with_learner.context[NodeId(1)] = R"({"http":"127.0.0.1:8001","raft":"127.0.0.1:7001"})";
  std::vector<wal::Entry> entries;
  for (std::uint64_t i = 1; i <= 5; ++i) {
    entries.push_back(i == 3 ? wal::Entry{Term(2), LogIndex(i), config_kind,
                                          raft::encode_membership(with_learner)}
                             : wal::Entry{Term(2), LogIndex(i), normal, Bytes{1, 2, 3}});
  }
  REQUIRE_FALSE(log.append(entries));
  REQUIRE_FALSE(log.sync());
  REQUIRE_FALSE(log.save_hard_state({Term(3), NodeId(2), LogIndex(4)}));
}

TEST_CASE("--force-new-cluster appends a durable one-voter membership in a new term, once") {
  wal::SimFileSystem fs;
  write_survivor(fs);
  {
    wal::Recovered r = recovered(fs);
    const ForceResult forced = force_new_cluster(r, three_members(), NodeId(1));
    INFO(forced.message);
    REQUIRE(forced.status == ForceResult::Status::forced);
    CHECK(forced.message.find("was: voters 1,2,3 learners 4") != std::string::npos);
    CHECK(r.hard_state.current_term == Term(4));
  }
  fs.crash(wal::SimFileSystem::CrashMode::drop_unsynced);  // what was written is durable
  {
    wal::Recovered r = recovered(fs);
    CHECK(r.hard_state == wal::HardState{Term(4), NodeId(), LogIndex(4)});
    REQUIRE(r.log->last_index() == LogIndex(6));
    std::vector<wal::Entry> last;
    REQUIRE_FALSE(r.log->read(LogIndex(1), LogIndex(7), last));
    CHECK(last.size() == 6);  // nothing of the log was dropped
    CHECK(last.back().term == Term(4));
    CHECK(last.back().kind == config_kind);
    raft::Membership alone;
    REQUIRE(raft::decode_membership(last.back().payload, alone));
    CHECK(alone.voters == std::vector<NodeId>{NodeId(1)});
    CHECK(alone.learners.empty());
    CHECK(alone.context.at(NodeId(1)).find("127.0.0.1:7001") != std::string::npos);
    // A second start with the flag changes nothing.
    const ForceResult again = force_new_cluster(r, three_members(), NodeId(1));
    CHECK(again.status == ForceResult::Status::already_alone);
    CHECK(r.log->last_index() == LogIndex(6));
  }
}

TEST_CASE("--force-new-cluster refuses a directory with nothing to keep") {
  wal::SimFileSystem fs;
  wal::Recovered r = recovered(fs);
  const ForceResult forced = force_new_cluster(r, three_members(), NodeId(1));
  CHECK(forced.status == ForceResult::Status::empty);
  CHECK(forced.message.find("nothing to keep") != std::string::npos);
}

}  // namespace
}  // namespace rpool::node
