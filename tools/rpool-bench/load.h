// rpool-bench's load loop: threads, connections (plain TCP or TLS), the closed and open loops.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#pragma GCC diagnostic pop

#include "histogram.h"
#include "options.h"

namespace rpool::bench {

using Clock = std::chrono::steady_clock;

constexpr std::size_t status_codes_max = 600;

// What one thread saw inside the measuring window.
struct ThreadStats {
  Histogram latency_ns;
  std::vector<std::uint64_t> status = std::vector<std::uint64_t>(status_codes_max, 0);
  std::uint64_t responses = 0;
  std::uint64_t draws = 0;           // request_ids in 200 answers to draws
  std::uint64_t draws_empty = 0;     // of which pool_empty
  std::uint64_t lost_in_flight = 0;  // requests sent on a connection that then failed
  std::map<std::string, std::uint64_t> connection_errors;  // rare: allocation is fine here
  Clock::time_point last_done{};
  // --slow-ms: when each slow answer arrived (wall clock) and its latency, the first
  // slow_answers_max of them; slow_answers counts them all.
  struct Slow {
    std::chrono::system_clock::time_point at;
    std::uint64_t latency_ns;
  };
  std::vector<Slow> slow;
  std::uint64_t slow_answers = 0;

  void merge(const ThreadStats& s);
};

// State shared by every thread: the clock marks and the --requests budget.
struct Shared {
  Clock::time_point start;
  Clock::time_point warm_end;
  Clock::time_point end;
  std::atomic<std::uint64_t> claimed{0};  // requests started after warm-up (--requests)
  std::string run_id;                     // makes Idempotency-Keys unique across runs
};

// Runs the load described by `o` against `endpoints` (one per o.targets entry) until shared.end,
// or until --requests are answered; `tls`: the client context when o.tls. `on_started` runs on
// the calling thread once the worker threads run (rpool-bench's --marks). Returns every answer
// inside [warm_end, end), merged over the threads.
ThreadStats run_load(const Options& o, const std::vector<boost::asio::ip::tcp::endpoint>& endpoints,
                     boost::asio::ssl::context* tls, Shared& shared,
                     const std::function<void()>& on_started);

}  // namespace rpool::bench
