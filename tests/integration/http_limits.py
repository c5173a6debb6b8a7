#!/usr/bin/env python3
"""Black-box tests of the HTTP server's resource bounds on real rpoold processes (docs/api.md).

    http_limits.py --rpoold build/apps/rpoold [-k SUBSTRING] [--list]

- Memory stays bounded when clients send chunk-size lines, trailer sections or header sections
  that never end: the node's VmRSS (from /proc/<pid>/status) is measured before and after.
- With the file limit at 1024 (soft and hard, so that raising the soft limit gains nothing),
  1,500 idle HTTP connections to one node neither stop it nor the cluster: draws through another
  node keep committing while snapshots are taken and WAL segments switch, and the flooded node
  serves again once the flood ends.
- The HTTP edge cases of RFC 9112 and docs/api.md's error table, on a live node.

Each test starts its own cluster (see cluster.py) and kills every process it started. The last
line is `http-limits: N passed, M failed`; the exit code is non-zero on any failure.
"""

import argparse
import json
import os
import re
import resource
import socket
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, Context, TestFailure, check, wait_until  # noqa: E402
import openapi_check  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def note(message):
    print(f"    note {time.strftime('%H:%M:%S', time.gmtime())}: {message}", flush=True)


# Starts rpoold (same pid, through exec) with RLIMIT_NOFILE at 1024, soft and hard.
FD_LIMIT = 1024
LIMIT_FILES = [sys.executable, "-c",
               "import os, resource, sys; "
               f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
               "os.execv(sys.argv[1], sys.argv[1:])"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure(f"no VmRSS in /proc/{pid}/status")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def files_state(data_dir):
    """(the newest open segment's sequence number, the newest snapshot's index) in a data dir:
    the first grows at each segment switch, the second at each snapshot."""
    seq, snap = -1, -1
    for root, _, names in os.walk(data_dir):
        for name in names:
            m = re.fullmatch(r"open-(\d+)\.wal", name)
            if m:
                seq = max(seq, int(m.group(1)))
            m = re.fullmatch(r"snapshot-(\d+)-\d+\.snap", name)
            if m:
                snap = max(snap, int(m.group(1)))
    return seq, snap


def answer_of(sock, timeout=10.0):
    """Reads until the server closes (or a reset); returns the bytes read."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            b = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def status_and_json(data):
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    if not m:
        return None, head, None
    try:
        return int(m.group(1)), head, json.loads(body)
    except ValueError:
        return int(m.group(1)), head, None


def raw_exchange(node, data, timeout=10.0):
    with socket.create_connection((node.host, node.http_port), timeout=timeout) as s:
        s.sendall(data)
        return status_and_json(answer_of(s, timeout))


def expect_json_error(result, status, code, what):
    got_status, head, body = result
    check(got_status == status, f"{what}: expected {status}, got {got_status}: {head[:200]!r}")
    check(b"application/json" in head.lower(), f"{what}: not JSON: {head[:300]!r}")
    check(isinstance(body, dict) and body.get("error") == code and body.get("message"),
          f"{what}: expected error {code!r} with a message, got {body!r}")


def draw_ok(client, what):
    r = client.post("/v1/draw", {"count": 1})
    check(r.status == 200, f"{what}: draw answered {r}")
    return r.json["index"]


# --- memory ------------------------------------------------------------------------------------

# What each attacking connection sends at most: with the bound, the node refuses after its 16 KiB
# read buffer (or 8 KiB header section) and closes; without it, the node buffers all of it.
ENDLESS_BYTES = 24 * 1024 * 1024
ATTACKERS_PER_KIND = 4
RSS_GROWTH_MAX_KIB = 16 * 1024


def endless(node, prefix):
    """Opens a connection that sends `prefix` and then 'a' bytes that never end the line, until
    ENDLESS_BYTES are sent or the node stops reading. Returns the socket, left open."""
    s = socket.create_connection((node.host, node.http_port), timeout=10)
    s.sendall(prefix)
    block = b"a" * 65536
    sent = 0
    try:
        while sent < ENDLESS_BYTES:
            s.sendall(block)
            sent += len(block)
    except OSError:  # the node answered and closed; what is left to send is refused
        pass
    return s


@test
def memory_stays_bounded_under_endless_chunk_extensions_trailers_and_headers(ctx):
    c = ctx.cluster(nodes=1)
    c.start_all()
    node = c.node(1)
    client = node.client()
    for i in range(20):  # warm up: the allocator's arenas, the pool, a connection
        draw_ok(client, f"warm-up draw {i}")
    before = rss_kib(node.proc.pid)
    kinds = {
        "chunk extension": (b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n1;ext=", 400, "bad_request"),
        "trailer section": (b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n0\r\nX-Trailer: ", 400, "bad_request"),
        "header section": (b"GET /v1/pool HTTP/1.1\r\nHost: x\r\nX-Endless: ", 431, "headers_too_large"),
    }
    sockets = []
    for kind, (prefix, status, code) in kinds.items():
        for _ in range(ATTACKERS_PER_KIND):
            sockets.append((kind, status, code, endless(node, prefix)))
    after = rss_kib(node.proc.pid)
    note(f"VmRSS of {node}: {before} KiB before, {after} KiB after {len(sockets)} connections "
         f"each sending up to {ENDLESS_BYTES >> 20} MiB of a line that never ends "
         f"(growth {after - before} KiB, bound {RSS_GROWTH_MAX_KIB} KiB)")
    try:
        check(node.running, f"{node} exited with {node.proc.returncode}")
        check(after - before <= RSS_GROWTH_MAX_KIB,
              f"VmRSS grew by {after - before} KiB ({before} -> {after}): the read buffer is not bounded")
        for kind, status, code, s in sockets:
            expect_json_error(status_and_json(answer_of(s)), status, code, f"an endless {kind}")
    finally:
        for *_, s in sockets:
            s.close()
    check(node.get("/healthz").status == 200, f"{node} does not serve after the attack")
    draw_ok(client, "a draw after the attack")


# --- the file limit ----------------------------------------------------------------------------

FLOOD_CONNECTIONS = 1500
FLOOD_SECONDS = 15.0  # below the server's 30 s idle deadline, which would end the flood itself


class Drawer(threading.Thread):
    """Draws through one node, one request at a time, counting answers by status."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop_event = threading.Event()
        self.ok = 0
        self.failed = {}
        self.last_index = 0

    def run(self):
        client = self.node.client(timeout=10.0)
        while not self.stop_event.is_set():
            try:
                r = client.post("/v1/draw", {"count": 1})
            except OSError as e:
                self.failed[type(e).__name__] = self.failed.get(type(e).__name__, 0) + 1
                time.sleep(0.05)
                continue
            if r.status == 200:
                self.ok += 1
                self.last_index = r.json["index"]
            else:
                key = f"{r.status} {(r.json or {}).get('error')}"
                self.failed[key] = self.failed.get(key, 0) + 1
                time.sleep(0.05)
        client.close()

    def stop(self):
        self.stop_event.set()
        self.join(timeout=30)


def flood(node, count):
    """Opens `count` connections to `node` and sends nothing on them."""
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect((node.host, node.http_port))
        sockets.append(s)
    return sockets


def refused_with_503(sockets):
    """How many of the flood's connections the node answered 503 overloaded (and closed)."""
    refused = 0
    for s in sockets:
        s.setblocking(False)
        try:
            data = s.recv(4096)
        except (BlockingIOError, ConnectionResetError):
            continue
        status, _, body = status_and_json(data)
        if status == 503 and isinstance(body, dict) and body.get("error") == "overloaded":
            refused += 1
    return refused


@test
def idle_connections_past_the_file_limit_leave_every_node_running_and_the_cluster_committing(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD_CONNECTIONS + 256:  # this process holds the flood's sockets
        check(hard == resource.RLIM_INFINITY or hard >= FLOOD_CONNECTIONS + 256,
              f"this test holds {FLOOD_CONNECTIONS} sockets; its hard file limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Snapshots every 50 entries and 64 KiB segments: the nodes create files all the time.
    c = ctx.cluster(nodes=3, snapshot_entries=50, segment_bytes=64 * 1024)
    for n in c.nodes:
        n.command_prefix = LIMIT_FILES
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    for n in c.nodes:
        limits = open(f"/proc/{n.proc.pid}/limits").read()
        check(re.search(rf"Max open files\s+{FD_LIMIT}\s+{FD_LIMIT}\s", limits),
              f"{n} does not run with the file limit {FD_LIMIT}:\n{limits}")
    # Draws through a follower (forwarded to the leader over connections opened before the flood),
    # while the leader, which writes the most, is flooded.
    drawer = Drawer(follower)
    drawer.start()
    wait_until(lambda: drawer.ok >= 20, 20, "the first draws through the follower")
    start_index = drawer.last_index
    files_before = files_state(leader.data_dir)
    note(f"flooding {leader} (the leader) with {FLOOD_CONNECTIONS} idle connections; "
         f"draws go through {follower}, from index {start_index}")
    sockets = flood(leader, FLOOD_CONNECTIONS)
    try:
        fds_peak = 0
        flood_ends = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < flood_ends:
            for n in c.nodes:
                check(n.running, f"{n} exited with {n.proc.returncode} during the flood:\n{n.tail(10)}")
            fds_peak = max(fds_peak, open_fds(leader.proc.pid))
            time.sleep(0.5)
        during_index = drawer.last_index
        files_during = files_state(leader.data_dir)
        refused = refused_with_503(sockets)
        note(f"during the flood: {drawer.ok} draws answered in all, index {start_index} -> {during_index}, "
             f"failures {drawer.failed}; the leader held at most {fds_peak} descriptors of {FD_LIMIT}; "
             f"{refused} of the {FLOOD_CONNECTIONS} connections were answered 503 overloaded; "
             f"the leader's (open segment, snapshot index) went {files_before} -> {files_during}")
        check(files_during[0] > files_before[0] and files_during[1] > files_before[1],
              f"the leader switched no segment or took no snapshot during the flood: "
              f"{files_before} -> {files_during}")
        check(refused >= FLOOD_CONNECTIONS - FD_LIMIT,
              f"only {refused} connections were answered 503 overloaded; over the cap they must be")
        check(fds_peak < FD_LIMIT, f"the leader held {fds_peak} descriptors, its whole limit")
        # Past a snapshot every 50 entries, many times over.
        check(during_index - start_index >= 200,
              f"the cluster committed only {during_index - start_index} entries during the flood")
        answer = raw_exchange(leader, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        expect_json_error(answer, 503, "overloaded", "a new connection to the flooded leader")
    finally:
        for s in sockets:
            s.close()
    # The flood is over: the flooded node serves again, new connections and all.
    wait_until(lambda: leader.get("/healthz", timeout=2).status == 200, 20, f"{leader} to serve again")
    flooded = leader.client()
    draw_ok(flooded, f"a draw on {leader} after the flood")
    drawer.stop()
    for n in c.nodes:
        check(n.running, f"{n} exited with {n.proc.returncode}:\n{n.tail(10)}")
        check("storage failed" not in n.log_text(), f"{n} reported a storage failure:\n{n.tail(10)}")
    leader_log = leader.log_text()
    check("Too many open files" not in leader_log,
          f"{leader} ran out of descriptors:\n{leader.tail(10)}")
    c.converge()


# --- the forwarding queue -----------------------------------------------------------------------

FORWARD_CONNECTIONS_MAX = 64   # HttpClientOptions::connections_per_host_max
FORWARD_WAITING_MAX = 1024     # HttpClientOptions::waiting_per_host_max
DRAW = (b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 12\r\n\r\n{\"count\": 1}")


def metric(node, name):
    r = node.get("/metrics")
    check(r.status == 200, f"/metrics on {node}: {r}")
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\S+)$", r.body, re.M)
    check(m, f"no {name} in /metrics of {node}")
    return float(m.group(1))


def split_answers(data):
    """The (status, headers lower-cased, json) of each answer in a stream of pipelined answers."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        body, data = rest[:length], rest[length:]
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        answers.append((int(lines[0].split()[1]), headers, parsed))
    return answers


@test
def a_follower_refuses_forwarded_writes_past_its_queue_with_503_overloaded(ctx):
    c = ctx.cluster(nodes=3)
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    forwarded_before = metric(follower, "rpool_forwarded_total")
    # Pipelined on few connections (at most 64 read ahead per connection), all sent at once.
    connections, per_connection = 24, 54
    total = connections * per_connection
    over = total - FORWARD_CONNECTIONS_MAX - FORWARD_WAITING_MAX
    check(over > 0, "the test must send more than the queue holds")
    leader.stop()  # SIGSTOP: the forwarded requests hang on it, their connections stay busy
    sockets = []
    try:
        for _ in range(connections):
            s = socket.create_connection((follower.host, follower.http_port), timeout=10)
            s.sendall(DRAW * (per_connection - 1)
                      + DRAW.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
            sockets.append(s)
        wait_until(lambda: metric(follower, "rpool_forwarded_total") - forwarded_before >= total, 10,
                   f"{follower} to forward all {total} draws")
    finally:
        leader.cont()
    answers = []
    for s in sockets:
        answers += split_answers(answer_of(s, timeout=30))
        s.close()
    overloaded = [a for a in answers if a[0] == 503 and isinstance(a[2], dict) and a[2].get("error") == "overloaded"]
    statuses = {}
    for status, _, body in answers:
        key = f"{status} {(body or {}).get('error', '')}".strip()
        statuses[key] = statuses.get(key, 0) + 1
    note(f"{total} draws sent to {follower} while the leader was stopped: {statuses}")
    check(len(answers) == total, f"{len(answers)} answers to {total} draws")
    check(len(overloaded) >= over,
          f"{len(overloaded)} draws answered 503 overloaded; at least {over} did not fit the queue")
    check(all(a[1].get("retry-after") for a in overloaded), "a 503 overloaded without Retry-After")
    c.wait_ready(c.nodes)


# --- edge cases ---------------------------------------------------------------------------------

@test
def http_edge_cases_get_the_contracts_json_errors_on_a_live_node(ctx):
    c = ctx.cluster(nodes=1)
    c.start_all()
    node = c.node(1)
    expect_json_error(raw_exchange(node, b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                      404, "not_found", "a target that is not UTF-8")
    # An item id quoted in its error: a bad item id (docs/api.md), not a 500.
    item = b'{"quantity": 1, "probability": 1}'
    expect_json_error(raw_exchange(node, b"PUT /v1/items/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                         b"Content-Type: application/json\r\nContent-Length: "
                                         + str(len(item)).encode() + b"\r\n\r\n" + item),
                      400, "bad_request", "an item id that is not UTF-8")
    smuggled = b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\n\r\n"
    for codings in (b"gzip", b"chunked, gzip"):
        result = raw_exchange(node, b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Transfer-Encoding: " + codings + b"\r\n\r\n" + smuggled)
        expect_json_error(result, 400, "bad_request", f"Transfer-Encoding: {codings.decode()}")
        check(b"close" in result[1].lower(), f"Transfer-Encoding: {codings.decode()}: the connection is kept")
    expect_json_error(raw_exchange(node, b"GET /v1/pool HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"),
                      431, "headers_too_large", "a 9 KB header section")
    body = b'{"count": 1}' + b" " * (64 * 1024)
    expect_json_error(raw_exchange(node, b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body),
                      413, "payload_too_large", "a body over 64 KiB")
    check(node.get("/healthz").status == 200, f"{node} does not serve after the edge cases")


# --- runner -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rpoold", required=True)
    ap.add_argument("-k", action="append", default=[], help="run tests whose name contains this (repeatable)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    args.rpoold = os.path.abspath(args.rpoold)
    tests = [t for t in TESTS if not args.k or any(k in t.__name__ for k in args.k)]
    if args.list:
        for t in tests:
            print(t.__name__)
        return 0
    if not os.access(args.rpoold, os.X_OK):
        print(f"http-limits: {args.rpoold} is not an executable", file=sys.stderr)
        return 2
    passed, failed = [], []
    started = time.monotonic()
    openapi_check.enable()  # every answer the tests get must fit docs/openapi.json
    for t in tests:
        ctx = Context(args)
        t0 = time.monotonic()
        print(f"--- {t.__name__}", flush=True)
        try:
            t(ctx)
            passed.append(t.__name__)
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001
            failed.append(t.__name__)
            print(f"FAIL {t.__name__} ({time.monotonic() - t0:.1f}s): {e}", flush=True)
            if not isinstance(e, TestFailure):
                traceback.print_exc(file=sys.stdout)
            for cl in ctx.clusters:
                print(cl.tails(), flush=True)
        finally:
            ctx.close()
    if not openapi_check.finish("http-limits", sys.stdout):
        failed.append("answers-fit-openapi-json")
    print(f"http-limits: {len(passed)} passed, {len(failed)} failed in {time.monotonic() - started:.0f}s"
          + (f" (failed: {', '.join(failed)})" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run `finally` blocks: kill what we started
    sys.exit(main())
