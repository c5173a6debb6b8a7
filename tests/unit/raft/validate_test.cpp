// raft::validate(): every message a peer could forge is refused before it reaches an assertion in
// Core::step(), and nothing a correct peer sends is refused.
//
//   - one test per forged message (set up a core, forge, check the reason);
//   - legitimate traffic of a cluster through elections, partitions and snapshots all passes;
//   - a seeded fuzz: messages recorded from a live cluster, mutated field by field and byte by
//     byte, go through decode (from bytes) + validate + step (+ the Ready cycle and ticks) on
//     copies of cores in every role. An assertion aborts the test binary, so "the test
//     finished" is the check; counters make sure the cases reach step() in every role.
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "harness.h"
#include "raft/validate.h"

namespace rpool::raft {
namespace {

using namespace test;

// Cores in every role, and a follower in the middle of receiving a snapshot, with a log, a
// snapshot and a membership built by a real (in-memory) cluster. Every message the cluster
// delivers is recorded in `corpus` and checked to pass validate().
struct Fixtures {
  std::vector<std::pair<std::string, Core>> cores;
  std::vector<Message> corpus;
  std::size_t legit_refused = 0;

  Fixtures() {
    Cluster c(3, [](Config& cfg) {
      cfg.snapshot_chunk_bytes = 16;
      cfg.entries_per_append_max = 4;
    });
    bool receiving_paused = false;  // drop snapshot chunks to 3 past the second one
    c.drop_if = [&](Message& m) {
      if (validate(c.core(m.to.value()), m)) ++legit_refused;
      corpus.push_back(m);
      return receiving_paused && m.type == MessageType::snapshot && m.to == NodeId(3) &&
             m.offset >= 32;
    };
    c.elect(1);
    for (int i = 0; i < 12; ++i) REQUIRE_FALSE(c.propose(1, "entry " + std::to_string(i)));
    c.add_node(4);
    REQUIRE_FALSE(c.core(1).change_membership({ChangeType::add_learner, NodeId(4), "four"}));
    c.settle();
    c.tick_all(3);
    c.isolate(3);
    for (int i = 0; i < 8; ++i) REQUIRE_FALSE(c.propose(1, "while 3 is away " + std::to_string(i)));
    const LogIndex applied = c.core(1).log().applied_index();
    const auto image = std::make_shared<const Bytes>(Bytes(100, 0x5a));
    REQUIRE_FALSE(c.core(1).compact(applied, image));
    c.rejoin(3);
    receiving_paused = true;
    c.tick(1, 2);
    REQUIRE(c.core(3).snapshot_receiving().has_value());
    cores.emplace_back("follower receiving a snapshot", c.core(3));
    receiving_paused = false;
    c.tick_all(3);
    REQUIRE(c.core(1).role() == Role::leader);
    cores.emplace_back("leader", c.core(1));
    cores.emplace_back("follower", c.core(2));
    cores.emplace_back("learner", c.core(4));
    // 2 campaigns with pre-vote (pre-candidate), then for real (candidate) without hearing back.
    c.isolate(2);
    tick_until_campaign(c.core(2));
    REQUIRE(c.core(2).role() == Role::pre_candidate);
    cores.emplace_back("pre_candidate", c.core(2));
    c.rejoin(2);
    c.settle();
    Cluster plain(3, [](Config& cfg) { cfg.pre_vote = false; });
    plain.isolate(1);
    tick_until_campaign(plain.core(1));
    REQUIRE(plain.core(1).role() == Role::candidate);
    cores.emplace_back("candidate", plain.core(1));
    // Elections and leader changes for the corpus (and the no-refusal check).
    c.isolate(1);
    REQUIRE(c.elect_among({2, 3}) != 0);
    c.heal();
    c.tick_all(5);
    for (int i = 0; i < 4; ++i) c.propose(c.core(2).role() == Role::leader ? 2 : 3, "late");
    c.tick_all(3);
  }
};

// What every test uses: built once (the cluster run takes a few milliseconds).
const Fixtures& fixtures() {
  static const Fixtures f;
  return f;
}

Core copy_of(std::string_view role) {
  for (const auto& [name, core] : fixtures().cores) {
    if (name == role) return core;
  }
  FAIL("no fixture " << role);
  return fixtures().cores.front().second;
}

Message to(const Core& core, MessageType type, std::uint64_t from, Term term) {
  return msg(type, from, core.id().value(), term.value());
}

// Runs the Ready cycle as the node does (persist instantly).
void drain_quietly(Core& core) { (void)drain(core); }

// --- one test per forged message ----------------------------------------------------------------

TEST_CASE("legitimate traffic of a cluster with elections, partitions and snapshots all passes") {
  const Fixtures& f = fixtures();
  CHECK(f.legit_refused == 0);
  std::array<std::size_t, 14> by_type{};
  for (const Message& m : f.corpus) ++by_type[static_cast<std::size_t>(m.type)];
  for (auto t : {MessageType::pre_vote, MessageType::vote, MessageType::append,
                 MessageType::append_resp, MessageType::heartbeat, MessageType::heartbeat_resp,
                 MessageType::snapshot, MessageType::snapshot_resp}) {
    CAPTURE(to_string(t));
    CHECK(by_type[static_cast<std::size_t>(t)] > 0);
  }
}

TEST_CASE("a message at term 0 is refused (step asserts term != 0)") {
  for (const auto& [name, core] : fixtures().cores) {
    CAPTURE(name);
    for (auto type : {MessageType::append, MessageType::heartbeat, MessageType::vote,
                      MessageType::append_resp}) {
      const Message m = to(core, type, core.id() == NodeId(2) ? 3 : 2, Term(0));
      CHECK(validate(core, m) == RejectReason::bad_term);
    }
  }
}

TEST_CASE("a term too close to 2^64 to be incremented is refused") {
  const Core core = copy_of("follower");
  CHECK(validate(core, to(core, MessageType::append, 1, Term(term_max))) == RejectReason::bad_term);
  CHECK(validate(core, to(core, MessageType::heartbeat, 1, Term(~0ull))) == RejectReason::bad_term);
  CHECK_FALSE(validate(core, to(core, MessageType::heartbeat, 1, Term(term_max - 1))));
}

TEST_CASE("a message from nobody, from ourselves, or for another node is refused") {
  const Core core = copy_of("follower");
  const Term t = core.current_term();
  CHECK(validate(core, to(core, MessageType::heartbeat, 0, t)) == RejectReason::bad_sender);
  CHECK(validate(core, to(core, MessageType::heartbeat, core.id().value(), t)) ==
        RejectReason::bad_sender);
  Message other = to(core, MessageType::heartbeat, 1, t);
  other.to = NodeId(7);
  CHECK(validate(core, other) == RejectReason::bad_receiver);
}

TEST_CASE("a heartbeat whose commit index is beyond the follower's log is refused") {
  const Core core = copy_of("follower");
  Message m = to(core, MessageType::heartbeat, 1, core.current_term());
  m.commit = core.log().last_index() + 1;
  CHECK(validate(core, m) == RejectReason::commit_beyond_log);
  // From a newer term too: the node becomes a follower with the same log.
  m.term = core.current_term() + 1;
  CHECK(validate(core, m) == RejectReason::commit_beyond_log);
  m.commit = core.log().last_index();
  CHECK_FALSE(validate(core, m));
}

TEST_CASE(
    "§5.2 Election Safety: an append, heartbeat or snapshot to the leader at its own term is "
    "refused") {
  const Core leader = copy_of("leader");
  for (auto type : {MessageType::append, MessageType::heartbeat, MessageType::snapshot}) {
    CAPTURE(to_string(type));
    Message m = to(leader, type, 2, leader.current_term());
    m.index = leader.log().last_index();
    m.log_term = leader.log().last_term();
    m.snapshot = {leader.log().snapshot_index(), leader.log().snapshot_term(), voters({1, 2, 3})};
    CHECK(validate(leader, m) == RejectReason::leader_conflict);
    m.term = leader.current_term() + 1;  // a newer leader: the leader steps down
    CHECK_FALSE(validate(leader, m));
  }
}

TEST_CASE("a snapshot chunk larger than its declared size is refused") {
  const Core core = copy_of("follower");
  Message m = to(core, MessageType::snapshot, 1, core.current_term());
  m.snapshot = {core.log().last_index() + 10, core.current_term(), voters({1, 2, 3})};
  m.snapshot_bytes = 10;
  m.data = Bytes(11, 1);
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.offset = 5;  // 5 + 6 > 10
  m.data = Bytes(6, 1);
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.offset = ~0ull - 2;  // offset + size would wrap
  m.data = Bytes(6, 1);
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.offset = 0;  // done but short of the declared size
  m.data = Bytes(9, 1);
  m.done = true;
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.data = Bytes(10, 1);
  CHECK_FALSE(validate(core, m));
}

TEST_CASE("a snapshot chunk continuing a transfer with another declared size is refused") {
  Core core = copy_of("follower receiving a snapshot");
  const auto receiving = core.snapshot_receiving();
  REQUIRE(receiving);
  Message m = to(core, MessageType::snapshot, 1, core.current_term());
  m.snapshot = {receiving->index, receiving->term, voters({1, 2, 3})};
  m.offset = receiving->received;
  m.snapshot_bytes = receiving->received + 1;  // the first chunk said receiving->total
  m.data = Bytes(1, 7);
  REQUIRE(receiving->total > m.snapshot_bytes);
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.done = true;
  CHECK(validate(core, m) == RejectReason::snapshot_bounds);
  m.snapshot_bytes = receiving->total;  // agreeing: appended
  m.done = false;
  REQUIRE_FALSE(validate(core, m));
  core.step(m);
  CHECK(core.snapshot_receiving()->received == receiving->received + 1);
}

TEST_CASE("a snapshot at index 0, term 0, from a later term or without voters is refused") {
  const Core core = copy_of("follower");
  Message m = to(core, MessageType::snapshot, 1, core.current_term());
  m.snapshot = {core.log().last_index() + 10, core.current_term(), voters({1, 2, 3})};
  m.snapshot_bytes = 1;
  m.data = Bytes(1, 1);
  m.done = true;
  CHECK_FALSE(validate(core, m));
  for (auto bad : {SnapshotMeta{LogIndex(0), core.current_term(), voters({1})},
                   SnapshotMeta{LogIndex(99), Term(0), voters({1})},
                   SnapshotMeta{LogIndex(99), core.current_term() + 1, voters({1})},
                   SnapshotMeta{LogIndex(99), core.current_term(), Membership{}}}) {
    m.snapshot = bad;
    CHECK(validate(core, m) == RejectReason::bad_snapshot_meta);
  }
}

TEST_CASE("§5.3: append entries that do not follow prev_log_index one by one are refused") {
  const Core core = copy_of("follower");
  const LogIndex last = core.log().last_index();
  const Term t = core.current_term();
  Message m = to(core, MessageType::append, 1, t);
  m.index = last;
  m.log_term = core.log().last_term();
  m.entries = {Entry{t, last + 1, EntryType::normal, {}},
               Entry{t, last + 2, EntryType::normal, {}}};
  CHECK_FALSE(validate(core, m));
  m.entries[1].index = last + 3;  // a gap
  CHECK(validate(core, m) == RejectReason::noncontiguous_entries);
  m.entries[1].index = last + 1;  // a repeat
  CHECK(validate(core, m) == RejectReason::noncontiguous_entries);
  m.entries[0].index = last + 2;  // not starting after prev_log_index
  m.entries[1].index = last + 3;
  CHECK(validate(core, m) == RejectReason::noncontiguous_entries);
}

TEST_CASE("append entries whose terms go backwards or beyond the leader's term are refused") {
  const Core core = copy_of("follower");
  const LogIndex last = core.log().last_index();
  const Term t = core.current_term();
  Message m = to(core, MessageType::append, 1, t);
  m.index = last;
  m.log_term = core.log().last_term();
  m.entries = {Entry{t, last + 1, EntryType::normal, {}}};
  m.entries[0].term = Term(m.log_term.value() - 1);  // below prev_log_term
  CHECK(validate(core, m) == RejectReason::bad_entry_term);
  m.entries[0].term = t + 1;  // from the future
  CHECK(validate(core, m) == RejectReason::bad_entry_term);
  m.term = t + 1;  // a newer leader whose second entry goes back a term
  m.entries = {Entry{t + 1, last + 1, EntryType::normal, {}},
               Entry{t, last + 2, EntryType::normal, {}}};
  CHECK(validate(core, m) == RejectReason::bad_entry_term);
  m.entries[1].term = t + 1;
  CHECK_FALSE(validate(core, m));
  m.term = t;
  m.entries.clear();
  m.log_term = t + 1;  // prev_log_term from the future
  CHECK(validate(core, m) == RejectReason::bad_entry_term);
}

TEST_CASE("§4.1: a config entry that is not a membership is refused") {
  const Core core = copy_of("follower");
  const LogIndex last = core.log().last_index();
  Message m = to(core, MessageType::append, 1, core.current_term());
  m.index = last;
  m.log_term = core.log().last_term();
  m.entries = {
      Entry{core.current_term(), last + 1, EntryType::config, bytes_of("not a membership")}};
  CHECK(validate(core, m) == RejectReason::bad_config_entry);
  m.entries[0].data = encode_membership(voters({1, 2, 3}));
  CHECK_FALSE(validate(core, m));
}

TEST_CASE("an acknowledgement to the leader of an index beyond its log is refused") {
  const Core leader = copy_of("leader");
  for (auto type :
       {MessageType::append_resp, MessageType::snapshot_resp, MessageType::heartbeat_resp}) {
    for (bool reject : {false, true}) {
      CAPTURE(to_string(type));
      CAPTURE(reject);
      Message m = to(leader, type, 2, leader.current_term());
      m.index = leader.log().last_index() + 1;
      m.reject = reject;
      m.done = true;
      const bool refused = type != MessageType::snapshot_resp || !reject;
      CHECK(validate(leader, m) ==
            (refused ? std::optional(RejectReason::index_beyond_log) : std::nullopt));
      m.index = leader.log().last_index();
      CHECK_FALSE(validate(leader, m));
    }
  }
}

TEST_CASE("an index too close to 2^64 to be added to is refused") {
  const Core core = copy_of("follower");
  Message m = to(core, MessageType::append, 1, core.current_term());
  m.index = LogIndex(index_max);
  CHECK(validate(core, m) == RejectReason::bad_index);
  m.index = LogIndex(0);
  m.commit = LogIndex(~0ull);
  CHECK(validate(core, m) == RejectReason::bad_index);
}

TEST_CASE("every reason has a distinct snake_case name") {
  std::set<std::string> names;
  for (std::size_t i = 0; i < reject_reason_count; ++i) {
    const std::string name = to_string(static_cast<RejectReason>(i));
    CHECK(name != "unknown");
    CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos);
    names.insert(name);
  }
  CHECK(names.size() == reject_reason_count);
}

// --- the fuzz -----------------------------------------------------------------------------------

class Fuzzer {
 public:
  explicit Fuzzer(std::uint64_t seed) : rng_(seed) {}

  std::uint64_t below(std::uint64_t n) { return rng_.below(n); }
  bool one_in(std::uint64_t n) { return rng_.below(n) == 0; }

  // A value near something meaningful for this core, or anything.
  std::uint64_t near(std::uint64_t around) {
    switch (below(8)) {
      case 0: return 0;
      case 1: return around + 1;
      case 2: return around > 0 ? around - 1 : 0;
      case 3: return around + below(5);
      case 4: return rng_.next();
      case 5: return (std::uint64_t{1} << 62) - below(3);
      case 6: return ~0ull - below(3);
      default: return around;
    }
  }

  // Field-level mutations of a recorded message, retargeted to `core` most of the time.
  void mutate(Message& m, const Core& core) {
    const std::uint64_t last = core.log().last_index().value();
    const std::uint64_t term = core.current_term().value();
    if (!one_in(10)) m.to = core.id();
    if (m.from == core.id() || one_in(3)) m.from = NodeId(1 + below(4));
    if (one_in(2)) m.term = Term(one_in(3) ? term + below(3) : near(term));
    const int edits = static_cast<int>(below(4));
    for (int i = 0; i < edits; ++i) {
      switch (below(15)) {
        case 0: m.type = static_cast<MessageType>(1 + below(13)); break;
        case 1: m.index = LogIndex(near(last)); break;
        case 2: m.commit = LogIndex(near(last)); break;
        case 3: m.log_term = Term(near(term)); break;
        case 4: m.reject_hint = LogIndex(near(last)); break;
        case 5: m.reject = !m.reject; break;
        case 6: m.done = !m.done; break;
        case 7: m.context = near(m.context); break;
        case 8:
          if (!m.entries.empty())
            m.entries.erase(m.entries.begin() +
                            static_cast<std::ptrdiff_t>(below(m.entries.size())));
          break;
        case 9:
          if (!m.entries.empty()) {
            Entry& e = m.entries[below(m.entries.size())];
            if (one_in(2)) e.term = Term(near(e.term.value()));
            else e.index = LogIndex(near(e.index.value()));
          }
          break;
        case 10: {
          Entry e{m.term, m.index + (m.entries.size() + 1), EntryType::normal, Bytes(below(40), 3)};
          if (one_in(3)) {
            e.type = EntryType::config;
            e.data = one_in(2) ? encode_membership(voters({1, 2, 3})) : Bytes(below(20), 9);
          }
          m.entries.push_back(std::move(e));
          break;
        }
        case 11: m.offset = near(m.offset); break;
        case 12: m.snapshot_bytes = near(m.snapshot_bytes); break;
        case 13:
          if (one_in(2)) m.data.resize(below(200), 0x77);
          else m.snapshot.index = LogIndex(near(last));
          break;
        default:
          // A chunk that continues the transfer in progress, exactly where it stands.
          if (const auto r = core.snapshot_receiving()) {
            m.type = MessageType::snapshot;
            m.snapshot.index = r->index;
            m.snapshot.term = r->term;
            if (m.snapshot.membership.voters.empty()) m.snapshot.membership = voters({1, 2, 3});
            m.offset = r->received;
            m.data.resize(below(std::min<std::uint64_t>(2 * r->total + 1, 4096)), 0x66);
            m.snapshot_bytes = one_in(2) ? r->total : m.offset + m.data.size() + below(3);
          }
          break;
      }
    }
  }

  // Byte-level mutations of the encoding: flips, overwrites with a telling value, cuts.
  void mutate_bytes(Bytes& b) {
    if (b.empty()) return;
    const int edits = 1 + static_cast<int>(below(3));
    for (int i = 0; i < edits; ++i) {
      const std::size_t at = below(b.size());
      switch (below(4)) {
        case 0: b[at] ^= static_cast<std::uint8_t>(1u << below(8)); break;
        case 1: b[at] = static_cast<std::uint8_t>(rng_.next()); break;
        case 2: b[at] = one_in(2) ? 0 : 0xff; break;
        default: b.resize(at); break;
      }
      if (b.empty()) return;
    }
  }

 private:
  Rng rng_;
};

TEST_CASE("fuzz: bytes -> decode -> validate -> step never trips an assertion, in any role") {
  const Fixtures& f = fixtures();
  REQUIRE(!f.corpus.empty());
  // RPOOL_FUZZ_SEED=<n> reruns with another seed (the printed one reproduces a failure).
  const char* seed_env = std::getenv("RPOOL_FUZZ_SEED");
  const std::uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 0) : 0x7ee1'5eed'0000'0001;
  constexpr int cases = 40000;
  constexpr int messages_per_case_max = 6;
  std::printf("validate fuzz: seed %#llx, %d cases\n", static_cast<unsigned long long>(seed),
              cases);
  Fuzzer fz(seed);

  std::vector<std::vector<std::size_t>> by_type;  // corpus positions per message type present
  for (std::size_t t = 1; t <= 13; ++t) {
    std::vector<std::size_t> positions;
    for (std::size_t i = 0; i < f.corpus.size(); ++i) {
      if (static_cast<std::size_t>(f.corpus[i].type) == t) positions.push_back(i);
    }
    if (!positions.empty()) by_type.push_back(std::move(positions));
  }
  std::map<std::string, std::size_t> stepped_by_role;
  std::array<std::size_t, 14> stepped_by_type{};
  std::map<std::string, std::size_t> refused_by_reason;
  std::size_t undecodable = 0;
  for (int c = 0; c < cases; ++c) {
    const auto& [role, original] = f.cores[fz.below(f.cores.size())];
    Core core = original;
    const int n = 1 + static_cast<int>(fz.below(messages_per_case_max));
    for (int k = 0; k < n; ++k) {
      // A type first, then a recorded message of it, so rare types are fuzzed as much as appends.
      const auto& of_type = by_type[fz.below(by_type.size())];
      Message m = f.corpus[of_type[fz.below(of_type.size())]];
      if (!fz.one_in(5)) fz.mutate(m, core);
      Bytes wire;
      encode_message(m, wire);
      if (fz.one_in(3)) fz.mutate_bytes(wire);
      Message decoded;
      if (!decode_message(wire, decoded)) {
        ++undecodable;
        continue;
      }
      if (auto why = validate(core, decoded)) {
        ++refused_by_reason[to_string(*why)];
        continue;
      }
      core.step(decoded);
      ++stepped_by_role[role];
      ++stepped_by_type[static_cast<std::size_t>(decoded.type)];
      drain_quietly(core);
      // A forged term or log shows its effect later: in elections, heartbeats and commits.
      const int ticks = static_cast<int>(fz.below(3) == 0 ? fz.below(25) : 0);
      for (int t = 0; t < ticks; ++t) {
        core.tick();
        drain_quietly(core);
      }
      if (core.role() == Role::leader && fz.one_in(4)) {
        (void)core.propose(bytes_of("after"));
        drain_quietly(core);
      }
    }
    core.check_invariants();
  }

  MESSAGE("undecodable " << undecodable);
  for (const auto& [reason, count] : refused_by_reason)
    MESSAGE("refused " << reason << ": " << count);
  // The fuzz reaches step() in every role with every kind of message, and the validator's
  // main reasons all fire: otherwise it would prove little.
  for (const auto& [role, core] : f.cores) {
    CAPTURE(role);
    CHECK(stepped_by_role[role] > 100);
  }
  for (std::size_t t = 1; t <= 13; ++t) {
    CAPTURE(to_string(static_cast<MessageType>(t)));
    CHECK(stepped_by_type[t] > 10);
  }
  for (auto reason : {RejectReason::bad_term, RejectReason::bad_sender, RejectReason::bad_index,
                      RejectReason::noncontiguous_entries, RejectReason::bad_entry_term,
                      RejectReason::commit_beyond_log, RejectReason::leader_conflict,
                      RejectReason::snapshot_bounds, RejectReason::index_beyond_log}) {
    CAPTURE(to_string(reason));
    CHECK(refused_by_reason[to_string(reason)] > 0);
  }
  CHECK(undecodable > 0);
}

}  // namespace
}  // namespace rpool::raft
