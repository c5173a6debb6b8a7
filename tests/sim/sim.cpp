// A deterministic cluster simulator for raft::Core.
//
// One seed decides everything: cluster size (3 or 5), fault rates, message delays, crashes and
// restarts, partitions, proposals, reads, snapshots, membership changes and leader transfers.
// Each replica applies committed entries to a real pool::StateMachine. After every step the
// checkers verify Election Safety, Log Matching, Leader Completeness, State Machine Safety,
// equal pool digests at equal applied index and ReadIndex linearizability. After the chaos
// phase the faults stop and the cluster must elect a leader and commit fresh proposals on every
// member within a bounded number of ticks (liveness).
//
// The disk model: a node's Ready is written asynchronously and becomes durable only when its
// write completes, through raft::persist() into a raft::MemoryStorage (the same contract code the
// node runs over its WAL); a crash before that loses it (and the messages that waited for it).
// The node takes no input while a write is in flight (Ready contract), inputs queue.
//
//   sim --seeds N [--start S]     run seeds S .. S+N-1 (plus the regression seeds)
//   sim --seed S --verbose        replay one seed, printing every event
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>
#include <unistd.h>

#include <fmt/format.h>

#include "base/assert.h"
#include "base/splitmix64.h"
#include "pool/command.h"
#include "pool/state_machine.h"
#include "raft/core.h"
#include "raft/storage.h"

namespace rpool::sim {
namespace {

using raft::Core;
using raft::Entry;
using raft::EntryType;
using raft::Message;
using raft::Ready;
using raft::Role;

// Seeds that found a bug (a real one, or one planted on purpose to prove the checkers); they run
// in every invocation, before the requested range.
constexpr std::uint64_t regression_seeds[] = {
    // Real bug: a leader in replicate state whose appends were all lost never resent them
    // (heartbeat responses sent nothing when the window was not full): liveness failure.
    18,
    118,
    181,
    // Real bug: snapshot_resp lost `done` and `offset` in the wire encoding, so a leader kept
    // resending a snapshot the follower had installed and never replicated to it again
    // (liveness failure once every message crossed the codec).
    8,
    9,
    13,
    // Planted: a vote granted without being persisted (two leaders in one term).
    700002,
    700006,
    // Planted: ReadIndex answered without the heartbeat round (stale read).
    700054,
    700147,
    // Planted: commit of an earlier-term entry by counting replicas, §5.4.2 (figure 8).
    701521,
    701587,
    // Planted: append acknowledged before the entries were durable (durability checker).
    700000,
    700003,
    // Planted: votes granted without the §5.4.1 up-to-date check (leader completeness).
    700001,
    700007,
};

volatile std::uint64_t g_current_seed = 0;

void on_abort(int) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "\nsim: aborted in seed %llu\n",
                              static_cast<unsigned long long>(g_current_seed));
  if (n > 0) {
    [[maybe_unused]] const auto w = ::write(2, buf, static_cast<std::size_t>(n));
  }
}

// The simulator's one random source: the project's SplitMix64 behind a seed scramble, so that
// seed S of the simulator and the cores' own seeds do not draw the same sequence.
class Rand {
 public:
  explicit Rand(std::uint64_t seed) : source_(seed * 0x2545f4914f6cdd1dull + 0x1234567ull) {}
  std::uint64_t next() { return source_.next(); }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  // True with probability per_mille / 1000.
  bool chance(std::uint64_t per_mille) { return below(1000) < per_mille; }

 private:
  SplitMix64 source_;
};

std::uint64_t hash_bytes(const Bytes& b, EntryType type) {
  std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint64_t>(type);
  for (std::uint8_t c : b) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

struct Input {
  enum class Kind { message, tick, propose, read, transfer, change, compact } kind;
  Message message;
  Bytes payload;
  std::uint64_t context = 0;
  NodeId target;
  raft::MembershipChange change;
};

struct Node {
  NodeId id;
  bool up = false;
  std::unique_ptr<Core> core;
  raft::MemoryStorage disk;  // survives crashes; persisted through raft::persist()
  std::unique_ptr<pool::StateMachine> pool;
  LogIndex applied;
  bool write_pending = false;
  std::uint64_t write_generation = 0;
  Ready pending;
  std::deque<Input> inbox;
  LogIndex commit_seen;  // highest commit index already checked
  Role last_role = Role::follower;
  Term last_term;
};

// A unit of simulated time is a millisecond (link bandwidths are in bytes per unit).
constexpr std::uint64_t units_per_tick = 10;

// The bandwidth of the simulated network. Each direction between two nodes is one link (one
// TCP connection): messages leave it one after the other, each occupying it for its encoded size
// divided by the bandwidth, then travel the propagation delay. A link with 0 bytes per unit is
// unlimited (every message leaves at once), which is how the randomized seeds run by default.
class Links {
 public:
  explicit Links(std::uint64_t bytes_per_unit) : bytes_per_unit_(bytes_per_unit) {}

  std::uint64_t bytes_per_unit() const { return bytes_per_unit_; }

  // The time at which a message of `bytes` handed to the link from -> to at `now` has been
  // put on the wire entirely (it still has the propagation delay ahead).
  std::uint64_t departure(NodeId from, NodeId to, std::uint64_t now, std::size_t bytes) {
    if (bytes_per_unit_ == 0) return now;
    std::uint64_t& free_at = free_at_[{from.value(), to.value()}];
    const std::uint64_t start = std::max(now, free_at);
    free_at = start + (bytes + bytes_per_unit_ - 1) / bytes_per_unit_;
    return free_at;
  }

  // Forget what a crashed node had queued (its connections closed).
  void reset(NodeId id) {
    for (auto it = free_at_.begin(); it != free_at_.end();) {
      const bool touches = it->first.first == id.value() || it->first.second == id.value();
      it = touches ? free_at_.erase(it) : std::next(it);
    }
  }

 private:
  std::uint64_t bytes_per_unit_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> free_at_;
};

struct Params {
  std::size_t nodes = 3;
  std::size_t spares = 1;
  std::uint64_t drop_per_mille = 0;
  std::uint64_t dup_per_mille = 0;
  std::uint64_t delay_max = 10;  // units; a tick is 10 units
  std::uint64_t disk_delay_max = 10;
  std::uint64_t crash_per_mille = 0;      // per tick
  std::uint64_t partition_per_mille = 0;  // per tick
  std::uint64_t propose_per_mille = 300;  // per tick
  std::uint64_t read_per_mille = 100;
  std::uint64_t compact_per_mille = 20;
  std::uint64_t change_per_mille = 10;
  std::uint64_t transfer_per_mille = 5;
  std::size_t chaos_ticks = 300;
  std::size_t liveness_ticks = 600;
  std::size_t snapshot_chunk_bytes = 64;
  std::size_t inflight_max = 4;
  std::size_t entries_per_append_max = 8;
  std::uint64_t leader_crash_per_mille = 0;        // per tick: crash whoever leads
  std::uint64_t isolate_new_leader_per_mille = 0;  // per election: cut the winner off soon
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  bool pre_vote = true;
  bool check_quorum = true;
};

class Simulation {
 public:
  Simulation(std::uint64_t seed, bool verbose, std::uint64_t link_bytes_per_unit = 0)
      : seed_(seed), verbose_(verbose), rand_(seed), links_(link_bytes_per_unit) {
    Rand& r = rand_;
    params_.nodes = r.chance(500) ? 3 : 5;
    params_.spares = 1;
    params_.drop_per_mille = r.below(4) == 0 ? 0 : r.below(150);
    params_.dup_per_mille = r.below(3) == 0 ? 0 : r.below(80);
    params_.delay_max = 1 + r.below(40);
    params_.disk_delay_max = r.below(20);
    params_.crash_per_mille = r.below(3) == 0 ? 0 : r.below(25);
    params_.partition_per_mille = r.below(3) == 0 ? 0 : r.below(30);
    params_.propose_per_mille = 100 + r.below(800);
    params_.read_per_mille = r.below(400);
    params_.compact_per_mille = r.below(60);
    params_.change_per_mille = r.below(3) == 0 ? 0 : r.below(40);
    params_.transfer_per_mille = r.below(20);
    params_.snapshot_chunk_bytes = 16 + r.below(400);
    params_.inflight_max = 2 + r.below(8);
    params_.entries_per_append_max = r.chance(300) ? 1 + r.below(3) : 4 + r.below(16);
    params_.leader_crash_per_mille = r.below(3) == 0 ? 0 : r.below(30);
    params_.isolate_new_leader_per_mille = r.below(2) == 0 ? 0 : r.below(700);
    params_.election_ticks = 5 + static_cast<int>(r.below(8));
    params_.heartbeat_ticks = 1 + static_cast<int>(r.below(2));
    // Every combination is a supported configuration; without pre-vote and check-quorum
    // elections are more frequent, which stresses the safety rules harder.
    params_.pre_vote = r.chance(600);
    params_.check_quorum = r.chance(600);
    if (r.chance(300)) params_.disk_delay_max = 20 + r.below(40);
    if (r.chance(300)) {
      // Storm profile: many short-lived leaders, the ground on which figure-8 style histories
      // (competing uncommitted suffixes from several terms) grow.
      params_.nodes = r.chance(700) ? 3 : 5;
      params_.pre_vote = r.chance(300);
      params_.check_quorum = r.chance(300);
      params_.crash_per_mille = 10 + r.below(30);
      params_.leader_crash_per_mille = 20 + r.below(40);
      params_.isolate_new_leader_per_mille = 300 + r.below(600);
      params_.entries_per_append_max = 1 + r.below(3);
      params_.partition_per_mille = 10 + r.below(30);
      params_.propose_per_mille = 500 + r.below(500);
    }
    // Raft's timing requirement (§5.6): broadcast time << election timeout. A round trip here
    // is at most two network delays plus two disk writes.
    const std::uint64_t rtt_ticks =
        (2 * params_.delay_max + 2 * params_.disk_delay_max) / units_per_tick + 1;
    params_.election_ticks = std::max(params_.election_ticks, static_cast<int>(2 * rtt_ticks));
    params_.liveness_ticks = 60 * static_cast<std::size_t>(params_.election_ticks);
    for (std::size_t i = 0; i < params_.nodes; ++i) initial_.voters.push_back(NodeId(i + 1));
    for (std::size_t i = 0; i < params_.nodes + params_.spares; ++i) {
      Node n;
      n.id = NodeId(i + 1);
      nodes_.push_back(std::move(n));
    }
    for (Node& n : nodes_) start(n);
  }

  // Returns an empty string on success, else what failed.
  std::string run() {
    log("params: nodes={} election={} heartbeat={} pre_vote={} check_quorum={} leader_crash={} "
        "drop={} dup={} delay={} disk={} crash={} part={} propose={} read={} compact={} "
        "change={} transfer={}",
        params_.nodes, params_.election_ticks, params_.heartbeat_ticks, params_.pre_vote,
        params_.check_quorum, params_.leader_crash_per_mille, params_.drop_per_mille,
        params_.dup_per_mille, params_.delay_max, params_.disk_delay_max, params_.crash_per_mille,
        params_.partition_per_mille, params_.propose_per_mille, params_.read_per_mille,
        params_.compact_per_mille, params_.change_per_mille, params_.transfer_per_mille);
    for (std::size_t t = 0; t < params_.chaos_ticks && failure_.empty(); ++t) {
      chaos_tick();
      run_tick();
    }
    if (!failure_.empty()) return failure_;
    quiesce();
    return liveness();
  }

  std::uint64_t committed_entries() const { return max_commit_.value(); }

 private:
  template <class... Args>
  void log(fmt::format_string<Args...> f, Args&&... args) {
    if (verbose_) fmt::print("[{:>6}] {}\n", now_, fmt::format(f, std::forward<Args>(args)...));
  }

  void fail(const std::string& what) {
    if (failure_.empty()) failure_ = fmt::format("t={} {}", now_, what);
    log("FAIL {}", what);
  }

  Node& node(NodeId id) { return nodes_[id.value() - 1]; }

  // --- lifecycle ---------------------------------------------------------------------------

  void start(Node& n) {
    raft::Config c;
    c.id = n.id;
    c.initial_membership = n.id.value() <= params_.nodes ? initial_ : raft::Membership{};
    c.election_ticks = params_.election_ticks;
    c.heartbeat_ticks = params_.heartbeat_ticks;
    c.pre_vote = params_.pre_vote;
    c.check_quorum = params_.check_quorum;
    c.random_seed = rand_.next();
    c.snapshot_chunk_bytes = params_.snapshot_chunk_bytes;
    // Resend an unanswered chunk after an election timeout (at least two round trips here, see
    // the timing requirement above) rather than the default 40 ticks: messages are dropped often.
    c.snapshot_resend_ticks = params_.election_ticks;
    c.inflight_appends_max = params_.inflight_max;
    // A byte window that binds before the count does on most seeds (commands are 20-60 bytes).
    c.inflight_bytes_max = params_.inflight_max * 100;
    // Small enough to refuse proposals when a leader cannot commit, and to page the committed
    // entries of a catching-up node over several Readies.
    c.uncommitted_bytes_max = 40 * params_.entries_per_append_max * 8;
    c.committed_bytes_per_ready_max = 64 * params_.inflight_max;
    c.entries_per_append_max = params_.entries_per_append_max;
    c.message_bytes_max = 512;
    n.core = std::make_unique<Core>(c, n.disk.boot());
    n.pool = std::make_unique<pool::StateMachine>();
    n.applied = LogIndex(0);
    if (const auto& snap = n.disk.durable().snapshot) {
      const auto ec = n.pool->restore(*snap->data);
      if (ec) fail(fmt::format("node {} cannot restore its snapshot: {}", n.id, ec.message()));
      n.applied = snap->meta.index;
    }
    n.up = true;
    n.write_pending = false;
    n.inbox.clear();
    n.commit_seen = n.core->log().commit_index();
    n.last_role = Role::follower;
    n.last_term = n.core->current_term();
    log("node {} starts: term {} commit {} last {}", n.id, n.core->current_term(),
        n.core->log().commit_index(), n.core->log().last_index());
    drive(n);
  }

  void crash(Node& n) {
    log("node {} crashes{}", n.id, n.write_pending ? " (losing an unsynced write)" : "");
    ++stats_.crashes;
    n.up = false;
    links_.reset(n.id);
    n.disk.crash();
    n.core.reset();
    n.pool.reset();
    n.write_pending = false;
    ++n.write_generation;
    n.inbox.clear();
  }

  // --- the event loop ----------------------------------------------------------------------

  struct Event {
    std::uint64_t time;
    std::uint64_t seq;
    enum class Kind { deliver, write_done, isolate } kind;
    Message message;
    NodeId node;
    std::uint64_t generation = 0;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };

  void schedule(Event e) {
    e.seq = next_seq_++;
    events_.push(std::move(e));
  }

  void run_tick() {
    const std::uint64_t end = now_ + units_per_tick;
    for (Node& n : nodes_) {
      if (n.up) input(n, Input{Input::Kind::tick, {}, {}, 0, {}, {}});
    }
    while (!events_.empty() && events_.top().time < end && failure_.empty()) {
      Event e = events_.top();
      events_.pop();
      now_ = e.time;
      Node& n = node(e.kind == Event::Kind::deliver ? e.message.to : e.node);
      if (e.kind == Event::Kind::isolate) {
        if (!quiet_) {
          group_[n.id.value()] = 100 + static_cast<int>(n.id.value());
          log("nemesis: isolate node {}", n.id);
        }
        continue;
      }
      if (e.kind == Event::Kind::deliver) {
        if (!n.up) continue;
        Input in{Input::Kind::message, std::move(e.message), {}, 0, {}, {}};
        input(n, std::move(in));
      } else if (n.up && n.write_pending && n.write_generation == e.generation) {
        write_done(n);
      }
    }
    now_ = end;
  }

  void send(const Message& sent) {
    if (group_[sent.from.value()] != group_[sent.to.value()]) return;
    if (rand_.chance(params_.drop_per_mille)) return;
    // Every message crosses the wire encoding, as between real nodes: a field the codec loses
    // is lost here too (snapshot_resp once lost done/offset, and followers stalled after an
    // InstallSnapshot).
    Bytes wire;
    raft::encode_message(sent, wire);
    Message m;
    if (!raft::decode_message(wire, m)) {
      fail(fmt::format("a {} message does not decode after encoding", raft::to_string(sent.type)));
      return;
    }
    const int copies = rand_.chance(params_.dup_per_mille) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      Event e;
      e.time =
          links_.departure(m.from, m.to, now_, wire.size()) + 1 + rand_.below(params_.delay_max);
      e.kind = Event::Kind::deliver;
      e.message = m;
      schedule(std::move(e));
    }
  }

  void input(Node& n, Input in) {
    if (!n.up) return;
    if (n.write_pending) {
      n.inbox.push_back(std::move(in));
      return;
    }
    apply_input(n, std::move(in));
    drive(n);
  }

  void apply_input(Node& n, Input in) {
    Core& c = *n.core;
    switch (in.kind) {
      case Input::Kind::message:
        if (verbose_) {
          log("{} -> {} {} term {} idx {} lt {} commit {} n={} rej {} ctx {}", in.message.from,
              in.message.to, raft::to_string(in.message.type), in.message.term, in.message.index,
              in.message.log_term, in.message.commit, in.message.entries.size(), in.message.reject,
              in.message.context);
        }
        c.step(in.message);
        break;
      case Input::Kind::tick: c.tick(); break;
      case Input::Kind::propose: {
        LogIndex index;
        const auto ec = c.propose(std::move(in.payload), &index);
        if (!ec) {
          log("node {} proposes at {} term {}", n.id, index, c.current_term());
          proposals_.push_back({c.current_term(), index});
        } else if (ec == raft::errc::overloaded) {
          ++stats_.overloaded;
        }
        break;
      }
      case Input::Kind::read:
        if (!c.read_index(in.context)) {
          log("node {} starts read {} (must see {})", n.id, in.context, reads_[in.context]);
        }
        break;
      case Input::Kind::transfer: {
        const auto ec = c.transfer_leader(in.target);
        if (!ec) ++stats_.transfers;
        log("node {} transfers to {}: {}", n.id, in.target, ec.message());
        break;
      }
      case Input::Kind::change: {
        const auto ec = c.change_membership(in.change);
        if (!ec) ++stats_.membership_changes;
        log("node {} change {} {}: {}", n.id, static_cast<int>(in.change.type), in.change.node,
            ec.message());
        break;
      }
      case Input::Kind::compact:
        if (n.applied > c.log().snapshot_index() && n.applied == c.log().applied_index()) {
          auto data = std::make_shared<const Bytes>(n.pool->snapshot());
          raft::Snapshot snap{raft::SnapshotMeta{}, data};
          const LogIndex at = n.applied;
          const Term term = *c.log().term(at);
          if (!c.compact(at, data)) {
            snap = *c.snapshot();
            if (snap.meta.index != at || snap.meta.term != term) fail("compact: wrong snapshot");
            // The node writes its snapshot durably, then drops the covered WAL entries.
            if (n.disk.save_snapshot(snap) || n.disk.sync()) fail("compact: cannot save");
            log("node {} compacts at {}", n.id, at);
            ++stats_.compactions;
          }
        }
        break;
    }
    check_node(n);
  }

  void drive(Node& n) {
    while (n.up && !n.write_pending && failure_.empty()) {
      // Group commit: everything that queued during the last write goes into one Ready.
      while (!n.inbox.empty() && n.up && failure_.empty()) {
        Input in = std::move(n.inbox.front());
        n.inbox.pop_front();
        apply_input(n, std::move(in));
      }
      if (!n.up || !failure_.empty() || !n.core->has_ready()) return;
      Ready rd = n.core->ready();
      check_ready(n, rd);
      for (const Message& m : rd.messages) send(m);
      n.pending = std::move(rd);
      n.write_pending = true;
      Event e;
      e.time = now_ + rand_.below(params_.disk_delay_max + 1);
      e.kind = Event::Kind::write_done;
      e.node = n.id;
      e.generation = n.write_generation;
      schedule(std::move(e));
    }
  }

  void write_done(Node& n) {
    Ready rd = std::move(n.pending);
    n.write_pending = false;
    persist(n, rd);
    for (const Message& m : rd.messages_after_persist) send(m);
    if (rd.snapshot) {
      const auto ec = n.pool->restore(*rd.snapshot->data);
      if (ec) fail(fmt::format("node {} cannot restore a received snapshot", n.id));
      n.applied = rd.snapshot->meta.index;
      check_digest(n);
      log("node {} installed snapshot at {}", n.id, n.applied);
      ++stats_.snapshots_installed;
    }
    for (const Entry& e : rd.committed_entries) apply_entry(n, e);
    if (!rd.committed_entries.empty()) check_digest(n);
    for (const raft::ReadState& rs : rd.read_states) check_read(n, rs);
    n.core->advance(rd);
    check_node(n);
    drive(n);
  }

  void persist(Node& n, const Ready& rd) {
    if (const auto ec = raft::persist(n.disk, rd)) {
      fail(fmt::format("node {}: persist: {}", n.id, ec.message()));
    }
  }

  void apply_entry(Node& n, const Entry& e) {
    if (e.index != n.applied.next()) {
      fail(fmt::format("node {} applies {} after {}", n.id, e.index, n.applied));
      return;
    }
    // State Machine Safety: every node applies the same entry at an index.
    record_committed(n, e.index, e.term, hash_bytes(e.data, e.type));
    if (e.type == EntryType::normal) {
      pool::Command cmd;
      if (pool::decode(e.data, cmd)) {
        fail("undecodable command");
        return;
      }
      n.pool->apply(e.index.value(), cmd);
    }
    n.applied = e.index;
  }

  void check_digest(Node& n) {
    const auto digest = n.pool->digest();
    auto [it, inserted] = digests_.emplace(n.applied.value(), digest);
    if (!inserted && it->second != digest) {
      fail(fmt::format("node {}: pool digest differs at applied index {}", n.id, n.applied));
    }
  }

  void check_read(Node& n, const raft::ReadState& rs) {
    auto it = reads_.find(rs.context);
    if (it == reads_.end()) {
      fail("unknown read");
      return;
    }
    // Linearizability of ReadIndex: the read index covers every write committed (anywhere)
    // before the read began.
    if (rs.index < it->second) {
      fail(fmt::format("node {}: read {} got index {} but {} was committed before it began", n.id,
                       rs.context, rs.index, it->second));
    }
    log("node {}: read {} at index {}", n.id, rs.context, rs.index);
    ++reads_answered_;
  }

  // --- checkers ----------------------------------------------------------------------------

  void record_committed(Node& n, LogIndex i, Term t, std::uint64_t h) {
    auto [it, inserted] = committed_.emplace(i.value(), std::pair{t, h});
    if (!inserted && (it->second.first != t || it->second.second != h)) {
      fail(fmt::format("node {}: committed entry {} differs (term {} vs {})", n.id, i, t,
                       it->second.first));
    }
    if (i > max_commit_) max_commit_ = i;
  }

  void check_ready(Node& n, const Ready& rd) {
    // Log Matching: an entry with a given (index, term) has the same contents and the same
    // predecessor term wherever it appears; by induction the logs are identical up to it.
    const Core& c = *n.core;
    for (const Entry& e : rd.entries) {
      const std::optional<Term> prev = c.log().term(e.index.prev());
      const std::uint64_t h = hash_bytes(e.data, e.type);
      const std::uint64_t key = e.index.value() * 1000003ull ^ e.term.value();
      auto [it, inserted] = appended_.emplace(key, AppendedEntry{e.index, e.term, h, prev});
      if (!inserted) {
        const AppendedEntry& a = it->second;
        if (a.index != e.index || a.term != e.term) continue;  // key collision: skip
        if (a.hash != h) fail(fmt::format("log matching: entry {}/{} differs", e.index, e.term));
        if (a.prev && prev && *a.prev != *prev) {
          fail(fmt::format("log matching: entry {}/{} follows different terms", e.index, e.term));
        }
      }
    }
  }

  // The contract's promise behind every acknowledged write: an entry the leader counts as
  // committed is on stable storage (our simulated disk, not a core's memory) on a majority of
  // the voters.
  void check_durable(Node& leader, LogIndex index) {
    const Core& c = *leader.core;
    const Term term = *c.log().term(index);
    std::size_t durable = 0;
    for (NodeId id : c.membership().voters) {
      const raft::MemoryStorage::State& d = node(id).disk.durable();
      if (d.snapshot && d.snapshot->meta.index >= index) {
        ++durable;
        continue;
      }
      if (d.entries.empty() || d.entries.front().index > index || d.entries.back().index < index) {
        continue;
      }
      if (d.entries[index - d.entries.front().index].term == term) ++durable;
    }
    if (durable < c.membership().quorum()) {
      fail(fmt::format("leader {} commits {} but only {} voters have it on disk", leader.id, index,
                       durable));
    }
  }

  struct AppendedEntry {
    LogIndex index;
    Term term;
    std::uint64_t hash;
    std::optional<Term> prev;
  };

  void check_node(Node& n) {
    if (!n.up || !failure_.empty()) return;
    Core& c = *n.core;
    c.check_invariants();
    // Newly committed entries join the committed record (State Machine Safety).
    const raft::Log& lg = c.log();
    if (lg.commit_index() > n.commit_seen) {
      if (c.role() == Role::leader) check_durable(n, lg.commit_index());
      for (LogIndex i = std::max(n.commit_seen.next(), lg.first_index()); i <= lg.commit_index();
           ++i) {
        const Entry& e = lg.at(i);
        record_committed(n, i, e.term, hash_bytes(e.data, e.type));
      }
      n.commit_seen = lg.commit_index();
    }
    if (lg.commit_index() > max_commit_) max_commit_ = lg.commit_index();
    // Election Safety: at most one leader per term.
    if (c.role() == Role::leader) {
      auto [it, inserted] = leaders_.emplace(c.current_term().value(), n.id);
      if (!inserted && it->second != n.id) {
        fail(fmt::format("two leaders in term {}: {} and {}", c.current_term(), it->second, n.id));
      }
      if (n.last_role != Role::leader || n.last_term != c.current_term()) {
        // Leader Completeness: a new leader holds every committed entry.
        log("node {} becomes leader of term {} (last {})", n.id, c.current_term(), lg.last_index());
        ++stats_.elections;
        if (!quiet_ && rand_.chance(params_.isolate_new_leader_per_mille) && rand_.chance(400)) {
          group_[n.id.value()] = 100 + static_cast<int>(n.id.value());
          log("nemesis: isolate new leader {} at once", n.id);
        } else if (!quiet_ && rand_.chance(params_.isolate_new_leader_per_mille)) {
          // Nemesis: cut a fresh leader off before (or while) it replicates its no-op, so
          // that competing uncommitted suffixes from several terms pile up (figure 8).
          Event e;
          e.time = now_ + rand_.below(3 * params_.delay_max);
          e.kind = Event::Kind::isolate;
          e.node = n.id;
          schedule(std::move(e));
        }
        for (const auto& [index, ch] : committed_) {
          const LogIndex i(index);
          if (i <= lg.snapshot_index()) continue;
          if (i > lg.last_index() || *lg.term(i) != ch.first) {
            fail(fmt::format("leader {} of term {} lacks committed entry {}", n.id,
                             c.current_term(), i));
            break;
          }
        }
      }
    }
    n.last_role = c.role();
    n.last_term = c.current_term();
  }

  // --- the workload and the faults ---------------------------------------------------------

  Bytes make_command() {
    pool::Command cmd;
    cmd.timestamp_ms = 1'000'000 + now_;
    const std::uint64_t k = rand_.below(100);
    if (k < 5) {
      pool::Bootstrap b;
      b.items.push_back({"gold", 50, 20});
      b.items.push_back({"mud", -1, 70});
      cmd.op = b;
    } else if (k < 15) {
      pool::UpsertItem u;
      u.item.item_id = fmt::format("item{}", rand_.below(5));
      u.item.quantity = static_cast<std::int64_t>(rand_.below(20));
      u.item.probability = rand_.below(50);
      cmd.op = u;
    } else {
      pool::Draw d;
      d.count = 1 + static_cast<std::uint32_t>(rand_.below(3));
      d.seed = rand_.next();
      cmd.op = d;
    }
    if (rand_.chance(200)) {
      cmd.idempotency_key = fmt::format("key-{}", rand_.below(20));
      cmd.body_hash[0] = static_cast<std::uint8_t>(rand_.below(2));
    }
    return pool::encode(cmd);
  }

  // Any node that believes it leads (there may be stale leaders in older terms).
  Node* some_leader() {
    std::vector<Node*> leaders;
    for (Node& n : nodes_) {
      if (n.up && n.core->role() == Role::leader) leaders.push_back(&n);
    }
    return leaders.empty() ? nullptr : leaders[rand_.below(leaders.size())];
  }

  Node* leader_node() {
    Node* best = nullptr;
    for (Node& n : nodes_) {
      if (!n.up || n.core->role() != Role::leader) continue;
      if (best == nullptr || n.core->current_term() > best->core->current_term()) best = &n;
    }
    return best;
  }

  Node& random_up_node() {
    for (;;) {
      Node& n = nodes_[rand_.below(nodes_.size())];
      if (n.up) return n;
    }
  }

  bool any_up() const {
    return std::any_of(nodes_.begin(), nodes_.end(), [](const Node& n) { return n.up; });
  }

  void propose_somewhere() {
    if (!any_up()) return;
    Node* l = some_leader();
    Node& n = rand_.chance(800) && l != nullptr ? *l : random_up_node();
    const std::size_t batch = rand_.chance(200) ? 1 + rand_.below(8) : 1;
    for (std::size_t i = 0; i < batch; ++i) {
      input(n, Input{Input::Kind::propose, {}, make_command(), 0, {}, {}});
    }
  }

  void chaos_tick() {
    Rand& r = rand_;
    // Crashes and restarts.
    if (r.chance(params_.leader_crash_per_mille)) {
      if (Node* l = some_leader()) crash(*l);
    }
    // A leader caught with a write in flight loses it: the case the §10.2.1 rule is about.
    if (Node* l = some_leader();
        l != nullptr && l->write_pending && r.chance(params_.leader_crash_per_mille * 5)) {
      crash(*l);
    }
    // Correlated failure: several nodes (say, a rack) lose power at once, each losing the
    // write it had in flight.
    if (r.chance(params_.crash_per_mille / 2)) {
      for (Node& n : nodes_) {
        if (n.up && (n.write_pending || r.chance(500))) crash(n);
      }
    }
    for (Node& n : nodes_) {
      if (n.up && r.chance(params_.crash_per_mille)) {
        crash(n);
      } else if (!n.up && r.chance(150)) {
        start(n);
      }
    }
    // Partitions: split into two random groups, or heal.
    if (r.chance(params_.partition_per_mille)) {
      Node* l = leader_node();
      if (l != nullptr && r.chance(500)) {
        // Cut the leader off, alone or with one follower: it keeps a stale term and appends
        // entries it cannot commit (the material of figure 8).
        std::fill(std::begin(group_), std::end(group_), 0);
        group_[l->id.value()] = 1;
        if (r.chance(500)) group_[1 + r.below(nodes_.size())] = 1;
        log("partition: isolate leader {}", l->id);
      } else {
        for (std::size_t i = 1; i <= nodes_.size(); ++i) group_[i] = static_cast<int>(r.below(2));
        log("partition");
      }
    } else if (r.chance(60)) {
      std::fill(std::begin(group_), std::end(group_), 0);
    }
    if (r.chance(params_.propose_per_mille)) propose_somewhere();
    if (r.chance(params_.read_per_mille) && any_up()) {
      Node& n = random_up_node();
      const std::uint64_t ctx = next_read_++;
      reads_[ctx] = max_commit_;
      input(n, Input{Input::Kind::read, {}, {}, ctx, {}, {}});
    }
    if (r.chance(params_.compact_per_mille) && any_up()) {
      input(random_up_node(), Input{Input::Kind::compact, {}, {}, 0, {}, {}});
    }
    if (r.chance(params_.transfer_per_mille)) {
      if (Node* l = leader_node()) {
        const auto& voters = l->core->membership().voters;
        if (!voters.empty()) {
          Input in{Input::Kind::transfer, {}, {}, 0, voters[r.below(voters.size())], {}};
          input(*l, std::move(in));
        }
      }
    }
    if (r.chance(params_.change_per_mille)) {
      if (Node* l = leader_node()) change_membership(*l);
    }
  }

  void change_membership(Node& l) {
    const raft::Membership& m = l.core->membership();
    raft::MembershipChange ch;
    if (!m.learners.empty()) {
      ch.type = rand_.chance(800) ? raft::ChangeType::promote : raft::ChangeType::remove;
      ch.node = m.learners[rand_.below(m.learners.size())];
    } else if (m.voters.size() > 3 && rand_.chance(700)) {
      ch.type = raft::ChangeType::remove;
      ch.node = m.voters[rand_.below(m.voters.size())];
    } else {
      std::vector<NodeId> outside;
      for (const Node& n : nodes_) {
        if (!m.contains(n.id)) outside.push_back(n.id);
      }
      if (outside.empty()) return;
      ch.type = raft::ChangeType::add_learner;
      ch.node = outside[rand_.below(outside.size())];
    }
    input(l, Input{Input::Kind::change, {}, {}, 0, {}, ch});
  }

  // --- liveness ----------------------------------------------------------------------------

  void quiesce() {
    log("faults stop");
    quiet_ = true;
    std::fill(std::begin(group_), std::end(group_), 0);
    params_.drop_per_mille = 0;
    params_.dup_per_mille = 0;
    for (Node& n : nodes_) {
      if (!n.up) start(n);
    }
  }

  std::string liveness() {
    // Within the bound, a leader must emerge and a fresh proposal must be applied by every
    // member of the final configuration.
    std::optional<std::pair<Term, LogIndex>> marker;
    std::size_t proposals_before = proposals_.size();
    for (std::size_t t = 0; t < params_.liveness_ticks && failure_.empty(); ++t) {
      run_tick();
      if (!failure_.empty()) break;
      Node* l = leader_node();
      if (l == nullptr) continue;
      // An operator shuts down servers removed from the configuration: without check-quorum a
      // removed server that never learned of its removal would disrupt the cluster forever
      // (thesis §4.2.3).
      for (Node& n : nodes_) {
        if (n.up && !l->core->membership().contains(n.id) &&
            l->core->log().commit_index() >= l->core->log().last_index()) {
          crash(n);
        } else if (!n.up && l->core->membership().contains(n.id)) {
          // And starts the members again: a change proposed before the faults stopped may add
          // back a server it had shut down.
          start(n);
        }
      }
      if (marker && *l->core->log().term(std::min(marker->second, l->core->log().last_index())) !=
                        marker->first) {
        marker.reset();  // the marker was lost with a leader change: propose again
      }
      if (!marker) {
        input(*l, Input{Input::Kind::propose, {}, make_command(), 0, {}, {}});
        if (proposals_.size() > proposals_before) {
          marker = proposals_.back();
          proposals_before = proposals_.size();
        }
        continue;
      }
      const raft::Membership& m = l->core->membership();
      bool done = true;
      for (Node& n : nodes_) {
        if (!m.contains(n.id)) continue;
        if (n.applied < marker->second) done = false;
      }
      if (done) {
        liveness_ticks_used_ = t;
        return failure_;
      }
    }
    if (!failure_.empty()) return failure_;
    return fmt::format(
        "liveness: no proposal committed on every member within {} ticks after "
        "faults stopped",
        params_.liveness_ticks);
  }

 public:
  struct Stats {
    std::size_t elections = 0, crashes = 0, compactions = 0, snapshots_installed = 0, transfers = 0,
                membership_changes = 0, overloaded = 0;
  };
  const Stats& stats() const { return stats_; }
  std::size_t reads_answered() const { return reads_answered_; }
  std::size_t liveness_ticks_used() const { return liveness_ticks_used_; }

 private:
  std::uint64_t seed_;
  bool verbose_;
  Rand rand_;
  Links links_;
  Params params_;
  raft::Membership initial_;
  std::vector<Node> nodes_;
  int group_[16] = {};
  bool quiet_ = false;  // faults have stopped
  std::uint64_t now_ = 0;
  std::uint64_t next_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::string failure_;

  std::unordered_map<std::uint64_t, std::pair<Term, std::uint64_t>> committed_;
  std::unordered_map<std::uint64_t, AppendedEntry> appended_;
  std::unordered_map<std::uint64_t, pool::Sha256> digests_;
  std::unordered_map<std::uint64_t, NodeId> leaders_;
  std::unordered_map<std::uint64_t, LogIndex> reads_;  // read id -> commit index when it began
  std::uint64_t next_read_ = 1;
  std::vector<std::pair<Term, LogIndex>> proposals_;
  LogIndex max_commit_;
  std::size_t reads_answered_ = 0;
  std::size_t liveness_ticks_used_ = 0;
  Stats stats_;
};

// --- scenario: a large snapshot over a slow link ----------------------------------------------

// A leader sends a snapshot of `snapshot_bytes` to a follower that fell behind its log, over
// links of `link_bytes_per_ms`, with the node's timing (a 50 ms tick, heartbeat every tick,
// election timeout 10 ticks) and 1 MiB chunks. Three voters; node 3 is down while node 1 commits
// a few entries and compacts to the snapshot, then comes back with an empty disk. The transfer
// time runs from the leader's first chunk to node 3 having the snapshot durable; the ideal is
// snapshot_bytes / bandwidth (the chunks alone, at full link speed).
class SnapshotTransfer {
 public:
  struct Result {
    bool installed = false;
    std::uint64_t ms = 0;
    double ideal_ms = 0;
    std::uint64_t chunks_sent = 0;
    std::uint64_t chunk_bytes_sent = 0;
    std::uint64_t bytes_acknowledged = 0;  // the follower's receive position at the end
  };

  static constexpr std::uint64_t tick_ms = 50;        // the node's default heartbeat_ms
  static constexpr std::uint64_t propagation_ms = 1;  // one way, after serialisation
  static constexpr std::uint64_t disk_ms = 1;         // one Ready write

  SnapshotTransfer(std::uint64_t snapshot_bytes, std::uint64_t link_bytes_per_ms, bool verbose)
      : snapshot_bytes_(snapshot_bytes), links_(link_bytes_per_ms), verbose_(verbose) {}

  // Gives up after `ratio_max` times the ideal time.
  Result run(double ratio_max) {
    Result r;
    r.ideal_ms =
        static_cast<double>(snapshot_bytes_) / static_cast<double>(links_.bytes_per_unit());
    for (std::uint64_t id = 1; id <= 3; ++id) nodes_[id].id = NodeId(id);
    start(1);
    start(2);
    // Elect node 1 (it alone ticks until it leads).
    while (nodes_[1].core->role() != Role::leader && now_ < 60'000) {
      input(1, [](Core& c) { c.tick(); });
      run_until(now_ + tick_ms);
    }
    RPOOL_ASSERT(nodes_[1].core->role() == Role::leader);
    for (int i = 0; i < 3; ++i) {
      input(1, [](Core& c) { RPOOL_ASSERT(!c.propose(Bytes{1, 2, 3})); });
    }
    while (nodes_[1].core->log().applied_index() < nodes_[1].core->log().last_index()) {
      tick_all();
    }
    auto image = std::make_shared<Bytes>(snapshot_bytes_);
    for (std::size_t i = 0; i < image->size(); ++i)
      (*image)[i] = static_cast<std::uint8_t>(i * 131);
    input(1, [&](Core& c) {
      const LogIndex at = c.log().applied_index();
      RPOOL_ASSERT(!c.compact(at, image));
      Node& n = nodes_[1];
      RPOOL_ASSERT(!n.disk.save_snapshot(*c.snapshot()));
      RPOOL_ASSERT(!n.disk.sync());
    });
    start(3);
    const auto deadline = [&] {
      return first_chunk_ && static_cast<double>(now_ - *first_chunk_) > ratio_max * r.ideal_ms;
    };
    while (!installed_at_ && !deadline() && now_ < 3'600'000) tick_all();
    r.installed = installed_at_.has_value();
    if (first_chunk_) r.ms = (installed_at_ ? *installed_at_ : now_) - *first_chunk_;
    r.chunks_sent = chunks_sent_;
    r.chunk_bytes_sent = chunk_bytes_sent_;
    r.bytes_acknowledged = installed_at_ ? snapshot_bytes_ : acknowledged_;
    return r;
  }

 private:
  struct Node {
    NodeId id;
    std::unique_ptr<Core> core;
    raft::MemoryStorage disk;
    bool write_pending = false;
    Ready pending;
    std::deque<std::function<void(Core&)>> inbox;
  };

  struct Event {
    std::uint64_t time;
    std::uint64_t seq;
    bool write_done;  // else deliver
    Message message;
    NodeId node;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };

  void start(std::uint64_t id) {
    raft::Config c;
    c.id = NodeId(id);
    c.initial_membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
    c.election_ticks = 10;
    c.heartbeat_ticks = 1;
    c.random_seed = id;
    Node& n = nodes_[id];
    n.core = std::make_unique<Core>(c, n.disk.boot());
    drive(n);
  }

  void tick_all() {
    for (auto& [id, n] : nodes_) {
      if (n.core) input(id, [](Core& c) { c.tick(); });
    }
    run_until(now_ + tick_ms);
  }

  void input(std::uint64_t id, std::function<void(Core&)> f) {
    Node& n = nodes_[id];
    if (!n.core) return;
    n.inbox.push_back(std::move(f));
    drive(n);
  }

  void drive(Node& n) {
    while (!n.write_pending) {
      while (!n.inbox.empty()) {
        auto f = std::move(n.inbox.front());
        n.inbox.pop_front();
        f(*n.core);
        n.core->check_invariants();
      }
      if (!n.core->has_ready()) return;
      Ready rd = n.core->ready();
      for (const Message& m : rd.messages) send(m);
      n.pending = std::move(rd);
      n.write_pending = true;
      schedule(Event{now_ + (raft::needs_persist(n.pending) ? disk_ms : 0), 0, true, {}, n.id});
    }
  }

  void write_done(Node& n) {
    Ready rd = std::move(n.pending);
    n.write_pending = false;
    RPOOL_ASSERT(!raft::persist(n.disk, rd));
    if (rd.snapshot && n.id == NodeId(3) && !installed_at_) {
      installed_at_ = now_;
      log("node 3 has the snapshot durable");
    }
    for (const Message& m : rd.messages_after_persist) send(m);
    n.core->advance(rd);
    n.core->check_invariants();
    drive(n);
  }

  void send(const Message& m) {
    if (m.type == raft::MessageType::snapshot_resp && !m.reject) {
      acknowledged_ = std::max(acknowledged_, m.offset);
    }
    Bytes wire;
    raft::encode_message(m, wire);
    if (m.type == raft::MessageType::snapshot) {
      if (!first_chunk_) first_chunk_ = now_;
      ++chunks_sent_;
      chunk_bytes_sent_ += m.data.size();
      log("chunk to {} at offset {} ({} bytes)", m.to, m.offset, m.data.size());
    }
    const std::uint64_t at = links_.departure(m.from, m.to, now_, wire.size()) + propagation_ms;
    schedule(Event{at, 0, false, m, m.to});
  }

  void schedule(Event e) {
    e.seq = next_seq_++;
    events_.push(std::move(e));
  }

  void run_until(std::uint64_t end) {
    while (!events_.empty() && events_.top().time < end) {
      Event e = events_.top();
      events_.pop();
      now_ = e.time;
      Node& n = nodes_[e.node.value()];
      if (!n.core) continue;
      if (e.write_done) {
        write_done(n);
      } else {
        input(e.node.value(), [m = std::move(e.message)](Core& c) { c.step(m); });
      }
    }
    now_ = end;
  }

  template <class... Args>
  void log(fmt::format_string<Args...> f, Args&&... args) {
    if (verbose_) fmt::print("[{:>8}] {}\n", now_, fmt::format(f, std::forward<Args>(args)...));
  }

  std::uint64_t snapshot_bytes_;
  Links links_;
  bool verbose_;
  std::map<std::uint64_t, Node> nodes_;
  std::uint64_t now_ = 0;
  std::uint64_t next_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::optional<std::uint64_t> first_chunk_;
  std::optional<std::uint64_t> installed_at_;
  std::uint64_t chunks_sent_ = 0;
  std::uint64_t chunk_bytes_sent_ = 0;
  std::uint64_t acknowledged_ = 0;
};

int snapshot_transfer(std::uint64_t mib, std::uint64_t link_bytes_per_ms, double ratio_max,
                      double give_up_ratio, bool verbose) {
  const std::uint64_t bytes = mib << 20;
  SnapshotTransfer scenario(bytes, link_bytes_per_ms, verbose);
  // Runs on past the limit (to give_up_ratio) so that a slow transfer shows how slow it is.
  const auto r = scenario.run(std::max(ratio_max, give_up_ratio));
  const double ratio = static_cast<double>(r.ms) / r.ideal_ms;
  std::printf(
      "snapshot transfer: %llu MiB over %llu bytes/ms: %s after %.2f s, ideal %.2f s "
      "(%.2fx, limit %.2fx); %.1f MiB received; %llu chunks sent, %.1f MiB of chunk "
      "data\n",
      static_cast<unsigned long long>(mib), static_cast<unsigned long long>(link_bytes_per_ms),
      r.installed ? "installed" : "NOT installed", static_cast<double>(r.ms) / 1000.0,
      r.ideal_ms / 1000.0, ratio, ratio_max,
      static_cast<double>(r.bytes_acknowledged) / static_cast<double>(1 << 20),
      static_cast<unsigned long long>(r.chunks_sent),
      static_cast<double>(r.chunk_bytes_sent) / static_cast<double>(1 << 20));
  return r.installed && ratio <= ratio_max ? 0 : 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: sim --seeds N [--start S] [--link-bytes-per-ms B] | --seed S [--verbose]\n"
               "       sim --snapshot-transfer MIB --link-bytes-per-ms B [--ratio-max R]\n"
               "           [--give-up-ratio G] [--verbose]\n");
  return 2;
}

}  // namespace
}  // namespace rpool::sim

int main(int argc, char** argv) {
  using namespace rpool::sim;
  std::uint64_t start = 1;
  std::uint64_t count = 0;
  bool single = false;
  bool verbose = false;
  std::uint64_t link_bytes_per_ms = 0;
  std::uint64_t transfer_mib = 0;
  double ratio_max = 1.3;
  double give_up_ratio = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::uint64_t {
      if (i + 1 >= argc) std::exit(usage());
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (a == "--seeds") {
      count = value();
    } else if (a == "--start") {
      start = value();
    } else if (a == "--seed") {
      start = value();
      count = 1;
      single = true;
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--link-bytes-per-ms") {
      link_bytes_per_ms = value();
    } else if (a == "--snapshot-transfer") {
      transfer_mib = value();
    } else if (a == "--ratio-max") {
      if (i + 1 >= argc) return usage();
      ratio_max = std::strtod(argv[++i], nullptr);
    } else if (a == "--give-up-ratio") {
      if (i + 1 >= argc) return usage();
      give_up_ratio = std::strtod(argv[++i], nullptr);
    } else {
      return usage();
    }
  }
  std::signal(SIGABRT, on_abort);
  if (transfer_mib != 0) {
    if (link_bytes_per_ms == 0) return usage();
    return snapshot_transfer(transfer_mib, link_bytes_per_ms, ratio_max, give_up_ratio, verbose);
  }
  if (count == 0) return usage();

  std::vector<std::uint64_t> seeds;
  if (!single) {
    for (std::uint64_t s : regression_seeds) seeds.push_back(s);
  }
  for (std::uint64_t s = start; s < start + count; ++s) seeds.push_back(s);

  std::size_t failed = 0;
  std::uint64_t entries = 0;
  std::size_t reads = 0;
  std::size_t liveness_max = 0;
  Simulation::Stats total;
  for (std::uint64_t seed : seeds) {
    g_current_seed = seed;
    Simulation sim(seed, verbose, link_bytes_per_ms);
    const std::string failure = sim.run();
    entries += sim.committed_entries();
    reads += sim.reads_answered();
    liveness_max = std::max(liveness_max, sim.liveness_ticks_used());
    total.elections += sim.stats().elections;
    total.crashes += sim.stats().crashes;
    total.compactions += sim.stats().compactions;
    total.snapshots_installed += sim.stats().snapshots_installed;
    total.transfers += sim.stats().transfers;
    total.membership_changes += sim.stats().membership_changes;
    total.overloaded += sim.stats().overloaded;
    if (!failure.empty()) {
      ++failed;
      std::printf("seed %llu FAILED: %s\n", static_cast<unsigned long long>(seed), failure.c_str());
      std::fflush(stdout);
    }
  }
  std::printf(
      "sim: %zu seeds, %zu failed; %llu entries committed, %zu reads checked, "
      "liveness within %zu ticks\n",
      seeds.size(), failed, static_cast<unsigned long long>(entries), reads, liveness_max);
  std::printf(
      "sim: %zu leaders elected, %zu crashes, %zu compactions, %zu snapshots installed, "
      "%zu leader transfers, %zu membership changes, %zu proposals refused (overloaded)\n",
      total.elections, total.crashes, total.compactions, total.snapshots_installed, total.transfers,
      total.membership_changes, total.overloaded);
  return failed == 0 ? 0 : 1;
}
