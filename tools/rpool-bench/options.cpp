#include "options.h"

#include <cmath>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace rpool::bench {

const char* op_name(Op op) {
  switch (op) {
    case Op::draw: return "draw";
    case Op::pool: return "pool";
    case Op::stale: return "stale";
    case Op::custom: return "custom";
  }
  return "?";
}

std::optional<Url> parse_url(std::string text, std::string& why) {
  Url u;
  if (text.starts_with("http://")) {
    u.tls = false;
    text.erase(0, 7);
  } else if (text.starts_with("https://")) {
    u.tls = true;
    text.erase(0, 8);
  } else if (text.find("://") != std::string::npos) {
    why = fmt::format("'{}': only http:// and https://", text);
    return std::nullopt;
  }
  if (auto slash = text.find('/'); slash != std::string::npos) text.erase(slash);
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    why = fmt::format("'{}' needs host:port", text);
    return std::nullopt;
  }
  u.host = text.substr(0, colon);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port == 0 || port > 65535)
      throw std::invalid_argument("port");
  } catch (const std::exception&) {
    why = fmt::format("'{}' has a bad port", text);
    return std::nullopt;
  }
  u.port = static_cast<std::uint16_t>(port);
  return u;
}

namespace {

// An HTTP method is a token; we accept the usual upper-case ones and extensions alike.
bool valid_method(std::string_view m) {
  if (m.empty() || m.size() > 32) return false;
  for (char c : m) {
    if (!((c >= 'A' && c <= 'Z') || c == '-' || c == '_')) return false;
  }
  return true;
}

// A request target in origin form, with nothing that would end the request line early.
bool valid_path(std::string_view p) {
  if (p.empty() || p.front() != '/') return false;
  for (char c : p) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
  }
  return true;
}

bool valid_header_value(std::string_view v) {
  for (char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

Parsed usage_error(std::string message) {
  Parsed p;
  p.message = "rpool-bench: " + std::move(message);
  p.exit_code = exit_bad_usage;
  return p;
}

}  // namespace

Parsed parse_options(int argc, const char* const* argv) {
  CLI::App app{
      "rpool-bench: HTTP/1.1 keep-alive load generator with latency percentiles and a "
      "Little's-law check"};
  Options o;
  std::string nodes;
  std::string op = "draw";
  app.add_option("--url", o.urls,
                 "a node, http://host:port or https://host:port (repeatable; connections are "
                 "spread over them)");
  app.add_option("--nodes", nodes,
                 "comma-separated nodes, host:port or http(s)://host:port (adds to --url)");
  app.add_option("--connections,-c", o.connections, "connections in total (default 16)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--threads,-t", o.threads, "threads, each with its own io_context (default 1)")
      ->check(CLI::Range(1, 256));
  app.add_option("--pipeline", o.pipeline, "requests in flight per connection (default 1)")
      ->check(CLI::Range(1, 1024));
  auto* duration = app.add_option("--duration,-d", o.duration_s,
                                  "seconds to measure after the warm-up (default 10)")
                       ->check(CLI::PositiveNumber);
  app.add_option("--requests,-n", o.requests, "measure this many requests instead of a duration")
      ->check(CLI::PositiveNumber)
      ->excludes(duration);
  app.add_option("--warmup", o.warmup_s, "seconds of load before measuring (default 1)")
      ->check(CLI::NonNegativeNumber);
  auto* op_opt =
      app.add_option("--op", op, "draw (POST /v1/draw), pool (GET /v1/pool, linearizable) or stale")
          ->check(CLI::IsMember({"draw", "pool", "stale"}));
  auto* count = app.add_option("--count", o.count, "draws per request, 1..1000 (default 1)")
                    ->check(CLI::Range(1, 1000));
  app.add_option("--rate", o.rate,
                 "open loop: requests/s over all connections, latency from the scheduled time")
      ->check(CLI::PositiveNumber);
  auto* idem =
      app.add_flag("--idempotency", o.idempotency, "a unique Idempotency-Key header on every draw");
  auto* pools = app.add_option("--pools", o.pools,
                               "draw in pools pool-00000 .. pool-<N-1>, one after the other "
                               "(POST /v1/pools/{pool_id}/draw); default: POST /v1/draw")
                    ->check(CLI::Range(std::uint32_t{1}, pools_max));
  auto* path = app.add_option("--path", o.path,
                              "any request instead of --op: this target (e.g. /v3/kv/put)");
  app.add_option("--method", o.method, "with --path: the method (default GET, POST with --body)")
      ->needs(path);
  app.add_option("--body", o.body, "with --path: the request body, sent as is")->needs(path);
  app.add_option("--content-type", o.content_type,
                 "with --body: its Content-Type (default application/json)")
      ->needs(path);
  path->excludes(op_opt)->excludes(count)->excludes(pools)->excludes(idem);
  auto* tls = app.add_flag("--tls", o.tls, "HTTPS to every node (also implied by https:// URLs)");
  app.add_option("--cacert", o.cacert,
                 "with TLS: verify the server against this CA file (default: the system's)")
      ->check(CLI::ExistingFile);
  auto* cert = app.add_option("--cert", o.cert, "with TLS: a client certificate (PEM)")
                   ->check(CLI::ExistingFile);
  auto* key = app.add_option("--key", o.key, "with TLS: the client certificate's key (PEM)")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  (void)tls;
  app.add_option("--slow-ms", o.slow_ms,
                 fmt::format("print every measured answer slower than this many ms on stderr, with "
                             "the wall-clock time it arrived (the first {})",
                             slow_answers_max))
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--json", o.json, "print the result as one JSON object");
  app.add_flag("--marks", o.marks,
               "print 'rpool-bench: measuring' and 'rpool-bench: measured' on stderr when the "
               "measuring window opens and closes");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    Parsed p;
    p.message = app.help();
    return p;
  } catch (const CLI::ParseError& e) {
    return usage_error(fmt::format("{}\nRun with --help for more information.", e.what()));
  }
  if (!o.path.empty()) {
    o.op = Op::custom;
    if (!valid_path(o.path))
      return usage_error(fmt::format("--path '{}': must start with / and hold no spaces", o.path));
    if (o.method.empty()) o.method = o.body.empty() ? "GET" : "POST";
    if (!valid_method(o.method))
      return usage_error(fmt::format("--method '{}': not an HTTP method", o.method));
    if (o.body.size() > body_bytes_max)
      return usage_error(fmt::format("--body: more than {} bytes", body_bytes_max));
    if (o.content_type.empty() && !o.body.empty()) o.content_type = "application/json";
    if (!valid_header_value(o.content_type))
      return usage_error("--content-type: no line breaks");
  } else {
    o.op = op == "draw" ? Op::draw : op == "pool" ? Op::pool : Op::stale;
  }
  for (std::size_t at = 0; at < nodes.size();) {
    std::size_t comma = nodes.find(',', at);
    if (comma == std::string::npos) comma = nodes.size();
    if (comma > at) o.urls.push_back(nodes.substr(at, comma - at));
    at = comma + 1;
  }
  if (o.urls.empty()) return usage_error("name at least one node with --url or --nodes");
  for (const std::string& text : o.urls) {
    std::string why;
    auto u = parse_url(text, why);
    if (!u) return usage_error("--url: " + why);
    if (u->tls.value_or(false)) o.tls = true;
    o.targets.push_back(*u);
  }
  for (const Url& u : o.targets) {
    if (o.tls && u.tls == false)
      return usage_error("TLS (--tls or an https:// URL) and an http:// URL together");
  }
  if (!o.tls && (!o.cacert.empty() || !o.cert.empty()))
    return usage_error("--cacert, --cert and --key need TLS (--tls or https:// URLs)");
  o.threads = std::min(o.threads, o.connections);
  Parsed p;
  p.options = std::move(o);
  return p;
}

Rendered render_request(const Options& o, const Url& target, std::string_view key_prefix) {
  std::string head;
  std::string body;
  switch (o.op) {
    case Op::draw:
      body = fmt::format("{{\"count\":{}}}", o.count);
      head = fmt::format(
          "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n"
          "Content-Length: {}\r\n",
          o.pools > 0 ? "/v1/pools/pool-" + std::string(pool_digits, '0') + "/draw" : "/v1/draw",
          target.host, target.port, body.size());
      break;
    case Op::pool:
    case Op::stale:
      head = fmt::format("GET {} HTTP/1.1\r\nHost: {}:{}\r\n",
                         o.op == Op::pool ? "/v1/pool" : "/v1/pool?consistency=stale", target.host,
                         target.port);
      break;
    case Op::custom:
      body = o.body;
      head = fmt::format("{} {} HTTP/1.1\r\nHost: {}:{}\r\n", o.method, o.path, target.host,
                         target.port);
      if (!o.content_type.empty()) head += fmt::format("Content-Type: {}\r\n", o.content_type);
      // A body-less POST still says so, or a server may wait for one.
      if (!body.empty() || o.method != "GET")
        head += fmt::format("Content-Length: {}\r\n", body.size());
      break;
  }
  Rendered r;
  if (o.idempotency && o.op == Op::draw) {
    const std::string prefix = fmt::format("Idempotency-Key: {}-", key_prefix);
    r.key_at = head.size() + prefix.size();
    head += prefix + std::string(key_counter_digits, '0') + "\r\n";
  }
  r.bytes = head + "\r\n" + body;
  if (o.pools > 0 && o.op == Op::draw) r.pool_at = r.bytes.find("/pool-") + 6;
  return r;
}

LittleCheck little_check(double in_flight, double requests_per_s, double mean_latency_s) {
  LittleCheck c;
  c.in_flight = in_flight;
  c.implied = requests_per_s * mean_latency_s;
  c.error = in_flight > 0 ? c.implied / in_flight - 1 : 0;
  c.ok = in_flight > 0 && std::isfinite(c.error) && std::fabs(c.error) <= little_tolerance;
  return c;
}

}  // namespace rpool::bench
