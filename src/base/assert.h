// Assertions that stay on in every build type.
//
// A broken invariant is a bug: the process prints what failed, where, and the values involved,
// then aborts. Expected failures (bad input, disk full, not leader) never use these; they flow
// as std::error_code.
//
//   RPOOL_ASSERT(applied_ <= committed_);
//   RPOOL_ASSERT_OP(entry.index, ==, last + 1);   // prints both sides on failure
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace rpool::detail {

[[noreturn]] inline void assert_failed(const char* expr, const char* file, int line,
                                       const std::string& values) {
  std::fprintf(stderr, "rpool: assertion failed: %s at %s:%d%s%s\n", expr, file, line,
               values.empty() ? "" : " with ", values.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace rpool::detail

#define RPOOL_ASSERT(cond)                                                      \
  do {                                                                          \
    if (!(cond)) [[unlikely]] {                                                 \
      ::rpool::detail::assert_failed(#cond, __FILE__, __LINE__, std::string()); \
    }                                                                           \
  } while (false)

// Compares two values and prints both when the comparison fails. Values must be formattable
// with fmt (strong integers are).
#define RPOOL_ASSERT_OP(a, op, b)                                                     \
  do {                                                                                \
    const auto rpool_assert_a_ = (a);                                                 \
    const auto rpool_assert_b_ = (b);                                                 \
    if (!(rpool_assert_a_ op rpool_assert_b_)) [[unlikely]] {                         \
      ::rpool::detail::assert_failed(                                                 \
          #a " " #op " " #b, __FILE__, __LINE__,                                      \
          fmt::format("{} = {}, {} = {}", #a, rpool_assert_a_, #b, rpool_assert_b_)); \
    }                                                                                 \
  } while (false)
