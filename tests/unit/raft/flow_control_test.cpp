// Flow control and the bounds on what the leader holds and hands out: snapshot chunks in flight,
// bytes in flight per follower, uncommitted bytes, committed bytes per Ready.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "harness.h"

namespace rpool::raft::test {
namespace {

std::string joined(const std::vector<std::uint64_t>& v) {
  std::string out;
  for (auto x : v) {
    if (!out.empty()) out += ' ';
    out += std::to_string(x);
  }
  return out;
}

}  // namespace

TEST_CASE("a leader keeps one snapshot chunk in flight and resends it once per heartbeat round") {
  // Regression: every heartbeat reply resent the chunk in flight, and each copy started another
  // send/answer loop, so a large snapshot on a slow link went at bandwidth / (number of loops).
  // Now only the answer to a heartbeat sent after the chunk resends it (the follower answers in
  // order, so the chunk or its answer was lost), and a duplicate's answer moves nothing.
  Cluster c(3, [](Config& cfg) {
    cfg.snapshot_chunk_bytes = 8;
    cfg.snapshot_resend_ticks = 6;
  });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 10; ++i) c.propose(1, 'e' + std::to_string(i));
  const LogIndex applied = c.core(1).log().applied_index();
  auto image = std::make_shared<const Bytes>(Bytes(64, std::uint8_t{7}));  // 8 chunks
  REQUIRE_FALSE(c.core(1).compact(applied, image));

  // The follower is back but its answers to chunks are lost.
  std::vector<std::uint64_t> chunk_offsets;
  bool answers_arrive = false;
  bool heartbeat_answers_arrive = true;
  std::optional<Message> early_answer;  // the first heartbeat answer from node 3
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::snapshot) chunk_offsets.push_back(m.offset);
    if (m.type == MessageType::heartbeat_resp && m.from == NodeId(3) && !early_answer)
      early_answer = m;
    if (m.type == MessageType::heartbeat_resp) return !heartbeat_answers_arrive;
    return m.type == MessageType::snapshot_resp && !answers_arrive;
  };
  c.rejoin(3);
  // A heartbeat, its answer, a probe, its rejection: the first chunk. The heartbeat answer was
  // to a heartbeat sent before the chunk, so it resends nothing.
  c.tick(1);
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  CHECK(joined(chunk_offsets) == joined({0}));
  // The same answer again, arriving late (reordered or duplicated): still nothing.
  REQUIRE(early_answer.has_value());
  c.core(1).step(*early_answer);
  c.settle();
  CHECK(joined(chunk_offsets) == joined({0}));
  // Each later heartbeat answer shows the chunk's answer lost: one copy per round, no more.
  c.tick(1, 3);
  CHECK(joined(chunk_offsets) == joined({0, 0, 0, 0}));

  // Heartbeat answers are lost too: the chunk is resent only when overdue.
  heartbeat_answers_arrive = false;
  c.tick(1, 5);
  CHECK(joined(chunk_offsets) == joined({0, 0, 0, 0}));
  c.tick(1, 1);
  CHECK(joined(chunk_offsets) == joined({0, 0, 0, 0, 0}));

  // Answers flow again: the next heartbeat answer resends chunk 0, its answer asks for byte 8,
  // and from there each chunk goes out once.
  answers_arrive = true;
  heartbeat_answers_arrive = true;
  c.tick(1, 2);
  CHECK(joined(chunk_offsets) == joined({0, 0, 0, 0, 0, 0, 8, 16, 24, 32, 40, 48, 56}));
  REQUIRE(c.node(3).storage.durable().snapshot.has_value());
  CHECK(*c.node(3).storage.durable().snapshot->data == *image);
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
}

TEST_CASE(
    "a heartbeat reply at or past the snapshot ends the transfer whose last answer was lost") {
  // Regression (node simulation, seed 3000): the answer to the last chunk was lost, and so was
  // each resend; on a lossy link the follower stayed out of replication for seconds, waiting
  // for snapshot_resend_ticks per loss, while its heartbeat replies went unheard.
  Cluster c(3, [](Config& cfg) {
    cfg.snapshot_chunk_bytes = 1024;
    cfg.snapshot_resend_ticks = 100;  // never, in this test
  });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 10; ++i) c.propose(1, 'e' + std::to_string(i));
  const LogIndex applied = c.core(1).log().applied_index();
  auto image = std::make_shared<const Bytes>(Bytes(64, std::uint8_t{7}));  // one chunk
  REQUIRE_FALSE(c.core(1).compact(applied, image));
  c.drop_if = [](Message& m) { return m.type == MessageType::snapshot_resp; };
  c.rejoin(3);
  c.tick(1);
  REQUIRE(c.node(3).storage.durable().snapshot.has_value());  // installed; the answer is lost
  REQUIRE(c.core(1).progress(NodeId(3))->state == Progress::State::snapshot);
  c.tick(1, 2);  // heartbeats: the replies carry the follower's commit index
  CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
  CHECK(c.core(1).progress(NodeId(3))->match_index == c.core(1).log().last_index());
  CHECK(c.core(3).log().commit_index() == c.core(1).log().commit_index());
}

TEST_CASE("a follower's appends in flight are bounded in bytes, not only in count") {
  // Regression: the window counted appends (256), each up to message_bytes_max (1 MiB): more
  // than the transport queues for a peer (64 MiB), which then refused appends.
  const std::string payload(100, 'x');
  const std::size_t entry = payload.size() + 24;  // entry_bytes() of one such entry
  Cluster c(3, [&](Config& cfg) {
    cfg.entries_per_append_max = 1;
    cfg.inflight_appends_max = 256;
    cfg.inflight_bytes_max = 3 * entry;
  });
  c.elect(1);
  c.tick(1);  // node 2 in replicate state
  REQUIRE(c.core(1).progress(NodeId(2))->state == Progress::State::replicate);

  // Node 2 is slow: nothing it acknowledges arrives.
  std::size_t appends_to_2 = 0;
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::append && m.to == NodeId(2) && !m.entries.empty()) ++appends_to_2;
    return m.type == MessageType::append_resp && m.from == NodeId(2);
  };
  for (int i = 0; i < 10; ++i) REQUIRE_FALSE(c.propose(1, payload));
  const Progress& pr = *c.core(1).progress(NodeId(2));
  CHECK(appends_to_2 == 3);
  CHECK(pr.inflight.size() == 3);
  CHECK(pr.inflight_bytes == 3 * entry);
  CHECK(c.core(1).log().commit_index() == c.core(1).log().last_index());  // node 3 acknowledges

  // Acknowledgements free the window and the rest follows.
  c.drop_if = nullptr;
  c.tick(1, 2);
  CHECK(c.core(2).log().last_index() == c.core(1).log().last_index());
  CHECK(c.core(1).progress(NodeId(2))->inflight_bytes == 0);
}

TEST_CASE("a leader refuses proposals with overloaded once its uncommitted bytes reach the cap") {
  // Regression: nothing bounded the entries a leader appends without committing them (a leader
  // cut off from its quorum, or fed faster than a quorum writes, grew its log in memory).
  const std::string payload(100, 'x');
  Cluster c(3, [](Config& cfg) { cfg.uncommitted_bytes_max = 300; });
  c.elect(1);
  c.isolate(2);
  c.isolate(3);
  for (int i = 0; i < 3; ++i) CHECK_FALSE(c.propose(1, payload));
  const LogIndex last = c.core(1).log().last_index();
  const std::error_code ec = c.propose(1, payload);
  CHECK(ec == errc::overloaded);
  CHECK(ec.message().find("uncommitted") != std::string::npos);
  CHECK(c.core(1).log().last_index() == last);  // refused: nothing appended

  // Once a quorum commits them, proposals are accepted again.
  c.heal();
  c.tick(1, 2);
  REQUIRE(c.core(1).log().commit_index() == last);
  CHECK_FALSE(c.propose(1, payload));
}

TEST_CASE("one proposal is accepted when nothing is uncommitted, even above the cap") {
  Cluster c(3, [](Config& cfg) { cfg.uncommitted_bytes_max = 10; });
  c.elect(1);
  c.isolate(2);
  c.isolate(3);
  CHECK_FALSE(c.propose(1, std::string(50, 'y')));
  CHECK(c.propose(1, "z") == errc::overloaded);
}

TEST_CASE("committed entries are paged over Readies by committed_bytes_per_ready_max") {
  // Regression: a Ready carried every committed entry at once (e.g. a whole committed log after
  // a restart), however large.
  const std::string payload(100, 'x');
  const std::size_t entry = payload.size() + 24;
  auto core = make_core(1, {1}, {}, Term(0),
                        [&](Config& cfg) { cfg.committed_bytes_per_ready_max = 2 * entry; });
  tick_until_campaign(*core);
  drain(*core);
  REQUIRE(core->role() == Role::leader);
  for (int i = 0; i < 5; ++i) REQUIRE_FALSE(core->propose(bytes_of(payload)));
  std::vector<std::size_t> pages;
  while (core->has_ready()) {
    Ready rd = core->ready();
    if (!rd.committed_entries.empty()) pages.push_back(rd.committed_entries.size());
    core->advance(rd);
  }
  CHECK(pages == std::vector<std::size_t>{2, 2, 1});
  CHECK(core->log().applied_index() == core->log().last_index());
}

}  // namespace rpool::raft::test
