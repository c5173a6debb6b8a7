// Core throughput: a 3-node cluster in one process with a free network and disk (messages are
// handed over directly, Readies are "persisted" instantly). Each iteration proposes a batch on
// the leader and runs the cluster until the batch is committed on the leader and applied on
// every node. items_per_second is committed entries per second on one core.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "raft/core.h"

namespace {

using namespace rpool;
using namespace rpool::raft;

class BenchCluster {
 public:
  BenchCluster() {
    Membership m;
    m.voters = {NodeId(1), NodeId(2), NodeId(3)};
    for (std::uint64_t id = 1; id <= 3; ++id) {
      Config c;
      c.id = NodeId(id);
      c.initial_membership = m;
      c.random_seed = id;
      cores_.push_back(std::make_unique<Core>(c, BootState{}));
    }
    while (cores_[0]->role() != Role::leader) {
      cores_[0]->tick();
      pump();
    }
    pump();
  }

  Core& leader() { return *cores_[0]; }

  // Runs Readies and deliveries until the cluster is quiet.
  void pump() {
    for (;;) {
      wire_.clear();
      for (auto& c : cores_) {
        while (c->has_ready()) {
          Ready rd = c->ready();
          for (auto& m : rd.messages) wire_.push_back(std::move(m));
          for (auto& m : rd.messages_after_persist) wire_.push_back(std::move(m));
          applied_ += rd.committed_entries.size();
          c->advance(rd);
        }
      }
      if (wire_.empty()) return;
      for (const Message& m : wire_) cores_[m.to.value() - 1]->step(m);
    }
  }

  // Keeps memory bounded the way an application would: snapshot and compact now and then.
  void maybe_compact() {
    for (auto& c : cores_) {
      const LogIndex applied = c->log().applied_index();
      if (applied - c->log().snapshot_index() > 50'000) c->compact(applied, image_);
    }
  }

 private:
  std::vector<std::unique_ptr<Core>> cores_;
  std::vector<Message> wire_;
  std::size_t applied_ = 0;
  std::shared_ptr<const Bytes> image_ = std::make_shared<const Bytes>(Bytes(64, 0));
};

void BM_CommitBatch(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  BenchCluster cluster;
  const Bytes payload(16, 0xab);  // about the size of an encoded draw command
  std::size_t committed = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) {
      if (cluster.leader().propose(payload)) state.SkipWithError("propose failed");
    }
    cluster.pump();
    committed += batch;
    if (cluster.leader().log().commit_index() != cluster.leader().log().last_index()) {
      state.SkipWithError("batch not committed");
    }
    cluster.maybe_compact();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(committed));
}
BENCHMARK(BM_CommitBatch)->Arg(1)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
