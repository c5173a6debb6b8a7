// Writes the binary seed corpora of the fuzz harnesses with the project's own encoders, so that
// each seed is a real example: `make-corpus tests/fuzz/corpus` (from the source root) rewrites
// corpus/{raft_peer,pool_command,wal_segment,wal_state}/. The text seeds (http_server, config)
// are written by hand. The input layouts are those described at the top of each harness.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pool/command.h"
#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/format.h"

namespace {

using namespace rpool;
namespace fs = std::filesystem;

fs::path root;

// Concatenation, for the seeds below.
Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void write(const std::string& harness, const std::string& name, const Bytes& bytes) {
  const fs::path dir = root / harness;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make-corpus: cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

// ---- raft_peer: a script of operations (see raft_peer.cpp) --------------------------------------

struct Script {
  Bytes bytes;
  Script& op(std::uint8_t code) {
    bytes.push_back(code);
    return *this;
  }
  Script& ticks(std::uint8_t n) { return op(4).op(static_cast<std::uint8_t>(n - 1)); }
  Script& answer() { return op(5); }
  Script& propose(const Bytes& data) {
    op(6)
        .op(static_cast<std::uint8_t>(data.size()))
        .op(static_cast<std::uint8_t>(data.size() >> 8));
    bytes.insert(bytes.end(), data.begin(), data.end());
    return *this;
  }
  Script& read(std::uint64_t context) {
    op(7);
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(context >> (8 * i)));
    return *this;
  }
  Script& compact_all() { return op(8).op(0).op(255); }
  Script& restart() { return op(9); }
  Script& add_learner(std::uint8_t node) { return op(8).op(2).op(0).op(node - 2); }
  // A frame in the transport's format, as sent (opcode 0: the message's own ids).
  Script& frame(const raft::Message& m) {
    op(0);
    Bytes payload;
    raft::encode_message(m, payload);
    Bytes header(5);
    store_u32le(header.data(), static_cast<std::uint32_t>(payload.size()));
    header[4] = 1;
    bytes.insert(bytes.end(), header.begin(), header.end());
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return *this;
  }
};

raft::Message msg(raft::MessageType type, std::uint64_t from, std::uint64_t term) {
  raft::Message m;
  m.type = type;
  m.from = NodeId(from);
  m.to = NodeId(1);
  m.term = Term(term);
  return m;
}

Bytes draw_command(std::uint32_t count) {
  pool::Command c;
  c.op = pool::Draw{count, 42};
  c.timestamp_ms = 1'700'000'000'000;
  return pool::encode(c);
}

Bytes bootstrap_command() {
  pool::Command c;
  c.op = pool::Bootstrap{{{"diamond", 100, 10}, {"gold", 1000, 20}, {"mud", -1, 70}}};
  return pool::encode(c);
}

void raft_corpus() {
  // Node 1 campaigns, wins with the peers' votes, replicates, commits, snapshots, restarts.
  Script leader;
  leader.ticks(12)
      .answer()
      .answer()
      .propose(bootstrap_command())
      .answer()
      .propose(draw_command(3))
      .answer()
      .ticks(1)
      .answer()
      .read(77)
      .ticks(1)
      .answer()
      .compact_all()
      .propose(draw_command(1))
      .answer()
      .restart()
      .ticks(12)
      .answer()
      .answer();
  write("raft_peer", "leader", leader.bytes);

  // The leader compacts, then adds node 4 as a learner: it catches up by snapshot chunks.
  Script learner;
  learner.ticks(12)
      .answer()
      .answer()
      .propose(bootstrap_command())
      .answer()
      .propose(draw_command(2))
      .answer()
      .ticks(1)
      .answer()
      .compact_all()
      .add_learner(4);
  raft::Message behind = msg(raft::MessageType::append_resp, 4, 1);  // node 4 holds nothing
  behind.reject = true;
  behind.index = LogIndex(4);
  learner.frame(behind)
      .answer()
      .ticks(1)
      .answer()
      .answer()
      .answer()
      .answer()
      .answer()
      .answer()
      .ticks(2)
      .answer();
  write("raft_peer", "learner-snapshot", learner.bytes);

  // Node 2 leads term 1: appends (with a config-free log), heartbeats with a commit, a read answer.
  Script follower;
  raft::Message append = msg(raft::MessageType::append, 2, 1);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    append.entries.push_back({Term(1), LogIndex(i), raft::EntryType::normal,
                              i == 1 ? bootstrap_command() : draw_command(2)});
  }
  append.commit = LogIndex(2);
  follower.frame(append);
  raft::Message heartbeat = msg(raft::MessageType::heartbeat, 2, 1);
  heartbeat.commit = LogIndex(3);
  heartbeat.context = 5;
  follower.frame(heartbeat).read(9);
  raft::Message read_resp = msg(raft::MessageType::read_index_resp, 2, 1);
  read_resp.index = LogIndex(3);
  read_resp.context = 9;
  follower.frame(read_resp).ticks(3).restart();
  write("raft_peer", "follower", follower.bytes);

  // A snapshot in two chunks from leader 3, then an append after it.
  Script snap;
  pool::StateMachine sm;
  pool::Command boot;
  (void)pool::decode(bootstrap_command(), boot);
  (void)sm.apply(1, boot);
  const Bytes image = sm.snapshot();
  raft::Message chunk = msg(raft::MessageType::snapshot, 3, 2);
  chunk.snapshot.index = LogIndex(10);
  chunk.snapshot.term = Term(2);
  chunk.snapshot.membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
  chunk.snapshot_bytes = image.size();
  const std::size_t half = image.size() / 2;
  chunk.data.assign(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(half));
  snap.frame(chunk);
  chunk.offset = half;
  chunk.data.assign(image.begin() + static_cast<std::ptrdiff_t>(half), image.end());
  chunk.done = true;
  snap.frame(chunk);
  raft::Message after = msg(raft::MessageType::append, 3, 2);
  after.index = LogIndex(10);
  after.log_term = Term(2);
  after.entries.push_back({Term(2), LogIndex(11), raft::EntryType::normal, draw_command(1)});
  after.commit = LogIndex(11);
  snap.frame(after).restart();
  write("raft_peer", "snapshot", snap.bytes);

  // The forged frames that used to abort a node: each must be refused by the validator.
  Script forged;
  forged.frame(msg(raft::MessageType::append, 2, 0));  // term 0
  raft::Message beyond = msg(raft::MessageType::heartbeat, 2, 1);
  beyond.commit = LogIndex(1000);  // a commit index beyond the log
  forged.frame(beyond);
  raft::Message big = chunk;  // a chunk larger than its snapshot
  big.offset = 0;
  big.done = false;
  big.snapshot_bytes = 4;
  forged.frame(big);
  raft::Message vote = msg(raft::MessageType::vote, 2, 3);  // votes, a config entry, membership
  vote.index = LogIndex(0);
  forged.frame(vote).ticks(12).answer().answer();
  raft::Message own_term = msg(raft::MessageType::append, 3, 2);  // to the leader at its term
  forged.frame(own_term);
  write("raft_peer", "forged", forged.bytes);
}

// ---- pool_command -------------------------------------------------------------------------------

void pool_corpus() {
  std::vector<pool::Command> commands;
  pool::Command c;
  c.op = pool::Bootstrap{{{"diamond", 100, 10}, {"gold", 1000, 20}, {"mud", -1, 70}},
                         {{"event", {{"ticket", 5, 1}}}}};
  commands.push_back(c);
  c = {};
  c.op = pool::Draw{5, 99};
  c.timestamp_ms = 1'700'000'000'000;
  c.idempotency_key = "key-1";
  c.body_hash[0] = 1;
  commands.push_back(c);
  c = {};
  c.op = pool::UpsertItem{{"silver", 50, 5}};
  commands.push_back(c);
  c = {};
  c.op = pool::DeleteItem{"gold"};
  commands.push_back(c);
  c = {};
  c.op = pool::CreatePool{{{"a", 1, 1}, {"b", -1, 2}}};
  c.pool_id = "summer";
  commands.push_back(c);
  c = {};
  c.op = pool::Draw{2, 7};
  c.pool_id = "summer";
  commands.push_back(c);
  c = {};
  c.op = pool::DeletePool{};
  c.pool_id = "summer";
  commands.push_back(c);

  Bytes script{0};  // mode 0: commands
  pool::StateMachine sm;
  std::uint64_t index = 0;
  for (const pool::Command& command : commands) {
    const Bytes b = pool::encode(command);
    script.push_back(static_cast<std::uint8_t>(b.size()));
    script.push_back(static_cast<std::uint8_t>(b.size() >> 8));
    script.insert(script.end(), b.begin(), b.end());
    script.push_back(0);  // the gap before the next index
    (void)sm.apply(++index, command);
    write("pool_command", "command-" + std::to_string(index),
          Bytes{0, static_cast<std::uint8_t>(b.size()), static_cast<std::uint8_t>(b.size() >> 8)} +
              b);
  }
  write("pool_command", "script", script);
  Bytes snapshot{1};  // mode 1: a snapshot
  const Bytes image = sm.snapshot();
  snapshot.insert(snapshot.end(), image.begin(), image.end());
  write("pool_command", "snapshot", snapshot);
}

// ---- wal_segment and wal_state
// --------------------------------------------------------------------

void wal_corpus() {
  Bytes segment;
  wal::encode_segment_header(LogIndex(5), segment);
  for (std::uint64_t i = 5; i <= 8; ++i) {
    wal::encode_record({Term(i < 7 ? 1 : 2), LogIndex(i), 1, draw_command(1)}, segment);
  }
  write("wal_segment", "clean", Bytes{0} + segment);
  Bytes preallocated = segment;
  preallocated.resize(segment.size() + 1024, 0);  // the zero-filled tail of an open segment
  write("wal_segment", "preallocated", Bytes{0} + preallocated);
  Bytes torn = segment;
  torn.resize(torn.size() - 7);  // cut inside the last record
  write("wal_segment", "torn", Bytes{0} + torn);
  Bytes damaged = preallocated;
  damaged[wal::segment_header_bytes + 30] ^= 0x40;  // a changed byte in the first record
  write("wal_segment", "damaged", Bytes{0} + damaged);
  write("wal_segment", "damaged-fixed", Bytes{1} + damaged);  // CRCs rewritten by the harness
  // Hard-state records between entries (and one at the end), as the node writes them.
  Bytes with_hard_state;
  wal::encode_segment_header(LogIndex(5), with_hard_state);
  wal::encode_hard_state_record({Term(1), NodeId(2), LogIndex(4)}, with_hard_state);
  for (std::uint64_t i = 5; i < 9; ++i) {
    wal::encode_record({Term(i < 7 ? 1 : 2), LogIndex(i), 1, draw_command(1)}, with_hard_state);
    if (i == 6) wal::encode_hard_state_record({Term(2), NodeId(0), LogIndex(6)}, with_hard_state);
  }
  wal::encode_hard_state_record({Term(2), NodeId(3), LogIndex(8)}, with_hard_state);
  write("wal_segment", "hard-state", Bytes{0} + with_hard_state);

  write("wal_state", "hardstate",
        Bytes{0} + wal::encode_hard_state({Term(3), NodeId(2), LogIndex(17)}));
  raft::Membership membership;
  membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
  membership.learners = {NodeId(4)};
  membership.context[NodeId(4)] = R"({"http":"127.0.0.4:8004","raft":"127.0.0.4:7004"})";
  wal::SnapshotFile snap{LogIndex(100), Term(3), raft::encode_membership(membership),
                         draw_command(1)};
  write("wal_state", "snapshot", Bytes{1} + wal::encode_snapshot(snap));
  for (const std::string& name :
       {wal::closed_segment_name(LogIndex(1), LogIndex(256)), wal::open_segment_name(7),
        wal::snapshot_name(LogIndex(100), Term(3)), std::string("hardstate.tmp")}) {
    write("wal_state", "name-" + name, Bytes{2} + Bytes(name.begin(), name.end()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make-corpus CORPUS_DIR (tests/fuzz/corpus)\n");
    return 2;
  }
  root = argv[1];
  raft_corpus();
  pool_corpus();
  wal_corpus();
  return 0;
}
