// Weighted selection over slots 0..n-1 with a Fenwick (binary indexed) tree.
//
// find(r) returns the slot whose cumulative-weight range [prefix(slot), prefix(slot + 1))
// contains r, for r < total(). Zero-weight slots own an empty range and are never returned.
// set() and find() are O(log n); assign() builds the tree in O(n).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace rpool::pool {

class Selector {
 public:
  // Replaces every slot's weight.
  void assign(std::span<const std::uint64_t> weights);
  // Sets one slot's weight.
  void set(std::size_t slot, std::uint64_t weight);

  std::uint64_t weight(std::size_t slot) const { return weights_[slot]; }
  std::uint64_t total() const { return total_; }
  std::size_t size() const { return weights_.size(); }

  // Requires r < total().
  std::size_t find(std::uint64_t r) const;

  // Recomputes the tree from the weights and compares; crashes on a mismatch.
  void check_invariants() const;

 private:
  std::vector<std::uint64_t> tree_;     // 1-based: tree_[i] sums weights (i - lowbit(i), i]
  std::vector<std::uint64_t> weights_;  // weights_[slot]
  std::uint64_t total_ = 0;             // == sum of weights_
  std::size_t top_step_ = 0;            // the largest power of two <= size(), 0 if empty
};

}  // namespace rpool::pool
