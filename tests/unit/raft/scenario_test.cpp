// Scenario tests, named as sentences and read like scripts.
#include <doctest/doctest.h>

#include "harness.h"

namespace rpool::raft {
namespace {

using namespace test;

std::vector<std::uint64_t> terms_of(const Core& c) {
  std::vector<std::uint64_t> out;
  for (LogIndex i = c.log().first_index(); i <= c.log().last_index(); ++i) {
    out.push_back(c.log().at(i).term.value());
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Exchanges messages between a leader and one follower until they are quiet.
void replicate(Core& leader, Core& follower) {
  leader.tick();  // a heartbeat starts the conversation
  std::vector<Message> wire = drain(leader);
  for (int round = 0; round < 100 && !wire.empty(); ++round) {
    std::vector<Message> back;
    for (const Message& m : wire) {
      if (m.to != follower.id()) continue;
      follower.step(m);
      for (const Message& r : drain(follower)) leader.step(r);
    }
    wire = drain(leader);
  }
}

TEST_CASE("figure 8: an old-term entry on a majority is not committed and is safely overwritten") {
  Cluster c(5, [](Config& cfg) {
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    cfg.entries_per_append_max = 1;
  });
  // (a) S1 leads and replicates an entry of its term to S2 only.
  c.elect(1);
  c.isolate(3);
  c.isolate(4);
  c.isolate(5);
  c.propose(1, "old");
  CHECK(c.core(2).log().last_index() == LogIndex(2));
  // (b) S1 crashes; S5 wins with S3 and S4 and appends an entry of its term, unreplicated.
  c.heal();
  c.isolate(1);
  c.isolate(2);
  c.drop_if = [](Message& m) { return m.from == NodeId(5) && m.type == MessageType::append; };
  c.elect(5);
  REQUIRE(c.core(5).role() == Role::leader);
  const Term s5_term = c.core(5).current_term();
  // (c) S5 crashes; S1 returns, wins the next term and replicates the old entry to S3 — but
  // not its own no-op.
  c.heal();
  c.isolate(5);
  c.restart(1);
  c.drop_if = [](Message& m) {
    if (m.from == NodeId(1) && m.type == MessageType::append) {
      std::erase_if(m.entries, [](const Entry& e) { return e.type == EntryType::noop; });
    }
    return false;
  };
  REQUIRE(c.elect_among({1}) == 1);
  CHECK(c.core(1).current_term() > s5_term);
  CHECK(c.core(3).log().last_index() >= LogIndex(2));  // "old" now on S1, S2, S3: a majority
  // §5.4.2: yet it is not committed, because it is not from S1's current term.
  CHECK(c.core(1).log().commit_index() == LogIndex(1));
  CHECK_FALSE(contains(applied_data(c.node(1)), "old"));
  // (d) S1 crashes; S5 returns, wins (its last term is higher) and overwrites index 2.
  c.drop_if = nullptr;
  c.heal();
  c.isolate(1);
  c.restart(5);
  REQUIRE(c.elect_among({5}) == 5);
  c.propose(5, "new");
  for (std::uint64_t id : {2, 3, 4, 5}) {
    CHECK(c.core(id).log().at(LogIndex(2)).term == s5_term);
    CHECK_FALSE(contains(applied_data(c.node(id)), "old"));
    CHECK(contains(applied_data(c.node(id)), "new"));
  }
  // S1 returns and its log is repaired too.
  c.heal();
  c.tick_all(3);
  CHECK(terms_of(c.core(1)) == terms_of(c.core(5)));
}

TEST_CASE("a partitioned leader returning steps down and its uncommitted entries are replaced") {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "before");
  c.isolate(1);
  c.propose(1, "lost");  // the old leader keeps accepting, but cannot commit
  const std::uint64_t leader = c.elect_among({2, 3});
  REQUIRE(leader != 0);
  c.propose(leader, "kept");
  c.heal();
  c.tick_all(3);
  CHECK(c.core(1).role() == Role::follower);
  for (std::uint64_t id : {1, 2, 3}) {
    CHECK(applied_data(c.node(id)) == std::vector<std::string>{"before", "kept"});
    CHECK(terms_of(c.core(id)) == terms_of(c.core(leader)));
  }
}

TEST_CASE("divergent logs are repaired by a new leader (figure 7)") {
  // The leader of term 8 and the six followers of the paper's figure 7.
  const auto leader_log = log_with_terms({1, 1, 1, 4, 4, 5, 5, 6, 6, 6});
  const std::vector<std::vector<Entry>> followers = {
      log_with_terms({1, 1, 1, 4, 4, 5, 5, 6, 6}),           // (a) missing one
      log_with_terms({1, 1, 1, 4}),                          // (b) missing many
      log_with_terms({1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}),     // (c) one extra
      log_with_terms({1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}),  // (d) extra, later term
      log_with_terms({1, 1, 1, 4, 4, 4, 4}),                 // (e) conflicting suffix
      log_with_terms({1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}),     // (f) long conflict
  };
  for (const auto& flog : followers) {
    auto l =
        make_core(1, {1, 2, 3}, leader_log, Term(7), [](Config& cfg) { cfg.pre_vote = false; });
    tick_until_campaign(*l);
    drain(*l);
    l->step(msg(MessageType::vote_resp, 3, 1, 8));
    REQUIRE(l->role() == Role::leader);
    drain(*l);
    auto f = make_core(2, {1, 2, 3}, flog, Term(7));
    replicate(*l, *f);
    CHECK(terms_of(*f) == terms_of(*l));
    CHECK(f->log().commit_index() == l->log().commit_index());
  }
}

TEST_CASE("a follower behind a compacted log catches up via a chunked snapshot") {
  Cluster c(3, [](Config& cfg) { cfg.snapshot_chunk_bytes = 4; });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 10; ++i) c.propose(1, "e" + std::to_string(i));
  const LogIndex applied = c.core(1).log().applied_index();
  auto image = std::make_shared<const Bytes>(bytes_of("state-machine-image-at-11"));
  REQUIRE_FALSE(c.core(1).compact(applied, image));
  CHECK(c.core(1).log().snapshot_index() == applied);
  c.propose(1, "after");
  c.heal();
  c.tick(1, 3);
  CHECK(c.node(3).storage.durable().snapshot.has_value());
  CHECK(*c.node(3).storage.durable().snapshot->data == *image);
  CHECK(c.core(3).log().snapshot_index() == applied);
  CHECK(c.core(3).log().last_index() == c.core(1).log().last_index());
  CHECK(applied_data(c.node(3)) == std::vector<std::string>{"after"});
  // It restarts from its own disk: snapshot plus the entries after it.
  c.restart(3);
  c.settle();
  CHECK(c.core(3).log().snapshot_index() == applied);
  CHECK(applied_data(c.node(3)) == std::vector<std::string>{"after"});
}

TEST_CASE("a follower caught up by a snapshot sent over the wire is replicated to again") {
  // Regression: snapshot_resp lost `done` and `offset` in the wire encoding, so the leader took
  // the follower's "installed" for "send from byte 0" and stayed in snapshot state: the follower
  // stayed at the snapshot index until the next election (and a multi-chunk snapshot never
  // completed). Every message here goes through the peer transport's codec.
  for (const std::size_t chunk : {snapshot_chunk_bytes_default, std::size_t{4}}) {
    CAPTURE(chunk);
    Cluster c(3, [chunk](Config& cfg) { cfg.snapshot_chunk_bytes = chunk; });
    bool codec_ok = true;
    c.drop_if = [&codec_ok](Message& m) {
      Bytes wire;
      encode_message(m, wire);
      Message back;
      if (!decode_message(wire, back)) {
        codec_ok = false;
        return true;
      }
      m = std::move(back);
      return false;
    };
    c.elect(1);
    const Term term = c.core(1).current_term();
    c.isolate(3);
    for (int i = 0; i < 10; ++i) c.propose(1, 'e' + std::to_string(i));
    const LogIndex applied = c.core(1).log().applied_index();
    auto image = std::make_shared<const Bytes>(bytes_of("state-machine-image-at-11"));
    REQUIRE_FALSE(c.core(1).compact(applied, image));
    c.heal();
    c.tick(1, 3);
    CHECK(codec_ok);
    REQUIRE(c.node(3).storage.durable().snapshot.has_value());
    CHECK(*c.node(3).storage.durable().snapshot->data == *image);
    CHECK(c.core(3).log().snapshot_index() == applied);
    // New entries reach it by AppendEntries, in the same term.
    c.propose(1, "after-1");
    c.propose(1, "after-2");
    c.tick(1, 2);
    CHECK(c.core(1).current_term() == term);
    CHECK(c.core(1).role() == Role::leader);
    CHECK(c.core(1).progress(NodeId(3))->state == Progress::State::replicate);
    CHECK(c.core(1).progress(NodeId(3))->match_index == c.core(1).log().last_index());
    CHECK(c.core(3).log().commit_index() == c.core(1).log().commit_index());
    CHECK(applied_data(c.node(3)) == std::vector<std::string>{"after-1", "after-2"});
  }
}

TEST_CASE("leadership transfer under load loses no committed entry") {
  Cluster c(3);
  c.elect(1);
  std::vector<std::string> acked;
  std::uint64_t leader = 1;
  int refused = 0;
  for (int i = 0; i < 60; ++i) {
    if (i == 20) REQUIRE_FALSE(c.core(1).transfer_leader(NodeId(2)));
    for (std::uint64_t id : {1, 2, 3}) {
      if (c.core(id).role() == Role::leader) leader = id;
    }
    const std::string v = 'v' + std::to_string(i);
    const auto ec = c.core(leader).propose(bytes_of(v));
    if (!ec) {
      acked.push_back(v);
    } else {
      CHECK(ec == errc::transfer_in_progress);  // paused during the transfer, never lost
      ++refused;
    }
    if (i % 3 == 0) c.settle();
  }
  c.settle();
  c.tick_all(2);
  CHECK(c.core(2).role() == Role::leader);
  // Everything accepted is committed and applied, in the same order everywhere.
  for (std::uint64_t id : {1, 2, 3}) CHECK(applied_data(c.node(id)) == acked);
  CHECK(refused <= 3);  // the target was nearly caught up: a short pause
}

TEST_CASE("adding and removing members under load keeps every replica identical") {
  Cluster c(3);
  c.elect(1);
  c.add_node(4);
  int n = 0;
  auto load = [&](int count) {
    for (int i = 0; i < count; ++i) {
      for (std::uint64_t id : {1, 2, 3, 4}) {
        if (c.core(id).role() == Role::leader) {
          REQUIRE_FALSE(c.core(id).propose(bytes_of("w" + std::to_string(n++))));
          break;
        }
      }
    }
    c.settle();
  };
  load(10);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::add_learner, NodeId(4), {}}));
  load(10);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::promote, NodeId(4), {}}));
  load(10);
  CHECK(c.core(2).membership().voters.size() == 4);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(2), {}}));
  load(10);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(1), {}}));
  load(1);
  CHECK(c.core(1).role() == Role::follower);
  const std::uint64_t leader = c.elect_among({3, 4});
  REQUIRE(leader != 0);
  load(10);
  CHECK(c.core(leader).membership().voters == std::vector<NodeId>{NodeId(3), NodeId(4)});
  CHECK(applied_data(c.node(3)) == applied_data(c.node(4)));
  CHECK(applied_data(c.node(3)).size() == static_cast<std::size_t>(n));
}

TEST_CASE(
    "a leader that removes itself hands over to the most up-to-date voter before stepping down") {
  // Regression: the removed leader just stepped down, and the cluster had no leader until a
  // follower's election timeout fired (1-2 timeouts without writes).
  Cluster c(5);
  c.elect(1);
  const Term term = c.core(1).current_term();
  std::vector<std::uint64_t> timeout_now_to;
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::timeout_now) timeout_now_to.push_back(m.to.value());
    return m.type == MessageType::append && m.to == NodeId(5);  // node 5 lags
  };
  REQUIRE_FALSE(c.propose(1, "before"));
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(1), {}}));
  c.settle();  // no tick: no election timeout can have passed

  CHECK(c.core(1).role() == Role::follower);
  // 2, 3 and 4 hold the whole log (5 lags): the lowest id of them.
  CHECK(timeout_now_to == std::vector<std::uint64_t>{2});
  CHECK(c.core(2).role() == Role::leader);
  CHECK(c.core(2).current_term() == term.next());
  CHECK(c.core(2).membership().voters ==
        std::vector<NodeId>{NodeId(2), NodeId(3), NodeId(4), NodeId(5)});
  c.drop_if = nullptr;
  REQUIRE_FALSE(c.propose(2, "after"));
  c.tick(2, 2);
  CHECK(applied_data(c.node(5)) == std::vector<std::string>{"before", "after"});
}

TEST_CASE("a removed leader hands over to the voter with the most of its log, not the lowest id") {
  Cluster c(3);
  c.elect(1);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(1), {}}));
  const LogIndex config = c.core(1).log().last_index();
  REQUIRE_FALSE(c.core(1).propose(bytes_of("b")));  // after the config entry, uncommitted
  // Node 2 receives entries only up to the config entry: both voters of {2, 3} hold it, so it
  // commits, but only node 3 holds the entry after it.
  std::vector<std::uint64_t> timeout_now_to;
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::timeout_now) timeout_now_to.push_back(m.to.value());
    if (m.type == MessageType::append && m.to == NodeId(2)) {
      std::erase_if(m.entries, [&](const Entry& e) { return e.index > config; });
    }
    return false;
  };
  c.settle();
  CHECK(c.core(1).role() == Role::follower);
  CHECK(timeout_now_to == std::vector<std::uint64_t>{3});
  CHECK(c.core(3).role() == Role::leader);
}

TEST_CASE(
    "a removed leader whose remaining voters lack its last entry catches one up, then hands over") {
  Cluster c(3);
  c.elect(1);
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(1), {}}));
  const LogIndex config = c.core(1).log().last_index();
  REQUIRE_FALSE(c.core(1).propose(bytes_of("b")));
  std::vector<std::uint64_t> timeout_now_to;
  bool strip = true;
  c.drop_if = [&](Message& m) {
    if (m.type == MessageType::timeout_now) timeout_now_to.push_back(m.to.value());
    if (strip && m.type == MessageType::append) {
      std::erase_if(m.entries, [&](const Entry& e) { return e.index > config; });
    }
    return false;
  };
  c.settle();
  // The removal committed, but no voter has "b": the leader stays to bring node 2 up to date,
  // and takes no proposals meanwhile.
  REQUIRE(c.core(1).log().commit_index() == config);
  CHECK(c.core(1).role() == Role::leader);
  CHECK(c.core(1).lead_transferee() == NodeId(2));
  CHECK(c.core(1).propose(bytes_of("c")) == errc::transfer_in_progress);
  CHECK(timeout_now_to.empty());
  strip = false;
  c.tick(1);
  CHECK(timeout_now_to == std::vector<std::uint64_t>{2});
  CHECK(c.core(1).role() == Role::follower);
  CHECK(c.core(2).role() == Role::leader);
  CHECK(c.core(2).log().at(config.next()).data == bytes_of("b"));  // it has the whole log
}

TEST_CASE(
    "a member's context is recorded when it is added, kept by promotion, dropped by removal, and "
    "carried by snapshots") {
  Cluster c(3);
  c.elect(1);
  c.add_node(4);
  REQUIRE_FALSE(
      c.core(1).change_membership({ChangeType::add_learner, NodeId(4), "addresses of 4"}));
  c.settle();
  for (std::uint64_t id : {1, 2, 3, 4}) {
    CHECK(c.core(id).membership().context.at(NodeId(4)) == "addresses of 4");
    CHECK(c.core(id).membership().is_learner(NodeId(4)));
  }
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::promote, NodeId(4), {}}));
  c.settle();
  CHECK(c.core(2).membership().is_voter(NodeId(4)));
  CHECK(c.core(2).membership().context.at(NodeId(4)) == "addresses of 4");
  // A snapshot's membership carries the context to a node that was not there to see the entry.
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "x" + std::to_string(i));
  const LogIndex applied = c.core(1).log().applied_index();
  REQUIRE_FALSE(c.core(1).compact(applied, std::make_shared<const Bytes>(bytes_of("image"))));
  CHECK(c.core(1).snapshot()->meta.membership.context.at(NodeId(4)) == "addresses of 4");
  c.heal();
  c.tick(1, 3);
  c.settle();
  c.restart(3);
  c.settle();
  CHECK(c.core(3).membership().context.at(NodeId(4)) == "addresses of 4");
  REQUIRE_FALSE(c.core(1).change_membership({ChangeType::remove, NodeId(4), {}}));
  c.settle();
  CHECK_FALSE(c.core(2).membership().context.contains(NodeId(4)));
  CHECK(c.core(1).change_membership(
            {ChangeType::add_learner, NodeId(5), std::string(member_context_bytes_max + 1, 'x')}) ==
        errc::invalid_change);
}

TEST_CASE(
    "a membership encodes with its contexts, version 1 still decodes, and malformed ones are "
    "refused") {
  Membership m;
  m.voters = {NodeId(1), NodeId(3)};
  m.learners = {NodeId(7)};
  m.context = {{NodeId(1), "one"}, {NodeId(7), R"({"raft":"127.0.0.7:7007"})"}};
  const Bytes wire = encode_membership(m);
  Membership back;
  REQUIRE(decode_membership(wire, back));
  CHECK(back == m);
  // Version 1: no contexts.
  Bytes v1{1, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  Membership old;
  REQUIRE(decode_membership(v1, old));
  CHECK(old.voters == std::vector<NodeId>{NodeId(2)});
  CHECK(old.context.empty());
  // Every truncation fails; so do a context for a non-member and unsorted context ids.
  for (std::size_t n = 0; n < wire.size(); ++n) {
    Membership cut;
    CHECK_FALSE(decode_membership(ByteView(wire.data(), n), cut));
  }
  Membership stranger = m;
  stranger.context[NodeId(9)] = "not a member";
  CHECK_FALSE(stranger.valid());
  Bytes unsorted = wire;
  // The two context ids follow the lists: swap them (1 <-> 7) so they descend.
  const std::size_t ids_at = 1 + 4 + 16 + 4 + 8 + 4;
  REQUIRE(unsorted[ids_at] == 1);
  const std::size_t second_at = ids_at + 8 + 4 + 3;
  REQUIRE(unsorted[second_at] == 7);
  std::swap(unsorted[ids_at], unsorted[second_at]);
  Membership bad;
  CHECK_FALSE(decode_membership(unsorted, bad));
}

}  // namespace
}  // namespace rpool::raft

namespace rpool::raft {
namespace {

using namespace test;

// Found by the whole-node simulation (tests/sim/node_sim.cpp, seeds 5078 and 6168): a node was
// removed, wiped and added back at the same address while a heartbeat of the leader, computed
// from its old match index, was still in flight. The fresh node aborted on a commit beyond its
// log; with a log filled meanwhile by a deposed leader of an older term, it committed entries
// the cluster never committed.
TEST_CASE("a heartbeat commits only where the follower's entry matches the leader's") {
  // The follower holds entries of term 1 at indexes 1-3 (from a deposed leader); the leader's
  // entry at 3 is of term 2.
  auto c = make_core(1, {1, 2, 3}, log_with_terms({1, 1, 1}), Term(2));
  Message hb = msg(MessageType::heartbeat, 2, 1, 2);
  hb.commit = LogIndex(3);
  hb.log_term = Term(2);
  c->step(hb);
  CHECK(c->log().commit_index() == LogIndex(0));  // does not match: nothing committed
  hb.commit = LogIndex(9);                        // beyond the log (it was wiped)
  c->step(hb);
  CHECK(c->log().commit_index() == LogIndex(0));
  hb.commit = LogIndex(2);
  hb.log_term = Term(1);  // matches: by Log Matching, so does 1..2
  c->step(hb);
  CHECK(c->log().commit_index() == LogIndex(2));
}

}  // namespace
}  // namespace rpool::raft

namespace rpool::raft {
namespace {

using namespace test;

// Found by the whole-node simulation (seed 2341): node 2 was removed, wiped and added back under
// the same id while an acknowledgement from its previous incarnation was still in flight. The
// leader credited the fresh learner with its old match index, probed above its empty log for
// ever, and counted entries it did not hold towards the commit quorum.
TEST_CASE("a leader in probe state ignores an acknowledgement below its probe") {
  auto c = make_core(1, {1, 2, 3}, log_with_terms({1, 1, 1, 1, 1}), Term(1));
  tick_until_campaign(*c);
  drain(*c);
  while (c->role() != Role::leader) {
    for (std::uint64_t from : {2u, 3u}) {
      const MessageType t =
          c->role() == Role::pre_candidate ? MessageType::pre_vote_resp : MessageType::vote_resp;
      const Term term =
          c->role() == Role::pre_candidate ? c->current_term() + 1 : c->current_term();
      c->step(msg(t, from, 1, term.value()));
      if (c->role() == Role::leader) break;
    }
  }
  drain(*c);
  const Progress* pr = c->progress(NodeId(2));
  REQUIRE(pr != nullptr);
  REQUIRE(pr->state == Progress::State::probe);
  const LogIndex probe_prev = pr->next_index.prev();
  REQUIRE(probe_prev >= LogIndex(3));
  Message stale = msg(MessageType::append_resp, 2, 1, c->current_term().value());
  stale.context = c->progress(NodeId(2))->first_round;  // as a follower echoes it
  stale.index = LogIndex(probe_prev.value() - 2);       // below the probe: an answer from before
  c->step(stale);
  CHECK(c->progress(NodeId(2))->match_index == LogIndex(0));
  CHECK(c->progress(NodeId(2))->state == Progress::State::probe);
  Message fresh = stale;
  fresh.index = probe_prev;
  c->step(fresh);
  CHECK(c->progress(NodeId(2))->match_index == probe_prev);
}

}  // namespace
}  // namespace rpool::raft
