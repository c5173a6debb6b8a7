#include "pool/selector.h"

#include <bit>

#include "base/assert.h"

namespace rpool::pool {

void Selector::assign(std::span<const std::uint64_t> weights) {
  weights_.assign(weights.begin(), weights.end());
  const std::size_t n = weights_.size();
  tree_.assign(n + 1, 0);
  total_ = 0;
  // Linear construction: each node pushes its sum into its parent.
  for (std::size_t i = 1; i <= n; ++i) {
    tree_[i] += weights_[i - 1];
    total_ += weights_[i - 1];
    const std::size_t parent = i + (i & (0 - i));
    if (parent <= n) tree_[parent] += tree_[i];
  }
  top_step_ = n == 0 ? 0 : std::bit_floor(n);
}

void Selector::set(std::size_t slot, std::uint64_t weight) {
  RPOOL_ASSERT_OP(slot, <, weights_.size());
  const std::uint64_t old = weights_[slot];
  if (old == weight) return;
  weights_[slot] = weight;
  total_ = total_ - old + weight;
  // Unsigned wrap-around makes "+ (weight - old)" right for decreases too.
  const std::uint64_t delta = weight - old;
  for (std::size_t i = slot + 1; i < tree_.size(); i += i & (0 - i)) tree_[i] += delta;
}

std::size_t Selector::find(std::uint64_t r) const {
  RPOOL_ASSERT_OP(r, <, total_);
  // Binary lifting: the largest pos with prefix(pos) <= r; slot pos is then the one holding r.
  std::size_t pos = 0;
  std::uint64_t rest = r;
  const std::size_t n = weights_.size();
  for (std::size_t step = top_step_; step != 0; step >>= 1) {
    const std::size_t next = pos + step;
    if (next <= n && tree_[next] <= rest) {
      pos = next;
      rest -= tree_[next];
    }
  }
  RPOOL_ASSERT_OP(pos, <, n);
  RPOOL_ASSERT_OP(rest, <, weights_[pos]);
  return pos;
}

void Selector::check_invariants() const {
  RPOOL_ASSERT_OP(tree_.size(), ==, weights_.size() + 1);
  std::vector<std::uint64_t> prefix(weights_.size() + 1, 0);
  for (std::size_t i = 0; i < weights_.size(); ++i) prefix[i + 1] = prefix[i] + weights_[i];
  RPOOL_ASSERT_OP(prefix.back(), ==, total_);
  for (std::size_t i = 1; i < tree_.size(); ++i) {
    const std::size_t low = i - (i & (0 - i));
    RPOOL_ASSERT_OP(tree_[i], ==, prefix[i] - prefix[low]);
  }
}

}  // namespace rpool::pool
