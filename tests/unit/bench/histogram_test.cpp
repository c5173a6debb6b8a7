// rpool-bench's latency histogram against a sorted-vector oracle: slow, but obviously right.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "histogram.h"

using rpool::bench::Histogram;

namespace {

// The oracle: nearest-rank percentile of the sorted values (the k-th smallest, k = ceil(p/100*n)).
std::uint64_t naive_percentile(const std::vector<std::uint64_t>& sorted, double p) {
  const long double exact =
      static_cast<long double>(p) / 100.0L * static_cast<long double>(sorted.size());
  std::uint64_t rank = static_cast<std::uint64_t>(std::ceil(exact - 1e-9L));
  rank = std::clamp<std::uint64_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// The histogram's answer must lie in the bucket of the true value: never below it, and above it
// by at most the bucket's width (relative error <= 1/1024).
void check_close(std::uint64_t got, std::uint64_t want) {
  CAPTURE(got);
  CAPTURE(want);
  CHECK(got >= want);
  CHECK(got <= Histogram::bucket_highest(Histogram::bucket_of(want)));
  CHECK(static_cast<double>(got - want) <= static_cast<double>(want) / 1024.0);
}

const double percentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

}  // namespace

TEST_CASE("buckets tile the value range: contiguous, non-overlapping, each value in its own") {
  for (std::size_t b = 0; b + 1 < Histogram::bucket_count; ++b) {
    CAPTURE(b);
    REQUIRE(Histogram::bucket_lowest(b) <= Histogram::bucket_highest(b));
    REQUIRE(Histogram::bucket_highest(b) + 1 == Histogram::bucket_lowest(b + 1));
  }
  CHECK(Histogram::bucket_lowest(0) == 0);
  CHECK(Histogram::bucket_highest(Histogram::bucket_count - 1) == Histogram::value_max);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng() >> (rng() % 64);
    if (v > Histogram::value_max) continue;
    const std::size_t b = Histogram::bucket_of(v);
    CAPTURE(v);
    REQUIRE(Histogram::bucket_lowest(b) <= v);
    REQUIRE(v <= Histogram::bucket_highest(b));
  }
}

TEST_CASE("values below 2048 are exact") {
  Histogram h;
  for (std::uint64_t v = 1; v <= 1000; ++v) h.record(v);
  CHECK(h.percentile(50) == 500);
  CHECK(h.percentile(99.9) == 999);
  CHECK(h.percentile(100) == 1000);
  CHECK(h.percentile(0) == 1);
  CHECK(h.min() == 1);
  CHECK(h.max() == 1000);
  CHECK(h.count() == 1000);
  CHECK(h.mean() == doctest::Approx(500.5));
}

TEST_CASE("an empty histogram answers 0") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.percentile(99) == 0);
  CHECK(h.min() == 0);
  CHECK(h.max() == 0);
}

TEST_CASE("percentiles match a sorted-vector oracle on random latency-like data, many seeds") {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    const std::size_t n = 1 + rng() % 20000;
    // A log-normal body (tens of us to ms in ns) with a heavy tail, as request latencies look.
    std::lognormal_distribution<double> body(std::log(200000.0),
                                             0.8 + static_cast<double>(seed % 5) * 0.3);
    std::vector<std::uint64_t> values;
    values.reserve(n);
    Histogram h;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t v = static_cast<std::uint64_t>(body(rng));
      if (rng() % 1000 == 0) v *= 1000;  // stalls
      v = std::min(v, Histogram::value_max);
      values.push_back(v);
      h.record(v);
    }
    std::sort(values.begin(), values.end());
    REQUIRE(h.count() == n);
    CHECK(h.max() == values.back());
    CHECK(h.min() == values.front());
    for (double p : percentiles) {
      CAPTURE(p);
      check_close(h.percentile(p), naive_percentile(values, p));
    }
  }
}

TEST_CASE("merging per-thread histograms equals one histogram of all values") {
  std::mt19937_64 rng(99);
  std::vector<std::uint64_t> all;
  Histogram merged;
  Histogram single;
  for (int t = 0; t < 4; ++t) {
    Histogram part;
    const int n = 1000 + static_cast<int>(rng() % 5000);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t v = rng() % (std::uint64_t{1} << (10 + t * 6));
      part.record(v);
      single.record(v);
      all.push_back(v);
    }
    merged.merge(part);
  }
  std::sort(all.begin(), all.end());
  CHECK(merged.count() == all.size());
  CHECK(merged.max() == all.back());
  CHECK(merged.min() == all.front());
  CHECK(merged.mean() == doctest::Approx(single.mean()));
  for (double p : percentiles) {
    CAPTURE(p);
    CHECK(merged.percentile(p) == single.percentile(p));
    check_close(merged.percentile(p), naive_percentile(all, p));
  }
}

TEST_CASE("values above value_max are clamped and counted") {
  Histogram h;
  h.record(Histogram::value_max + 5);
  h.record(3);
  CHECK(h.clamped() == 1);
  CHECK(h.max() == Histogram::value_max);
  CHECK(h.percentile(100) == Histogram::value_max);
  CHECK(h.percentile(50) == 3);
  h.clear();
  CHECK(h.count() == 0);
  CHECK(h.clamped() == 0);
}
