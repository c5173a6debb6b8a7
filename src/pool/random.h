// The pseudo-random source of draws and its unbiased bounded integers, specified here so that
// a draw's outcome is the same on every compiler and standard library (std::*_distribution is
// not). Golden vectors in tests/unit/pool pin both.
#pragma once

#include <cstdint>

namespace rpool::pool {

__extension__ using uint128 = unsigned __int128;  // g++ and clang; -Wpedantic needs __extension__

// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by the golden gamma and mixed.
class SplitMix64 {
 public:
  explicit constexpr SplitMix64(std::uint64_t seed) : state_(seed) {}

  constexpr std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

// A uniform integer in [0, bound), bound > 0, without modulo bias: Lemire's multiply-and-shift
// with rejection ("Fast Random Integer Generation in an Interval", 2019).
template <class Rng>
constexpr std::uint64_t bounded(Rng& rng, std::uint64_t bound) {
  uint128 m = static_cast<uint128>(rng.next()) * bound;
  auto low = static_cast<std::uint64_t>(m);
  if (low < bound) {
    const std::uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    while (low < threshold) {
      m = static_cast<uint128>(rng.next()) * bound;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

}  // namespace rpool::pool
