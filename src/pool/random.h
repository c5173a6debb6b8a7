// The pseudo-random source of draws and its unbiased bounded integers, specified here so that
// a draw's outcome is the same on every compiler and standard library (std::*_distribution is
// not). Golden vectors in tests/unit/pool pin both.
#pragma once

#include <cstdint>

#include "base/splitmix64.h"

namespace rpool::pool {

__extension__ using uint128 = unsigned __int128;  // g++ and clang; -Wpedantic needs __extension__

// The draw source is the project's one SplitMix64 (base/splitmix64.h): its outputs decide every
// draw on every replica, so they are pinned there and here.
using SplitMix64 = rpool::SplitMix64;

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
