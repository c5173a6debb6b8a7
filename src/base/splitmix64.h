// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by the golden gamma and mixed.
//
// The one copy in the project. Its outputs are part of the determinism contract: every replica
// computes a draw's outcome from it (src/pool), the raft core draws its randomized election
// timeouts from it, and the simulator replays a whole cluster from one seed. Changing a constant
// changes every pool outcome; tests/unit/base/splitmix64_test.cpp pins the outputs.
#pragma once

#include <cstdint>

namespace rpool {

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

}  // namespace rpool
