#include "pool/selector.h"

#include <algorithm>
#include <cstdint>

#include "base/assert.h"

namespace rpool::pool {
namespace {

// Fills a group from up to 8 child totals; missing children repeat the running total.
template <class Group>
void fill(Group& group, std::span<const std::uint64_t> children) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < group.sums.size(); ++i) {
    if (i < children.size()) sum += children[i];
    group.sums[i] = sum;
  }
}

}  // namespace

Selector::Selector() { assign({}); }

void Selector::assign(std::span<const std::uint64_t> weights) {
  size_ = weights.size();
  // The levels' sizes first, so the array is allocated once.
  std::size_t count = std::max<std::size_t>(1, (size_ + fanout - 1) / fanout);
  levels_ = 0;
  level_begin_[0] = 0;
  while (true) {
    RPOOL_ASSERT_OP(levels_, <, levels_max);
    RPOOL_ASSERT_OP(count, <=, std::size_t{UINT32_MAX} - level_begin_[levels_]);
    level_begin_[levels_ + 1] = static_cast<std::uint32_t>(level_begin_[levels_] + count);
    ++levels_;
    if (count == 1) break;
    count = (count + fanout - 1) / fanout;
  }
  groups_.assign(level_begin_[levels_], Group{});
  std::vector<std::uint64_t> children(weights.begin(), weights.end());
  std::vector<std::uint64_t> totals;
  for (std::size_t level = 0; level < levels_; ++level) {
    totals.clear();
    for (std::size_t g = 0; g < level_size(level); ++g) {
      const std::size_t first = g * fanout;
      const std::size_t n = first < children.size() ? std::min(fanout, children.size() - first) : 0;
      fill(group(level, g), std::span<const std::uint64_t>(children).subspan(first, n));
      totals.push_back(group(level, g).sums[fanout - 1]);
    }
    children.swap(totals);
  }
}

std::uint64_t Selector::weight(std::size_t slot) const {
  RPOOL_ASSERT_OP(slot, <, size_);
  const Group& g = group(0, slot / fanout);
  const std::size_t pos = slot % fanout;
  return g.sums[pos] - (pos == 0 ? 0 : g.sums[pos - 1]);
}

void Selector::set(std::size_t slot, std::uint64_t weight) {
  RPOOL_ASSERT_OP(slot, <, size_);
  // Unsigned wrap-around makes "+= delta" right for decreases too.
  const std::uint64_t delta = weight - this->weight(slot);
  std::size_t index = slot;
  for (std::size_t level = 0; level < levels_; ++level) {
    Group& g = group(level, index / fanout);
    for (std::size_t i = index % fanout; i < fanout; ++i) g.sums[i] += delta;
    index /= fanout;
  }
  RPOOL_ASSERT_OP(index, ==, 0u);
}

std::size_t Selector::find(std::uint64_t r) const {
  RPOOL_ASSERT_OP(r, <, total());
  std::size_t index = 0;
  for (std::size_t level = levels_; level-- > 0;) {
    const Group& g = group(level, index);
    // The child holding r is the number of inclusive prefix sums <= r (branch-free).
    std::size_t child = 0;
    for (const std::uint64_t sum : g.sums) child += sum <= r ? 1 : 0;
    RPOOL_ASSERT_OP(child, <, fanout);
    if (child != 0) r -= g.sums[child - 1];
    index = index * fanout + child;
  }
  RPOOL_ASSERT_OP(index, <, size_);
  return index;
}

void Selector::check_invariants() const {
  RPOOL_ASSERT(levels_ >= 1 && levels_ <= levels_max);
  RPOOL_ASSERT_OP(level_begin_[0], ==, 0u);
  RPOOL_ASSERT_OP(level_begin_[levels_], ==, groups_.size());
  RPOOL_ASSERT_OP(level_size(levels_ - 1), ==, 1u);
  RPOOL_ASSERT_OP(level_size(0), ==, std::max<std::size_t>(1, (size_ + fanout - 1) / fanout));
  for (std::size_t slot = size_; slot < level_size(0) * fanout; ++slot) {
    const Group& g = group(0, slot / fanout);
    const std::size_t pos = slot % fanout;
    RPOOL_ASSERT(pos == 0 || g.sums[pos] == g.sums[pos - 1]);  // padding adds nothing
    if (pos == 0) RPOOL_ASSERT_OP(g.sums[0], ==, 0u);
  }
  for (std::size_t level = 0; level + 1 < levels_; ++level) {
    const std::size_t below = level_size(level);
    const std::size_t above = level_size(level + 1);
    RPOOL_ASSERT_OP(above, ==, (below + fanout - 1) / fanout);
    for (std::size_t g = 0; g < above * fanout; ++g) {
      const std::uint64_t child_total = g < below ? group(level, g).sums[fanout - 1] : 0;
      const Group& parent = group(level + 1, g / fanout);
      const std::size_t pos = g % fanout;
      RPOOL_ASSERT_OP(parent.sums[pos] - (pos == 0 ? 0 : parent.sums[pos - 1]), ==, child_total);
    }
  }
}

}  // namespace rpool::pool
