// rpool-bench: an HTTP/1.1 keep-alive load generator for rpool (docs/api.md), and for any other
// HTTP server bench/compare-etcd measures beside it (--method/--path/--body, HTTPS with --tls).
//
//   rpool-bench --url http://127.0.0.1:8001 --connections 64 --threads 2 --duration 10 --op draw
//   rpool-bench --url https://127.0.0.1:2379 --cacert ca.pem --path /v3/kv/put --body '{...}'
//
// Shape. T threads, each with its own io_context and no shared state but a few atomics; C
// connections spread round-robin over the threads and over the target nodes. Each connection keeps
// up to D requests in flight (pipelining) on one kept-alive socket. Two modes:
//  - closed loop (default): a connection sends its next request as soon as an answer frees a slot;
//    latency runs from the moment the request is handed to the socket.
//  - open loop (--rate R): request k of a connection is *scheduled* at start + k * interval,
//    whether or not the server keeps up; it is sent when due and a slot is free, and its latency
//    runs from the scheduled time. A stalled server therefore shows up in the percentiles instead of quietly
//    slowing the load down ("coordinated omission").
// Answers completing inside [warm-up end, end) are counted: per status, latency into a per-thread
// histogram (merged at the end), draws from 200 answers of POST /v1/draw.
// The report ends with Little's law for the closed loop: the requests in flight (connections x
// pipeline) against throughput x mean latency. Both sides come from the same answers, so a gap
// beyond a few percent means the generator's clock or bookkeeping misreports (see options.h).
//
// Files: options.cpp (command line, request rendering, the Little's-law check), load.cpp (the
// threads and connections), histogram.cpp (latency percentiles), main.cpp (the report).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#pragma GCC diagnostic pop

#include "histogram.h"
#include "load.h"
#include "options.h"

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Nanos = std::chrono::nanoseconds;
using namespace rpool::bench;

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string fmt_latency(std::uint64_t ns) {
  if (ns < 1'000'000) return fmt::format("{:.0f} us", us(ns));
  if (ns < 10'000'000'000ull) return fmt::format("{:.2f} ms", static_cast<double>(ns) / 1e6);
  return fmt::format("{:.2f} s", static_cast<double>(ns) / 1e9);
}

std::optional<tcp::endpoint> resolve(const Url& u, std::string& why) {
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(u.host, std::to_string(u.port), ec);
  if (ec || results.empty()) {
    why = fmt::format("cannot resolve '{}': {}", u.host, ec.message());
    return std::nullopt;
  }
  return results.begin()->endpoint();
}

// The client context of --tls: TLS 1.2 or newer, the server verified against --cacert.
std::unique_ptr<ssl::context> make_tls(const Options& o) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                   ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  if (o.cacert.empty()) {
    ctx->set_default_verify_paths();
  } else {
    ctx->load_verify_file(o.cacert);
  }
  if (!o.cert.empty()) {
    ctx->use_certificate_chain_file(o.cert);
    ctx->use_private_key_file(o.key, ssl::context::pem);
  }
  return ctx;
}

}  // namespace

int main(int argc, char** argv) {
  Parsed parsed = parse_options(argc, argv);
  if (!parsed.options) {
    (parsed.exit_code == 0 ? std::cout : std::cerr) << parsed.message << "\n";
    return parsed.exit_code;
  }
  const Options& o = *parsed.options;
  std::vector<tcp::endpoint> endpoints;
  for (const Url& u : o.targets) {
    std::string why;
    auto e = resolve(u, why);
    if (!e) {
      std::cerr << "rpool-bench: --url: " << why << "\n";
      return exit_bad_usage;
    }
    endpoints.push_back(*e);
  }
  std::unique_ptr<ssl::context> tls;
  if (o.tls) {
    try {
      tls = make_tls(o);
    } catch (const boost::system::system_error& e) {
      std::cerr << "rpool-bench: TLS: " << e.what() << "\n";
      return exit_bad_usage;
    }
  }

  Shared shared;
  {
    std::random_device rd;
    shared.run_id = fmt::format("{:08x}", rd());
  }
  shared.start = Clock::now();
  shared.warm_end = shared.start + Nanos(static_cast<std::int64_t>(o.warmup_s * 1e9));
  shared.end = o.requests > 0
                   ? shared.warm_end + std::chrono::hours(24)
                   : shared.warm_end + Nanos(static_cast<std::int64_t>(o.duration_s * 1e9));
  // --marks: the window's edges, told on stderr as they pass, for a caller sampling a server.
  auto marks = [&] {
    if (!o.marks || o.requests > 0) return;
    std::this_thread::sleep_until(shared.warm_end);
    std::fputs("rpool-bench: measuring\n", stderr);
    std::fflush(stderr);
    std::this_thread::sleep_until(shared.end);
    std::fputs("rpool-bench: measured\n", stderr);
    std::fflush(stderr);
  };
  const ThreadStats all = run_load(o, endpoints, tls.get(), shared, marks);

  if (o.slow_ms > 0) {
    std::vector<ThreadStats::Slow> slow = all.slow;
    std::sort(slow.begin(), slow.end(),
              [](const auto& a, const auto& b) { return a.at < b.at; });
    for (const auto& a : slow) {
      const auto us_since_epoch =
          std::chrono::duration_cast<std::chrono::microseconds>(a.at.time_since_epoch()).count();
      const std::time_t secs = static_cast<std::time_t>(us_since_epoch / 1'000'000);
      std::tm tm{};
      gmtime_r(&secs, &tm);
      fmt::print(stderr, "rpool-bench: slow {:02}:{:02}:{:02}.{:06}Z {:.3f} ms\n", tm.tm_hour,
                 tm.tm_min, tm.tm_sec, us_since_epoch % 1'000'000,
                 static_cast<double>(a.latency_ns) / 1e6);
    }
    fmt::print(stderr, "rpool-bench: {} answers slower than {} ms ({} listed)\n",
               all.slow_answers, o.slow_ms, slow.size());
  }
  const Clock::time_point measured_end = o.requests > 0 ? all.last_done : shared.end;
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(measured_end - shared.warm_end).count());
  const double rps = static_cast<double>(all.responses) / seconds;
  const std::uint64_t draws_ok = all.draws - all.draws_empty;
  const double dps = static_cast<double>(draws_ok) / seconds;
  const Histogram& h = all.latency_ns;
  std::uint64_t errors_http = 0;
  for (std::size_t i = 0; i < status_codes_max; ++i) {
    if (i < 200 || i >= 300) errors_http += all.status[i];
  }
  const std::uint64_t ok = all.responses - errors_http;
  std::uint64_t errors_connection = 0;
  for (auto& [k, v] : all.connection_errors) errors_connection += v;
  // In an open loop the requests in flight follow the server, not the connections: no check.
  const bool closed = o.rate <= 0;
  const LittleCheck little =
      little_check(static_cast<double>(o.connections * o.pipeline), rps, h.mean() / 1e9);

  if (o.json) {
    nlohmann::json j;
    j["op"] = op_name(o.op);
    j["count"] = o.op == Op::draw ? o.count : 0;
    if (o.op == Op::custom) {
      j["method"] = o.method;
      j["path"] = o.path;
      j["body_bytes"] = o.body.size();
    }
    j["tls"] = o.tls;
    j["nodes"] = o.urls;
    j["connections"] = o.connections;
    j["threads"] = o.threads;
    j["pipeline"] = o.pipeline;
    j["rate"] = o.rate;
    j["idempotency"] = o.idempotency;
    j["pools"] = o.pools;
    j["warmup_s"] = o.warmup_s;
    j["seconds"] = seconds;
    j["requests"] = all.responses;
    j["requests_per_s"] = rps;
    j["ok"] = ok;
    j["ok_per_s"] = static_cast<double>(ok) / seconds;
    j["draws"] = draws_ok;
    j["draws_pool_empty"] = all.draws_empty;
    j["draws_per_s"] = dps;
    j["latency_us"] = {{"p50", us(h.percentile(50))}, {"p90", us(h.percentile(90))},
                       {"p99", us(h.percentile(99))}, {"p99.9", us(h.percentile(99.9))},
                       {"max", us(h.max())},          {"min", us(h.min())},
                       {"mean", h.mean() / 1000.0}};
    j["little"] = {{"checked", closed},     {"in_flight", little.in_flight},
                   {"implied", little.implied}, {"error", little.error},
                   {"ok", closed && little.ok}, {"tolerance", little_tolerance}};
    nlohmann::json status = nlohmann::json::object();
    for (std::size_t i = 0; i < status_codes_max; ++i) {
      if (all.status[i] > 0) status[std::to_string(i)] = all.status[i];
    }
    j["status"] = status;
    j["errors_http"] = errors_http;
    j["errors_connection"] = all.connection_errors;
    j["lost_in_flight"] = all.lost_in_flight;
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::string where;
  for (const auto& t : o.targets) where += fmt::format(" {}:{}", t.host, t.port);
  const std::string what = o.op == Op::custom ? fmt::format("{} {}", o.method, o.path)
                           : o.op == Op::draw ? fmt::format("draw count={}", o.count)
                                              : std::string(op_name(o.op));
  fmt::print("rpool-bench: {} on{}{}: {} connections, {} threads, pipeline {}, {}\n", what, where,
             o.tls ? " (TLS)" : "", o.connections, o.threads, o.pipeline,
             o.rate > 0 ? fmt::format("open loop at {:.0f} req/s", o.rate)
                        : std::string("closed loop"));
  fmt::print("  measured   {:.2f} s after {:.1f} s warm-up\n", seconds, o.warmup_s);
  fmt::print("  requests   {:>12}  {:>12.1f} /s\n", all.responses, rps);
  if (o.op == Op::draw) {
    fmt::print("  draws      {:>12}  {:>12.1f} /s   (pool_empty: {})\n", draws_ok, dps,
               all.draws_empty);
  }
  fmt::print("  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
             fmt_latency(h.percentile(50)), fmt_latency(h.percentile(90)),
             fmt_latency(h.percentile(99)), fmt_latency(h.percentile(99.9)), fmt_latency(h.max()),
             fmt_latency(static_cast<std::uint64_t>(h.mean())));
  if (closed) {
    fmt::print(
        "  little     in flight {:.0f} vs throughput x mean {:.2f}: error {:+.1f}% {}\n",
        little.in_flight, little.implied, 100 * little.error,
        little.ok ? "(ok)" : fmt::format("LITTLE! (beyond {:.0f}%)", 100 * little_tolerance));
  } else {
    fmt::print("  little     open loop: throughput x mean = {:.2f} requests in flight\n",
               little.implied);
  }
  std::string statuses;
  for (std::size_t i = 0; i < status_codes_max; ++i) {
    if (all.status[i] > 0)
      statuses +=
          fmt::format(" {}: {}", i == 0 ? std::string("other") : std::to_string(i), all.status[i]);
  }
  fmt::print("  status    {}\n", statuses.empty() ? " none" : statuses);
  if (errors_connection > 0 || all.lost_in_flight > 0) {
    fmt::print("  connection errors: {} (requests lost in flight: {})\n", errors_connection,
               all.lost_in_flight);
    for (auto& [k, v] : all.connection_errors) fmt::print("    {:>8}  {}\n", v, k);
  }
  return 0;
}
