#include <doctest/doctest.h>

#include <thread>

#include "builders.h"
#include "pool/random.h"

using namespace rpool;
using namespace rpool::pool;
using namespace rpool::pool::test;

namespace {

// A pool with items, draws behind it and remembered keys.
Driver busy_pool() {
  Driver d;
  d.apply(bootstrap({item("diamond", 10, 10), item("gold", 100, 20), item("mud", -1, 70)}));
  SplitMix64 rng(5);
  for (int i = 0; i < 50; ++i) {
    Command c = draw(static_cast<std::uint32_t>(1 + bounded(rng, 5)), rng.next(), 1000 + i);
    if (i % 3 == 0) c = keyed(c, "key-" + std::to_string(i), static_cast<std::uint8_t>(i));
    d.apply(c);
  }
  d.apply(upsert(item("emerald", 3, 5), 2000));
  return d;
}

}  // namespace

TEST_CASE("restore(snapshot(s)) has the same digest and then behaves exactly like s") {
  Driver original = busy_pool();
  Driver copy;
  REQUIRE_FALSE(copy.sm.restore(original.sm.snapshot()));
  copy.index = original.index;
  CHECK(copy.sm.digest() == original.sm.digest());
  CHECK(copy.sm.last_request_id() == original.sm.last_request_id());
  CHECK(copy.sm.applied_index() == original.sm.applied_index());
  CHECK(copy.sm.idempotency_keys() == original.sm.idempotency_keys());
  CHECK(copy.sm.snapshot() == original.sm.snapshot());

  SplitMix64 rng(77);
  for (int i = 0; i < 100; ++i) {
    Command c = draw(static_cast<std::uint32_t>(1 + bounded(rng, 10)), rng.next(), 5000 + i);
    if (i % 4 == 0)
      c = keyed(c, "key-" + std::to_string(3 * bounded(rng, 20)), static_cast<std::uint8_t>(i));
    const Result a = original.apply(c);
    const Result b = copy.apply(c);
    REQUIRE(a == b);
  }
  CHECK(copy.sm.digest() == original.sm.digest());
}

TEST_CASE("a snapshot with any one byte flipped is rejected and the state is unchanged") {
  const Driver source = busy_pool();
  const Bytes snap = source.sm.snapshot();
  Driver target;
  target.apply(bootstrap({item("keep", 1, 1)}));
  const Sha256 before = target.sm.digest();
  for (std::size_t i = 0; i < snap.size(); ++i) {
    Bytes bad = snap;
    bad[i] ^= 0x40;
    REQUIRE(target.sm.restore(bad) == errc::checksum_mismatch);
  }
  CHECK(target.sm.digest() == before);
  CHECK(target.sm.restore(ByteView(snap).first(snap.size() - 1)) == errc::checksum_mismatch);
  CHECK(target.sm.restore({}) == errc::malformed);
  CHECK(target.sm.digest() == before);
}

TEST_CASE("digest covers items and last_request_id but not the index") {
  Driver a, b;
  a.apply(bootstrap({item("x", 5, 1)}));
  b.index = 10;
  b.apply(bootstrap({item("x", 5, 1)}));
  CHECK(a.sm.digest() == b.sm.digest());
  a.apply(draw(1, 1));
  CHECK(a.sm.digest() != b.sm.digest());
  CHECK(a.sm.digest_hex().size() == 64);
}

TEST_CASE("the digest of the empty pool is the SHA-256 of its canonical twelve zero bytes") {
  // u32 item count 0 + u64 last_request_id 0: sha256 of 12 zero bytes, computed independently.
  const StateMachine sm;
  CHECK(sm.digest_hex() == "15ec7bf0b50732b49f8228e07d24365338f9e3ab994b00af08e5a3bffe55fd8b");
}

TEST_CASE("a snapshot begun earlier encodes the state at its beginning, whatever came after") {
  Options options;
  options.idempotency_retention_ms = 1000;
  options.idempotency_keys_min = 100;
  Driver d(options);
  d.apply(bootstrap({item("mud", -1, 1), item("gold", 50, 3)}));
  // Enough keys for several blocks of the key log.
  const int keys = 3 * static_cast<int>(KeyLog::default_block_records) + 7;
  for (int i = 0; i < keys; ++i) d.apply(keyed(draw(2, 7 + i, 100), 'k' + std::to_string(i), 1));
  const Bytes expected = d.sm.snapshot();
  StateMachine::PendingSnapshot pending = d.sm.begin_snapshot();

  // Afterwards: more keys, the eviction of every key the snapshot holds (whole blocks of them),
  // a changed catalog, a new pool; then the state is replaced by a restore, and dropped.
  for (int i = 0; i < 300; ++i) d.apply(keyed(draw(1, 3, 2000), "late" + std::to_string(i), 2));
  d.apply(upsert(item("gold", 1, 1), 2000));
  d.apply(create_pool("other", {item("x", 1, 1)}, 2000));
  CHECK(d.sm.idempotency_keys() == 300);  // only the late ones
  CHECK(d.sm.snapshot() != expected);
  REQUIRE_FALSE(d.sm.restore(StateMachine().snapshot()));
  d.sm = StateMachine();

  CHECK(std::move(pending).encode() == expected);
}

TEST_CASE("a snapshot is encoded on another thread while the state machine goes on applying") {
  Driver d = mud_with_keys(10, 50, 5000, 0);
  const Bytes expected = d.sm.snapshot();
  Bytes encoded;
  std::thread encoder([pending = d.sm.begin_snapshot(), &encoded]() mutable {
    encoded = std::move(pending).encode();
  });
  for (int i = 0; i < 5000; ++i) d.apply(keyed(draw(1, 1, 100), 'n' + std::to_string(i), 1));
  encoder.join();
  CHECK(encoded == expected);
  Driver copy;
  REQUIRE_FALSE(copy.sm.restore(encoded));
  CHECK(copy.sm.idempotency_keys() == 5000);
}
