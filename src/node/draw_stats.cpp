// DrawStats: observed and expected draws per item (see the header for the arithmetic).
#include "node/draw_stats.h"

#include <algorithm>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/container/small_vector.hpp>

#include "base/assert.h"

namespace rpool::node {
namespace {

// The selector's own rule (pool/state_machine.h): drawable means quantity != 0 and a weight.
std::uint64_t weight_of(const pool::Item& item) {
  return item.quantity == 0 ? 0 : item.probability;
}

}  // namespace

void DrawStats::set_weight(Pool& pool, Item& item, std::uint64_t weight) {
  item.expected_flushed = expected(pool, item);
  item.cum_start = pool.cum;
  RPOOL_ASSERT_OP(pool.total_weight, >=, item.weight);
  pool.total_weight = pool.total_weight - item.weight + weight;
  item.weight = weight;
}

void DrawStats::untrack(Pool& pool) {
  RPOOL_ASSERT_OP(tracked_items_, >=, pool.items.size());
  tracked_items_ -= pool.items.size();
  pool.items.clear();
  pool.total_weight = 0;
  pool.tracked = false;
}

void DrawStats::resync_pool(const std::string& pool_id, const pool::Pool& state_pool) {
  Pool& p = pools_[pool_id];
  const auto& items = state_pool.items();
  if (items.size() > items_tracked_max ||
      tracked_items_ - p.items.size() + items.size() > tracked_items_total_max) {
    untrack(p);
    return;
  }
  p.tracked = true;
  // Items the pool no longer holds go; the others take their current weight.
  for (auto it = p.items.begin(); it != p.items.end();) {
    if (state_pool.find(it->first) == nullptr) {
      set_weight(p, it->second, 0);
      it = p.items.erase(it);
      --tracked_items_;
    } else {
      ++it;
    }
  }
  for (const pool::Item& item : items) {
    auto [it, added] = p.items.try_emplace(item.item_id);
    if (added) {
      ++tracked_items_;
      it->second.cum_start = p.cum;
    }
    set_weight(p, it->second, weight_of(item));
  }
}

std::vector<const DrawStats::PoolMap::value_type*> DrawStats::sorted_pools() const {
  std::vector<const PoolMap::value_type*> out;
  out.reserve(pools_.size());
  for (const auto& entry : pools_) out.push_back(&entry);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  return out;
}

void DrawStats::forget_pool(std::string_view pool_id) {
  const auto it = pools_.find(pool_id);
  if (it == pools_.end()) return;
  RPOOL_ASSERT_OP(tracked_items_, >=, it->second.items.size());
  tracked_items_ -= it->second.items.size();
  pools_.erase(it);
}

void DrawStats::resync(const pool::StateMachine& state) {
  std::set<std::string, std::less<>> live;
  for (const pool::PoolSummary& s : state.pools()) {
    const pool::Pool* state_pool = state.pool(s.pool_id);
    RPOOL_ASSERT(state_pool != nullptr);
    resync_pool(s.pool_id, *state_pool);
    live.insert(s.pool_id);
  }
  for (auto it = pools_.begin(); it != pools_.end();) {
    if (live.contains(it->first)) {
      ++it;
      continue;
    }
    tracked_items_ -= it->second.items.size();
    it = pools_.erase(it);
  }
}

void DrawStats::on_draws(const std::string& pool_id, const pool::Result& result,
                         const pool::StateMachine& state) {
  Pool& p = pools_[pool_id];
  // The common case first, on the apply path of every draw: the units' items sorted (in place,
  // without allocating for the usual small counts), then one ordered lookup per distinct item.
  // If no item ran out in this batch, the weights held for every unit of it.
  boost::container::small_vector<std::string_view, 8> units;
  std::uint64_t found = 0;
  for (const auto& d : result.draws) {
    ++p.units;
    if (!d.item_id) {
      ++p.pool_empty;
      continue;
    }
    ++found;
    if (p.tracked) units.push_back(*d.item_id);
  }
  if (!p.tracked || found == 0) return;
  // Looked up only now: with many pools most are untracked, and their draws stop above.
  const pool::Pool* state_pool = state.pool(pool_id);
  std::sort(units.begin(), units.end());
  boost::container::small_vector<std::pair<std::string_view, std::uint64_t>, 8> batch;
  for (const std::string_view id : units) {
    if (batch.empty() || batch.back().first != id) batch.emplace_back(id, 0);
    ++batch.back().second;
  }
  // A limited item that is at 0 now ran out at its last unit of this batch.
  bool ran_out = false;
  for (const auto& [id, n] : batch) {
    const pool::Item* now = state_pool != nullptr ? state_pool->find(id) : nullptr;
    ran_out = ran_out || (now != nullptr && now->quantity == 0);
  }
  bool lost_track = p.total_weight == 0;  // cannot be if every change went through on_apply
  if (!ran_out && !lost_track) {
    for (const auto& [id, n] : batch) {
      const auto it = p.items.find(id);
      if (it == p.items.end()) {
        lost_track = true;
        continue;
      }
      it->second.observed += n;
    }
    p.cum += static_cast<double>(found) / static_cast<double>(p.total_weight);
  } else if (!lost_track) {
    on_draws_exact(p, result, *state_pool, lost_track);
  }
  if (lost_track && state_pool != nullptr) resync_pool(pool_id, *state_pool);
}

void DrawStats::on_draws_exact(Pool& p, const pool::Result& result, const pool::Pool& state_pool,
                               bool& lost_track) {
  // The units after an item's last one in the batch were drawn without it: mark each ran-out
  // item's last unit (walking backwards, the first seen is the last) and drop its weight there.
  std::vector<bool> ran_out(result.draws.size(), false);
  std::set<std::string_view> seen;
  for (std::size_t k = result.draws.size(); k-- > 0;) {
    const auto& id = result.draws[k].item_id;
    if (!id || !seen.insert(*id).second) continue;
    const pool::Item* now = state_pool.find(*id);
    ran_out[k] = now != nullptr && now->quantity == 0;
  }
  for (std::size_t k = 0; k < result.draws.size(); ++k) {
    const auto& id = result.draws[k].item_id;
    if (!id) continue;  // counted by on_draws
    const auto it = p.items.find(*id);
    if (it == p.items.end() || p.total_weight == 0) {
      lost_track = true;
      continue;
    }
    p.cum += 1.0 / static_cast<double>(p.total_weight);
    ++it->second.observed;
    if (ran_out[k]) set_weight(p, it->second, 0);
  }
}

void DrawStats::on_apply(const pool::Command& command, const pool::Result& result,
                         const pool::StateMachine& state) {
  if (result.replayed || result.error) return;
  std::visit(
      [&](const auto& op) {
        using Op = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<Op, pool::Draw>) {
          on_draws(command.pool_id, result, state);
        } else if constexpr (std::is_same_v<Op, pool::UpsertItem> ||
                             std::is_same_v<Op, pool::DeleteItem>) {
          // One item changed: its pool is re-read only if the item set grew past a bound or
          // the pool is untracked; otherwise the one item is updated in O(log n).
          const pool::Pool* state_pool = state.pool(command.pool_id);
          if (state_pool == nullptr) return;
          Pool& p = pools_[command.pool_id];
          const std::string& item_id = [&]() -> const std::string& {
            if constexpr (std::is_same_v<Op, pool::UpsertItem>) return op.item.item_id;
            else return op.item_id;
          }();
          const pool::Item* now = state_pool->find(item_id);
          auto it = p.items.find(item_id);
          if (!p.tracked || (it == p.items.end() && now != nullptr)) {
            resync_pool(command.pool_id, *state_pool);
          } else if (now == nullptr) {
            if (it == p.items.end()) return;
            set_weight(p, it->second, 0);
            p.items.erase(it);
            --tracked_items_;
          } else {
            set_weight(p, it->second, weight_of(*now));
          }
        } else if constexpr (std::is_same_v<Op, pool::CreatePool>) {
          // Only the new pool: a full resync reads every pool's summary (and digest), which
          // made creating n pools cost O(n^2).
          const pool::Pool* state_pool = state.pool(command.pool_id);
          if (state_pool != nullptr) resync_pool(command.pool_id, *state_pool);
        } else if constexpr (std::is_same_v<Op, pool::DeletePool>) {
          forget_pool(command.pool_id);
        } else {
          resync(state);  // bootstrap: once
        }
      },
      command.op);
}

void DrawStats::check_invariants() const {
  std::size_t items = 0;
  for (const auto& [id, p] : pools_) {
    std::uint64_t total = 0;
    for (const auto& [item_id, item] : p.items) total += item.weight;
    RPOOL_ASSERT_OP(total, ==, p.total_weight);
    RPOOL_ASSERT_OP(p.pool_empty, <=, p.units);
    if (!p.tracked) RPOOL_ASSERT(p.items.empty());
    items += p.items.size();
  }
  RPOOL_ASSERT_OP(items, ==, tracked_items_);
  RPOOL_ASSERT_OP(tracked_items_, <=, tracked_items_total_max);
}

}  // namespace rpool::node
