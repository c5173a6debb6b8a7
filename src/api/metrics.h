// Prometheus metrics, without any I/O: a fixed-bucket Histogram and a builder of the text
// exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// The node keeps its counters and gauges as plain integers and its histograms as Histogram
// members, all on its one event loop; on GET /metrics it hands them to an Exposition:
//
//   metrics::Exposition out;
//   out.gauge("rpool_term", "Current Raft term.", core.current_term().value());
//   out.counter("rpool_http_requests_total", "HTTP requests answered.", n_2xx, {{"code", "2xx"}});
//   out.counter("rpool_http_requests_total", "HTTP requests answered.", n_4xx, {{"code", "4xx"}});
//   out.histogram("rpool_wal_sync_seconds", "Time of one WAL fdatasync.", wal_sync_seconds_);
//   std::string body = out.take();
//
// Nothing here locks: a Histogram and an Exposition belong to one thread.
//
// Breaking a rule of the format (a bad name, a family that reappears after another one started,
// the same series twice) is a bug in the caller and fails an RPOOL_ASSERT.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rpool::metrics {

// Label name and value pairs of one series, in the order they are printed. The names are
// usually string literals; the values are escaped when printed.
using Labels = std::vector<std::pair<std::string_view, std::string>>;

// A Prometheus histogram with fixed upper bounds ("le" buckets). observe() costs one binary
// search and never allocates.
class Histogram {
 public:
  // `bounds`: the finite upper bounds, non-empty and strictly ascending. The +Inf bucket is
  // implicit and always present.
  explicit Histogram(std::vector<double> bounds);

  // Counts `v` in the first bucket whose bound is >= v (Prometheus' "le": a value equal to a
  // bound belongs to that bound's bucket), or in the +Inf bucket when v is above every bound.
  // `v` must not be NaN; +Inf and -Inf are allowed (and make sum() infinite).
  void observe(double v);

  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i] for i < bounds().size(): observations v with bounds()[i-1] < v <= bounds()[i]
  // (not cumulative). counts().back(): observations above the last bound (the +Inf bucket minus
  // every other one).
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  std::uint64_t count() const { return count_; }

  // Bounds finite and strictly ascending; one count per bound plus one; count() == sum of counts().
  void check_invariants() const;

 private:
  std::vector<double> bounds_;         // non-empty, finite, strictly ascending
  std::vector<std::uint64_t> counts_;  // counts_.size() == bounds_.size() + 1
  double sum_ = 0;
  std::uint64_t count_ = 0;  // count_ == sum of counts_
};

// Seconds, for request and disk latencies: 50us, 100us, 250us, 500us, 1ms, 2.5ms, 5ms, 10ms,
// 25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s.
std::vector<double> latency_buckets();
// Bytes, for record and snapshot sizes: 1 KiB, 4 KiB, 16 KiB, ... powers of 4 ... 1 GiB.
std::vector<double> bytes_buckets();

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*
bool valid_label_name(std::string_view name);
// A sample value or an "le" bound as Prometheus parses it: "NaN", "+Inf", "-Inf"; an integral
// value below 2^63 in magnitude as an integer ("3", "-7", "1000000"); any other value in the
// shortest form that reads back to the same double ("0.25", "5e-05", "1e+300").
std::string format_number(double v);

// Builds one /metrics answer in the text format 0.0.4.
//
// A metric family is every call with one `name`. Each family gets its "# HELP" and "# TYPE"
// lines once, before its first sample, however many label sets it is emitted with. The calls
// for one family must be contiguous: once another family has started, emitting an earlier one
// again fails an assertion (the format requires a family's samples to be together). Every call
// for one family must give the same type and help, and a different label set.
class Exposition {
 public:
  // A counter's name ends in "_total" (the sample is `name{labels} value`); value >= 0 or NaN.
  void counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  void gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  // Prints the cumulative `name_bucket{labels,le="..."}` lines in ascending le, ending with
  // le="+Inf", then `name_sum{labels}` and `name_count{labels}`. `labels` must not use "le".
  void histogram(std::string_view name, std::string_view help, const Histogram& histogram,
                 const Labels& labels = {});

  // The text so far (ending in a newline unless empty); the builder starts over, empty.
  std::string take();

  // The text ends in a newline; the open family has a type and at least one series; no closed
  // family is open again.
  void check_invariants() const;

 private:
  // Starts family `name` or continues it, checking the rules above, and writes HELP and TYPE
  // when it starts. `series` is the rendered label set, used to reject a repeated series.
  void begin(std::string_view name, std::string_view help, std::string_view type,
             const std::string& series);
  // `{a="x",b="y"}` with escaped values, plus `extra` (already rendered, e.g. `le="1"`) last;
  // "" when there is no label at all.
  static std::string render_labels(const Labels& labels, std::string_view extra = {});
  void sample(std::string_view name, std::string_view suffix, const std::string& labels,
              double value);

  std::string out_;
  std::string family_;  // the family being written; "" before the first
  std::string family_type_;
  std::string family_help_;
  std::vector<std::string> family_series_;       // label sets already written for family_
  std::set<std::string, std::less<>> finished_;  // families closed: they may not reappear
};

}  // namespace rpool::metrics
