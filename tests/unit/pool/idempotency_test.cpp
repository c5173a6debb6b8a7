#include <doctest/doctest.h>

#include "builders.h"

using namespace rpool;
using namespace rpool::pool;
using namespace rpool::pool::test;

TEST_CASE("a repeated key with the same body returns the first answer and applies nothing") {
  Driver d;
  d.apply(bootstrap({item("gold", 10, 1)}));
  const Result first = d.apply(keyed(draw(3, 11), "order-1", 0xaa));
  REQUIRE_FALSE(first.error);
  CHECK_FALSE(first.replayed);
  const Sha256 after_first = d.sm.digest();

  // A retry carries a fresh seed from the new leader: the answer must still be the first one.
  const Result again = d.apply(keyed(draw(3, 999), "order-1", 0xaa));
  CHECK(again.replayed);
  CHECK(again.draws == first.draws);
  CHECK(again.index == first.index);  // the first answer, unchanged
  CHECK(again.index < d.index);
  CHECK(d.sm.digest() == after_first);
  CHECK(d.sm.find("gold")->quantity == 7);
}

TEST_CASE("the same key with a different body is idempotency_key_reused and changes nothing") {
  Driver d;
  d.apply(bootstrap({item("gold", 10, 1)}));
  d.apply(keyed(draw(1, 1), "k", 1));
  const Sha256 before = d.sm.digest();
  const Result r = d.apply(keyed(draw(1, 1), "k", 2));
  CHECK(r.error == errc::idempotency_key_reused);
  CHECK(r.draws.empty());
  CHECK(d.sm.digest() == before);
}

TEST_CASE("keyed item updates and failed deletes are remembered too") {
  Driver d;
  const Result up = d.apply(keyed(upsert(item("a", 1, 1)), "u", 3));
  CHECK(up.item == item("a", 1, 1));
  d.apply(upsert(item("a", 9, 9)));
  const Result up_again = d.apply(keyed(upsert(item("a", 1, 1)), "u", 3));
  CHECK(up_again.replayed);
  CHECK(up_again.item == item("a", 1, 1));
  CHECK(d.sm.find("a")->quantity == 9);  // the replay did not apply the update again

  CHECK(d.apply(keyed(remove_item("zz"), "del", 4)).error == errc::not_found);
  d.apply(upsert(item("zz", 1, 1)));
  const Result del_again = d.apply(keyed(remove_item("zz"), "del", 4));
  CHECK(del_again.error == errc::not_found);
  CHECK(d.sm.find("zz") != nullptr);
}

TEST_CASE("keys expire only when both older than the retention and beyond the minimum count") {
  Driver d = mud_with_keys(1000, 3, 5, 100);
  // Young keys stay even beyond the minimum count.
  CHECK(d.sm.idempotency_keys() == 5);
  // Time passes: the oldest go, down to the minimum count.
  d.apply(draw(1, 1, 1100));
  CHECK(d.sm.idempotency_keys() == 3);
  CHECK(d.apply(keyed(draw(1, 1, 1100), "k0", 1)).replayed == false);  // k0 was forgotten
  CHECK(d.apply(keyed(draw(1, 1, 1100), "k4", 1)).replayed == true);
}

TEST_CASE("time never runs backwards: an older leader timestamp does not revive keys") {
  Options options;
  options.idempotency_retention_ms = 1000;
  options.idempotency_keys_min = 0;
  Driver d(options);
  d.apply(keyed(draw(1, 1, 5000), "a", 1));
  d.apply(draw(1, 1, 100));  // a skewed clock on a new leader
  CHECK(d.sm.idempotency_keys() == 1);
  d.apply(draw(1, 1, 6000));
  CHECK(d.sm.idempotency_keys() == 0);
}

TEST_CASE("the stored answers are bounded in bytes: the oldest go first beyond the bound") {
  Options options;
  options.idempotency_bytes_max = 4096;
  Driver d(options);
  d.apply(bootstrap({item("mud", -1, 1)}));
  for (int i = 0; i < 200; ++i) d.apply(keyed(draw(10, 1, 0), "key" + std::to_string(i), 1));
  CHECK(d.sm.idempotency_bytes() <= 4096);
  CHECK(d.sm.idempotency_keys() > 0);
  CHECK(d.sm.idempotency_keys() < 200);
  CHECK(d.apply(keyed(draw(10, 1, 0), "key199", 1)).replayed);
}

TEST_CASE("results round-trip through their stored encoding") {
  Result r;
  r.draws = {{7, "a"}, {8, std::nullopt}, {9, "bb"}};
  r.item = item("c", -1, 4);
  r.bootstrapped = true;
  r.index = 4242;
  Bytes bytes;
  encode_result(r, bytes);
  Result back;
  REQUIRE_FALSE(decode_result(bytes, back));
  CHECK(back == r);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK(decode_result(ByteView(bytes).first(cut), back) == errc::malformed);
  }
}

TEST_CASE("a copied pool keeps its own keys: evicting in one leaves the other whole") {
  // The key index points into the log it indexes: a copy must point into its own.
  Driver d = mud_with_keys(1000, 1, 4, 100);
  StateMachine copy = d.sm;
  const Bytes copy_snapshot = copy.snapshot();
  StateMachine assigned;
  assigned = d.sm;
  d.apply(draw(1, 1, 1100));  // evicts k0..k2 from the original only
  CHECK(d.sm.idempotency_keys() == 1);
  d.sm.check_invariants();
  CHECK(copy.idempotency_keys() == 4);
  copy.check_invariants();
  assigned.check_invariants();
  CHECK(copy.snapshot() == copy_snapshot);
  CHECK(assigned.snapshot() == copy_snapshot);
  // The copy evicts on its own.
  copy.apply(d.index + 1, draw(1, 1, 1100));
  CHECK(copy.idempotency_keys() == 1);
  copy.check_invariants();
}
