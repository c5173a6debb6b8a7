// Tiny builders and a synchronous in-memory cluster for the raft unit tests.
//
//   auto core = make_core(1, {1, 2, 3}, log_with_terms({1, 1, 2}), Term(2));
//   auto out = drain(*core);            // ready + persist + advance; returns what it sent
//   Cluster c(3); c.elect(1); c.propose(1, "x"); c.settle();
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "raft/core.h"
#include "raft/storage.h"

namespace rpool::raft::test {

inline Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Entries 1..n with the given terms.
inline std::vector<Entry> log_with_terms(std::initializer_list<std::uint64_t> terms) {
  std::vector<Entry> out;
  std::uint64_t i = 0;
  for (std::uint64_t t : terms) {
    ++i;
    out.push_back(
        Entry{Term(t), LogIndex(i), EntryType::normal, bytes_of('e' + std::to_string(i))});
  }
  return out;
}

inline Membership voters(std::initializer_list<std::uint64_t> ids) {
  Membership m;
  for (auto id : ids) m.voters.push_back(NodeId(id));
  return m;
}

inline Config test_config(std::uint64_t id, Membership m) {
  Config c;
  c.id = NodeId(id);
  c.initial_membership = std::move(m);
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.random_seed = 42;
  return c;
}

inline std::unique_ptr<Core> make_core(std::uint64_t id, std::initializer_list<std::uint64_t> ids,
                                       std::vector<Entry> entries = {}, Term term = Term(0),
                                       std::function<void(Config&)> tweak = {}) {
  Config c = test_config(id, voters(ids));
  if (tweak) tweak(c);
  BootState boot;
  boot.hard_state.current_term = term;
  boot.entries = std::move(entries);
  return std::make_unique<Core>(c, std::move(boot));
}

// Takes the Ready, "persists" it instantly, advances, and returns every message it sent.
inline std::vector<Message> drain(Core& core) {
  std::vector<Message> out;
  while (core.has_ready()) {
    Ready rd = core.ready();
    for (auto& m : rd.messages) out.push_back(m);
    for (auto& m : rd.messages_after_persist) out.push_back(m);
    core.advance(rd);
  }
  return out;
}

inline std::vector<Message> of_type(const std::vector<Message>& ms, MessageType t) {
  std::vector<Message> out;
  for (const auto& m : ms) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

inline Message msg(MessageType type, std::uint64_t from, std::uint64_t to, std::uint64_t term) {
  Message m;
  m.type = type;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(term);
  return m;
}

// Makes a follower campaign now (ticks it past its randomized timeout).
inline void tick_until_campaign(Core& core) {
  for (int i = 0; i < 100 && core.role() == Role::follower; ++i) core.tick();
}

// A cluster whose network delivers instantly and whose disks persist instantly. Messages go
// through deliver filters so tests can partition nodes or drop particular messages.
class Cluster {
 public:
  struct Node {
    std::unique_ptr<Core> core;
    MemoryStorage storage;       // the simulated WAL
    std::vector<Entry> applied;  // every entry applied, in order
    std::vector<ReadState> reads;
    bool up = true;
  };

  explicit Cluster(std::size_t n, std::function<void(Config&)> tweak = {}) : tweak_(tweak) {
    for (std::size_t i = 1; i <= n; ++i) initial_.voters.push_back(NodeId(i));
    for (std::size_t i = 1; i <= n; ++i) add_node(i, initial_);
  }

  // A node outside the initial configuration (to be added by a membership change).
  void add_node(std::uint64_t id, Membership initial = {}) {
    Config c = test_config(id, std::move(initial));
    c.random_seed = 42 + id;
    if (tweak_) tweak_(c);
    configs_[id] = c;
    nodes_[id].core = std::make_unique<Core>(c, BootState{});
  }

  Core& core(std::uint64_t id) { return *nodes_.at(id).core; }
  Node& node(std::uint64_t id) { return nodes_.at(id); }

  void isolate(std::uint64_t id) { isolated_.insert(id); }
  void rejoin(std::uint64_t id) { isolated_.erase(id); }
  void heal() {
    isolated_.clear();
    cut_.clear();
  }
  void cut(std::uint64_t a, std::uint64_t b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  // Drops messages for which the filter returns true (in addition to partitions). The filter
  // may also rewrite the message it is given.
  std::function<bool(Message&)> drop_if;

  // Crash and restart from the simulated disk (every Ready is synced before the next input, so
  // nothing is lost).
  void restart(std::uint64_t id) {
    Node& n = nodes_.at(id);
    n.storage.crash();
    n.core = std::make_unique<Core>(configs_.at(id), n.storage.boot());
    n.applied.clear();
  }

  void tick(std::uint64_t id, int times = 1) {
    for (int i = 0; i < times; ++i) {
      core(id).tick();
      settle();
    }
  }
  void tick_some(std::initializer_list<std::uint64_t> ids, int times = 1) {
    for (int i = 0; i < times; ++i) {
      for (auto id : ids) core(id).tick();
      settle();
    }
  }
  // Ticks the given nodes until one of them leads; returns it (0 if none within the bound).
  std::uint64_t elect_among(std::initializer_list<std::uint64_t> ids, int ticks_max = 200) {
    for (int i = 0; i < ticks_max; ++i) {
      for (auto id : ids) {
        if (core(id).role() == Role::leader) return id;
      }
      tick_some(ids);
    }
    return 0;
  }
  void tick_all(int times = 1) {
    for (int i = 0; i < times; ++i) {
      for (auto& [id, n] : nodes_) {
        if (n.up) n.core->tick();
      }
      settle();
    }
  }

  // Makes `id` campaign and delivers everything.
  void elect(std::uint64_t id) {
    tick_until_campaign(core(id));
    settle();
  }

  std::error_code propose(std::uint64_t id, std::string_view data) {
    const auto ec = core(id).propose(bytes_of(data));
    settle();
    return ec;
  }

  // Processes Readies and delivers messages until the cluster is quiet.
  void settle(int rounds_max = 1000) {
    for (int round = 0; round < rounds_max; ++round) {
      std::vector<Message> wire;
      for (auto& [id, n] : nodes_) {
        if (!n.up) continue;
        while (n.core->has_ready()) {
          Ready rd = n.core->ready();
          persist(n, rd);
          for (auto& m : rd.messages) wire.push_back(m);
          for (auto& m : rd.messages_after_persist) wire.push_back(m);
          n.core->advance(rd);
        }
      }
      if (wire.empty()) return;
      for (const Message& m : wire) deliver(m);
    }
  }

  std::size_t delivered() const { return delivered_; }

 private:
  void deliver(const Message& m) {
    const std::uint64_t from = m.from.value();
    const std::uint64_t to = m.to.value();
    if (isolated_.count(from) || isolated_.count(to) || cut_.count({from, to})) return;
    Message copy = m;
    if (drop_if && drop_if(copy)) return;
    auto it = nodes_.find(to);
    if (it == nodes_.end() || !it->second.up) return;
    ++delivered_;
    it->second.core->step(copy);
  }

  static void persist(Node& n, const Ready& rd) {
    REQUIRE(!raft::persist(n.storage, rd));
    if (rd.snapshot) n.applied.clear();
    for (const auto& e : rd.committed_entries) n.applied.push_back(e);
    for (const auto& r : rd.read_states) n.reads.push_back(r);
  }

  std::function<void(Config&)> tweak_;
  Membership initial_;
  std::map<std::uint64_t, Node> nodes_;
  std::map<std::uint64_t, Config> configs_;
  std::set<std::uint64_t> isolated_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> cut_;
  std::size_t delivered_ = 0;
};

// The payloads of applied normal entries.
inline std::vector<std::string> applied_data(const Cluster::Node& n) {
  std::vector<std::string> out;
  for (const auto& e : n.applied) {
    if (e.type == EntryType::normal) out.emplace_back(e.data.begin(), e.data.end());
  }
  return out;
}

}  // namespace rpool::raft::test
