// Distinct integer types for distinct quantities (log index, term, node id), so that an index
// is never passed where a term is expected. Construction is explicit and there is no implicit
// conversion back; `.value()` is the one way out.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

#include <fmt/format.h>

namespace rpool {

template <class Tag, class Rep = std::uint64_t>
class StrongInt {
 public:
  using rep = Rep;

  constexpr StrongInt() = default;
  constexpr explicit StrongInt(Rep value) : value_(value) {}

  constexpr Rep value() const { return value_; }

  friend constexpr auto operator<=>(StrongInt, StrongInt) = default;

  // Offsets: an index plus a count is an index; the distance between two indexes is a count.
  friend constexpr StrongInt operator+(StrongInt a, Rep n) { return StrongInt(a.value_ + n); }
  friend constexpr StrongInt operator-(StrongInt a, Rep n) { return StrongInt(a.value_ - n); }
  friend constexpr Rep operator-(StrongInt a, StrongInt b) { return a.value_ - b.value_; }
  constexpr StrongInt& operator++() {
    ++value_;
    return *this;
  }
  constexpr StrongInt& operator--() {
    --value_;
    return *this;
  }
  constexpr StrongInt& operator+=(Rep n) {
    value_ += n;
    return *this;
  }

  constexpr StrongInt next() const { return StrongInt(value_ + 1); }
  constexpr StrongInt prev() const { return StrongInt(value_ - 1); }

 private:
  Rep value_{};
};

}  // namespace rpool

template <class Tag, class Rep>
struct std::hash<rpool::StrongInt<Tag, Rep>> {
  std::size_t operator()(rpool::StrongInt<Tag, Rep> v) const noexcept {
    return std::hash<Rep>{}(v.value());
  }
};

template <class Tag, class Rep>
struct fmt::formatter<rpool::StrongInt<Tag, Rep>> : fmt::formatter<Rep> {
  auto format(rpool::StrongInt<Tag, Rep> v, fmt::format_context& ctx) const {
    return fmt::formatter<Rep>::format(v.value(), ctx);
  }
};
