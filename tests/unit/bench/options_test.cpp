// rpool-bench's command line, the request bytes it renders and its Little's-law check.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "options.h"

using namespace rpool::bench;

namespace {

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "rpool-bench");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

Options ok(std::vector<std::string> args) {
  Parsed p = parse(std::move(args));
  INFO(p.message);
  REQUIRE(p.options.has_value());
  return *p.options;
}

void refused(std::vector<std::string> args, const std::string& says) {
  Parsed p = parse(std::move(args));
  CAPTURE(p.message);
  CHECK_FALSE(p.options.has_value());
  CHECK(p.exit_code == exit_bad_usage);
  CHECK(p.message.find(says) != std::string::npos);
}

}  // namespace

TEST_CASE("the default is rpool's draw, rendered as before") {
  const Options o = ok({"--url", "http://127.0.0.1:8001"});
  CHECK(o.op == Op::draw);
  CHECK_FALSE(o.tls);
  REQUIRE(o.targets.size() == 1);
  const Rendered r = render_request(o, o.targets[0], "run-000001");
  CHECK(r.bytes ==
        "POST /v1/draw HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nContent-Type: application/json\r\n"
        "Content-Length: 11\r\n\r\n{\"count\":1}");
  CHECK(r.key_at == std::string::npos);
  CHECK(r.pool_at == std::string::npos);
}

TEST_CASE("idempotency keys and pool numbers are patched where render_request says") {
  const Options o = ok({"--url", "127.0.0.1:8001", "--idempotency", "--pools", "7", "--count", "3"});
  const Rendered r = render_request(o, o.targets[0], "abc-000002");
  REQUIRE(r.key_at != std::string::npos);
  CHECK(r.bytes.substr(r.key_at - 28, 28) == "Idempotency-Key: abc-000002-");
  CHECK(r.bytes.substr(r.key_at, key_counter_digits) == std::string(key_counter_digits, '0'));
  REQUIRE(r.pool_at != std::string::npos);
  CHECK(r.bytes.substr(r.pool_at - 6, 6 + pool_digits) == "/pool-00000");
  CHECK(r.bytes.ends_with("{\"count\":3}"));
}

TEST_CASE("--path/--method/--body render any request (etcd's JSON gateway)") {
  const std::string body = R"({"key":"cnBvb2w=","value":"MDEy"})";
  const Options o = ok({"--url", "http://127.0.0.2:2379", "--path", "/v3/kv/put", "--body", body});
  CHECK(o.op == Op::custom);
  CHECK(o.method == "POST");  // implied by the body
  CHECK(render_request(o, o.targets[0], "x").bytes ==
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.2:2379\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST_CASE("a GET without a body has neither Content-Type nor Content-Length") {
  const Options o = ok({"--url", "http://127.0.0.1:80", "--path", "/"});
  CHECK(o.method == "GET");
  CHECK(render_request(o, o.targets[0], "x").bytes == "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n");
  const Options d = ok({"--url", "http://127.0.0.1:80", "--path", "/x", "--method", "DELETE",
                        "--body", "a=b", "--content-type", "text/plain"});
  CHECK(render_request(d, d.targets[0], "x").bytes ==
        "DELETE /x HTTP/1.1\r\nHost: 127.0.0.1:80\r\nContent-Type: text/plain\r\n"
        "Content-Length: 3\r\n\r\na=b");
  // A body-less POST says Content-Length: 0, or a server may wait for a body.
  const Options e = ok({"--url", "http://127.0.0.1:80", "--path", "/x", "--method", "POST"});
  CHECK(render_request(e, e.targets[0], "x").bytes ==
        "POST /x HTTP/1.1\r\nHost: 127.0.0.1:80\r\nContent-Length: 0\r\n\r\n");
}

TEST_CASE("bad request options are refused with a reason") {
  refused({"--url", "127.0.0.1:1", "--path", "v3/kv/put"}, "--path");
  refused({"--url", "127.0.0.1:1", "--path", "/a b"}, "--path");
  refused({"--url", "127.0.0.1:1", "--path", "/", "--method", "get"}, "--method");
  refused({"--url", "127.0.0.1:1", "--path", "/", "--method", "GET\r\nX:"}, "--method");
  refused({"--url", "127.0.0.1:1", "--path", "/", "--content-type", "a\r\nb: c"}, "--content-type");
  refused({"--url", "127.0.0.1:1", "--body", "{}"}, "--path");       // --body needs --path
  refused({"--url", "127.0.0.1:1", "--path", "/", "--op", "pool"}, "excludes");
  refused({"--url", "127.0.0.1:1", "--path", "/", "--count", "2"}, "excludes");
  refused({}, "at least one node");
  refused({"--url", "ftp://h:1"}, "only http");
  refused({"--url", "h:0"}, "bad port");
}

TEST_CASE("TLS: --tls or https:// URLs, never mixed with http://") {
  const Options a = ok({"--url", "https://127.0.0.1:8001"});
  CHECK(a.tls);
  const Options b = ok({"--tls", "--nodes", "127.0.0.1:1,127.0.0.2:2"});
  CHECK(b.tls);
  CHECK(b.targets.size() == 2);
  refused({"--url", "https://127.0.0.1:1", "--url", "http://127.0.0.2:2"}, "together");
  refused({"--tls", "--url", "http://127.0.0.1:1"}, "together");
  refused({"--url", "127.0.0.1:1", "--cacert", "/dev/null"}, "need TLS");
  refused({"--tls", "--url", "127.0.0.1:1", "--cacert", "/nonexistent/ca.pem"}, "--cacert");
  refused({"--tls", "--url", "127.0.0.1:1", "--cert", "/dev/null"}, "--key");
}

TEST_CASE("--help answers the usage with exit 0") {
  Parsed p = parse({"--help"});
  CHECK_FALSE(p.options.has_value());
  CHECK(p.exit_code == 0);
  CHECK(p.message.find("--path") != std::string::npos);
}

TEST_CASE("Little's law: consistent figures pass, wrk's one-connection figures do not") {
  // 1 connection at 3,109 req/s with a 320 us mean: 0.995 in flight.
  LittleCheck c = little_check(1, 3109, 320e-6);
  CHECK(c.ok);
  CHECK(c.implied == doctest::Approx(0.99488));
  CHECK(c.error == doctest::Approx(-0.00512));
  // wrk's report in the same minute: 3,118 req/s with a 1.05 ms mean is 3.3 in flight.
  c = little_check(1, 3118, 1.05e-3);
  CHECK_FALSE(c.ok);
  CHECK(c.error == doctest::Approx(2.2739));
  // The edges of the tolerance, both ways.
  CHECK(little_check(256, 1000, 0.256 * 1.099).ok);
  CHECK_FALSE(little_check(256, 1000, 0.256 * 1.101).ok);
  CHECK(little_check(16, 1000, 0.016 * 0.901).ok);
  CHECK_FALSE(little_check(16, 1000, 0.016 * 0.899).ok);
  CHECK_FALSE(little_check(0, 1000, 0.001).ok);  // nothing in flight: nothing to check
}

TEST_CASE("--slow-ms: a threshold in ms, none by default, never negative") {
  CHECK(ok({"--url", "127.0.0.1:1"}).slow_ms == 0);
  CHECK(ok({"--url", "127.0.0.1:1", "--slow-ms", "2.5"}).slow_ms == 2.5);
  refused({"--url", "127.0.0.1:1", "--slow-ms", "-1"}, "--slow-ms");
}
