// Many pools in one state machine: per-pool numbering, keys, limits, snapshots and the codec.
#include <doctest/doctest.h>

#include "builders.h"
#include "pool/random.h"

using namespace rpool;
using namespace rpool::pool;
using namespace rpool::pool::test;

namespace {

// A fixed history on the default pool, through the single-pool interface only.
Driver golden_history() {
  Driver d;
  d.apply(bootstrap({item("diamond", 10, 10), item("gold", 100, 20), item("mud", -1, 70)}, 1000));
  SplitMix64 rng(42);
  for (int i = 0; i < 40; ++i) {
    Command c = draw(static_cast<std::uint32_t>(1 + bounded(rng, 7)), rng.next(), 2000 + i);
    if (i % 5 == 0) c = keyed(c, "golden-" + std::to_string(i), static_cast<std::uint8_t>(i));
    d.apply(c);
  }
  d.apply(upsert(item("emerald", 3, 5), 3000));
  d.apply(remove_item("gold", 3001));
  d.apply(draw(50, 7, 3002));
  return d;
}

}  // namespace

TEST_CASE("the default pool's digest is bit-identical to the single-pool digest of before") {
  // Computed by the single-pool state machine, before pools existed, on the same history.
  const Driver d = golden_history();
  CHECK(d.sm.last_request_id() == 214);
  CHECK(d.sm.digest_hex() == "77758975643f3b0233b46782febef1b0f2f10b78b55dd8ed612edf1eee44c86f");
}
