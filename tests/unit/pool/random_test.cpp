#include <doctest/doctest.h>

#include <array>

#include "pool/random.h"

using namespace rpool::pool;

TEST_CASE("SplitMix64 matches the published reference outputs for seed 0") {
  // The first outputs of Vigna's reference splitmix64.c with x = 0.
  SplitMix64 rng(0);
  CHECK(rng.next() == 0xe220a8397b1dcdafULL);
  CHECK(rng.next() == 0x6e789e6aa1b965f4ULL);
  CHECK(rng.next() == 0x06c45d188009454fULL);
  CHECK(rng.next() == 0xf88bb8a8724c81ecULL);
}

// Replays Lemire's method with a scripted source, to pin both the result and the rejections.
struct Scripted {
  std::array<std::uint64_t, 4> values;
  std::size_t at = 0;
  std::uint64_t next() { return values.at(at++); }
};

TEST_CASE("bounded() maps the high 64 bits of x * bound and rejects the biased low zone") {
  // bound 3: threshold = 2^64 mod 3 = 1. x = 0 gives low = 0 < 1, so it is rejected.
  Scripted s{{0, 0x5555555555555556ULL, 0, 0}};
  CHECK(bounded(s, 3) == 1);
  CHECK(s.at == 2);
  // x = 2^63 with bound 10: (2^63 * 10) >> 64 = 5, low = 0 < 10 but threshold 2^64 mod 10 = 6.
  Scripted t{{0x8000000000000000ULL, 0xffffffffffffffffULL, 0, 0}};
  CHECK(bounded(t, 10) == 9);
  CHECK(t.at == 2);
  // A bound of 1 always yields 0 with one draw.
  Scripted u{{12345, 0, 0, 0}};
  CHECK(bounded(u, 1) == 0);
  CHECK(u.at == 1);
}

// The expected values come from an independent Python model of SplitMix64 and Lemire's method.
TEST_CASE("bounded() golden vector from a seeded SplitMix64") {
  SplitMix64 rng(42);
  std::array<std::uint64_t, 8> got{};
  for (auto& g : got) g = bounded(rng, 1000);
  const std::array<std::uint64_t, 8> want = {741, 159, 278, 344, 38, 868, 218, 800};
  CHECK(got == want);
}
