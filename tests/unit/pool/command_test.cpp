#include <doctest/doctest.h>

#include "builders.h"
#include "pool/errc.h"
#include "pool/random.h"

using namespace rpool;
using namespace rpool::pool;
using namespace rpool::pool::test;

namespace {

std::vector<Command> samples() {
  Command keyed_upsert = keyed(upsert(item("gold", 1000, 20), 17), "key with spaces", 0x5a);
  return {
      draw(1, 0),
      draw(draw_count_max, 0xffffffffffffffffULL, 1732838400000),
      keyed(draw(3, 42, 1), std::string(idempotency_key_bytes_max, '~'), 7),
      upsert(item("mud", quantity_unlimited, 70)),
      keyed_upsert,
      remove_item("diamond"),
      bootstrap({}),
      bootstrap({item("diamond", 100, 10), item("gold", 1000, 20), item("mud", -1, 70)}),
  };
}

}  // namespace

TEST_CASE("every command round-trips through the codec") {
  for (const Command& c : samples()) {
    const Bytes bytes = encode(c);
    Command back;
    REQUIRE_FALSE(decode(bytes, back));
    CHECK(back == c);
    CHECK(encode(back) == bytes);
  }
}

TEST_CASE("every truncation of every command is rejected") {
  for (const Command& c : samples()) {
    const Bytes bytes = encode(c);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
      Command out;
      CHECK(decode(ByteView(bytes).first(cut), out));
    }
  }
}

TEST_CASE("trailing bytes, unknown kinds, newer versions and bad counts are rejected") {
  Bytes bytes = encode(draw(1, 1));
  bytes.push_back(0);
  Command out;
  CHECK(decode(bytes, out) == errc::malformed);

  bytes = encode(draw(1, 1));
  bytes[0] = command_version + 1;
  CHECK(decode(bytes, out) == errc::unsupported_version);

  bytes = encode(draw(1, 1));
  bytes[1] = 9;  // kind
  CHECK(decode(bytes, out) == errc::malformed);

  bytes = encode(draw(1, 1));
  const std::size_t count_at = 2 + 8 + 1;
  store_u32le(bytes.data() + count_at, 0);
  CHECK(decode(bytes, out) == errc::malformed);
  store_u32le(bytes.data() + count_at, draw_count_max + 1);
  CHECK(decode(bytes, out) == errc::malformed);

  bytes = encode(bootstrap({item("a", 1, 1)}));
  store_u32le(bytes.data() + 2 + 8 + 1, 0xffffffffu);  // an item count the input cannot hold
  CHECK(decode(bytes, out) == errc::malformed);

  Command with_key = keyed(draw(1, 1), "k", 1);
  bytes = encode(with_key);
  bytes[2 + 8 + 1] = '\n';  // an unprintable key
  CHECK(decode(bytes, out) == errc::malformed);
}

TEST_CASE("random bytes never decode into undefined behaviour") {
  SplitMix64 rng(123);
  int accepted = 0;
  for (int i = 0; i < 200'000; ++i) {
    Bytes bytes(bounded(rng, 64));
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng.next());
    // Half the time start with a valid header so that the bodies are exercised.
    if (bytes.size() >= 2 && (i & 1)) {
      bytes[0] = command_version;
      bytes[1] = static_cast<std::uint8_t>(1 + bounded(rng, 4));
    }
    Command out;
    if (!decode(bytes, out)) {
      ++accepted;
      CHECK(encode(out) == bytes);  // whatever decodes re-encodes to the same bytes
    }
  }
  MESSAGE("random inputs that happened to decode: " << accepted);
}

TEST_CASE("item ids and keys follow the contract's alphabets") {
  CHECK(valid_item_id("diamond"));
  CHECK(valid_item_id("A-Z_a.z-09"));
  CHECK(valid_item_id(std::string(64, 'x')));
  CHECK_FALSE(valid_item_id(""));
  CHECK_FALSE(valid_item_id(std::string(65, 'x')));
  CHECK_FALSE(valid_item_id("gold/bar"));
  CHECK_FALSE(valid_item_id("caf\xc3\xa9"));
  CHECK(valid_idempotency_key("a b~!"));
  CHECK_FALSE(valid_idempotency_key(""));
  CHECK_FALSE(valid_idempotency_key(std::string(129, 'k')));
  CHECK_FALSE(valid_idempotency_key("tab\there"));
}

TEST_CASE("describe() names the command and its fields") {
  CHECK(describe(draw(2, 255, 9)) == "draw count=2 seed=0x00000000000000ff ts=9");
  CHECK(describe(keyed(remove_item("x"), "k\"1", 0)) == "delete item_id=x ts=0 key=\"k\\\"1\"");
}
