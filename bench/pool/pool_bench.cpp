// ns per draw when applying draw commands to the pool state machine.
// Catalogs of 10, 1,000 and 100,000 items (limited, large stock, so every draw takes the
// decrement path), count 1 and count 100 per command. Target: <= 100 ns per draw at 100,000 items.
// BM_ApplyDrawPools: count-1 draws spread at random over 1 or 10,000 pools of 100 items; spread
// over many pools should cost about the same per draw as one pool. The 10,000 pools hold 60 MB,
// beyond the last-level cache, so each draw pays the misses of reaching a cold pool; one pool of
// a million items is the baseline with the same working set.
// BM_Snapshot: StateMachine::snapshot() of one pool of 100 items holding 10,000 or 1,000,000
// idempotency keys (one count-1 draw each), the work a node's event loop does for each snapshot.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "pool/random.h"
#include "pool/state_machine.h"

using namespace rpool::pool;

namespace {

StateMachine make_pool(std::size_t items) {
  std::vector<Item> catalog;
  catalog.reserve(items);
  SplitMix64 rng(1);
  for (std::size_t i = 0; i < items; ++i) {
    catalog.push_back(Item{"item-" + std::to_string(i), 1'000'000'000'000, 1 + bounded(rng, 1000)});
  }
  StateMachine sm;
  sm.apply(1, Command{Bootstrap{std::move(catalog)}, 0, {}, {}});
  return sm;
}

void BM_ApplyDraw(benchmark::State& state) {
  const auto items = static_cast<std::size_t>(state.range(0));
  const auto count = static_cast<std::uint32_t>(state.range(1));
  StateMachine sm = make_pool(items);
  std::uint64_t index = 1;
  SplitMix64 seeds(2);
  Command command{Draw{count, 0}, 0, {}, {}};
  for (auto _ : state) {
    std::get<Draw>(command.op).seed = seeds.next();
    Result r = sm.apply(++index, command);
    benchmark::DoNotOptimize(r);
  }
  const auto draws = static_cast<double>(state.iterations()) * count;
  state.SetItemsProcessed(static_cast<std::int64_t>(draws));
  state.counters["ns_per_draw"] =
      benchmark::Counter(draws, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_ApplyDrawPools(benchmark::State& state) {
  const auto pools = static_cast<std::size_t>(state.range(0));
  const auto items = static_cast<std::size_t>(state.range(1));
  StateMachine sm;
  std::uint64_t index = 0;
  SplitMix64 rng(3);
  for (std::size_t p = 0; p < pools; ++p) {
    std::vector<Item> catalog;
    catalog.reserve(items);
    for (std::size_t i = 0; i < items; ++i) {
      catalog.push_back(
          Item{"item-" + std::to_string(i), 1'000'000'000'000, 1 + bounded(rng, 1000)});
    }
    Command create{CreatePool{std::move(catalog)}, 0, {}, {}};
    create.pool_id = "pool-" + std::to_string(p);
    sm.apply(++index, create);
  }
  // The commands are built ahead, so that only applying them is timed.
  std::vector<Command> commands(1 << 16, Command{Draw{1, 0}, 0, {}, {}});
  for (Command& c : commands) c.pool_id = "pool-" + std::to_string(bounded(rng, pools));
  std::size_t next = 0;
  for (auto _ : state) {
    Command& command = commands[next++ & (commands.size() - 1)];
    std::get<Draw>(command.op).seed = rng.next();
    Result r = sm.apply(++index, command);
    benchmark::DoNotOptimize(r);
  }
  state.counters["ns_per_draw"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// A pool of 100 items that remembers `keys` idempotency keys.
StateMachine pool_with_keys(std::size_t keys) {
  StateMachine sm = make_pool(100);
  SplitMix64 rng(4);
  std::uint64_t index = 1;
  for (std::size_t k = 0; k < keys; ++k) {
    Command c{Draw{1, rng.next()}, 1'000 + k, "key-" + std::to_string(k), {}};
    c.body_hash[0] = static_cast<std::uint8_t>(k);
    sm.apply(++index, c);
  }
  return sm;
}

// The whole snapshot; a node does this part off its event loop (PendingSnapshot::encode()).
void BM_Snapshot(benchmark::State& state) {
  const auto keys = static_cast<std::size_t>(state.range(0));
  const StateMachine sm = pool_with_keys(keys);
  std::size_t bytes = 0;
  for (auto _ : state) {
    rpool::Bytes snapshot = sm.snapshot();
    bytes = snapshot.size();
    benchmark::DoNotOptimize(snapshot);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["ns_per_key"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(keys),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// What a node's event loop does for a snapshot: the pools' bytes, and a share of the keys.
void BM_BeginSnapshot(benchmark::State& state) {
  const auto keys = static_cast<std::size_t>(state.range(0));
  const StateMachine sm = pool_with_keys(keys);
  for (auto _ : state) {
    StateMachine::PendingSnapshot pending = sm.begin_snapshot();
    benchmark::DoNotOptimize(pending);
  }
}

}  // namespace

BENCHMARK(BM_Snapshot)->ArgName("keys")->Arg(10'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BeginSnapshot)
    ->ArgName("keys")
    ->Arg(10'000)
    ->Arg(1'000'000)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_ApplyDrawPools)
    ->ArgNames({"pools", "items"})
    ->Args({1, 100})
    ->Args({10000, 100})
    ->Args({1, 1000000})  // the same million items in one pool: the cache-miss baseline
    ->Unit(benchmark::kNanosecond);

BENCHMARK(BM_ApplyDraw)
    ->ArgNames({"items", "count"})
    ->ArgsProduct({{10, 1000, 100000}, {1, 100}})
    ->Unit(benchmark::kNanosecond);

BENCHMARK_MAIN();
