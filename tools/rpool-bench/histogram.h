// A log-bucketed latency histogram in the manner of HdrHistogram, written here: values (nanoseconds
// in rpool-bench, but any unsigned integer) are counted in buckets whose width grows with the
// value, so every recorded value is known to about 3 significant digits (relative error <= 1/1024)
// with a fixed, small number of counters and no allocation per record.
//
// Layout. Values below 2^11 = 2048 get one bucket each (exact). Above, a value v with highest set
// bit m (m >= 11) lies in "octave" s = m - 10 >= 1, whose 1024 buckets each span 2^s values: the
// bucket is identified by the top 11 bits of v, (v >> s) in [1024, 2047]. Bucket index:
//   v < 2048:   index = v
//   otherwise:  index = 2048 + (s - 1) * 1024 + ((v >> s) - 1024)
// Values above value_max are clamped to it (and counted in `clamped()`).
//
// Percentiles follow the "nearest rank" definition: the value at percentile p of n values is the
// k-th smallest with k = ceil(p/100 * n) (at least 1). The histogram answers with the highest value
// of the bucket holding the k-th smallest, capped at the exact maximum recorded, so the answer is
// never below the true value and at most 1/1024 of it above.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rpool::bench {

class Histogram {
 public:
  static constexpr unsigned sub_bucket_bits = 11;  // 2048 exact values
  static constexpr std::uint64_t sub_bucket_count = 1u << sub_bucket_bits;
  static constexpr std::uint64_t sub_bucket_half = sub_bucket_count / 2;
  static constexpr unsigned value_bits_max = 40;  // 2^40 ns = about 18 minutes
  static constexpr std::uint64_t value_max = (std::uint64_t{1} << value_bits_max) - 1;
  static constexpr std::size_t bucket_count =
      sub_bucket_count + (value_bits_max - sub_bucket_bits) * sub_bucket_half;
  static_assert(sub_bucket_bits < value_bits_max);

  Histogram();

  // Counts `value` once (values above value_max count as value_max). No allocation.
  void record(std::uint64_t value) { record_n(value, 1); }
  void record_n(std::uint64_t value, std::uint64_t n);
  // Adds every count of `other` (per-thread histograms are merged into one at the end).
  void merge(const Histogram& other);
  void clear();

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t clamped() const { return clamped_; }
  double mean() const;
  // The value at percentile p in [0, 100] as described above; 0 for an empty histogram.
  std::uint64_t percentile(double p) const;

  // The bucket arithmetic, public for the tests.
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t bucket_lowest(std::size_t bucket);
  static std::uint64_t bucket_highest(std::size_t bucket);

 private:
  std::vector<std::uint64_t> counts_;  // bucket_count counters, allocated once
  std::uint64_t count_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  std::uint64_t clamped_ = 0;
  long double sum_ = 0;  // for the mean only
};

}  // namespace rpool::bench
