// DrawStats against a naive oracle: for every unit, the weights of the items as they stood just
// before it, summed one unit at a time.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>

#include "../pool/builders.h"
#include "base/splitmix64.h"
#include "node/draw_stats.h"

namespace rpool::node {
namespace {

using pool::test::draw;
using pool::test::item;

// Expected counts of the "default" pool's items, unit by unit.
struct Oracle {
  std::map<std::string, double> expected;
  std::map<std::string, std::uint64_t> observed;

  // `before`: the items as they stood before the draw; `result`: its units.
  void on_draw(std::vector<pool::Item> before, const pool::Result& result) {
    for (const auto& d : result.draws) {
      if (!d.item_id) continue;
      double total = 0;
      for (const auto& i : before)
        total += i.quantity == 0 ? 0 : static_cast<double>(i.probability);
      for (auto& i : before) {
        if (i.quantity != 0) expected[i.item_id] += static_cast<double>(i.probability) / total;
        if (i.item_id == *d.item_id && i.quantity > 0) --i.quantity;
      }
      ++observed[*d.item_id];
    }
  }
};

void check_against(const DrawStats& stats, const Oracle& oracle, const pool::StateMachine& state) {
  stats.check_invariants();
  const auto& p = stats.pools().at("default");
  for (const auto& i : state.items()) {
    CAPTURE(i.item_id);
    const auto it = p.items.find(i.item_id);
    REQUIRE(it != p.items.end());
    const auto o = oracle.observed.find(i.item_id);
    CHECK(it->second.observed == (o == oracle.observed.end() ? 0 : o->second));
    const auto e = oracle.expected.find(i.item_id);
    const double want = e == oracle.expected.end() ? 0 : e->second;
    CHECK(std::abs(DrawStats::expected(p, it->second) - want) <= 1e-6 * (1 + want));
  }
  CHECK(p.items.size() == state.items().size());
}

TEST_CASE(
    "expected counts follow the weights unit by unit, through upserts and items running out") {
  SplitMix64 rng(7);
  for (int round = 0; round < 20; ++round) {
    pool::StateMachine state;
    DrawStats stats;
    Oracle oracle;
    std::uint64_t index = 1;
    auto apply = [&](const pool::Command& c) {
      const std::vector<pool::Item> before = state.items();
      const pool::Result r = state.apply(index++, c);
      stats.on_apply(c, r, state);
      if (std::holds_alternative<pool::Draw>(c.op)) oracle.on_draw(before, r);
      // A deleted item's counts go with it (an item created again starts from nothing).
      for (const auto& i : before) {
        if (state.find(i.item_id) != nullptr) continue;
        oracle.expected.erase(i.item_id);
        oracle.observed.erase(i.item_id);
      }
    };
    apply(pool::test::bootstrap({item("a", 5, 1), item("b", -1, 3), item("c", 40, 2)}));
    for (int step = 0; step < 60; ++step) {
      const std::uint64_t pick = rng.next() % 10;
      if (pick < 7) {
        apply(draw(static_cast<std::uint32_t>(1 + rng.next() % 50), rng.next()));
      } else if (pick < 9) {
        const std::string id(1, static_cast<char>('a' + rng.next() % 5));
        apply(pool::test::upsert(
            item(id, static_cast<std::int64_t>(rng.next() % 30), 1 + rng.next() % 5)));
      } else {
        apply(pool::test::remove_item(std::string(1, static_cast<char>('a' + rng.next() % 5))));
      }
      check_against(stats, oracle, state);
    }
  }
}

TEST_CASE("a limited item that runs out mid-batch is expected only for the units before") {
  pool::StateMachine state;
  DrawStats stats;
  const auto boot = pool::test::bootstrap({item("rare", 1, 1000000), item("mud", -1, 1)});
  stats.on_apply(boot, state.apply(1, boot), state);
  const auto d = draw(10, 42);
  const pool::Result r = state.apply(2, d);
  stats.on_apply(d, r, state);
  const auto& p = stats.pools().at("default");
  // Nearly surely the first unit takes "rare"; the nine after it can only be "mud".
  REQUIRE(r.draws[0].item_id == "rare");
  CHECK(p.items.at("rare").observed == 1);
  CHECK(p.items.at("mud").observed == 9);
  CHECK(DrawStats::expected(p, p.items.at("mud")) == doctest::Approx(9 + 1.0 / 1000001));
  CHECK(DrawStats::expected_share(p, p.items.at("rare")) == 0);
  CHECK(DrawStats::expected_share(p, p.items.at("mud")) == 1);
  stats.check_invariants();
}

TEST_CASE("a pool with more items than the bound counts units but no item") {
  pool::StateMachine state;
  DrawStats stats;
  std::vector<pool::Item> items;
  for (std::size_t i = 0; i <= DrawStats::items_tracked_max; ++i)
    items.push_back(item(std::string("i").append(std::to_string(1000000 + i)), -1, 1));
  const auto boot = pool::test::bootstrap(items);
  stats.on_apply(boot, state.apply(1, boot), state);
  const auto d = draw(3, 1);
  stats.on_apply(d, state.apply(2, d), state);
  const auto& p = stats.pools().at("default");
  CHECK_FALSE(p.tracked);
  CHECK(p.items.empty());
  CHECK(p.units == 3);
  stats.check_invariants();
}

TEST_CASE("creating and deleting a pool touches that pool's stats alone") {
  pool::StateMachine state;
  DrawStats stats;
  std::uint64_t index = 1;
  auto apply = [&](const pool::Command& c) { stats.on_apply(c, state.apply(index++, c), state); };
  apply(pool::test::bootstrap({item("mud", -1, 1)}));
  apply(pool::test::create_pool("p1", {item("a", -1, 1), item("b", -1, 3)}));
  apply(pool::test::in_pool("p1", draw(8, 3)));
  apply(pool::test::create_pool("p2", {item("c", 5, 1)}));
  stats.check_invariants();
  CHECK(stats.pools().at("p1").units == 8);  // kept across another pool's creation
  CHECK(stats.pools().at("p2").items.size() == 1);
  CHECK(stats.tracked_items() == 4);
  apply(pool::test::delete_pool("p1"));
  stats.check_invariants();
  CHECK_FALSE(stats.pools().contains("p1"));
  CHECK(stats.tracked_items() == 2);
  // Created again, it starts from nothing.
  apply(pool::test::create_pool("p1", {item("a", -1, 1)}));
  CHECK(stats.pools().at("p1").units == 0);
  CHECK(stats.pools().at("p1").items.at("a").observed == 0);
  stats.check_invariants();
}

TEST_CASE("a pool created past the item budget stays untracked until the next full resync") {
  // Creating or deleting a pool reads that pool alone (a full pass over every pool's summary
  // made creating the contract's 10,000 pools take minutes), so budget freed by a deletion goes
  // to pools created later, not to one already untracked.
  pool::StateMachine state;
  DrawStats stats;
  std::uint64_t index = 1;
  auto apply = [&](const pool::Command& c) { stats.on_apply(c, state.apply(index++, c), state); };
  apply(pool::test::bootstrap({item("mud", -1, 1)}));
  auto items = [](std::size_t n) {
    std::vector<pool::Item> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(item(std::string("i").append(std::to_string(1000 + i)), -1, 1));
    return out;
  };
  // Fill the budget: 1 item in "default", 9 pools of items_tracked_max, and the rest in "big".
  static_assert(DrawStats::tracked_items_total_max == 10 * DrawStats::items_tracked_max);
  for (int k = 0; k < 9; ++k)
    apply(pool::test::create_pool(std::string("full-").append(std::to_string(k)), items(DrawStats::items_tracked_max)));
  apply(pool::test::create_pool("big", items(DrawStats::items_tracked_max - 1)));
  REQUIRE(stats.tracked_items() == DrawStats::tracked_items_total_max);
  apply(pool::test::create_pool("late", items(10)));
  CHECK_FALSE(stats.pools().at("late").tracked);
  apply(pool::test::delete_pool("big"));
  stats.check_invariants();
  CHECK_FALSE(stats.pools().at("late").tracked);
  apply(pool::test::create_pool("later", items(10)));
  CHECK(stats.pools().at("later").tracked);
  stats.resync(state);
  CHECK(stats.pools().at("late").tracked);
  stats.check_invariants();
}

}  // namespace
}  // namespace rpool::node
