// Flow control and the bounds on what the leader holds and hands out: snapshot chunks in flight,
// bytes in flight per follower, uncommitted bytes, committed bytes per Ready.
#include <doctest/doctest.h>

#include <string>

#include "harness.h"

namespace rpool::raft::test {
namespace {

std::string joined(const std::vector<std::uint64_t>& v) {
  std::string out;
  for (auto x : v) out += (out.empty() ? "" : " ") + std::to_string(x);
  return out;
}

}  // namespace

TEST_CASE("a leader keeps one snapshot chunk in flight: heartbeat replies do not resend it") {
  // Regression: every heartbeat reply resent the chunk in flight, and each copy started another
  // send/answer loop, so a large snapshot on a slow link went at bandwidth / (number of loops).
  Cluster c(3, [](Config& cfg) {
    cfg.snapshot_chunk_bytes = 8;
    cfg.snapshot_resend_ticks = 6;
  });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 10; ++i) c.propose(1, "e" + std::to_string(i));
  const LogIndex applied = c.core(1).log().applied_index();
  auto image = std::make_shared<const Bytes>(Bytes(64, std::uint8_t{7}));  // 8 chunks
  REQUIRE_FALSE(c.core(1).compact(applied, image));

  // The follower is back but slow: its answers to chunks do not arrive (yet).
  std::vector<std::uint64_t> chunk_offsets;
  bool answers_arrive = false;
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::snapshot) chunk_offsets.push_back(m.offset);
    return m.type == MessageType::snapshot_resp && !answers_arrive;
  };
  c.rejoin(3);
  c.tick(1);  // a heartbeat, a probe, its rejection: the first chunk
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  CHECK(joined(chunk_offsets) == joined({0}));
  c.tick(1, 5);  // five heartbeat rounds, each answered by the follower
  CHECK(joined(chunk_offsets) == joined({0}));

  // Overdue: the chunk (or its answer) counts as lost and is sent once more.
  c.tick(1, 1);
  CHECK(joined(chunk_offsets) == joined({0, 0}));

  // Answers flow again. The ones so far are lost, so the chunk is resent once more when
  // overdue; its answer asks for byte 8, and from there each chunk goes out once.
  answers_arrive = true;
  c.tick(1, 6);
  CHECK(joined(chunk_offsets) == joined({0, 0, 0, 8, 16, 24, 32, 40, 48, 56}));
  REQUIRE(c.node(3).storage.durable().snapshot.has_value());
  CHECK(*c.node(3).storage.durable().snapshot->data == *image);
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
}

}  // namespace rpool::raft::test
