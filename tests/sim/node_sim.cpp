// Whole-node deterministic simulation (in the manner of TigerBeetle's VOPR and FoundationDB's
// simulator). N real node::Replicas, the same code as rpoold's, run in one thread on:
//   - a simulated network: loss, duplication, reordering (random latency), symmetric and one-way
//     partitions, and a bandwidth limit per link, so large messages cost time;
//   - a simulated disk per node: wal::Log over wal::SimFileSystem, with crashes that lose unsynced
//     writes (or tear them), a full disk (ENOSPC) for a while, and slow writes;
//   - a simulated clock per node, offset and running at its own rate.
// Simulated clients work on a few pools (`pool_ids`): they create and delete pools, draw (with
// Idempotency-Keys, retried on any node until answered), read (linearizable and stale) and update
// items in them, take snapshots and transfer leadership. Every replica's invariants are checked
// after every event. After each run the history is checked, pool by pool:
//   - every entry applied on any node left the same digest of every pool at its index (State
//     Machine Safety at the pools), and every acknowledged write is the entry at the index it was
//     answered with, on the same pool, with the same draws: nothing acknowledged is lost;
//   - each pool's request_ids are exactly 1..last, none twice (across its deletion and creation
//     again), and no key is applied twice in a pool;
//   - no limited item of a pool is drawn below zero;
//   - every read of a pool shows exactly that pool's state at its index (or its absence), and a
//     linearizable read is never older than a write acknowledged before it began;
//   - once healed, every node converges on one applied index and the same digest of every pool,
//     and no pool ends below a request_id acknowledged in it.
// Every run replays from its seed: `node-sim --seed N -v` prints one line per fault.
//
// Planted bugs (node/planted_bugs.h): `--planted NAME` runs seeds until one fails a check, and
// exits 0 only if one does (the bug is caught).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "api/api.h"
#include "base/assert.h"
#include "base/splitmix64.h"
#include "node/replica.h"
#include "node/storage.h"
#include "wal/errc.h"
#include "wal/recovery.h"
#include "wal/sim_file.h"

namespace rpool::sim {
namespace {

using node::Outcome;
using node::Replica;
using Time = std::int64_t;  // microseconds of simulated time
constexpr Time ms = 1000;

// The project's SplitMix64 with the draws a simulation needs.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  std::uint64_t next() { return gen_.next(); }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  Time between(Time lo, Time hi) {
    return lo + static_cast<Time>(below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  SplitMix64 gen_;
};

struct Event {
  Time at;
  std::uint64_t seq;
  std::function<void()> fn;
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

class World {
 public:
  explicit World(std::uint64_t seed) : rng(seed) {}
  Time now = 0;
  Rng rng;
  void at(Time t, std::function<void()> fn) {
    queue_.push(Event{std::max(t, now), seq_++, std::move(fn)});
  }
  // Runs events until `until`; false when a check failed.
  void run_until(Time until, const std::function<bool()>& failed) {
    while (!queue_.empty() && queue_.top().at <= until && !failed()) {
      Event e = queue_.top();
      queue_.pop();
      now = e.at;
      e.fn();
      ++events;
    }
    if (now < until) now = until;
  }
  std::uint64_t events = 0;

 private:
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::uint64_t seq_ = 0;
};

struct Node;

struct Params {
  int nodes = 3;
  double loss = 0;
  double duplicate = 0;
  double straggle = 0.01;  // messages delayed far beyond the usual latency (reordering)
  Time latency_min = 100, latency_max = 2 * ms;
  double bandwidth_bytes_per_us = 100;  // 100 MB/s
  Time disk_min = 50, disk_max = 1 * ms;
  Time run = 4000 * ms;      // faults and clients
  Time quiesce = 6000 * ms;  // healed, clients finish, removed nodes rejoin (a lost snapshot chunk
                             // is resent after 2 s)
  int clients = 4;
  // false (--single-pool): the clients' workload from before pools, drawing the same random
  // numbers, so that a seed kept as a reproduction from then replays the same run.
  bool pools = true;
};

// The pools the clients work on. "default" always exists; the others come and go.
const std::vector<std::string> pool_ids = {"default", "event", "region-eu", "daily"};

// The digest of every live pool, by pool_id.
using PoolDigests = std::map<std::string, pool::Sha256, std::less<>>;
PoolDigests pool_digests(const pool::StateMachine& state) {
  PoolDigests digests;
  for (const pool::PoolSummary& s : state.pools()) digests.emplace(s.pool_id, s.digest);
  return digests;
}
// One pool's digest, or nullopt when the pool does not exist.
std::optional<pool::Sha256> pool_digest(const pool::StateMachine& state, std::string_view id) {
  if (const pool::Pool* p = state.pool(id)) return p->digest();
  return std::nullopt;
}

struct Ack {
  std::string key;
  std::string pool_id;
  LogIndex index;
  std::vector<pool::DrawOutcome> draws;
  Time invoked, completed;
};
struct ReadRecord {
  Time invoked, completed;
  LogIndex index;
  std::string pool_id;
  std::optional<pool::Sha256> digest;  // nullopt: the pool did not exist
  bool stale;
  NodeId node;
};
struct AppliedRecord {
  Term term;
  PoolDigests digests;  // every live pool as the entry left it
  std::optional<pool::Command> command;
  std::optional<pool::Result> result;
  NodeId node;
};

class Cluster;

class SimEnv final : public node::Env {
 public:
  SimEnv(Cluster& c, Node& n);
  node::Clock::time_point now() override;
  std::uint64_t wall_clock_ms() override;
  std::uint64_t random_u64() override;
  void post(std::function<void()> fn) override;
  void after(std::chrono::milliseconds delay, std::function<void()> fn) override;
  void background(std::function<void()> work, std::function<void()> done) override;
  std::function<void()> guard(std::function<void()> fn);

 private:
  Cluster& c_;
  Node& n_;
  std::uint64_t epoch_;
};

class SimTransport final : public node::MessageTransport {
 public:
  SimTransport(Cluster& c, NodeId self) : c_(c), self_(self) {}
  void send(raft::Message&& m) override;
  void set_peer(NodeId, const node::Endpoint&) override {}
  void remove_peer(NodeId) override {}

 private:
  Cluster& c_;
  NodeId self_;
};

class SimStorage final : public node::Storage {
 public:
  SimStorage(Cluster& c, Node& n, SimEnv& env, std::unique_ptr<node::LogStore> store)
      : c_(c), n_(n), env_(env), store_(std::move(store)) {}
  void write(std::shared_ptr<const node::PersistJob> job, bool reopen,
             std::function<void(node::StorageResult)> done) override {
    run<node::StorageResult>([this, job, reopen] { return store_->write(*job, reopen); },
                             std::move(done));
  }
  // As ThreadStorage does it: the file beside the log's writes (SimEnv::background, so at a random
  // time; a crash before then loses it), then the log keeps it and compacts.
  void save_snapshot(std::shared_ptr<const wal::SnapshotFile> file, LogIndex compact_to,
                     std::function<void(node::SnapshotResult)> done) override {
    auto written = std::make_shared<node::SnapshotResult>();
    env_.background(
        [this, file, written] {
          *written =
              node::LogStore::write_snapshot_file(store_->file_system(), store_->dir(), *file);
        },
        [this, file, compact_to, written, done = std::move(done)] {
          if (written->ec) {
            done(*written);
            return;
          }
          run<node::SnapshotResult>(
              [this, file, compact_to] { return store_->keep_snapshot(*file, compact_to); }, done);
        });
  }
  void reopen(std::function<void(node::StorageResult)> done) override {
    run<node::StorageResult>([this] { return store_->reopen(); }, std::move(done));
  }
  void save_file(std::string name, Bytes content,
                 std::function<void(std::error_code, std::string)> done) override {
    run<node::StorageResult>(
        [this, name, content] {
          node::StorageResult r;
          r.ec = store_->save_file(name, content, r.detail);
          return r;
        },
        [done](node::StorageResult r) { done(r.ec, r.detail); });
  }
  void close(std::function<void()> done) override {
    run<int>(
        [this] {
          store_->sync();
          return 0;
        },
        [done](int) { done(); });
  }

 private:
  // The disk works through its jobs in order, each taking a random time; a job runs (touches the
  // simulated file system) when it finishes, so a crash before then loses it whole.
  template <typename R>
  void run(std::function<R()> work, std::function<void(R)> done);

  Cluster& c_;
  Node& n_;
  SimEnv& env_;
  std::unique_ptr<node::LogStore> store_;
  Time busy_until_ = 0;
};

struct Node {
  NodeId id;
  std::unique_ptr<wal::SimFileSystem> fs;  // survives crashes, as a disk does
  std::uint64_t epoch = 0;                 // bumped by a crash: older events are dropped
  bool up = false;
  bool disk_full = false;
  bool io_error_next =
      false;             // the next write or sync fails with EIO (the node stops, as rpoold does)
  bool joining = false;  // started empty with --join, to be added back as a member
  Time skew = 0;         // clock offset
  double rate = 1.0;     // clock rate (timers run this much slower or faster)
  std::unique_ptr<Rng> rng;
  node::Logger logger;
  std::unique_ptr<SimEnv> env;
  std::unique_ptr<SimTransport> transport;
  std::unique_ptr<SimStorage> storage;
  std::unique_ptr<Replica> replica;
};

class Cluster {
 public:
  Cluster(std::uint64_t seed, Params p, bool verbose) : world(seed), p_(p), verbose_(verbose) {
    for (int i = 1; i <= p_.nodes; ++i) {
      config_.members.push_back(node::Member{NodeId(static_cast<std::uint64_t>(i)),
                                             {fmt::format("10.0.0.{}", i), 7000},
                                             {fmt::format("10.0.0.{}", i), 8000}});
    }
    config_.catalog = {{"gem", 40, 5}, {"gold", 200, 20}, {"mud", pool::quantity_unlimited, 75}};
    initial_ = config_.catalog;
    config_.raft.heartbeat_ms = 10;
    config_.raft.election_timeout_ms = 100;
    config_.raft.snapshot_entries = 40 + world.rng.below(60);
    config_.wal.segment_bytes = 64 << 10;
    blocked_.assign(static_cast<std::size_t>(p_.nodes + 1),
                    std::vector<bool>(static_cast<std::size_t>(p_.nodes + 1), false));
    link_free_.assign(static_cast<std::size_t>(p_.nodes + 1),
                      std::vector<Time>(static_cast<std::size_t>(p_.nodes + 1), 0));
    for (int i = 1; i <= p_.nodes; ++i) {
      auto n = std::make_unique<Node>();
      n->id = NodeId(static_cast<std::uint64_t>(i));
      n->fs = std::make_unique<wal::SimFileSystem>(world.rng.next());
      n->rng = std::make_unique<Rng>(world.rng.next());
      n->skew = world.rng.between(-5000 * ms, 5000 * ms);
      n->rate = 0.95 + 0.1 * static_cast<double>(world.rng.below(1000)) / 1000.0;
      n->logger = node::Logger(node::Logger::Format::text, static_cast<std::uint64_t>(i));
      n->logger.set_min_level(node::Logger::Level::off);
      Node* raw = n.get();
      n->fs->set_fault_hook(
          [raw](wal::SimFileSystem::Op op, const std::string&) -> std::error_code {
            if (raw->disk_full &&
                (op == wal::SimFileSystem::Op::write || op == wal::SimFileSystem::Op::allocate ||
                 op == wal::SimFileSystem::Op::create)) {
              return std::make_error_code(std::errc::no_space_on_device);
            }
            if (raw->io_error_next &&
                (op == wal::SimFileSystem::Op::write || op == wal::SimFileSystem::Op::sync_data)) {
              raw->io_error_next = false;
              return std::make_error_code(std::errc::io_error);
            }
            return {};
          });
      nodes_.push_back(std::move(n));
    }
  }

  World world;

  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  void fail(std::string why) {
    if (failure_.empty()) failure_ = fmt::format("t={}ms: {}", world.now / ms, why);
  }
  void log(std::string_view line) {
    if (verbose_)
      std::printf("  %8.3f ms  %.*s\n", static_cast<double>(world.now) / ms,
                  static_cast<int>(line.size()), line.data());
  }
  Node& node(NodeId id) { return *nodes_[id.value() - 1]; }
  const Params& params() const { return p_; }

  // --- nodes
  // --------------------------------------------------------------------------------------

  void start(Node& n) {
    RPOOL_ASSERT(!n.up);
    n.env = std::make_unique<SimEnv>(*this, n);
    n.transport = std::make_unique<SimTransport>(*this, n.id);
    node::ReplicaOptions o;
    o.config = config_;
    o.id = n.id;
    o.data_dir = fmt::format("/data/node-{}", n.id.value());
    o.write_timeout = std::chrono::milliseconds(1500);
    o.read_timeout = std::chrono::milliseconds(1500);
    o.change_timeout = std::chrono::milliseconds(3000);
    o.join = n.joining;
    // Blocks of three idempotency keys: snapshots encoded late (SimEnv::background) share
    // blocks the node goes on appending to.
    o.pool.key_block_records = 3;
    wal::Options wo;
    wo.fs = n.fs.get();
    wo.segment_bytes = config_.wal.segment_bytes;
    wo.prepare_in_background = false;  // one thread: determinism
    wo.warn = [this, id = n.id](const std::string& line) {
      log(fmt::format("node {} wal: {}", id.value(), line));
    };
    wo.known_kinds = wal::kinds({1, 2, 3});
    wal::RecoverResult recovered = wal::recover(o.data_dir, wo);
    if (recovered.error) {
      if (n.disk_full) return;  // as rpoold would exit 1 at start; tried again at the next restart
      return fail(fmt::format("node {} does not recover: {} {}", n.id.value(),
                              recovered.error.message(), recovered.detail));
    }
    wal::Log& wlog = *recovered.state.log;
    if (wlog.segments().empty()) {
      if (const auto ec = wlog.reset(wlog.first_index())) {
        if (n.disk_full) return;  // tried again at the next restart
        return fail(fmt::format("node {} cannot create its log: {}", n.id.value(), ec.message()));
      }
    }
    n.replica = std::make_unique<Replica>(*n.env, *n.transport, n.logger, o);
    n.replica->set_check_invariants(true);
    if (verbose_) n.logger.set_min_level(node::Logger::Level::info);
    std::string error;
    if (!n.replica->recover(wlog, recovered.state.hard_state, std::move(recovered.state.snapshot),
                            error)) {
      if (n.disk_full) return;  // e.g. the cluster id could not be written yet
      return fail(fmt::format("node {} does not recover: {}", n.id.value(), error));
    }
    n.storage = std::make_unique<SimStorage>(
        *this, n, *n.env,
        std::make_unique<node::LogStore>(o.data_dir, wo, std::move(recovered.state.log)));
    Node* raw = &n;
    n.replica->set_apply_observer(
        [this, raw](const raft::Entry& e, const pool::Result* r) { on_applied(*raw, e, r); });
    n.replica->on_fatal([this, raw] {
      log(fmt::format("node {} stops: {}", raw->id.value(), *raw->replica->fatal()));
      // As rpoold would: the process exits 1, and is restarted.
      const NodeId id = raw->id;
      world.at(world.now, [this, raw, id] {
        crash(*raw);
        world.at(world.now + world.rng.between(10 * ms, 300 * ms), [this, id] { restart(id); });
      });
    });
    n.up = true;
    n.replica->start(*n.storage);
  }

  void crash(Node& n) {
    if (!n.up) return;
    ++n.epoch;
    n.up = false;
    n.io_error_next = false;  // meant for the process that just died
    const auto crash_mode = world.rng.chance(0.5) ? wal::SimFileSystem::CrashMode::drop_unsynced
                                                  : wal::SimFileSystem::CrashMode::torn_prefix;
    const std::string dir = fmt::format("/data/node-{}", n.id.value());
    std::vector<std::string> files;
    if (verbose_) {
      (void)n.fs->list(dir, files);
      log(fmt::format("node {} crashes at last index {}; files {}", n.id.value(),
                      n.replica->core().log().last_index().value(), fmt::join(files, ",")));
    }
    n.fs->crash(crash_mode);
    if (verbose_) {
      files.clear();
      (void)n.fs->list(dir, files);
      log(fmt::format("node {} after the crash: files {}", n.id.value(), fmt::join(files, ",")));
    }
    // Closures already queued hold this node's objects by pointer: keep them until they are
    // dropped (their epoch is stale), by parking them.
    graveyard_.push_back(
        {std::move(n.replica), std::move(n.storage), std::move(n.transport), std::move(n.env)});
  }

  // --- the network
  // --------------------------------------------------------------------------------

  // Scenarios: when set and it returns true, the message is taken off the network (the scenario
  // keeps it, to deliver it later with deliver() or never).
  std::function<bool(NodeId from, const raft::Message&)> intercept;
  // Scenarios: when set and it returns true for the node, that node's background work (a snapshot
  // being encoded or written) is parked in held_background instead of running; the scenario runs
  // it later (each is guarded: a crash in between drops it).
  std::function<bool(NodeId)> hold_background;
  std::vector<std::function<void()>> held_background;

  // Hands `m` to its receiver now, as if it had just arrived.
  void deliver(raft::Message m) {
    Node& n = node(m.to);
    if (n.up) n.replica->step(std::move(m));
  }

  void send(NodeId from, raft::Message&& m) {
    if (intercept && intercept(from, m)) return;
    const NodeId to = m.to;
    if (to.value() == 0 || to.value() > static_cast<std::uint64_t>(p_.nodes)) return;
    if (verbose_ &&
        (m.type == raft::MessageType::read_index || m.type == raft::MessageType::read_index_resp)) {
      log(fmt::format("{} -> {}: {} context {} index {} term {}", from.value(), to.value(),
                      raft::to_string(m.type), m.context, m.index.value(), m.term.value()));
    }
    const bool dropped = blocked_[from.value()][to.value()] || world.rng.chance(p_.loss);
    if (verbose_ &&
        (m.type == raft::MessageType::snapshot || m.type == raft::MessageType::snapshot_resp)) {
      log(fmt::format(
          "{} -> {}: {} index {} term {} offset {} bytes {} done {} reject {}{}", from.value(),
          to.value(), raft::to_string(m.type),
          m.type == raft::MessageType::snapshot ? m.snapshot.index.value() : m.index.value(),
          m.term.value(), m.offset, m.data.size(), m.done, m.reject, dropped ? " (lost)" : ""));
    }
    if (dropped) return;
    Bytes wire;
    raft::encode_message(m, wire);
    Time& free = link_free_[from.value()][to.value()];
    const Time start = std::max(world.now, free);
    const Time transmit =
        static_cast<Time>(static_cast<double>(wire.size()) / p_.bandwidth_bytes_per_us);
    free = start + transmit;
    Time arrive = start + transmit + world.rng.between(p_.latency_min, p_.latency_max);
    if (world.rng.chance(p_.straggle))
      arrive += world.rng.between(20 * ms, 300 * ms);  // held up in some queue
    auto message = std::make_shared<raft::Message>(std::move(m));
    const int copies = world.rng.chance(p_.duplicate) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      world.at(arrive + i * world.rng.between(0, 3 * ms), [this, to, message] {
        Node& n = node(to);
        if (!n.up) return;
        raft::Message copy = *message;
        n.replica->step(std::move(copy));
      });
    }
  }

  void heal() {
    for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  }

  // --- faults
  // -------------------------------------------------------------------------------------

  void nemesis() {
    if (world.now >= p_.run) return;
    const int n = p_.nodes;
    const NodeId victim(1 + world.rng.below(static_cast<std::uint64_t>(n)));
    switch (world.rng.below(10)) {
      case 0: {  // isolate one node, both ways
        heal();
        for (int i = 1; i <= n; ++i)
          blocked_[victim.value()][i] = blocked_[i][victim.value()] = true;
        log(fmt::format("partition: node {} isolated", victim.value()));
        break;
      }
      case 1: {  // one-way: the victim hears nobody
        heal();
        for (int i = 1; i <= n; ++i) blocked_[i][victim.value()] = true;
        log(fmt::format("partition: node {} hears nobody", victim.value()));
        break;
      }
      case 2:
        heal();
        log("partition healed");
        break;
      case 3:
      case 4: {  // crash, restart later
        Node& v = node(victim);
        if (!v.up) break;
        log(fmt::format("crash node {}", victim.value()));
        crash(v);
        world.at(world.now + world.rng.between(1 * ms, 400 * ms),
                 [this, victim] { restart(victim); });
        break;
      }
      case 5: {  // the disk fills for a while
        Node& v = node(victim);
        v.disk_full = true;
        log(fmt::format("disk full on node {}", victim.value()));
        world.at(world.now + world.rng.between(50 * ms, 600 * ms), [this, victim] {
          node(victim).disk_full = false;
          log(fmt::format("disk has room again on node {}", victim.value()));
        });
        break;
      }
      case 6: {  // the disk fails a write: the node stops, and is restarted
        Node& v = node(victim);
        if (!v.up) break;
        v.io_error_next = true;
        log(fmt::format("I/O error on node {}'s next write", victim.value()));
        break;
      }
      case 7: remove_and_add_back(victim); break;
      default: break;  // quiet for a while
    }
    world.at(world.now + world.rng.between(50 * ms, 400 * ms), [this] { nemesis(); });
  }

  // The leader of the highest term (a deposed one may not know it yet: an operator asks the
  // real one, and a removal it has not committed must not make us wipe a voter).
  Node* leader() const {
    Node* best = nullptr;
    for (auto& n : nodes_) {
      if (!n->up || n->replica->core().role() != raft::Role::leader) continue;
      if (best == nullptr ||
          n->replica->core().current_term() > best->replica->core().current_term())
        best = n.get();
    }
    return best;
  }

  // Membership: remove a voter through the leader, wipe it, start it empty with --join, and add it
  // back (a learner catching up by snapshot, then a voter), as an operator replaces a node.
  void remove_and_add_back(NodeId victim) {
    Node* l = leader();
    if (l == nullptr || change_busy_ || l->replica->core().membership().voters.size() <= 2) return;
    if (!l->replica->core().membership().is_voter(victim)) return;
    change_busy_ = true;
    const std::uint64_t attempt = ++change_attempt_;
    log(fmt::format("remove node {} (through leader {})", victim.value(), l->id.value()));
    l->replica->remove_member(victim, [this, victim, attempt](const Outcome& o) {
      if (attempt != change_attempt_) return;
      ++change_attempt_;
      change_busy_ = false;
      if (o.ec) return log(fmt::format("removing node {}: {}", victim.value(), o.ec.message()));
      // Not inside the callback: the leader may be removing itself, and is still running.
      world.at(world.now, [this, victim] { wipe_and_rejoin(victim); });
    });
    // No answer (the leader crashed): the change may or may not have happened; give up on it.
    world.at(world.now + 4000 * ms, [this, attempt] {
      if (attempt == change_attempt_) {
        ++change_attempt_;
        change_busy_ = false;
      }
    });
  }

  // The node was removed: wipe it and start it empty with --join, then add it back.
  void wipe_and_rejoin(NodeId victim) {
    Node& v = node(victim);
    crash(v);
    old_disks_.push_back(std::move(v.fs));  // parked replicas still hold files of the old disk
    v.fs = std::make_unique<wal::SimFileSystem>(world.rng.next());
    Node* raw = &v;
    v.fs->set_fault_hook([raw](wal::SimFileSystem::Op op, const std::string&) -> std::error_code {
      if (raw->disk_full && op == wal::SimFileSystem::Op::write)
        return std::make_error_code(std::errc::no_space_on_device);
      return {};
    });
    v.joining = true;
    change_busy_ = true;
    log(fmt::format("node {} removed and wiped; it joins again", victim.value()));
    world.at(world.now + world.rng.between(10 * ms, 300 * ms), [this, victim] {
      restart(victim);
      add_back(victim);
    });
  }

  // Once healed: every node a voter again (a removal whose answer was lost may have committed).
  void repair_membership() {
    if (failed()) return;
    Node* l = leader();
    // Only from a committed membership: a voter removed by an entry not yet committed still
    // counts in every quorum, and wiping it would lose what it acknowledged (seed 56481 did,
    // and two nodes applied different entries at one index).
    if (l != nullptr && !change_busy_ &&
        l->replica->core().config_index() <= l->replica->core().log().commit_index()) {
      const raft::Membership& m = l->replica->core().membership();
      for (auto& n : nodes_) {
        if (m.is_voter(n->id)) continue;
        log(fmt::format("node {} is not a voter after the heal", n->id.value()));
        if (m.is_learner(n->id)) {
          change_busy_ = true;
          add_back(n->id);
        } else {
          wipe_and_rejoin(n->id);
        }
        break;
      }
    }
    world.at(world.now + 200 * ms, [this] { repair_membership(); });
  }

  void add_back(NodeId id) {
    if (failed()) return;
    Node* l = leader();
    const std::uint64_t attempt = ++change_attempt_;
    if (l == nullptr || !node(id).up) {
      world.at(world.now + 50 * ms, [this, id, attempt] {
        if (attempt == change_attempt_) add_back(id);
      });
      return;
    }
    l->replica->add_member(config_.members[id.value() - 1], [this, id, attempt](const Outcome& o) {
      if (attempt != change_attempt_) return;
      if (o.ec) {
        world.at(world.now + 50 * ms, [this, id, attempt] {
          if (attempt == change_attempt_) add_back(id);
        });
        return;
      }
      ++change_attempt_;
      change_busy_ = false;
      node(id).joining = false;
      log(fmt::format("node {} is a voter again", id.value()));
    });
    world.at(world.now + 4000 * ms, [this, id, attempt] {
      if (attempt == change_attempt_) add_back(id);
    });
  }

  void restart(NodeId id) {
    Node& n = node(id);
    if (n.up) return;
    log(fmt::format("restart node {}", id.value()));
    start(n);
    if (!n.up && !failed()) world.at(world.now + 100 * ms, [this, id] { restart(id); });
  }

  // --- the checks as things happen
  // ----------------------------------------------------------------

  void on_applied(Node& n, const raft::Entry& e, const pool::Result* result) {
    AppliedRecord rec{e.term, pool_digests(n.replica->pool()), std::nullopt, std::nullopt, n.id};
    if (result != nullptr) {
      pool::Command command;
      if (!pool::decode(e.data, command)) rec.command = std::move(command);
      rec.result = *result;
    }
    const auto [it, inserted] = applied_.emplace(e.index, rec);
    if (!inserted && (it->second.term != rec.term || it->second.digests != rec.digests)) {
      fail(fmt::format(
          "index {}: node {} applied term {} reaching other pools than node {} (term {})",
          e.index.value(), n.id.value(), rec.term.value(), it->second.node.value(),
          it->second.term.value()));
    }
  }

  std::vector<Ack> acks;
  std::vector<ReadRecord> reads;
  std::uint64_t writes_acked = 0, reads_done = 0, ops_failed = 0;

  // --- the checks at the end
  // ----------------------------------------------------------------------

  void check_history() {
    if (failed()) return;
    // Every acknowledged write is the entry at its index, on its pool, with the same draws.
    for (const Ack& a : acks) {
      const auto it = applied_.find(a.index);
      if (it == applied_.end() || !it->second.command || !it->second.result) {
        return fail(fmt::format("acknowledged write {} at index {} was never applied", a.key,
                                a.index.value()));
      }
      const pool::Command& command = *it->second.command;
      if (command.idempotency_key != a.key || command.pool_id != a.pool_id) {
        return fail(fmt::format(
            "acknowledged write {} on pool {} at index {}: there is {} on pool {}", a.key,
            a.pool_id, a.index.value(), command.idempotency_key, command.pool_id));
      }
      if (it->second.result->draws != a.draws) {
        return fail(
            fmt::format("acknowledged write {} at index {}: its draws differ from the applied ones",
                        a.key, a.index.value()));
      }
    }
    // Per pool: request_ids 1..last, none twice, continuing across a deletion; no key applied
    // twice; no over-draw.
    struct PoolHistory {
      std::uint64_t last = 0;
      std::set<std::string> keys;
      std::optional<std::map<std::string, std::int64_t>> quantity;  // nullopt: no such pool
    };
    std::map<std::string, PoolHistory> pools;
    auto& initial = pools[std::string(pool::default_pool_id)].quantity.emplace();
    for (const pool::Item& i : initial_) initial[i.item_id] = i.quantity;
    LogIndex previous;
    for (const auto& [index, rec] : applied_) {
      if (previous != LogIndex() && index != previous.next())
        return fail(fmt::format("no node applied index {}", previous.next().value()));
      previous = index;
      if (!rec.command || !rec.result || rec.result->replayed || rec.result->error) continue;
      const std::string& pool_id = rec.command->pool_id;
      PoolHistory& h = pools[pool_id];
      if (const auto* c = std::get_if<pool::CreatePool>(&rec.command->op)) {
        if (h.quantity)
          return fail(fmt::format("index {}: pool {} created twice", index.value(), pool_id));
        h.quantity.emplace();
        for (const pool::Item& i : c->items) (*h.quantity)[i.item_id] = i.quantity;
        continue;
      }
      if (std::holds_alternative<pool::DeletePool>(rec.command->op)) {
        h.quantity.reset();
        continue;
      }
      if (!h.quantity) {
        return fail(fmt::format("index {}: a command applied to pool {}, which does not exist",
                                index.value(), pool_id));
      }
      auto& quantity = *h.quantity;
      if (const auto* u = std::get_if<pool::UpsertItem>(&rec.command->op))
        quantity[u->item.item_id] = u->item.quantity;
      if (const auto* d = std::get_if<pool::DeleteItem>(&rec.command->op))
        quantity.erase(d->item_id);
      if (!std::holds_alternative<pool::Draw>(rec.command->op)) continue;
      if (!rec.command->idempotency_key.empty() &&
          !h.keys.insert(rec.command->idempotency_key).second) {
        return fail(fmt::format("key {} applied twice in pool {} (again at index {})",
                                rec.command->idempotency_key, pool_id, index.value()));
      }
      for (const pool::DrawOutcome& d : rec.result->draws) {
        if (d.request_id != h.last + 1)
          return fail(fmt::format("index {}: pool {} request_id {} after {}", index.value(),
                                  pool_id, d.request_id, h.last));
        h.last = d.request_id;
        if (!d.item_id) continue;
        std::int64_t& q = quantity[*d.item_id];
        if (q == pool::quantity_unlimited) continue;
        if (q <= 0)
          return fail(fmt::format("index {}: pool {} item {} drawn below zero", index.value(),
                                  pool_id, *d.item_id));
        --q;
      }
    }
    // Reads show exactly their pool's state at their index; linearizable ones are never older
    // than a write acknowledged before they began. The index orders every answer over all pools,
    // so the bound is taken over every pool's writes: stronger than over the read pool's alone.
    std::vector<std::pair<Time, LogIndex>> acked;  // completion time, index
    for (const Ack& a : acks) acked.emplace_back(a.completed, a.index);
    std::sort(acked.begin(), acked.end());
    std::vector<LogIndex> max_before(acked.size());
    LogIndex running;
    for (std::size_t i = 0; i < acked.size(); ++i)
      max_before[i] = running = std::max(running, acked[i].second);
    for (const ReadRecord& r : reads) {
      if (r.index != LogIndex()) {
        const auto it = applied_.find(r.index);
        if (it == applied_.end()) {
          return fail(fmt::format("{} read on node {} at index {}: no node applied that index",
                                  r.stale ? "stale" : "linearizable", r.node.value(),
                                  r.index.value()));
        }
        const auto d = it->second.digests.find(r.pool_id);
        const std::optional<pool::Sha256> there =
            d == it->second.digests.end() ? std::nullopt : std::optional(d->second);
        if (there != r.digest) {
          return fail(fmt::format("{} read on node {} at index {} shows pool {} {}",
                                  r.stale ? "stale" : "linearizable", r.node.value(),
                                  r.index.value(), r.pool_id,
                                  r.digest ? "as no node had it there" : "absent, but it existed"));
        }
      }
      if (r.stale) continue;
      const auto pos =
          std::lower_bound(acked.begin(), acked.end(), std::make_pair(r.invoked, LogIndex()));
      if (pos == acked.begin()) continue;
      const LogIndex must = max_before[static_cast<std::size_t>(pos - acked.begin()) - 1];
      if (r.index < must) {
        return fail(
            fmt::format("linearizable read of pool {} on node {} at index {} began after a write "
                        "at index {} was acknowledged",
                        r.pool_id, r.node.value(), r.index.value(), must.value()));
      }
    }
  }

  void check_converged() {
    if (failed()) return;
    const Node* first = nullptr;
    for (const auto& n : nodes_) {
      if (!n->up) return fail(fmt::format("node {} is still down after the heal", n->id.value()));
      if (first == nullptr) {
        first = n.get();
        continue;
      }
      const Replica& a = *first->replica;
      const Replica& b = *n->replica;
      if (a.applied() != b.applied() || pool_digests(a.pool()) != pool_digests(b.pool())) {
        std::string progress;
        if (const Node* l = leader()) {
          if (const raft::Progress* pr = l->replica->core().progress(n->id)) {
            progress = fmt::format(" (leader {} sees it in state {}, match {}, next {})",
                                   l->id.value(), static_cast<int>(pr->state),
                                   pr->match_index.value(), pr->next_index.value());
          }
        }
        return fail(fmt::format("after the heal node {} is at index {} and node {} at index {}{}",
                                first->id.value(), a.applied().value(), n->id.value(),
                                b.applied().value(), progress));
      }
    }
    // Per pool: the pool (or, deleted, its tombstone) reaches every request_id acknowledged in it.
    std::map<std::string, std::uint64_t> acked_max;
    for (const Ack& a : acks) {
      for (const auto& d : a.draws) {
        std::uint64_t& m = acked_max[a.pool_id];
        m = std::max(m, d.request_id);
      }
    }
    const pool::StateMachine& state = first->replica->pool();
    for (const auto& [pool_id, max] : acked_max) {
      const pool::Pool* p = state.pool(pool_id);
      const std::uint64_t last =
          p != nullptr ? p->last_request_id() : state.tombstone(pool_id).value_or(0);
      if (last < max) {
        return fail(fmt::format("pool {}: request_id {} was acknowledged but the pool ends at {}",
                                pool_id, max, last));
      }
    }
  }

  void start_all() {
    for (auto& n : nodes_) start(*n);
  }
  void restart_all_down() {
    for (auto& n : nodes_) {
      n->disk_full = false;
      n->io_error_next = false;
      if (!n->up) restart(n->id);
    }
  }
  std::vector<NodeId> up_nodes() const {
    std::vector<NodeId> ids;
    for (const auto& n : nodes_) {
      if (n->up) ids.push_back(n->id);
    }
    return ids;
  }

 private:
  Params p_;
  bool verbose_;
  node::Config config_;
  std::vector<pool::Item> initial_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::vector<bool>> blocked_;  // [from][to]
  std::vector<std::vector<Time>> link_free_;
  std::map<LogIndex, AppliedRecord> applied_;
  std::string failure_;
  bool change_busy_ = false;
  std::uint64_t change_attempt_ = 0;
  std::vector<std::unique_ptr<wal::SimFileSystem>> old_disks_;  // outlive graveyard_
  struct Parked {
    std::unique_ptr<Replica> replica;
    std::unique_ptr<SimStorage> storage;
    std::unique_ptr<SimTransport> transport;
    std::unique_ptr<SimEnv> env;
  };
  std::vector<Parked> graveyard_;
};

SimEnv::SimEnv(Cluster& c, Node& n) : c_(c), n_(n), epoch_(n.epoch) {}
node::Clock::time_point SimEnv::now() {
  return node::Clock::time_point(
      std::chrono::microseconds(c_.world.now + n_.skew + 10'000'000'000));
}
std::uint64_t SimEnv::wall_clock_ms() {
  return 1'780'000'000'000ull +
         static_cast<std::uint64_t>((c_.world.now + n_.skew) / ms + 100'000'000);
}
std::uint64_t SimEnv::random_u64() { return n_.rng->next(); }
std::function<void()> SimEnv::guard(std::function<void()> fn) {
  return [this, fn = std::move(fn), node = &n_, epoch = epoch_] {
    if (node->up && node->epoch == epoch) fn();
  };
}
void SimEnv::post(std::function<void()> fn) { c_.world.at(c_.world.now, guard(std::move(fn))); }
void SimEnv::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  const auto us = static_cast<Time>(static_cast<double>(delay.count() * ms) * n_.rate);
  c_.world.at(c_.world.now + us, guard(std::move(fn)));
}

void SimEnv::background(std::function<void()> work, std::function<void()> done) {
  // Another core: the work runs after a random while, meanwhile the node goes on with its events
  // (so a snapshot encoded late shows whether it shares anything the node changes); a crash
  // before then loses it.
  auto job = guard([work = std::move(work), done = std::move(done)] {
    work();
    done();
  });
  if (c_.hold_background && c_.hold_background(n_.id)) {  // a scenario runs it when it chooses
    c_.held_background.push_back(std::move(job));
    return;
  }
  const Time latency = c_.world.rng.between(0, 30 * ms);
  c_.world.at(c_.world.now + latency, std::move(job));
}

void SimTransport::send(raft::Message&& m) { c_.send(self_, std::move(m)); }

template <typename R>
void SimStorage::run(std::function<R()> work, std::function<void(R)> done) {
  const Params& p = c_.params();
  Time latency = c_.world.rng.between(p.disk_min, p.disk_max);
  if (c_.world.rng.chance(0.01)) latency += c_.world.rng.between(5 * ms, 60 * ms);  // a slow fsync
  busy_until_ = std::max(c_.world.now, busy_until_) + latency;
  c_.world.at(busy_until_,
              env_.guard([work = std::move(work), done = std::move(done)] { done(work()); }));
}

// --- clients
// --------------------------------------------------------------------------------------

class Client {
 public:
  Client(Cluster& c, int id) : c_(c), id_(id) {}
  void next() {
    if (c_.failed()) return;
    if (c_.world.now >= c_.params().run) return;  // no new operations once the run ends
    ++seq_;
    tries_ = 0;  // attempt_ never restarts: a late answer to an earlier operation is never taken
                 // for this one's
    invoked_ = c_.world.now;
    if (!c_.params().pools) return next_single_pool();
    // Half the operations go to "default", the rest to any of the pools; pools are created and
    // deleted often enough that draws meet absent pools and ids created again.
    pool_id_ =
        c_.world.rng.chance(0.5) ? pool_ids[0] : pool_ids[c_.world.rng.below(pool_ids.size())];
    const auto pick = c_.world.rng.below(100);
    if (pick < 60) {
      kind_ = Kind::draw;
      count_ = static_cast<std::uint32_t>(1 + c_.world.rng.below(3));
    } else if (pick < 75) {
      kind_ = Kind::read;
    } else if (pick < 83) {
      kind_ = Kind::stale_read;
    } else if (pick < 90) {
      kind_ = Kind::upsert;
      item_ =
          pool::Item{c_.world.rng.chance(0.5) ? "gem" : "ruby",
                     static_cast<std::int64_t>(c_.world.rng.below(30)), 1 + c_.world.rng.below(10)};
    } else if (pick < 95) {
      kind_ = Kind::create_pool;
      pool_id_ = pool_ids[1 + c_.world.rng.below(pool_ids.size() - 1)];
      // A small limited item, so that pool_empty comes up, and now and then an unlimited one.
      items_ = {pool::Item{"gem", static_cast<std::int64_t>(c_.world.rng.below(20)),
                           1 + c_.world.rng.below(10)}};
      if (c_.world.rng.chance(0.5))
        items_.push_back(pool::Item{"mud", pool::quantity_unlimited, 50});
    } else if (pick < 96) {
      kind_ = Kind::delete_pool;  // now and then "default" too, which must be refused
      if (pool_id_ == pool_ids[0] && c_.world.rng.chance(0.8))
        pool_id_ = pool_ids[1 + c_.world.rng.below(pool_ids.size() - 1)];
    } else if (pick < 98) {
      kind_ = Kind::snapshot;
    } else {
      kind_ = Kind::transfer;
    }
    try_once();
  }

 private:
  void next_single_pool() {
    pool_id_ = pool_ids[0];
    const auto pick = c_.world.rng.below(100);
    if (pick < 65) {
      kind_ = Kind::draw;
      count_ = static_cast<std::uint32_t>(1 + c_.world.rng.below(3));
    } else if (pick < 80) {
      kind_ = Kind::read;
    } else if (pick < 88) {
      kind_ = Kind::stale_read;
    } else if (pick < 95) {
      kind_ = Kind::upsert;
      item_ =
          pool::Item{c_.world.rng.chance(0.5) ? "gem" : "ruby",
                     static_cast<std::int64_t>(c_.world.rng.below(30)), 1 + c_.world.rng.below(10)};
    } else if (pick < 98) {
      kind_ = Kind::snapshot;
    } else {
      kind_ = Kind::transfer;
    }
    try_once();
  }

  enum class Kind { draw, read, stale_read, upsert, create_pool, delete_pool, snapshot, transfer };

  NodeId choose() {
    const auto up = c_.up_nodes();
    if (up.empty()) return NodeId();
    if (leader_guess_ != NodeId() && c_.node(leader_guess_).up && c_.world.rng.chance(0.8))
      return leader_guess_;
    return up[c_.world.rng.below(up.size())];
  }

  void retry_later() {
    const std::uint64_t attempt = attempt_;
    c_.world.at(c_.world.now + c_.world.rng.between(1 * ms, 30 * ms), [this, attempt] {
      if (attempt == attempt_) try_once();
    });
  }

  void finished() {
    ++attempt_;
    c_.world.at(c_.world.now + c_.world.rng.between(0, 5 * ms), [this] { next(); });
  }

  void try_once() {
    if (c_.failed()) return;
    if (++tries_ > 400 ||
        c_.world.now > c_.params().run + c_.params().quiesce - 500 * ms) {  // give up
      ++c_.ops_failed;
      ++attempt_;
      return;
    }
    const std::uint64_t attempt = ++attempt_;
    const NodeId target = choose();
    if (target == NodeId()) return retry_later();
    Replica& r = *c_.node(target).replica;
    // An answer that never comes (the node crashed) is an unknown outcome: retry after a while.
    c_.world.at(c_.world.now + 2000 * ms, [this, attempt] {
      if (attempt == attempt_) try_once();
    });
    auto on_error = [this, attempt, &r](const Outcome& o) {
      if (attempt != attempt_) return;
      if (o.ec == node::errc::not_leader) leader_guess_ = r.core().leader();
      retry_later();
    };
    switch (kind_) {
      case Kind::draw:
      case Kind::upsert:
      case Kind::create_pool:
      case Kind::delete_pool: {
        pool::Command command;
        const std::string key = fmt::format("c{}-{}", id_, seq_);
        if (kind_ == Kind::draw) {
          command.op = pool::Draw{count_, 0};
          command.body_hash = api::request_hash(api::draw_operation(count_));
        } else if (kind_ == Kind::upsert) {
          command.op = pool::UpsertItem{item_};
          command.body_hash = api::request_hash(api::upsert_operation(item_));
        } else if (kind_ == Kind::create_pool) {
          command.op = pool::CreatePool{items_};
          // The hash only has to tell this request from another under the same key.
          command.body_hash = api::request_hash(fmt::format("create {}", items_.size()));
        } else {
          command.op = pool::DeletePool{};
          command.body_hash = api::request_hash("delete pool");
        }
        command.pool_id = pool_id_;
        command.idempotency_key = key;
        r.write(std::move(command), [this, attempt, key, on_error, target,
                                     &r](const Outcome& o, const pool::Result* result) {
          if (attempt != attempt_) return;
          if (o.ec || result == nullptr) return on_error(o);
          // A pool error (pool_exists, pool_not_found, too_many_items, ...) is an answer all the
          // same, remembered under its key at its index: it must not be lost either.
          c_.acks.push_back(
              Ack{key, pool_id_, LogIndex(result->index), result->draws, invoked_, c_.world.now});
          c_.log(fmt::format("ack {} on pool {} at index {} by node {} (term {}){}", key, pool_id_,
                             result->index, target.value(), r.core().current_term().value(),
                             result->replayed ? " replayed" : ""));
          ++c_.writes_acked;
          finished();
        });
        break;
      }
      case Kind::read: {
        r.read([this, attempt, target, on_error, &r](const Outcome& o) {
          if (attempt != attempt_) return;
          if (o.ec) return on_error(o);
          const Replica& rr = r;  // the replica answering (the node may have been restarted since)
          c_.reads.push_back(ReadRecord{invoked_, c_.world.now, rr.applied(), pool_id_,
                                        pool_digest(rr.pool(), pool_id_), false, target});
          c_.log(fmt::format("read on node {} ({}, term {}, leader {}) at index {}, invoked at {}",
                             target.value(), node::role_name(rr.core().role()),
                             rr.core().current_term().value(), rr.core().leader().value(),
                             rr.applied().value(), invoked_));
          ++c_.reads_done;
          finished();
        });
        break;
      }
      case Kind::stale_read:
        c_.reads.push_back(ReadRecord{invoked_, c_.world.now, r.applied(), pool_id_,
                                      pool_digest(r.pool(), pool_id_), true, target});
        ++c_.reads_done;
        finished();
        break;
      case Kind::snapshot:
        r.take_snapshot([this, attempt](const Outcome&, LogIndex) {
          if (attempt == attempt_) finished();
        });
        break;
      case Kind::transfer: {
        const NodeId to(1 + c_.world.rng.below(static_cast<std::uint64_t>(c_.params().nodes)));
        r.transfer_leader(to, [this, attempt](const Outcome&) {
          if (attempt == attempt_) finished();
        });
        break;
      }
    }
  }

  Cluster& c_;
  int id_;
  std::uint64_t seq_ = 0;
  std::uint64_t attempt_ = 0;  // every attempt of every operation has its own number
  std::uint64_t tries_ = 0;    // attempts of the current operation
  Time invoked_ = 0;
  Kind kind_ = Kind::draw;
  std::uint32_t count_ = 1;
  std::string pool_id_;
  pool::Item item_;
  std::vector<pool::Item> items_;  // create_pool
  NodeId leader_guess_;
};

struct RunResult {
  bool ok;
  std::string failure;
  std::uint64_t events, writes, reads, failed_ops;
};

RunResult run_seed(std::uint64_t seed, bool verbose, bool single_pool) {
  Rng pick(seed * 0x2545f4914f6cdd1dull + 1);
  Params p;
  p.nodes = pick.chance(0.3) ? 5 : 3;
  p.loss = pick.chance(0.5) ? 0.0 : 0.02 * static_cast<double>(1 + pick.below(3));
  p.duplicate = pick.chance(0.5) ? 0.0 : 0.02;
  p.latency_max = static_cast<Time>(1 + pick.below(5)) * ms;
  p.bandwidth_bytes_per_us = pick.chance(0.3) ? 10 : 100;  // 10 or 100 MB/s
  p.pools = !single_pool;
  Cluster c(seed, p, verbose);
  c.start_all();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < p.clients; ++i) clients.push_back(std::make_unique<Client>(c, i + 1));
  for (auto& cl : clients) {
    Client* raw = cl.get();
    c.world.at(c.world.rng.between(0, 10 * ms), [raw] { raw->next(); });
  }
  c.world.at(200 * ms, [&c] { c.nemesis(); });
  const auto failed = [&c] { return c.failed(); };
  c.world.run_until(p.run, failed);
  c.heal();
  c.restart_all_down();
  c.repair_membership();
  c.world.run_until(p.run + p.quiesce, failed);
  c.check_history();
  c.check_converged();
  return {!c.failed(), c.failure(), c.world.events, c.writes_acked, c.reads_done, c.ops_failed};
}

// Scenarios' timelines hold only if every message comes within latency_max.
Params scenario_params() {
  Params p;
  p.straggle = 0;
  return p;
}

// Starts a scenario's cluster and runs it until `t`; sets its leader and one follower. Returns an
// empty string, or what went wrong.
std::string start_scenario(Cluster& c, Time t, NodeId& leader, NodeId& follower) {
  c.start_all();
  c.world.run_until(t, [&c] { return c.failed(); });
  if (c.failed()) return c.failure();
  for (const NodeId id : c.up_nodes()) {
    if (c.node(id).replica->core().role() == raft::Role::leader) {
      leader = id;
    } else if (follower == NodeId()) {
      follower = id;
    }
  }
  if (leader == NodeId() || follower == NodeId()) return "no leader after 1 s";
  return "";
}

// A scenario (thesis §6.4 ReadIndex, across a restart): a follower asks the leader for a read
// index, and crashes before the answer arrives; restarted, it serves a new read. The answer meant
// for the previous process (its read id, an old index) arrives only now. It must be ignored: were
// it taken for the new read, the follower would answer that read at the old index, missing a
// write acknowledged before the read began (a stale read). Read ids start at a random value in
// every process (Replica::read), so the old answer names no read of the new process.
// Returns an empty string when the follower behaves, else what went wrong.
std::string read_answer_of_previous_process(bool verbose) {
  Cluster c(1, scenario_params(), verbose);
  const auto failed = [&c] { return c.failed(); };
  Time t = 1000 * ms;
  NodeId leader, follower;
  if (std::string e = start_scenario(c, t, leader, follower); !e.empty()) return e;

  // Every read answer to the follower is held back; appends to it too, once `isolated`, so that
  // it cannot learn of the write below except through a read answer.
  std::vector<raft::Message> answers;
  bool isolated = false;
  c.intercept = [&](NodeId, const raft::Message& m) {
    if (m.to != follower) return false;
    if (m.type == raft::MessageType::read_index_resp) {
      answers.push_back(m);
      return true;
    }
    return isolated &&
           (m.type == raft::MessageType::append || m.type == raft::MessageType::heartbeat);
  };

  // The previous process asks, and dies before its answer arrives.
  c.node(follower).replica->read([](const Outcome&) {});
  c.world.run_until(t += 50 * ms, failed);
  if (answers.size() != 1) return fmt::format("{} read answers held, not 1", answers.size());
  const raft::Message old_answer = answers.front();
  answers.clear();
  c.crash(c.node(follower));
  c.restart(follower);
  c.world.run_until(t += 500 * ms, failed);
  if (c.failed()) return c.failure();
  if (c.node(follower).replica->core().leader() != leader) return "the follower lost the leader";

  // A write is acknowledged while the follower hears no appends.
  isolated = true;
  std::optional<LogIndex> write_index;
  pool::Command draw;
  draw.op = pool::Draw{1, 0};
  c.node(leader).replica->write(draw, [&](const Outcome& o, const pool::Result* result) {
    if (!o.ec && result != nullptr) write_index = LogIndex(result->index);
  });
  c.world.run_until(t += 50 * ms, failed);
  if (!write_index) return "the write was not acknowledged";
  Replica& restarted = *c.node(follower).replica;
  if (restarted.applied() >= *write_index) return "the follower applied the write regardless";

  // The new process reads; its own answer is held back, the old one arrives.
  std::optional<LogIndex> read_at;
  restarted.read([&](const Outcome& o) {
    if (!o.ec) read_at = restarted.applied();
  });
  c.world.run_until(t += 20 * ms, failed);
  c.deliver(old_answer);
  c.world.run_until(t += 20 * ms, failed);
  if (c.failed()) return c.failure();
  if (read_at) {
    return fmt::format(
        "the restarted follower answered a read with the previous process's answer (read id "
        "{}): at index {}, before the write acknowledged at {}",
        old_answer.context, read_at->value(), write_index->value());
  }

  // Its own answer comes, and the appends: the read is answered with the write in it.
  isolated = false;
  c.intercept = nullptr;
  for (raft::Message& m : answers) c.deliver(std::move(m));
  c.world.run_until(t += 500 * ms, failed);
  if (c.failed()) return c.failure();
  if (!read_at) return "the read was never answered";
  if (*read_at < *write_index) {
    return fmt::format("the read was answered at {}, before the write at {}", read_at->value(),
                       write_index->value());
  }
  return "";
}

// A scenario (a snapshot overtaken by the leader's): a follower begins a snapshot of its own at
// index i, and while it is being encoded the leader's snapshot at j > i is installed. When the
// encoding ends, the older snapshot must be dropped: written after the installed one, its file
// would be saved over newer state and the log's margin moved back to it. The follower then goes
// on from j, across a restart, like the others.
// Returns an empty string when the follower behaves, else what went wrong.
std::string snapshot_overtaken_by_leader(bool verbose) {
  Cluster c(1, scenario_params(), verbose);
  const auto failed = [&c] { return c.failed(); };
  Time t = 1000 * ms;
  NodeId leader, follower;
  if (std::string e = start_scenario(c, t, leader, follower); !e.empty()) return e;
  const auto draws = [&](int n) {
    auto acked = std::make_shared<int>(0);
    for (int k = 0; k < n; ++k) {
      pool::Command draw;
      draw.op = pool::Draw{1, 0};
      c.node(leader).replica->write(draw, [acked](const Outcome& o, const pool::Result* result) {
        if (!o.ec && result != nullptr) ++*acked;
      });
    }
    return acked;
  };
  auto acked = draws(5);
  c.world.run_until(t += 100 * ms, failed);
  if (*acked != 5) return fmt::format("{} of 5 draws acknowledged", *acked);

  // The follower begins its snapshot; the encoding is held back.
  Replica& f = *c.node(follower).replica;
  const LogIndex own_index = f.applied();
  c.hold_background = [follower](NodeId id) { return id == follower; };
  std::optional<Outcome> own_done;
  f.take_snapshot([&](const Outcome& o, LogIndex) { own_done = o; });
  c.world.run_until(t += 1 * ms, failed);
  if (c.held_background.size() != 1) {
    return fmt::format("{} background jobs held, not 1", c.held_background.size());
  }

  // Cut off from the leader, it misses draws, and the leader compacts its log past them.
  c.intercept = [follower](NodeId, const raft::Message& m) { return m.to == follower; };
  acked = draws(5);
  c.world.run_until(t += 40 * ms, failed);
  if (*acked != 5) return fmt::format("{} of 5 draws acknowledged without the follower", *acked);
  std::optional<LogIndex> leader_snapshot;
  c.node(leader).replica->take_snapshot([&](const Outcome& o, LogIndex index) {
    if (!o.ec) leader_snapshot = index;
  });
  c.world.run_until(t += 40 * ms, failed);
  if (c.failed()) return c.failure();
  if (!leader_snapshot || *leader_snapshot <= own_index) return "the leader took no snapshot";

  // Reconnected, the follower installs the leader's snapshot while its own is still encoding.
  c.intercept = nullptr;
  c.world.run_until(t += 300 * ms, failed);
  if (c.failed()) return c.failure();
  if (f.core().log().snapshot_index() < *leader_snapshot) {
    return fmt::format(
        "the follower did not install the leader's snapshot at {} (its log starts "
        "after {})",
        leader_snapshot->value(), f.core().log().snapshot_index().value());
  }
  if (own_done) return "the follower's own snapshot finished before it was released";
  const std::uint64_t taken = f.counters().snapshots;

  // The encoding ends: the snapshot at own_index is of no use any more.
  c.hold_background = nullptr;
  for (auto& job : std::exchange(c.held_background, {})) c.world.at(c.world.now, std::move(job));
  c.world.run_until(t += 100 * ms, failed);
  if (c.failed()) return c.failure();
  if (!own_done) return "the follower's own snapshot never finished";
  if (f.counters().snapshots != taken) {
    return fmt::format("the follower saved its snapshot at {} after installing the leader's at {}",
                       own_index.value(), leader_snapshot->value());
  }
  if (f.snapshot_index() < *leader_snapshot) {
    return fmt::format("the follower's snapshot index went back to {}", f.snapshot_index().value());
  }

  // It goes on from there, across a restart: it recovers at least the leader's snapshot and
  // applies the draws after it.
  c.crash(c.node(follower));
  c.restart(follower);
  acked = draws(3);
  c.world.run_until(t += 1000 * ms, failed);
  if (c.failed()) return c.failure();
  if (*acked != 3) return fmt::format("{} of 3 draws acknowledged after the restart", *acked);
  const LogIndex committed = c.node(leader).replica->core().log().commit_index();
  if (c.node(follower).replica->applied() < committed) {
    return fmt::format("the restarted follower applied {}, the leader committed {}",
                       c.node(follower).replica->applied().value(), committed.value());
  }
  c.check_converged();
  return c.failed() ? c.failure() : "";
}

int usage() {
  std::fprintf(stderr,
               "usage: node-sim [--seeds N] [--start S] [--seed S] [-v] [--planted NAME] "
               "[--single-pool]\n"
               "       node-sim --scenario read-answer-of-previous-process|"
               "snapshot-overtaken-by-leader [-v]\n");
  return 2;
}

}  // namespace
}  // namespace rpool::sim

int main(int argc, char** argv) {
  using namespace rpool::sim;
  std::uint64_t seeds = 100, start = 1;
  bool verbose = false;
  bool single_pool = false;
  std::string planted, scenario;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--seeds") {
      const char* v = value();
      if (!v) return usage();
      seeds = std::strtoull(v, nullptr, 10);
    } else if (a == "--start") {
      const char* v = value();
      if (!v) return usage();
      start = std::strtoull(v, nullptr, 10);
    } else if (a == "--seed") {
      const char* v = value();
      if (!v) return usage();
      start = std::strtoull(v, nullptr, 10);
      seeds = 1;
    } else if (a == "--single-pool") {
      single_pool = true;
    } else if (a == "-v") {
      verbose = true;
    } else if (a == "--planted") {
      const char* v = value();
      if (!v) return usage();
      planted = v;
    } else if (a == "--scenario") {
      const char* v = value();
      if (!v) return usage();
      scenario = v;
    } else {
      return usage();
    }
  }
  if (!planted.empty())
    setenv("RPOOL_PLANTED_BUG", planted.c_str(), 1);  // before any replica exists
  if (!scenario.empty()) {
    std::string failure;
    if (scenario == "read-answer-of-previous-process") {
      failure = read_answer_of_previous_process(verbose);
    } else if (scenario == "snapshot-overtaken-by-leader") {
      failure = snapshot_overtaken_by_leader(verbose);
    } else {
      return usage();
    }
    std::printf("node-sim: scenario %s: %s\n", scenario.c_str(),
                failure.empty() ? "ok" : ("FAILED: " + failure).c_str());
    return failure.empty() ? 0 : 1;
  }
  const auto began = std::chrono::steady_clock::now();
  std::uint64_t passed = 0, failed = 0, events = 0, writes = 0, reads = 0;
  for (std::uint64_t s = start; s < start + seeds; ++s) {
    // Each seed runs in a child process, so that a broken assertion (a replica's or the core's
    // invariants, checked after every event) fails that seed instead of ending the run.
    int pipe_fds[2];
    RPOOL_ASSERT(pipe(pipe_fds) == 0);
    std::fflush(stdout);
    const pid_t child = fork();
    RPOOL_ASSERT(child >= 0);
    if (child == 0) {
      close(pipe_fds[0]);
      const RunResult r = run_seed(s, verbose, single_pool);
      const std::uint64_t counts[3] = {r.events, r.writes, r.reads};
      (void)!write(pipe_fds[1], counts, sizeof counts);
      if (!r.ok)
        std::printf("seed %llu FAILED: %s\n", static_cast<unsigned long long>(s),
                    r.failure.c_str());
      std::fflush(stdout);
      _exit(r.ok ? 0 : 1);
    }
    close(pipe_fds[1]);
    std::uint64_t counts[3] = {0, 0, 0};
    (void)!read(pipe_fds[0], counts, sizeof counts);
    close(pipe_fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    events += counts[0];
    writes += counts[1];
    reads += counts[2];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++passed;
      continue;
    }
    ++failed;
    if (WIFSIGNALED(status)) {
      std::printf(
          "seed %llu FAILED: an assertion or signal %d ended it (rerun: node-sim --seed %llu)\n",
          static_cast<unsigned long long>(s), WTERMSIG(status), static_cast<unsigned long long>(s));
    }
    if (!planted.empty()) break;  // caught
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::printf(
      "node-sim: %llu seeds, %llu failed; %llu events, %llu writes and %llu reads acknowledged; "
      "%.1f s (%.0f ops/s)\n",
      static_cast<unsigned long long>(passed + failed), static_cast<unsigned long long>(failed),
      static_cast<unsigned long long>(events), static_cast<unsigned long long>(writes),
      static_cast<unsigned long long>(reads), secs, static_cast<double>(writes + reads) / secs);
  if (!planted.empty()) {
    std::printf("planted bug %s: %s\n", planted.c_str(), failed ? "caught" : "NOT caught");
    return failed ? 0 : 1;
  }
  return failed == 0 ? 0 : 1;
}
