// Fuzzes what a peer connection feeds the consensus core: frames (the peer transport's wire
// format) through raft::decode_message, raft::validate, and a live raft::Core whose Ready loop
// runs on a raft::MemoryStorage and applies committed entries to a pool::StateMachine, as the
// node's Replica does. Core::step() asserts what a correct peer never sends; validate() must stop
// every such message first, so any assertion this harness reaches is a bug.
//
// The core is node 1 of the voters {1, 2, 3}. Input: a script of operations, one opcode byte each:
//   op % 10 == 0..3  a frame: u32 payload length, u8 frame type, payload (the transport's frame:
//                    peer_transport.h). Opcode bit 7 set: the harness first addresses the decoded
//                    message to node 1 from node 2 + (from % 4) (4 and 5 are no members), the
//                    way a peer that passed the handshake would, so that the fuzzer spends its
//                    time past the transport's id checks.
//   4             ticks: 1 + u8 % 32 of them
//   5             answer every message of the last Ready as a correct peer would (grant votes,
//                 acknowledge appends, heartbeats and snapshot chunks); each answer goes through
//                 validate() like any frame
//   6             propose a u16-length command
//   7             start a read (u64 context)
//   8             compact to a fraction (u8 / 255) of the applied index, or transfer leadership,
//                 or change membership (the admin API's inputs, with arguments from the input)
//   9             crash and restart: unsynced writes lost, a new Core from the durable state
// After each operation the Ready loop runs to quiescence and every invariant is checked.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "fuzz_input.h"
#include "pool/command.h"
#include "pool/state_machine.h"
#include "raft/core.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "raft/validate.h"

namespace {

using namespace rpool;
using raft::Message;
using raft::MessageType;

constexpr std::size_t frame_header_bytes = 5;  // u32 length, u8 type (net::peer_frame_header_bytes)
constexpr std::uint8_t frame_raft_message = 1;
constexpr std::size_t frame_bytes_max = 64 * 1024;  // beyond what a fuzz input holds
constexpr NodeId self{1};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "raft_peer: %s\n", what);
    std::abort();
  }
}

// A message survives the wire: encoding what was decoded decodes to the same encoding.
void check_codec(const Message& m) {
  Bytes first;
  raft::encode_message(m, first);
  Message again;
  check(raft::decode_message(first, again), "an encoded message does not decode");
  Bytes second;
  raft::encode_message(again, second);
  check(first == second, "message round trip");
}

raft::Config core_config() {
  raft::Config c;
  c.id = self;
  c.initial_membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
  c.election_ticks = 4;
  c.heartbeat_ticks = 1;
  c.snapshot_resend_ticks = 8;
  c.random_seed = 7;
  // Small enough that a fuzz input reaches the paging and flow-control bounds.
  c.entries_per_append_max = 4;
  c.message_bytes_max = 256;
  c.inflight_appends_max = 4;
  c.inflight_bytes_max = 1024;
  c.snapshot_chunk_bytes = 64;
  c.uncommitted_bytes_max = 2048;
  c.committed_bytes_per_ready_max = 256;
  c.entry_bytes_max = 512;
  return c;
}

class Node {
 public:
  Node() { boot(); }

  void run(fuzz::FuzzInput& in) {
    while (!in.empty()) {
      const std::uint8_t op = in.u8();
      switch (op % 10) {
        case 0:
        case 1:
        case 2:
        case 3: frame(in, (op & 0x80) != 0); break;
        case 4:
          for (int n = 1 + in.u8() % 32; n > 0; --n) core_->tick();
          break;
        case 5: answer_last_ready(); break;
        case 6: {
          const ByteView data = in.bytes(in.u16() % 600);
          (void)core_->propose(Bytes(data.begin(), data.end()));
          break;
        }
        case 7: (void)core_->read_index(in.u64()); break;
        case 8: admin(in); break;
        default: restart(); break;
      }
      core_->check_invariants();
      drive();
    }
  }

 private:
  void boot() {
    core_ = std::make_unique<raft::Core>(core_config(), storage_.boot());
    pool_ = pool::StateMachine();
    applied_ = LogIndex(0);
    if (const auto& snap = core_->snapshot()) {
      (void)pool_.restore(*snap->data);
      applied_ = snap->meta.index;
    }
    last_sent_.clear();
    drive();
  }

  void restart() {
    storage_.crash();
    boot();
  }

  // One frame, as the transport splits it from the byte stream and hands it on.
  void frame(fuzz::FuzzInput& in, bool addressed) {
    const ByteView header = in.bytes(frame_header_bytes);
    if (header.size() < frame_header_bytes) return;  // the connection ended inside a frame
    const std::uint32_t length = load_u32le(header.data());
    if (length > frame_bytes_max || header[4] != frame_raft_message) return;  // closed
    const ByteView payload = in.bytes(length);
    Message m;
    if (!raft::decode_message(payload, m)) return;
    check_codec(m);
    if (addressed) {
      m.to = self;
      m.from = NodeId(2 + m.from.value() % 4);
    }
    deliver(m);
  }

  // validate() then step(), with nothing in between: the node's order.
  void deliver(const Message& m) {
    if (raft::validate(*core_, m)) return;  // refused: dropped and counted by the node
    core_->step(m);
  }

  void answer_last_ready() {
    const std::vector<Message> sent = std::move(last_sent_);
    last_sent_.clear();
    for (const Message& m : sent) {
      Message r;
      r.from = m.to;
      r.to = self;
      r.term = m.term;
      switch (m.type) {
        case MessageType::pre_vote: r.type = MessageType::pre_vote_resp; break;
        case MessageType::vote: r.type = MessageType::vote_resp; break;
        case MessageType::append:
          r.type = MessageType::append_resp;
          r.index = LogIndex(m.index.value() + m.entries.size());
          break;
        case MessageType::heartbeat:
          r.type = MessageType::heartbeat_resp;
          r.context = m.context;
          break;
        case MessageType::snapshot:
          r.type = MessageType::snapshot_resp;
          r.offset = m.offset + m.data.size();
          if (m.done) r.index = m.snapshot.index;
          break;
        case MessageType::read_index:
          r.type = MessageType::read_index_resp;
          r.index = core_->log().commit_index();
          r.context = m.context;
          break;
        default: continue;
      }
      if (r.term == Term(0)) continue;  // a reply to a rejection, which carries no term
      drive();
      deliver(r);
      core_->check_invariants();
    }
    drive();
  }

  void admin(fuzz::FuzzInput& in) {
    const std::uint8_t what = in.u8();
    switch (what % 3) {
      case 0: {
        const LogIndex applied = core_->log().applied_index();
        const LogIndex to(applied.value() * in.u8() / 255);
        if (to > core_->log().snapshot_index()) {
          (void)core_->compact(to, std::make_shared<const Bytes>(pool_.snapshot()));
        }
        break;
      }
      case 1: (void)core_->transfer_leader(NodeId(2 + in.u8() % 4)); break;
      default: {
        raft::MembershipChange change;
        change.type = static_cast<raft::ChangeType>(in.u8() % 3);
        change.node = NodeId(2 + in.u8() % 4);
        (void)core_->change_membership(change);
        break;
      }
    }
  }

  // The Ready loop, as the Replica runs it (core.h, struct Ready), with instant writes.
  void drive() {
    while (core_->has_ready()) {
      raft::Ready rd = core_->ready();
      for (const Message& m : rd.messages) sent(m);
      check(!raft::persist(storage_, rd), "persist to memory failed");
      storage_.check_invariants();
      for (const Message& m : rd.messages_after_persist) sent(m);
      if (rd.snapshot) {
        // A snapshot from the leader: the node restores its pool from it. Bytes that are no pool
        // snapshot are the node's problem to report, not an assertion.
        (void)pool_.restore(*rd.snapshot->data);
        applied_ = rd.snapshot->meta.index;
      }
      for (const raft::Entry& e : rd.committed_entries) {
        check(e.index == applied_.next(), "committed entries not in order");
        applied_ = e.index;
        pool::Command command;
        if (e.type == raft::EntryType::normal && !pool::decode(e.data, command)) {
          (void)pool_.apply(e.index.value(), command);
        }
      }
      core_->advance(rd);
      core_->check_invariants();
    }
  }

  void sent(const Message& m) {
    check(m.from == self, "a message not from this node");
    check(m.to != self, "a message to this node");
    check_codec(m);
    if (last_sent_.size() < 64) last_sent_.push_back(m);
  }

  raft::MemoryStorage storage_;
  std::unique_ptr<raft::Core> core_;
  pool::StateMachine pool_;
  LogIndex applied_;
  std::vector<Message> last_sent_;  // what the last Readies sent, for answer_last_ready()
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FuzzInput in(data, size);
  Node node;
  node.run(in);
  return 0;
}
