// Weighted selection over slots 0..n-1: a static 8-ary tree of cumulative sums.
//
// find(r) returns the slot whose cumulative-weight range [prefix(slot), prefix(slot + 1))
// contains r, for r < total(). Zero-weight slots own an empty range and are never returned.
//
// Layout. Level 0 splits the slots into groups of 8; a group holds the inclusive prefix sums
// of its 8 slots' weights (slots past the end repeat the group total). Level k + 1 does the
// same over the totals of level k's groups, up to a single top group. A group is one 64-byte
// cache line, so find() reads one line per level (6 lines for 100,000 slots; a binary Fenwick
// tree reads 17 scattered words) and compares branch-free within it. set() adds the change to
// at most 8 sums per level. Both are O(log8 n); assign() builds in O(n).
//
// Every level lives in one array, level 0 first and the top group last, so that a small tree
// (100 slots: 16 groups, 1 KiB) is one allocation on one page: with many pools, each draw meets
// its pool's tree cold, and separate allocations per level cost a cache and TLB miss each.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace rpool::pool {

class Selector {
 public:
  Selector();

  // Replaces every slot's weight.
  void assign(std::span<const std::uint64_t> weights);
  // Sets one slot's weight.
  void set(std::size_t slot, std::uint64_t weight);

  std::uint64_t weight(std::size_t slot) const;
  std::uint64_t total() const { return groups_.back().sums[fanout - 1]; }
  std::size_t size() const { return size_; }

  // Requires r < total().
  std::size_t find(std::uint64_t r) const;

  // Recomputes every sum from the leaf weights and compares; crashes on a mismatch.
  void check_invariants() const;

 private:
  static constexpr std::size_t fanout = 8;
  struct alignas(64) Group {
    std::array<std::uint64_t, fanout> sums{};  // inclusive prefix sums, non-decreasing
  };
  static_assert(sizeof(Group) == 64);

  // Enough for 8^12 slots, far beyond any pool (items_max).
  static constexpr std::size_t levels_max = 12;

  Group& group(std::size_t level, std::size_t i) { return groups_[level_begin_[level] + i]; }
  const Group& group(std::size_t level, std::size_t i) const {
    return groups_[level_begin_[level] + i];
  }
  std::size_t level_size(std::size_t level) const {
    return level_begin_[level + 1] - level_begin_[level];
  }

  std::vector<Group> groups_;  // level 0 (over the slots), then each level above; the top last
  // Level k is groups_[level_begin_[k], level_begin_[k + 1]); the top level has one group.
  std::array<std::uint32_t, levels_max + 1> level_begin_{};
  std::size_t levels_ = 0;
  std::size_t size_ = 0;
};

}  // namespace rpool::pool
