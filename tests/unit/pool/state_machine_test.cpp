#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "builders.h"
#include "pool/random.h"

using namespace rpool;
using namespace rpool::pool;
using namespace rpool::pool::test;

namespace {

std::vector<std::string> ids_of(const Result& r) {
  std::vector<std::string> out;
  for (const auto& d : r.draws) out.push_back(d.item_id.value_or("<empty>"));
  return out;
}

// P(X >= x) for X ~ chi-square with k degrees of freedom: the regularized upper incomplete
// gamma Q(k/2, x/2), by its series (x < a + 1) or its continued fraction (Lentz).
double chi_square_p_value(double x, int k) {
  const double a = k / 2.0;
  const double z = x / 2.0;
  const double log_prefix = a * std::log(z) - z - std::lgamma(a);
  if (z < a + 1) {
    double sum = 1.0 / a, term = sum;
    for (int n = 1; n < 1000; ++n) {
      term *= z / (a + n);
      sum += term;
    }
    return 1.0 - sum * std::exp(log_prefix);
  }
  const double tiny = 1e-300;
  double b = z + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
  }
  return std::exp(log_prefix) * h;
}

}  // namespace

TEST_CASE("the chi-square p-value helper matches table values") {
  // Critical values from standard tables.
  CHECK(chi_square_p_value(27.877, 9) == doctest::Approx(0.001).epsilon(0.01));
  CHECK(chi_square_p_value(16.919, 9) == doctest::Approx(0.05).epsilon(0.01));
  CHECK(chi_square_p_value(3.841, 1) == doctest::Approx(0.05).epsilon(0.01));
}

TEST_CASE("golden sequence: bootstrap, draws, update, delete give pinned items and request_ids") {
  // Expected outcomes come from an independent Python model of the documented selection rule.
  Driver d;
  d.apply(bootstrap({item("mud", -1, 70), item("gold", 5, 20), item("diamond", 2, 10)}));
  Result r = d.apply(draw(5, 7));
  CHECK(ids_of(r) == std::vector<std::string>{"mud", "diamond", "mud", "mud", "mud"});
  CHECK(r.draws.front().request_id == 1);
  CHECK(r.draws.back().request_id == 5);
  d.apply(upsert(item("gold", 0, 20)));
  r = d.apply(draw(3, 8));
  CHECK(ids_of(r) == std::vector<std::string>{"mud", "mud", "mud"});
  CHECK(r.draws.front().request_id == 6);
  CHECK(d.apply(remove_item("mud")).error == std::error_code());
  r = d.apply(draw(4, 9));
  CHECK(ids_of(r) == std::vector<std::string>{"diamond", "<empty>", "<empty>", "<empty>"});
  CHECK(r.draws.back().request_id == 12);
  CHECK(d.sm.last_request_id() == 12);
  CHECK(d.sm.find("diamond")->quantity == 0);
}

TEST_CASE("a limited pool is drawn exactly to exhaustion, then pool_empty with request_ids") {
  Driver d;
  d.apply(bootstrap({item("a", 3, 1), item("b", 4, 5)}));
  const Result r = d.apply(draw(10, 99));
  REQUIRE(r.draws.size() == 10);
  std::map<std::string, int> counts;
  for (std::size_t i = 0; i < r.draws.size(); ++i) {
    CHECK(r.draws[i].request_id == i + 1);
    if (i < 7) {
      REQUIRE(r.draws[i].item_id.has_value());
      ++counts[*r.draws[i].item_id];
    } else {
      CHECK_FALSE(r.draws[i].item_id.has_value());
    }
  }
  CHECK(counts["a"] == 3);
  CHECK(counts["b"] == 4);
  CHECK(d.sm.find("a")->quantity == 0);
  CHECK(d.apply(draw(1, 5)).draws.at(0).request_id == 11);
}

TEST_CASE("unlimited items never decrement and zero-probability items are never drawn") {
  Driver d;
  d.apply(bootstrap({item("free", -1, 1), item("never", 100, 0), item("also-never", -1, 0)}));
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    for (const auto& o : d.apply(draw(50, seed)).draws) CHECK(o.item_id == "free");
  }
  CHECK(d.sm.find("free")->quantity == -1);
  CHECK(d.sm.find("never")->quantity == 100);
  CHECK(d.sm.last_request_id() == 200 * 50);
}

TEST_CASE("an empty catalog answers pool_empty and still numbers the draw") {
  Driver d;
  const Result r = d.apply(draw(2, 1));
  REQUIRE(r.draws.size() == 2);
  CHECK_FALSE(r.draws[0].item_id);
  CHECK(r.draws[1].request_id == 2);
}

TEST_CASE("updates and deletes between draws take effect on the next draw") {
  Driver d;
  d.apply(bootstrap({item("a", -1, 1)}));
  CHECK(ids_of(d.apply(draw(3, 1))) == std::vector<std::string>(3, "a"));
  d.apply(upsert(item("b", -1, 1)));
  d.apply(upsert(item("a", -1, 0)));  // a is now undrawable
  CHECK(ids_of(d.apply(draw(20, 2))) == std::vector<std::string>(20, "b"));
  d.apply(upsert(item("a", 2, 1)));
  CHECK(d.apply(remove_item("b")).error == std::error_code());
  CHECK(ids_of(d.apply(draw(3, 3))) == std::vector<std::string>{"a", "a", "<empty>"});
  CHECK(d.apply(remove_item("b")).error == errc::not_found);
  CHECK(d.sm.items().size() == 1);
}

TEST_CASE("bad items are refused and change nothing") {
  Driver d;
  d.apply(bootstrap({item("a", 1, 1)}));
  const Sha256 before = d.sm.digest();
  for (const Item& bad :
       {item("", 1, 1), item(std::string(65, 'x'), 1, 1), item("sp ace", 1, 1), item("a", -2, 1),
        item("a", quantity_max + 1, 1), item("a", 1, probability_max + 1)}) {
    CHECK(d.apply(upsert(bad)).error == errc::bad_item);
  }
  CHECK(d.sm.digest() == before);
  CHECK(d.apply(upsert(item("Az09_.-", quantity_max, probability_max))).error == std::error_code());
}

TEST_CASE("bootstrap seeds the catalog once; duplicates or bad items refuse it whole") {
  Driver d;
  CHECK(d.apply(bootstrap({item("a", 1, 1), item("a", 2, 2)})).error == errc::bad_item);
  CHECK_FALSE(d.sm.bootstrapped());
  CHECK(d.sm.items().empty());
  CHECK(d.apply(bootstrap({item("a", 1, 1)})).bootstrapped);
  const Result again = d.apply(bootstrap({item("z", 1, 1)}));
  CHECK_FALSE(again.bootstrapped);
  CHECK_FALSE(again.error);
  CHECK(d.sm.find("z") == nullptr);
}

TEST_CASE("fairness: 1,000,000 unlimited draws fit the weights (chi-square p > 0.001)") {
  Driver d;
  const std::vector<std::uint64_t> weights = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89};
  std::vector<Item> catalog;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    catalog.push_back(item("item" + std::to_string(i), -1, weights[i]));
    total += weights[i];
  }
  d.apply(bootstrap(catalog));
  std::map<std::string, std::uint64_t> counts;
  SplitMix64 seeds(7);
  const int commands = 1000;
  for (int c = 0; c < commands; ++c) {
    for (const auto& o : d.sm.apply(++d.index, draw(1000, seeds.next())).draws)
      ++counts[*o.item_id];
  }
  const double n = 1000.0 * commands;
  double chi2 = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double expected = n * static_cast<double>(weights[i]) / static_cast<double>(total);
    const double observed = static_cast<double>(counts["item" + std::to_string(i)]);
    chi2 += (observed - expected) * (observed - expected) / expected;
  }
  const double p = chi_square_p_value(chi2, static_cast<int>(weights.size()) - 1);
  MESSAGE("chi2 = " << chi2 << ", p = " << p);
  CHECK(p > 0.001);
}

TEST_CASE("fairness: a biased selector is caught by the same chi-square check") {
  // The check above must be able to fail: modulo reduction over a huge total is biased.
  const std::uint64_t total = (std::uint64_t{1} << 63) + (std::uint64_t{1} << 62);
  SplitMix64 rng(1);
  std::uint64_t low_half = 0;
  const int n = 200'000;
  for (int i = 0; i < n; ++i) low_half += (rng.next() % total) < total / 2 ? 1 : 0;
  const double expected = n / 2.0;
  const double chi2 = 2 * (low_half - expected) * (low_half - expected) / expected;
  CHECK(chi_square_p_value(chi2, 1) < 0.001);
  // And the unbiased method passes on the same stream.
  SplitMix64 rng2(1);
  std::uint64_t fair_low = 0;
  for (int i = 0; i < n; ++i) fair_low += bounded(rng2, total) < total / 2 ? 1 : 0;
  const double chi2_fair = 2 * (fair_low - expected) * (fair_low - expected) / expected;
  CHECK(chi_square_p_value(chi2_fair, 1) > 0.001);
}

TEST_CASE("determinism: two state machines fed the same random commands agree at every step") {
  SplitMix64 rng(2026);
  Driver a, b;
  for (int step = 0; step < 3000; ++step) {
    Command c;
    const std::uint64_t kind = bounded(rng, 10);
    const std::string id = 'i' + std::to_string(bounded(rng, 40));
    if (kind < 6) {
      c = draw(static_cast<std::uint32_t>(1 + bounded(rng, 20)), rng.next());
    } else if (kind < 9) {
      const std::int64_t q =
          bounded(rng, 4) == 0 ? -1 : static_cast<std::int64_t>(bounded(rng, 30));
      c = upsert(item(id, q, bounded(rng, 100)));
    } else {
      c = remove_item(id);
    }
    c.timestamp_ms = static_cast<std::uint64_t>(step) * 1000;
    if (bounded(rng, 3) == 0) c = keyed(c, 'k' + std::to_string(bounded(rng, 500)), 1);
    const Result ra = a.apply(c);
    const Result rb = b.apply(c);
    REQUIRE(ra == rb);
    REQUIRE(a.sm.digest() == b.sm.digest());
  }
  CHECK(a.sm.last_request_id() > 0);
}

namespace {

// The documented selection rule written as plainly as possible: one draw after the other,
// drawable items in item_id order, a linear scan of cumulative weights.
class NaivePool {
 public:
  void upsert(const Item& i) { items_[i.item_id] = i; }
  std::vector<DrawOutcome> draw(std::uint32_t count, std::uint64_t seed) {
    SplitMix64 rng(seed);
    std::vector<DrawOutcome> out;
    for (std::uint32_t k = 0; k < count; ++k) {
      const std::uint64_t request_id = ++last_request_id_;
      std::uint64_t total = 0;
      for (const auto& [id, i] : items_) total += i.quantity != 0 ? i.probability : 0;
      if (total == 0) {
        out.push_back({request_id, std::nullopt});
        continue;
      }
      const std::uint64_t r = bounded(rng, total);
      std::uint64_t cumulative = 0;
      for (auto& [id, i] : items_) {
        cumulative += i.quantity != 0 ? i.probability : 0;
        if (r < cumulative) {
          if (i.quantity > 0) --i.quantity;
          out.push_back({request_id, id});
          break;
        }
      }
    }
    return out;
  }
  const std::map<std::string, Item>& items() const { return items_; }

 private:
  std::map<std::string, Item> items_;
  std::uint64_t last_request_id_ = 0;
};

}  // namespace

TEST_CASE("draws agree with a naive one-at-a-time model across exhaustion, on 2,000 seeds") {
  for (std::uint64_t seed = 1; seed <= 2000; ++seed) {
    SplitMix64 rng(seed);
    Driver d;
    NaivePool naive;
    const std::size_t n = 1 + bounded(rng, 12);
    for (std::size_t i = 0; i < n; ++i) {
      // Small stocks so that items run out in the middle of multi-draw commands.
      const std::int64_t q = bounded(rng, 5) == 0 ? -1 : static_cast<std::int64_t>(bounded(rng, 6));
      const Item it = item('i' + std::to_string(bounded(rng, 20)), q,
                           bounded(rng, 4) == 0 ? 0 : 1 + bounded(rng, 50));
      d.apply(upsert(it));
      naive.upsert(it);
    }
    for (int c = 0; c < 4; ++c) {
      const auto count = static_cast<std::uint32_t>(1 + bounded(rng, 30));
      const std::uint64_t draw_seed = rng.next();
      REQUIRE(d.apply(draw(count, draw_seed)).draws == naive.draw(count, draw_seed));
    }
    for (const auto& [id, it] : naive.items()) REQUIRE(*d.sm.find(id) == it);
  }
}
