// Bytes and the little-endian primitives every binary format in rpool is built from.
//
// ByteWriter appends fixed-width little-endian integers and length-prefixed byte strings to a
// buffer. ByteReader reads them back with a bounds check on every read: a short or malformed
// input makes the reader fail (ok() turns false and stays false) instead of reading past the end,
// so decoders can read a whole structure and check ok() once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rpool {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline void store_u32le(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void store_u64le(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint32_t load_u32le(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  return v;
}
inline std::uint64_t load_u64le(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    out_.push_back(static_cast<std::uint8_t>(v));
    out_.push_back(static_cast<std::uint8_t>(v >> 8));
  }
  void u32(std::uint32_t v) {
    const std::size_t at = grow(4);
    store_u32le(out_.data() + at, v);
  }
  void u64(std::uint64_t v) {
    const std::size_t at = grow(8);
    store_u64le(out_.data() + at, v);
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void raw(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // A byte string of at most 255 bytes, prefixed by its length in one byte.
  void str8(std::string_view s) {
    u8(static_cast<std::uint8_t>(s.size()));
    raw(as_bytes(s));
  }
  // A byte string prefixed by its length in four bytes.
  void bytes32(ByteView b) {
    u32(static_cast<std::uint32_t>(b.size()));
    raw(b);
  }

  std::size_t size() const { return out_.size(); }

 private:
  std::size_t grow(std::size_t n) {
    const std::size_t at = out_.size();
    out_.resize(at + n);
    return at;
  }
  Bytes& out_;
};

class ByteReader {
 public:
  explicit ByteReader(ByteView in) : in_(in) {}

  std::uint8_t u8() { return take(1) ? in_[pos_ - 1] : 0; }
  std::uint16_t u16() {
    if (!take(2)) return 0;
    return static_cast<std::uint16_t>(in_[pos_ - 2] | (in_[pos_ - 1] << 8));
  }
  std::uint32_t u32() { return take(4) ? load_u32le(in_.data() + pos_ - 4) : 0; }
  std::uint64_t u64() { return take(8) ? load_u64le(in_.data() + pos_ - 8) : 0; }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  ByteView raw(std::size_t n) {
    if (!take(n)) return {};
    return in_.subspan(pos_ - n, n);
  }
  std::string str8() {
    const std::size_t n = u8();
    return std::string(as_chars(raw(n)));
  }
  ByteView bytes32() { return raw(u32()); }

  // Marks the input as malformed (for checks the reader cannot make itself).
  void fail() { ok_ = false; }
  bool ok() const { return ok_; }
  std::size_t remaining() const { return ok_ ? in_.size() - pos_ : 0; }
  bool at_end() const { return ok_ && pos_ == in_.size(); }
  std::size_t position() const { return pos_; }

 private:
  bool take(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  ByteView in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace rpool
