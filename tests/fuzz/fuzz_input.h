// A cursor over a fuzzer's input, for harnesses that read a script of operations from it.
// Every read is bounded by what is left: when the input runs out, numbers read as 0 and byte
// strings come back short, so a harness never reads out of bounds and always terminates.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "base/bytes.h"

namespace rpool::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return at_ >= size_; }
  std::size_t left() const { return size_ - at_; }

  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{u8()} << (8 * i);
    return v;
  }
  // Up to n bytes (fewer at the end of the input).
  ByteView bytes(std::size_t n) {
    n = std::min(n, left());
    const ByteView out(data_ + at_, n);
    at_ += n;
    return out;
  }
  // A u16 length, then that many bytes.
  ByteView chunk() { return bytes(u16()); }
  ByteView rest() { return bytes(left()); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

}  // namespace rpool::fuzz
