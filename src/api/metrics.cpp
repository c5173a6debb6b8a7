#include "api/metrics.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include <fmt/format.h>

#include "base/assert.h"

namespace rpool::metrics {
namespace {

bool name_start(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

bool name_char(char c, bool colon) { return name_start(c, colon) || (c >= '0' && c <= '9'); }

bool valid_name(std::string_view name, bool colon) {
  if (name.empty() || !name_start(name.front(), colon)) return false;
  return std::all_of(name.begin() + 1, name.end(), [colon](char c) { return name_char(c, colon); });
}

// HELP text escapes backslash and newline; a label value also escapes the double quote.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  for (const char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quote && c == '"') out += "\\\"";
    else out += c;
  }
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  RPOOL_ASSERT(!bounds_.empty());
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    RPOOL_ASSERT(std::isfinite(bounds_[i]));
    if (i > 0) RPOOL_ASSERT_OP(bounds_[i - 1], <, bounds_[i]);
  }
  check_invariants();
}

void Histogram::observe(double v) {
  RPOOL_ASSERT(!std::isnan(v));
  // lower_bound finds the first bound >= v: exactly the "le" bucket. Above every bound it
  // returns end(), which is the index of the +Inf bucket in counts_.
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(bucket)];
  ++count_;
  sum_ += v;
}

void Histogram::check_invariants() const {
  RPOOL_ASSERT(!bounds_.empty());
  RPOOL_ASSERT_OP(counts_.size(), ==, bounds_.size() + 1);
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    RPOOL_ASSERT(std::isfinite(bounds_[i]));
    if (i > 0) RPOOL_ASSERT_OP(bounds_[i - 1], <, bounds_[i]);
  }
  std::uint64_t total = 0;
  for (const std::uint64_t c : counts_) total += c;
  RPOOL_ASSERT_OP(total, ==, count_);
}

std::vector<double> latency_buckets() {
  return {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
          50e-3, 100e-3, 250e-3, 500e-3, 1,    2.5,    5,    10};
}

std::vector<double> bytes_buckets() {
  std::vector<double> bounds;
  for (std::uint64_t b = 1 << 10; b <= (std::uint64_t{1} << 30); b *= 4)
    bounds.push_back(static_cast<double>(b));
  return bounds;
}

bool valid_metric_name(std::string_view name) { return valid_name(name, /*colon=*/true); }
bool valid_label_name(std::string_view name) { return valid_name(name, /*colon=*/false); }

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Every double of magnitude below 2^63 with no fraction is exactly an int64, so the integer
  // form loses nothing and avoids fmt's exponent form for large round numbers ("1e+16").
  constexpr double int64_limit = 9223372036854775808.0;  // 2^63
  if (v == std::trunc(v) && std::fabs(v) < int64_limit)
    return fmt::format("{}", static_cast<std::int64_t>(v));
  // fmt's default is the shortest text that reads back to the same double.
  return fmt::format("{}", v);
}

void Exposition::counter(std::string_view name, std::string_view help, double value,
                         const Labels& labels) {
  RPOOL_ASSERT(ends_with(name, "_total"));
  RPOOL_ASSERT(!(value < 0));
  const std::string rendered = render_labels(labels);
  begin(name, help, "counter", rendered);
  sample(name, "", rendered, value);
  check_invariants();
}

void Exposition::gauge(std::string_view name, std::string_view help, double value,
                       const Labels& labels) {
  const std::string rendered = render_labels(labels);
  begin(name, help, "gauge", rendered);
  sample(name, "", rendered, value);
  check_invariants();
}

void Exposition::histogram(std::string_view name, std::string_view help, const Histogram& histogram,
                           const Labels& labels) {
  for (const auto& label : labels) RPOOL_ASSERT(label.first != "le");
  histogram.check_invariants();
  const std::string rendered = render_labels(labels);
  begin(name, help, "histogram", rendered);
  const auto& bounds = histogram.bounds();
  const auto& counts = histogram.counts();
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    sample(name, "_bucket",
           render_labels(labels, fmt::format("le=\"{}\"", format_number(bounds[i]))),
           static_cast<double>(cumulative));
  }
  cumulative += counts.back();
  RPOOL_ASSERT_OP(cumulative, ==, histogram.count());
  sample(name, "_bucket", render_labels(labels, "le=\"+Inf\""), static_cast<double>(cumulative));
  sample(name, "_sum", rendered, histogram.sum());
  sample(name, "_count", rendered, static_cast<double>(histogram.count()));
  check_invariants();
}

std::string Exposition::take() {
  check_invariants();
  std::string text = std::move(out_);
  *this = Exposition();
  return text;
}

void Exposition::check_invariants() const {
  if (!out_.empty()) RPOOL_ASSERT(out_.back() == '\n');
  if (family_.empty()) {
    RPOOL_ASSERT(out_.empty());
    RPOOL_ASSERT(family_series_.empty());
    RPOOL_ASSERT(finished_.empty());
  } else {
    RPOOL_ASSERT(!family_type_.empty());
    RPOOL_ASSERT(!family_series_.empty());
    RPOOL_ASSERT(finished_.find(family_) == finished_.end());
  }
}

void Exposition::begin(std::string_view name, std::string_view help, std::string_view type,
                       const std::string& series) {
  RPOOL_ASSERT(valid_metric_name(name));
  if (name == family_) {
    // The same family again, with another label set.
    RPOOL_ASSERT(type == family_type_);
    RPOOL_ASSERT(help == family_help_);
    RPOOL_ASSERT(std::find(family_series_.begin(), family_series_.end(), series) ==
                 family_series_.end());
    family_series_.push_back(series);
    return;
  }
  // A family may not reappear once another one has started: its samples must be contiguous.
  RPOOL_ASSERT(finished_.find(name) == finished_.end());
  if (!family_.empty()) finished_.insert(family_);
  family_ = std::string(name);
  family_type_ = std::string(type);
  family_help_ = std::string(help);
  family_series_.assign(1, series);
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_escaped(out_, help, /*quote=*/false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

std::string Exposition::render_labels(const Labels& labels, std::string_view extra) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto& [label, value] = labels[i];
    RPOOL_ASSERT(valid_label_name(label));
    RPOOL_ASSERT(!label.starts_with("__"));  // reserved for Prometheus itself
    for (std::size_t j = 0; j < i; ++j) RPOOL_ASSERT(labels[j].first != label);
    if (i > 0) out += ',';
    out += label;
    out += "=\"";
    append_escaped(out, value, /*quote=*/true);
    out += '"';
  }
  if (!extra.empty()) {
    if (!labels.empty()) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void Exposition::sample(std::string_view name, std::string_view suffix, const std::string& labels,
                        double value) {
  fmt::format_to(std::back_inserter(out_), "{}{}{} {}\n", name, suffix, labels,
                 format_number(value));
}

}  // namespace rpool::metrics
