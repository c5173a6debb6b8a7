// rpool-bench's command line, the request it renders and the Little's-law check of its report:
// the parts without sockets, kept apart from the load loop so tests/unit/bench can check them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rpool::bench {

// draw, pool and stale are rpool's own requests; custom is whatever --method/--path/--body say
// (etcd's JSON gateway, nginx's fixed 200, ...).
enum class Op { draw, pool, stale, custom };

const char* op_name(Op op);

// "http://host:port[/...]", "https://host:port[/...]" or "host:port" (scheme from --tls).
struct Url {
  std::optional<bool> tls;  // from the scheme; none when the text had none
  std::string host;
  std::uint16_t port = 0;
};

// Parses without resolving; nullopt with `why` on bad text.
std::optional<Url> parse_url(std::string text, std::string& why);

// Pool numbers are patched into the rendered request in place: a fixed width of decimal digits.
constexpr std::size_t pool_digits = 5;
constexpr std::uint32_t pools_max = 100'000;  // 10^pool_digits
// An Idempotency-Key ends in this many hex digits of a per-connection counter, patched in place.
constexpr std::size_t key_counter_digits = 12;
// A request body given on the command line; larger bodies are not what this tool measures.
constexpr std::size_t body_bytes_max = 1 << 20;
// --slow-ms keeps the first this many slow answers (a run with a slow server would otherwise keep
// every answer).
constexpr std::size_t slow_answers_max = 10'000;

struct Options {
  std::vector<Url> targets;
  std::vector<std::string> urls;  // as given, for the report
  std::size_t connections = 16;
  std::size_t threads = 1;
  std::size_t pipeline = 1;
  double duration_s = 10;
  std::uint64_t requests = 0;  // 0: run for duration_s
  double warmup_s = 1;
  Op op = Op::draw;
  int count = 1;
  double rate = 0;  // requests per second over all connections; 0: closed loop
  bool idempotency = false;
  bool json = false;
  // Print "rpool-bench: measuring" / "rpool-bench: measured" on stderr when the measuring window
  // opens and closes, so a caller can sample a server's CPU time over exactly that window.
  bool marks = false;
  // Print each answer slower than this (and counted) on stderr with the wall-clock time it came
  // back, to line up with a server's log; 0: none. At most slow_answers_max are kept.
  double slow_ms = 0;
  // Draws go to /v1/pools/pool-NNNNN/draw, the pool changing with every request, over this many
  // pools (pool-00000 .. ); 0: POST /v1/draw.
  std::uint32_t pools = 0;
  // Op::custom.
  std::string method;
  std::string path;
  std::string body;
  std::string content_type;
  // HTTPS: every target speaks TLS; the server's certificate is verified against `cacert` (the
  // system's store when empty) and its name or address; `cert`/`key`: a client certificate.
  bool tls = false;
  std::string cacert;
  std::string cert;
  std::string key;
};

// The outcome of parsing a command line: options, or the text to print and the exit code
// (0 after --help, 2 on bad usage).
struct Parsed {
  std::optional<Options> options;
  std::string message;
  int exit_code = 0;
};

constexpr int exit_bad_usage = 2;

Parsed parse_options(int argc, const char* const* argv);

// One request as bytes on the wire, and where the parts patched before each write start
// (npos: none).
struct Rendered {
  std::string bytes;
  std::size_t key_at = std::string::npos;   // the Idempotency-Key's counter digits
  std::size_t pool_at = std::string::npos;  // the pool number's digits (--pools)
};

// `key_prefix`: what precedes the counter in the Idempotency-Key (run id and connection).
Rendered render_request(const Options& o, const Url& target, std::string_view key_prefix);

// Little's law for a closed loop: the requests in flight equal throughput x mean latency. A load
// generator whose figures break it measures something other than what it reports (wrk at one
// connection, here: its mean latency was 3.3x what one connection at its throughput allows).
struct LittleCheck {
  double in_flight = 0;  // connections x pipeline
  double implied = 0;    // requests/s x mean latency in seconds
  double error = 0;      // implied / in_flight - 1
  bool ok = false;       // |error| <= little_tolerance
};

constexpr double little_tolerance = 0.10;

LittleCheck little_check(double in_flight, double requests_per_s, double mean_latency_s);

}  // namespace rpool::bench
