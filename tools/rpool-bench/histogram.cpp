#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "base/assert.h"

namespace rpool::bench {

Histogram::Histogram() : counts_(bucket_count, 0) {}

std::size_t Histogram::bucket_of(std::uint64_t value) {
  RPOOL_ASSERT(value <= value_max);
  if (value < sub_bucket_count) return static_cast<std::size_t>(value);
  const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(value));
  const unsigned shift = msb - (sub_bucket_bits - 1);  // >= 1: keeps the top 11 bits
  const std::uint64_t top = value >> shift;            // in [1024, 2047]
  RPOOL_ASSERT(top >= sub_bucket_half);
  RPOOL_ASSERT(top < sub_bucket_count);
  const std::size_t bucket = static_cast<std::size_t>(
      sub_bucket_count + (shift - 1) * sub_bucket_half + (top - sub_bucket_half));
  RPOOL_ASSERT(bucket < bucket_count);
  return bucket;
}

std::uint64_t Histogram::bucket_lowest(std::size_t bucket) {
  RPOOL_ASSERT(bucket < bucket_count);
  if (bucket < sub_bucket_count) return bucket;
  const std::size_t above = bucket - sub_bucket_count;
  const unsigned shift = static_cast<unsigned>(above / sub_bucket_half) + 1;
  const std::uint64_t top = sub_bucket_half + above % sub_bucket_half;
  return top << shift;
}

std::uint64_t Histogram::bucket_highest(std::size_t bucket) {
  RPOOL_ASSERT(bucket < bucket_count);
  if (bucket < sub_bucket_count) return bucket;
  const std::size_t above = bucket - sub_bucket_count;
  const unsigned shift = static_cast<unsigned>(above / sub_bucket_half) + 1;
  return bucket_lowest(bucket) + (std::uint64_t{1} << shift) - 1;
}

void Histogram::record_n(std::uint64_t value, std::uint64_t n) {
  if (n == 0) return;
  if (value > value_max) {
    value = value_max;
    clamped_ += n;
  }
  counts_[bucket_of(value)] += n;
  count_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * static_cast<long double>(n);
}

void Histogram::merge(const Histogram& other) {
  RPOOL_ASSERT(counts_.size() == other.counts_.size());
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  clamped_ += other.clamped_;
  sum_ += other.sum_;
}

void Histogram::clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = ~std::uint64_t{0};
  max_ = 0;
  clamped_ = 0;
  sum_ = 0;
}

double Histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::uint64_t Histogram::percentile(double p) const {
  RPOOL_ASSERT(p >= 0.0);
  RPOOL_ASSERT(p <= 100.0);
  if (count_ == 0) return 0;
  // Nearest rank, computed in long double so that p = 99.9 of 1000 values is rank 999, not 1000.
  const long double exact = static_cast<long double>(p) / 100.0L * static_cast<long double>(count_);
  std::uint64_t rank = static_cast<std::uint64_t>(std::ceil(exact - 1e-9L));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_highest(i), max_);
  }
  RPOOL_ASSERT(false && "counts add up to count_");
  return max_;
}

}  // namespace rpool::bench
