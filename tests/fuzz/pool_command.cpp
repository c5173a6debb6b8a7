// Fuzzes the pool's decoders: the command codec (pool::decode) that every replica runs on the
// data of each committed log entry, and the state-machine snapshot (StateMachine::restore) that a
// follower installs from the leader or a node reads back at start.
//
// Input: one mode byte. Mode bit 0 clear: a script of commands, each a u16 length and the bytes;
// every one that decodes must encode to bytes that decode to the same command, and is applied to
// one state machine in order, whose invariants must hold after every command. At the end the
// state machine's snapshot must restore to the same state. Mode bit 0 set: the rest is a
// snapshot; one that restores must hold the invariants and survive a snapshot round trip.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_input.h"
#include "pool/command.h"
#include "pool/state_machine.h"

namespace {

using namespace rpool;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "pool_command: %s\n", what);
    std::abort();
  }
}

// A restored copy of `sm` must be the same state: the same snapshot bytes.
void check_snapshot_round_trip(const pool::StateMachine& sm) {
  const Bytes image = sm.snapshot();
  pool::StateMachine copy;
  check(!copy.restore(image), "a snapshot the state machine wrote does not restore");
  copy.check_invariants();
  check(copy.snapshot() == image, "snapshot round trip");
  check(copy.digest() == sm.digest(), "digest after restore");
}

void commands(fuzz::FuzzInput& in) {
  pool::StateMachine sm;
  std::uint64_t index = 0;
  while (!in.empty()) {
    const ByteView bytes = in.chunk();
    index += 1 + in.u8() % 4;  // raft's own entries leave gaps
    pool::Command command;
    if (pool::decode(bytes, command)) continue;
    pool::Command again;
    check(!pool::decode(pool::encode(command), again), "an encoded command does not decode");
    check(again == command, "command round trip");
    (void)pool::describe(command);
    (void)sm.apply(index, command);
    sm.check_invariants();
  }
  check_snapshot_round_trip(sm);
}

void snapshot(fuzz::FuzzInput& in) {
  pool::StateMachine sm;
  if (sm.restore(in.rest())) return;
  sm.check_invariants();
  check_snapshot_round_trip(sm);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FuzzInput in(data, size);
  if (in.u8() & 1) {
    snapshot(in);
  } else {
    commands(in);
  }
  return 0;
}
