// DrawStats: what a node has seen drawn since it started, per pool and item, beside what the
// published weights made expected. It feeds rpool_draws_by_item_total, the expected-share gauge,
// and the console's fairness panel (GET /v1/status).
//
// Observed: a count per item of the units applied (pool_empty counted apart). Expected: for each
// unit drawn, item i had probability w_i / W, where W is the total weight of the drawable items
// (quantity != 0, probability > 0) at that moment, so the expected count of i is the sum of those
// probabilities over the units. Weights change between units (an upsert, a delete, a limited item
// running out in the middle of a count-1000 draw), so the sum is kept in O(1) per unit and per
// change: the pool accumulates cum = sum of 1/W over its units, and an item's expected count is
// what it had when its weight last changed plus weight * (cum now - cum then).
//
// Only units applied by this node count, replayed answers (an Idempotency-Key repeated) do not,
// and a snapshot installed from the leader is not a draw: counts are "since this process started",
// and every replica that has been up as long shows the same counts.
//
// Bounded: a pool of more than items_tracked_max items, or one that would take the whole past
// tracked_items_total_max, counts its units but no item (its `tracked` is false), so that neither
// this memory nor /metrics grows with a catalog of a million items.
//
// Not replicated, not persisted; on the replica's thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pool/command.h"
#include "pool/state_machine.h"

namespace rpool::node {

class DrawStats {
 public:
  static constexpr std::size_t items_tracked_max = 1'000;         // per pool
  static constexpr std::size_t tracked_items_total_max = 10'000;  // over all pools

  struct Item {
    std::uint64_t observed = 0;  // units that drew this item
    std::uint64_t weight = 0;    // its probability now if drawable, else 0
    // expected = expected_flushed + weight * (pool cum - cum_start)
    double expected_flushed = 0;
    double cum_start = 0;
  };
  struct Pool {
    bool tracked = true;  // false: too many items; `items` is empty, only units are counted
    std::map<std::string, Item, std::less<>> items;  // if tracked, every item the pool holds now
    std::uint64_t units = 0;                         // units applied, pool_empty included
    std::uint64_t pool_empty = 0;
    std::uint64_t total_weight = 0;  // sum of items' weight
    double cum = 0;                  // sum over units that found an item of 1 / total_weight
  };

  // Reads every pool's weights from `state`: at start, and after the state was replaced as a
  // whole (a snapshot installed from the leader). Counts are kept for items that still exist.
  void resync(const pool::StateMachine& state);
  // Records what `command` did (`result`, as applied to `state`, which shows the state after it).
  // A replayed or failed command changed nothing and is ignored.
  void on_apply(const pool::Command& command, const pool::Result& result,
                const pool::StateMachine& state);

  // Hashed: every draw looks its pool up, and 10,000 pools make an ordered map's lookup a chain of
  // cache misses.
  using PoolMap = std::unordered_map<std::string, Pool, pool::PoolIdHash, std::equal_to<>>;
  const PoolMap& pools() const { return pools_; }
  // The pools in pool_id order, for output.
  std::vector<const PoolMap::value_type*> sorted_pools() const;
  static double expected(const Pool& pool, const Item& item) {
    return item.expected_flushed + static_cast<double>(item.weight) * (pool.cum - item.cum_start);
  }
  // The item's share of the pool's drawable weight now (0 when nothing is drawable).
  static double expected_share(const Pool& pool, const Item& item) {
    return pool.total_weight == 0
               ? 0.0
               : static_cast<double>(item.weight) / static_cast<double>(pool.total_weight);
  }

  std::size_t tracked_items() const { return tracked_items_; }

  // Each pool's total_weight is the sum of its items' weights; tracked_items counts them all and
  // stays within its bound; an untracked pool has no item.
  void check_invariants() const;

 private:
  void resync_pool(const std::string& pool_id, const pool::Pool& state_pool);
  static void set_weight(Pool& pool, Item& item, std::uint64_t weight);
  void on_draws(const std::string& pool_id, const pool::Result& result,
                const pool::StateMachine& state);
  // on_draws when an item ran out within the batch: unit by unit. Sets lost_track if an item
  // drawn is not known (the caller resyncs).
  void on_draws_exact(Pool& pool, const pool::Result& result, const pool::Pool& state_pool,
                      bool& lost_track);

  // Stops tracking `pool`'s items (too many).
  void untrack(Pool& pool);
  // Drops a deleted pool and its items. The budget it frees goes to pools created later (or to
  // every pool at the next resync): an untracked pool stays untracked until then.
  void forget_pool(std::string_view pool_id);

  PoolMap pools_;
  std::size_t tracked_items_ = 0;  // sum of items.size(); <= tracked_items_total_max
};

}  // namespace rpool::node
