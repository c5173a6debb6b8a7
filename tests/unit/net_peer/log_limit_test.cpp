// LogLimit: lines about refused connections, at most once a minute per remote address.
#include <doctest/doctest.h>

#include <string>

#include "net/peer/log_limit.h"

using rpool::net::peer::LogLimit;
using namespace std::chrono_literals;

TEST_CASE("log lines about one address: once a window, then how many were held back") {
  LogLimit limit;
  const auto t0 = LogLimit::Clock::time_point{} + 1h;
  std::uint64_t held = 99;
  CHECK(limit.admit("10.0.0.1", t0, &held));
  CHECK(held == 0);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(limit.admit("10.0.0.1", t0 + 59s, &held));
  // Another address has its own window.
  CHECK(limit.admit("10.0.0.2", t0 + 1s, &held));
  CHECK(limit.admit("10.0.0.1", t0 + 60s, &held));
  CHECK(held == 5);
  CHECK_FALSE(limit.admit("10.0.0.1", t0 + 61s, &held));
}

TEST_CASE("log limit: the addresses remembered are bounded; the rest share one slot") {
  LogLimit limit;
  const auto t0 = LogLimit::Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < LogLimit::addresses_max; ++i)
    CHECK(limit.admit(std::string("10.1.0.").append(std::to_string(i)), t0, nullptr));
  CHECK(limit.size() == LogLimit::addresses_max);
  CHECK(limit.admit("10.2.0.1", t0, nullptr));  // the shared slot's first line
  CHECK_FALSE(limit.admit("10.2.0.2", t0, nullptr));
  CHECK_FALSE(limit.admit("10.2.0.3", t0, nullptr));
  CHECK(limit.size() == LogLimit::addresses_max + 1);
  // A window later the quiet addresses are forgotten, and new ones get their own slot again.
  CHECK(limit.admit("10.2.0.4", t0 + 61s, nullptr));
  CHECK(limit.size() <= 2);
}
