#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "../aborts.h"
#include "api/metrics.h"

namespace rpool::metrics {
namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

using rpool::test::aborts;

// The bucket index of `v` by the definition of "le": the first bound >= v, else the +Inf bucket.
std::size_t naive_bucket(const std::vector<double>& bounds, double v) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (v <= bounds[i]) return i;
  }
  return bounds.size();
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// --- Histogram ----------------------------------------------------------------------------

TEST_CASE(
    "a value equal to a bound goes into that bound's bucket, the next double above into the next") {
  const std::vector<double> bounds{0.5, 1, 2.5};
  struct Case {
    double value;
    std::size_t bucket;
  };
  const Case cases[] = {
      {-inf, 0},  {-1, 0},
      {0, 0},     {std::nextafter(0.5, 0.0), 0},
      {0.5, 0},   {std::nextafter(0.5, 1.0), 1},
      {1, 1},     {std::nextafter(1.0, 2.0), 2},
      {2.5, 2},   {std::nextafter(2.5, 3.0), 3},
      {1e300, 3}, {inf, 3},
  };
  for (const Case& c : cases) {
    CAPTURE(c.value);
    Histogram h(bounds);
    h.observe(c.value);
    h.check_invariants();
    std::vector<std::uint64_t> expected(bounds.size() + 1, 0);
    expected[c.bucket] = 1;
    CHECK(h.counts() == expected);
    CHECK(h.count() == 1);
  }
}

TEST_CASE("bucket placement agrees with a linear scan of the bounds on many seeded values") {
  const std::uint64_t seed = 20261129;
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::vector<double> bounds = latency_buckets();
  Histogram h(bounds);
  std::vector<std::uint64_t> expected(bounds.size() + 1, 0);
  std::uniform_int_distribution<std::size_t> pick(0, bounds.size() - 1);
  std::uniform_int_distribution<int> how(0, 3);
  std::uniform_real_distribution<double> anywhere(-1, 20);
  for (int i = 0; i < 20000; ++i) {
    // Mostly values on or right beside a bound, where an off-by-one would show.
    const double b = bounds[pick(rng)];
    double v = 0;
    switch (how(rng)) {
      case 0: v = b; break;
      case 1: v = std::nextafter(b, -inf); break;
      case 2: v = std::nextafter(b, inf); break;
      default: v = anywhere(rng); break;
    }
    h.observe(v);
    ++expected[naive_bucket(bounds, v)];
  }
  h.check_invariants();
  CHECK(h.counts() == expected);
  CHECK(h.count() == 20000);
}

TEST_CASE("a histogram keeps the sum and count of what it observed") {
  Histogram h({1, 2});
  CHECK(h.count() == 0);
  CHECK(h.sum() == 0);
  for (const double v : {0.25, 0.5, 1.5, 3.0, -0.25}) h.observe(v);
  CHECK(h.count() == 5);
  CHECK(h.sum() == 5.0);
  CHECK(h.counts() == std::vector<std::uint64_t>{3, 1, 1});
  h.observe(inf);
  CHECK(h.sum() == inf);
  CHECK(h.counts().back() == 2);
}

TEST_CASE("the stock bucket layouts are ascending and span what the header says") {
  const auto latency = latency_buckets();
  REQUIRE(latency.size() == 17);
  CHECK(latency.front() == 50e-6);
  CHECK(latency[4] == 1e-3);
  CHECK(latency.back() == 10);
  const auto bytes = bytes_buckets();
  REQUIRE(bytes.size() == 11);
  CHECK(bytes.front() == 1024);
  CHECK(bytes[1] == 4096);
  CHECK(bytes.back() == 1024.0 * 1024 * 1024);
  // The constructor asserts the rest (strictly ascending, finite).
  Histogram a(latency);
  Histogram b(bytes);
  a.check_invariants();
  b.check_invariants();
}

TEST_CASE("bad bounds and a NaN observation are caller bugs that assert") {
  CHECK(aborts([] { Histogram h({}); }));
  CHECK(aborts([] { Histogram h({1, 1}); }));
  CHECK(aborts([] { Histogram h({2, 1}); }));
  CHECK(aborts([] { Histogram h({1, inf}); }));
  CHECK(aborts([] { Histogram h({std::nan("")}); }));
  CHECK(aborts([] {
    Histogram h({1});
    h.observe(std::nan(""));
  }));
  CHECK_FALSE(aborts([] {
    Histogram h({-1, 0, 1});
    h.observe(0);
  }));
}

// --- numbers and names --------------------------------------------------------------------

TEST_CASE("numbers print as Prometheus parses them: integers plainly, other doubles exactly") {
  struct Case {
    double value;
    const char* text;
  };
  const Case cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-7, "-7"},
      {1e6, "1000000"},
      {1e16, "10000000000000000"},
      {9007199254740993.0, "9007199254740992"},            // the double nearest 2^53 + 1
      {-9223372036854774784.0, "-9223372036854774784"},    // the double just above -2^63
      {-9223372036854775808.0, "-9.223372036854776e+18"},  // -2^63 itself is out of range
      {9223372036854775808.0, "9.223372036854776e+18"},    // 2^63: no longer an int64
      {1e300, "1e+300"},
      {0.25, "0.25"},
      {0.1, "0.1"},
      {1.5, "1.5"},
      {0.0005, "0.0005"},
      {50e-6, "5e-05"},
      {2.5e-3, "0.0025"},
      {std::nan(""), "NaN"},
      {inf, "+Inf"},
      {-inf, "-Inf"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.value);
    CHECK(format_number(c.value) == std::string(c.text));
  }
}

TEST_CASE("every printed number reads back to the same double") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint64_t> bits;
  int checked = 0;
  while (checked < 5000) {
    const std::uint64_t b = bits(rng);
    double v = 0;
    static_assert(sizeof v == sizeof b);
    std::memcpy(&v, &b, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string text = format_number(v);
    CAPTURE(text);
    CHECK(std::strtod(text.c_str(), nullptr) == v);
    ++checked;
  }
  for (const double v : latency_buckets())
    CHECK(std::strtod(format_number(v).c_str(), nullptr) == v);
}

TEST_CASE("metric names may hold colons, label names may not") {
  for (const char* good : {"a", "_", ":", "rpool_draws_total", "a:b_c9", "A_Z"}) {
    CAPTURE(std::string(good));
    CHECK(valid_metric_name(good));
  }
  for (const char* bad : {"", "9a", "a-b", "a b", "a.b", "a\xc3\xa9", "a\n"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(valid_metric_name(bad));
  }
  for (const char* good : {"a", "_", "_x", "code", "Le9"}) {
    CAPTURE(std::string(good));
    CHECK(valid_label_name(good));
  }
  for (const char* bad : {"", ":", "a:b", "9", "a-b", "a b"}) {
    CAPTURE(std::string(bad));
    CHECK_FALSE(valid_label_name(bad));
  }
}

// --- Exposition ---------------------------------------------------------------------------

TEST_CASE("a small exposition reads exactly as the text format 0.0.4 says") {
  Exposition out;
  out.gauge("rpool_term", "Current Raft term.", 7);
  out.counter("rpool_http_requests_total", "HTTP requests answered.", 12, {{"code", "2xx"}});
  out.counter("rpool_http_requests_total", "HTTP requests answered.", 3, {{"code", "4xx"}});
  Histogram sync({0.25, 1, 2.5});
  for (const double v : {0.125, 0.25, 0.5, 3.0}) sync.observe(v);
  out.histogram("rpool_wal_sync_seconds", "Time of one WAL fdatasync.", sync);
  Histogram bytes({1024, 4096});
  bytes.observe(100);
  bytes.observe(5000);
  out.histogram("rpool_http_body_bytes", "Request body sizes.", bytes,
                {{"route", "draw"}, {"method", "POST"}});
  out.check_invariants();
  const std::string text = out.take();
  CHECK(text ==
        "# HELP rpool_term Current Raft term.\n"
        "# TYPE rpool_term gauge\n"
        "rpool_term 7\n"
        "# HELP rpool_http_requests_total HTTP requests answered.\n"
        "# TYPE rpool_http_requests_total counter\n"
        "rpool_http_requests_total{code=\"2xx\"} 12\n"
        "rpool_http_requests_total{code=\"4xx\"} 3\n"
        "# HELP rpool_wal_sync_seconds Time of one WAL fdatasync.\n"
        "# TYPE rpool_wal_sync_seconds histogram\n"
        "rpool_wal_sync_seconds_bucket{le=\"0.25\"} 2\n"
        "rpool_wal_sync_seconds_bucket{le=\"1\"} 3\n"
        "rpool_wal_sync_seconds_bucket{le=\"2.5\"} 3\n"
        "rpool_wal_sync_seconds_bucket{le=\"+Inf\"} 4\n"
        "rpool_wal_sync_seconds_sum 3.875\n"
        "rpool_wal_sync_seconds_count 4\n"
        "# HELP rpool_http_body_bytes Request body sizes.\n"
        "# TYPE rpool_http_body_bytes histogram\n"
        "rpool_http_body_bytes_bucket{route=\"draw\",method=\"POST\",le=\"1024\"} 1\n"
        "rpool_http_body_bytes_bucket{route=\"draw\",method=\"POST\",le=\"4096\"} 1\n"
        "rpool_http_body_bytes_bucket{route=\"draw\",method=\"POST\",le=\"+Inf\"} 2\n"
        "rpool_http_body_bytes_sum{route=\"draw\",method=\"POST\"} 5100\n"
        "rpool_http_body_bytes_count{route=\"draw\",method=\"POST\"} 2\n");
  CHECK(out.take().empty());
  out.check_invariants();
}

TEST_CASE("histogram buckets are cumulative in ascending le and end with +Inf equal to the count") {
  Histogram h(latency_buckets());
  std::mt19937_64 rng(11);
  std::exponential_distribution<double> latency(100);  // mean 10 ms
  for (int i = 0; i < 1000; ++i) h.observe(latency(rng));
  Exposition out;
  out.histogram("rpool_request_seconds", "Request latency.", h, {{"route", "draw"}});
  const std::string text = out.take();

  std::vector<std::string> les;
  std::vector<double> values;
  for (std::size_t at = 0;
       (at = text.find("rpool_request_seconds_bucket{", at)) != std::string::npos; ++at) {
    const auto le = text.find("le=\"", at) + 4;
    const auto le_end = text.find('"', le);
    les.push_back(text.substr(le, le_end - le));
    values.push_back(std::strtod(text.c_str() + text.find("} ", le_end) + 2, nullptr));
  }
  REQUIRE(les.size() == latency_buckets().size() + 1);
  CHECK(les.front() == "5e-05");
  CHECK(les.back() == "+Inf");
  for (std::size_t i = 0; i + 1 < les.size(); ++i) {
    CAPTURE(i);
    CHECK(std::strtod(les[i].c_str(), nullptr) == latency_buckets()[i]);
    CHECK(values[i] <= values[i + 1]);
  }
  CHECK(values.back() == 1000);
  CHECK(text.find("rpool_request_seconds_count{route=\"draw\"} 1000\n") != std::string::npos);
  CHECK(text.find("rpool_request_seconds_sum{route=\"draw\"} " + format_number(h.sum()) + "\n") !=
        std::string::npos);
  // Cumulative: the count in le="0.01" is every observation at or below 10 ms.
  std::uint64_t at_most_10ms = 0;
  for (std::size_t i = 0; i < h.bounds().size() && h.bounds()[i] <= 0.01; ++i)
    at_most_10ms += h.counts()[i];
  CHECK(text.find(fmt::format("rpool_request_seconds_bucket{{route=\"draw\",le=\"0.01\"}} {}\n",
                              at_most_10ms)) != std::string::npos);
}

TEST_CASE("HELP and TYPE appear once per family however many label sets it has") {
  Exposition out;
  for (const char* code : {"200", "400", "404", "503"}) {
    out.counter("rpool_answers_total", "Answers by status.", 1, {{"code", code}});
  }
  Histogram h({1});
  out.histogram("rpool_wait_seconds", "Waits.", h, {{"queue", "a"}});
  out.histogram("rpool_wait_seconds", "Waits.", h, {{"queue", "b"}});
  out.gauge("rpool_up", "Up.", 1);
  const std::string text = out.take();
  CHECK(occurrences(text, "# HELP rpool_answers_total ") == 1);
  CHECK(occurrences(text, "# TYPE rpool_answers_total counter\n") == 1);
  CHECK(occurrences(text, "rpool_answers_total{code=") == 4);
  CHECK(occurrences(text, "# HELP rpool_wait_seconds ") == 1);
  CHECK(occurrences(text, "# TYPE rpool_wait_seconds histogram\n") == 1);
  CHECK(occurrences(text, "rpool_wait_seconds_count{queue=") == 2);
  CHECK(occurrences(text, "# TYPE ") == 3);
  // HELP and TYPE come before the family's first sample.
  CHECK(text.find("# TYPE rpool_answers_total") < text.find("rpool_answers_total{"));
  CHECK(text.find("# TYPE rpool_wait_seconds") < text.find("rpool_wait_seconds_bucket{"));
}

TEST_CASE("HELP escapes backslash and newline; label values also escape the double quote") {
  Exposition out;
  out.gauge("rpool_x", "a \\ back\nslash \"quoted\"", 1,
            {{"path", "C:\\dir\\"}, {"say", "\"hi\"\nthere"}, {"plain", "ok: {x=1}"}});
  CHECK(out.take() ==
        "# HELP rpool_x a \\\\ back\\nslash \"quoted\"\n"
        "# TYPE rpool_x gauge\n"
        "rpool_x{path=\"C:\\\\dir\\\\\",say=\"\\\"hi\\\"\\nthere\",plain=\"ok: {x=1}\"} 1\n");
}

TEST_CASE("counter and gauge values print NaN and infinities by name") {
  Exposition out;
  out.gauge("rpool_a", "a", std::nan(""), {{"k", "nan"}});
  out.gauge("rpool_a", "a", inf, {{"k", "pos"}});
  out.gauge("rpool_a", "a", -inf, {{"k", "neg"}});
  out.gauge("rpool_a", "a", -2.5, {{"k", "frac"}});
  out.counter("rpool_b_total", "b", 18446744073709551615.0);
  CHECK(out.take() ==
        "# HELP rpool_a a\n# TYPE rpool_a gauge\n"
        "rpool_a{k=\"nan\"} NaN\n"
        "rpool_a{k=\"pos\"} +Inf\n"
        "rpool_a{k=\"neg\"} -Inf\n"
        "rpool_a{k=\"frac\"} -2.5\n"
        "# HELP rpool_b_total b\n# TYPE rpool_b_total counter\n"
        "rpool_b_total 1.8446744073709552e+19\n");
}

TEST_CASE("breaking a rule of the format is a caller bug that asserts") {
  const auto gauge = [](Exposition& out, std::string_view name, Labels labels = {}) {
    out.gauge(name, "h", 1, labels);
  };
  // A family reappearing after another one started.
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"k", "1"}});
    gauge(out, "b");
    gauge(out, "a", {{"k", "2"}});
  }));
  // The same family with another type or help, or the same series twice.
  CHECK(aborts([] {
    Exposition out;
    out.gauge("a_total", "h", 1, {{"k", "1"}});
    out.counter("a_total", "h", 1, {{"k", "2"}});
  }));
  CHECK(aborts([] {
    Exposition out;
    out.gauge("a", "h", 1, {{"k", "1"}});
    out.gauge("a", "other help", 1, {{"k", "2"}});
  }));
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"k", "1"}});
    gauge(out, "a", {{"k", "1"}});
  }));
  // Names.
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "9a");
  }));
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"a:b", "1"}});
  }));
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"__name", "1"}});
  }));
  CHECK(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"k", "1"}, {"k", "2"}});
  }));
  CHECK(aborts([] {
    Exposition out;
    out.counter("rpool_draws", "h", 1);
  }));
  CHECK(aborts([] {
    Exposition out;
    out.counter("rpool_draws_total", "h", -1);
  }));
  CHECK(aborts([] {
    Exposition out;
    out.histogram("a", "h", Histogram({1}), {{"le", "1"}});
  }));
  // And the same calls, legal, do not.
  CHECK_FALSE(aborts([&] {
    Exposition out;
    gauge(out, "a", {{"k", "1"}});
    gauge(out, "a", {{"k", "2"}});
    gauge(out, "b:c", {{"_k", "1"}});
    out.counter("rpool_draws_total", "h", 0);
    out.histogram("h", "h", Histogram({1}), {{"lee", "1"}});
  }));
}

TEST_CASE("take() starts a new exposition: a family may appear again in the next one") {
  Exposition out;
  out.gauge("a", "h", 1);
  out.gauge("b", "h", 2);
  CHECK(out.take() == "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 2\n");
  out.gauge("a", "h", 3);
  CHECK(out.take() == "# HELP a h\n# TYPE a gauge\na 3\n");
}

}  // namespace
}  // namespace rpool::metrics
