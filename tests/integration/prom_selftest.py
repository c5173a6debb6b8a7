"""Self-test of prom.py: good documents are accepted (and read the same by prometheus_client when
it is installed), and each bad document, one broken rule each, is rejected at the right line.

    python3 tests/integration/prom_selftest.py
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prom  # noqa: E402

# What metrics::Exposition prints for the example in tests/unit/net/metrics_test.cpp.
EXPOSITION_EXAMPLE = """\
# HELP rpool_term Current Raft term.
# TYPE rpool_term gauge
rpool_term 7
# HELP rpool_http_requests_total HTTP requests answered.
# TYPE rpool_http_requests_total counter
rpool_http_requests_total{code="2xx"} 12
rpool_http_requests_total{code="4xx"} 3
# HELP rpool_wal_sync_seconds Time of one WAL fdatasync.
# TYPE rpool_wal_sync_seconds histogram
rpool_wal_sync_seconds_bucket{le="0.25"} 2
rpool_wal_sync_seconds_bucket{le="1"} 3
rpool_wal_sync_seconds_bucket{le="2.5"} 3
rpool_wal_sync_seconds_bucket{le="+Inf"} 4
rpool_wal_sync_seconds_sum 3.875
rpool_wal_sync_seconds_count 4
# HELP rpool_http_body_bytes Request body sizes.
# TYPE rpool_http_body_bytes histogram
rpool_http_body_bytes_bucket{route="draw",method="POST",le="1024"} 1
rpool_http_body_bytes_bucket{route="draw",method="POST",le="4096"} 1
rpool_http_body_bytes_bucket{route="draw",method="POST",le="+Inf"} 2
rpool_http_body_bytes_sum{route="draw",method="POST"} 5100
rpool_http_body_bytes_count{route="draw",method="POST"} 2
"""

# The escaping example of metrics_test.cpp, and values by name.
ESCAPES = r"""# HELP rpool_x a \\ back\nslash "quoted"
# TYPE rpool_x gauge
rpool_x{path="C:\\dir\\",say="\"hi\"\nthere",plain="ok: {x=1}"} 1
# HELP rpool_a a
# TYPE rpool_a gauge
rpool_a{k="nan"} NaN
rpool_a{k="pos"} +Inf
rpool_a{k="neg"} -Inf
rpool_a{k="frac"} -2.5
rpool_a{k="exp"} 1.8446744073709552e+19
rpool_a{k="small"} 5e-05
"""

# What handle_metrics printed before metrics.h (two families, to keep it short).
NODE_TODAY = """\
# HELP rpool_term Current Raft term.
# TYPE rpool_term gauge
rpool_term 3
# HELP rpool_draws_total Drawn units applied (request_ids handed out).
# TYPE rpool_draws_total counter
rpool_draws_total 0
"""

# The corners the grammar allows: comments, blank lines, leading blanks, no HELP, no TYPE,
# timestamps, blanks and a trailing comma in braces, empty braces, a summary, several series of
# one histogram, the latency layout's exponent-form le.
CORNERS = """\
# A free comment, then a blank line.

   # An indented comment.
#
untyped_thing 1 1732838400000
another_one{} -3
# TYPE rpool_up gauge
rpool_up{ node = "1" , } 1
rpool_up{node="2"}\t0\t-5
# HELP no_type_help Only HELP, so untyped.
no_type_help 4
# TYPE rpool_rpc_seconds summary
rpool_rpc_seconds{quantile="0.5"} 0.01
rpool_rpc_seconds{quantile="0.99"} 0.2
rpool_rpc_seconds_sum 12.5
rpool_rpc_seconds_count 400
# TYPE rpool_req_seconds histogram
# HELP rpool_req_seconds TYPE before HELP is fine.
rpool_req_seconds_bucket{route="draw",le="5e-05"} 0
rpool_req_seconds_bucket{route="draw",le="0.0001"} 2
rpool_req_seconds_bucket{route="draw",le="+Inf"} 2
rpool_req_seconds_sum{route="draw"} 0.00015
rpool_req_seconds_count{route="draw"} 2
rpool_req_seconds_bucket{route="pool",le="5e-05"} 1
rpool_req_seconds_bucket{route="pool",le="0.0001"} 1
rpool_req_seconds_bucket{route="pool",le="+Inf"} 1
rpool_req_seconds_count{route="pool"} 1
rpool_req_seconds_sum{route="pool"} 1e-05
"""

GOOD = {
    "the Exposition example": EXPOSITION_EXAMPLE,
    "escapes and special values": ESCAPES,
    "the node's metrics before metrics.h": NODE_TODAY,
    "grammar corners": CORNERS,
    "an empty exposition": "",
}

H = "# TYPE h histogram\n"
HIST_OK_TAIL = 'h_sum 1\nh_count 2\n'

# (what, text, line, a word of the reason)
BAD = [
    ("no newline at the end", "a 1\nb 2", 2, "newline"),
    ("a carriage return", "a 1\r\n", 1, "carriage return"),
    ("a metric name starting with a digit", "a 1\n9a 1\n", 2, "bad metric name"),
    ("a metric name with a dash", "a-b 1\n", 1, "expected a blank"),
    ("a label name starting with a digit", 'a{9x="1"} 1\n', 1, "bad label name"),
    ("a label name with a colon", 'a{a:b="1"} 1\n', 1, "expected ="),
    ("an unknown escape in a label value", 'a{l="x\\ty"} 1\n', 1, "invalid escape"),
    ("an unterminated label value", 'a{l="x} 1\n', 1, "unterminated"),
    ("an unquoted label value", "a{l=x} 1\n", 1, "double-quoted"),
    ("labels without a comma", 'a{x="1" y="2"} 1\n', 1, "expected , or }"),
    ("the same label twice", 'a{x="1",x="2"} 1\n', 1, "twice"),
    ("the reserved __name__ label", 'a{__name__="b"} 1\n', 1, "reserved"),
    ("no value", "a 1\nb\n", 2, "no value"),
    ("a value with a comma", "a 1,5\n", 1, "bad value"),
    ("a lower-case inf", "a inf\n", 1, "bad value"),
    ("Inf without its sign", "a Inf\n", 1, "bad value"),
    ("a hex float", "a 0x10\n", 1, "bad value"),
    ("a fractional timestamp", "a 1 1.5\n", 1, "bad timestamp"),
    ("text after the timestamp", "a 1 2 3\n", 1, "unexpected text"),
    ("an unknown TYPE", "# TYPE a gauges\na 1\n", 1, "unknown type"),
    ("a TYPE with no name", "# TYPE\n", 1, "needs a metric name"),
    ("a HELP with a bad name", "# HELP 1a text\n", 1, "bad metric name"),
    ("two TYPE lines", "# TYPE a gauge\n# HELP a h\n# TYPE a gauge\na 1\n", 3, "second TYPE"),
    ("TYPE after the samples", "a 1\n# TYPE a gauge\n", 2, "after its first sample"),
    ("two HELP lines", "# HELP a one\n# HELP a two\na 1\n", 2, "second HELP"),
    ("HELP after the samples", "# TYPE a gauge\na 1\n# HELP a late\n", 3, "after its first sample"),
    ("an unknown escape in HELP", "# HELP a tab\\there\na 1\n", 1, "invalid escape"),
    ("a family that comes back", 'a{x="1"} 1\nb 1\na{x="2"} 1\n', 3, "continues after other families"),
    ("a HELP that comes back", "# HELP a h\na 1\nb 1\n# HELP a again\n", 4, "continues after other families"),
    ("the same series twice", 'a{x="1",y="2"} 1\na{y="2",x="1"} 2\n', 2, "duplicate series"),
    ("a counter without _total", "# TYPE rpool_draws counter\nrpool_draws 1\n", 1, "_total"),
    ("a bucket without le", H + 'h_bucket{x="1"} 1\n' + HIST_OK_TAIL, 2, "no le"),
    ("le not a number", H + 'h_bucket{le="one"} 1\n' + HIST_OK_TAIL, 2, "not a number"),
    ("le going down", H + 'h_bucket{le="1"} 1\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n' + HIST_OK_TAIL,
     3, "strictly ascending"),
    ("le repeated", H + 'h_bucket{le="1"} 1\nh_bucket{le="1.0"} 1\nh_bucket{le="+Inf"} 2\n' + HIST_OK_TAIL,
     3, "strictly ascending"),
    ("no +Inf bucket", H + 'h_bucket{le="1"} 1\nh_bucket{le="2"} 2\n' + HIST_OK_TAIL, 3, "not +Inf"),
    ("counts that fall", H + 'h_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\n' + HIST_OK_TAIL, 3, "cumulative"),
    ("_count unlike +Inf", H + 'h_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', 4, "differs"),
    ("no _sum", H + 'h_bucket{le="+Inf"} 2\nh_count 2\n', 3, "no h_sum"),
    ("no _count", H + 'h_bucket{le="+Inf"} 2\nh_sum 1\n', 3, "no h_count"),
    ("no buckets for one series", H + 'h_bucket{le="+Inf"} 2\n' + HIST_OK_TAIL + 'h_sum{x="1"} 1\nh_count{x="1"} 0\n',
     6, "no _bucket"),
    ("le on _sum", H + 'h_bucket{le="+Inf"} 2\nh_sum{le="+Inf"} 1\nh_count 2\n', 3, "has an le label"),
    ("a bare histogram sample", H + "h 1\n", 2, "cannot hold"),
    ("a histogram error found when the next family starts",
     H + 'h_bucket{le="1"} 2\nh_sum 1\nh_count 2\nnext 1\n', 2, "not +Inf"),
    ("a summary sample without quantile", "# TYPE s summary\ns 1\ns_sum 1\ns_count 1\n", 2, "quantile"),
]


def main():
    failures = []
    for what, text in GOOD.items():
        try:
            prom.parse(text)
        except ValueError as e:
            failures.append(f"good document '{what}' rejected: {e}")

    for what, text, line, word in BAD:
        try:
            prom.parse(text)
        except ValueError as e:
            message = str(e)
            if not message.startswith(f"line {line}: ") or word not in message:
                failures.append(f"bad document '{what}': expected 'line {line}: ...{word}...', got '{message}'")
        else:
            failures.append(f"bad document '{what}' accepted")

    # What parse() reads, beyond accepting: values, unescaped labels and help, types.
    families = prom.parse(EXPOSITION_EXAMPLE)
    checks = [
        (list(families) == ["rpool_term", "rpool_http_requests_total", "rpool_wal_sync_seconds",
                            "rpool_http_body_bytes"], "family order"),
        (families["rpool_term"] == {"type": "gauge", "help": "Current Raft term.",
                                    "samples": [("rpool_term", {}, 7.0)]}, "rpool_term"),
        (families["rpool_http_requests_total"]["samples"][1] == ("rpool_http_requests_total", {"code": "4xx"}, 3.0),
         "counter labels"),
        (len(families["rpool_wal_sync_seconds"]["samples"]) == 6, "histogram samples"),
    ]
    escapes = prom.parse(ESCAPES)
    checks += [
        (escapes["rpool_x"]["help"] == 'a \\ back\nslash "quoted"', "help unescaped"),
        (escapes["rpool_x"]["samples"][0][1] == {"path": "C:\\dir\\", "say": '"hi"\nthere', "plain": "ok: {x=1}"},
         "label values unescaped"),
        (math.isnan(escapes["rpool_a"]["samples"][0][2]), "NaN"),
        (escapes["rpool_a"]["samples"][1][2] == math.inf, "+Inf"),
        (escapes["rpool_a"]["samples"][2][2] == -math.inf, "-Inf"),
        (prom.parse(CORNERS)["no_type_help"]["type"] == "untyped", "untyped"),
        (prom.parse(CORNERS)["rpool_up"]["samples"][0][1] == {"node": "1"}, "blanks in braces"),
        (prom.parse("") == {}, "empty"),
    ]
    failures += [f"parse() reads wrong: {what}" for ok, what in checks if not ok]

    cross = "prometheus_client not available at " + prom.REFERENCE_PYTHON + ": cross-check skipped"
    if prom.reference_available():
        agreed = 0
        for what, text in GOOD.items():
            try:
                if prom.cross_check(text):
                    agreed += 1
            except ValueError as e:
                failures.append(f"cross_check on good document '{what}': {e}")
        cross = f"prometheus_client agrees on {agreed} of {len(GOOD)} good documents"
        # And cross_check does fail when prometheus_client cannot read the text.
        try:
            prom.cross_check('a{x="1" 1\n')
            failures.append("cross_check accepted a sample with no closing brace")
        except ValueError as e:
            if "prometheus_client rejects" not in str(e):
                failures.append(f"cross_check on a broken sample: {e}")

    print(f"prom_selftest: {len(GOOD)} good, {len(BAD)} bad documents; {cross}")
    for f in failures:
        print("FAIL:", f)
    if failures:
        print(f"prom_selftest: {len(failures)} failures")
        return 1
    print("prom_selftest: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
