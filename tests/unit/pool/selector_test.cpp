#include <doctest/doctest.h>

#include <vector>

#include "pool/random.h"
#include "pool/selector.h"

using namespace rpool::pool;

namespace {

// The oracle: a linear scan of cumulative weights.
std::size_t naive_find(const std::vector<std::uint64_t>& weights, std::uint64_t r) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    cumulative += weights[i];
    if (r < cumulative) return i;
  }
  FAIL("r beyond the total weight");
  return 0;
}

}  // namespace

TEST_CASE("the selector agrees with a linear scan on 50,000 seeded random cases") {
  SplitMix64 rng(20261129);
  std::size_t cases = 0;
  while (cases < 50'000) {
    const std::size_t n = 1 + bounded(rng, 300);
    std::vector<std::uint64_t> weights(n);
    for (auto& w : weights) {
      // A third of the slots are zero so that empty ranges are exercised.
      w = bounded(rng, 3) == 0 ? 0 : bounded(rng, 1'000'000'000'000ULL);
    }
    Selector selector;
    selector.assign(weights);
    selector.check_invariants();
    // A few random updates, then queries, including both ends of the range.
    for (int round = 0; round < 5; ++round) {
      const std::size_t slot = bounded(rng, n);
      weights[slot] = bounded(rng, 2) == 0 ? 0 : bounded(rng, 1000);
      selector.set(slot, weights[slot]);
      std::uint64_t total = 0;
      for (auto w : weights) total += w;
      REQUIRE(selector.total() == total);
      if (total == 0) continue;
      for (const std::uint64_t r :
           {std::uint64_t{0}, total - 1, bounded(rng, total), bounded(rng, total)}) {
        REQUIRE(selector.find(r) == naive_find(weights, r));
        ++cases;
      }
    }
    selector.check_invariants();
  }
  CHECK(cases >= 50'000);
}

TEST_CASE("zero-weight slots at either end and in the middle are never found") {
  Selector selector;
  const std::vector<std::uint64_t> weights = {0, 3, 0, 0, 2, 0};
  selector.assign(weights);
  for (std::uint64_t r = 0; r < 3; ++r) CHECK(selector.find(r) == 1);
  for (std::uint64_t r = 3; r < 5; ++r) CHECK(selector.find(r) == 4);
}

TEST_CASE("an empty selector has total 0") {
  Selector selector;
  selector.assign({});
  CHECK(selector.total() == 0);
  CHECK(selector.size() == 0);
  selector.check_invariants();
}

TEST_CASE("deep trees and a selector assigned again agree with the scan") {
  // Up to 7 levels in the one array (1,000,000 slots); assigning a smaller set after a larger
  // one (and back) recomputes every level's place.
  SplitMix64 rng(20261203);
  Selector selector;
  for (const std::size_t n : {std::size_t{1'000'000}, std::size_t{9}, std::size_t{8},
                              std::size_t{65}, std::size_t{100'000}, std::size_t{1}}) {
    std::vector<std::uint64_t> weights(n);
    for (auto& w : weights) w = bounded(rng, 4) == 0 ? 0 : 1 + bounded(rng, 1000);
    weights[n - 1] = 7;  // never all zero
    selector.assign(weights);
    selector.check_invariants();
    REQUIRE(selector.size() == n);
    std::uint64_t total = 0;
    for (auto w : weights) total += w;
    REQUIRE(selector.total() == total);
    for (int q = 0; q < 200; ++q) {
      const std::uint64_t r = q == 0 ? total - 1 : bounded(rng, total);
      REQUIRE(selector.find(r) == naive_find(weights, r));
    }
    const std::size_t slot = bounded(rng, n);
    selector.set(slot, weights[slot] + 5);
    weights[slot] += 5;
    REQUIRE(selector.total() == total + 5);
    REQUIRE(selector.find(total + 4) == naive_find(weights, total + 4));
    selector.check_invariants();
  }
}
