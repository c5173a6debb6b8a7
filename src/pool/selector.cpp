#include "pool/selector.h"

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
  levels_.clear();
  std::vector<std::uint64_t> children(weights.begin(), weights.end());
  do {
    std::vector<Group> level((children.size() + fanout - 1) / fanout);
    if (level.empty()) level.resize(1);
    std::vector<std::uint64_t> totals;
    totals.reserve(level.size());
    for (std::size_t g = 0; g < level.size(); ++g) {
      const std::size_t first = g * fanout;
      const std::size_t n = first < children.size() ? std::min(fanout, children.size() - first) : 0;
      fill(level[g], std::span<const std::uint64_t>(children).subspan(first, n));
      totals.push_back(level[g].sums[fanout - 1]);
    }
    levels_.push_back(std::move(level));
    children = std::move(totals);
  } while (levels_.back().size() > 1);
}

std::uint64_t Selector::weight(std::size_t slot) const {
  RPOOL_ASSERT_OP(slot, <, size_);
  const Group& group = levels_[0][slot / fanout];
  const std::size_t pos = slot % fanout;
  return group.sums[pos] - (pos == 0 ? 0 : group.sums[pos - 1]);
}

void Selector::set(std::size_t slot, std::uint64_t weight) {
  RPOOL_ASSERT_OP(slot, <, size_);
  // Unsigned wrap-around makes "+= delta" right for decreases too.
  const std::uint64_t delta = weight - this->weight(slot);
  std::size_t index = slot;
  for (auto& level : levels_) {
    Group& group = level[index / fanout];
    for (std::size_t i = index % fanout; i < fanout; ++i) group.sums[i] += delta;
    index /= fanout;
  }
  RPOOL_ASSERT_OP(index, ==, 0u);
}

std::size_t Selector::find(std::uint64_t r) const {
  RPOOL_ASSERT_OP(r, <, total());
  std::size_t index = 0;
  for (std::size_t level = levels_.size(); level-- > 0;) {
    const Group& group = levels_[level][index];
    // The child holding r is the number of inclusive prefix sums <= r (branch-free).
    std::size_t child = 0;
    for (const std::uint64_t sum : group.sums) child += sum <= r ? 1 : 0;
    RPOOL_ASSERT_OP(child, <, fanout);
    if (child != 0) r -= group.sums[child - 1];
    index = index * fanout + child;
  }
  RPOOL_ASSERT_OP(index, <, size_);
  return index;
}

void Selector::check_invariants() const {
  RPOOL_ASSERT(!levels_.empty());
  RPOOL_ASSERT_OP(levels_.back().size(), ==, 1u);
  RPOOL_ASSERT_OP(levels_[0].size(), ==, std::max<std::size_t>(1, (size_ + fanout - 1) / fanout));
  for (std::size_t slot = size_; slot < levels_[0].size() * fanout; ++slot) {
    const Group& group = levels_[0][slot / fanout];
    const std::size_t pos = slot % fanout;
    RPOOL_ASSERT(pos == 0 || group.sums[pos] == group.sums[pos - 1]);  // padding adds nothing
    if (pos == 0) RPOOL_ASSERT_OP(group.sums[0], ==, 0u);
  }
  for (std::size_t level = 0; level + 1 < levels_.size(); ++level) {
    const auto& below = levels_[level];
    const auto& above = levels_[level + 1];
    RPOOL_ASSERT_OP(above.size(), ==, (below.size() + fanout - 1) / fanout);
    for (std::size_t g = 0; g < above.size() * fanout; ++g) {
      const std::uint64_t child_total = g < below.size() ? below[g].sums[fanout - 1] : 0;
      const Group& parent = above[g / fanout];
      const std::size_t pos = g % fanout;
      RPOOL_ASSERT_OP(parent.sums[pos] - (pos == 0 ? 0 : parent.sums[pos - 1]), ==, child_total);
    }
  }
}

}  // namespace rpool::pool
