#!/usr/bin/env python3
"""Black-box integration tests of real rpoold processes on loopback (docs/api.md).

    run.py --rpoold build/apps/rpoold --rpool-wal build/tools/rpool-wal [-k SUBSTRING] [--list]

Each test starts its own cluster in a temporary directory with free ports on 127.0.0.1, .2, .3 and
kills every process it started when it ends. On failure the tail of each node's log is printed.
The last line is `integration: N passed, M failed`; the exit code is non-zero on any failure.
Set RPOOL_IT_KEEP=1 to keep the temporary directories.
"""

import argparse
import bisect
import collections
import copy
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
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
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"    note {stamp}: {message}", flush=True)


# --- helpers ----------------------------------------------------------------------------------

CONN_ERRORS = (OSError, http.client.HTTPException)


def expect_error(response, status, code, what):
    """An error answer per docs/api.md: the status, JSON content type, {"error": code, "message": text}."""
    check(response.status == status, f"{what}: expected {status} {code}, got {response}")
    ctype = response.headers.get("content-type", "")
    check(ctype.startswith("application/json"), f"{what}: Content-Type is {ctype!r}, not application/json")
    body = response.json
    check(isinstance(body, dict), f"{what}: the body is not a JSON object: {response}")
    check(body.get("error") == code, f"{what}: error code {body.get('error')!r}, expected {code!r}")
    check(isinstance(body.get("message"), str) and body["message"].strip(),
          f"{what}: no human message in {body}")


def expect_ok_draw(response, count, what):
    check(response.status == 200, f"{what}: expected 200, got {response}")
    return expect_ok_draw_json(response.json, count, what)


def expect_ok_draw_json(body, count, what):
    check(isinstance(body, dict) and isinstance(body.get("draws"), list) and isinstance(body.get("index"), int),
          f"{what}: not a draw answer: {body}")
    check(len(body["draws"]) == count, f"{what}: {len(body['draws'])} draws, asked for {count}")
    ids = [d["request_id"] for d in body["draws"]]
    check(ids == list(range(ids[0], ids[0] + count)), f"{what}: request_ids of one answer not consecutive: {ids}")
    return body


def until_answered(nodes, start, method, path, body, key, clients, give_up_after=40.0):
    """Sends a write with an Idempotency-Key, rotating over `nodes` on 503/504/connection errors
    (the contract's "retry with the same key") until a 200; returns (response json, attempts).
    Any other status raises TestFailure."""
    deadline = time.monotonic() + give_up_after
    i = start
    attempts = 0
    last = None
    while time.monotonic() < deadline:
        node = nodes[i % len(nodes)]
        client = clients.setdefault(node.id, node.client(timeout=10.0))
        attempts += 1
        try:
            r = client.request(method, path, body, headers={"Idempotency-Key": key})
        except CONN_ERRORS as e:
            last = repr(e)
            i += 1
            time.sleep(0.05)
            continue
        if r.status == 200:
            return r.json, attempts
        if r.status in (503, 504):
            expect_error(r, r.status, "no_leader" if r.status == 503 else "outcome_unknown",
                         f"{method} {path} ({key}) on {node}")
            last = repr(r)
            i += 1
            time.sleep(0.05)
            continue
        raise TestFailure(f"{method} {path} ({key}) on {node}: unexpected answer {r}")
    raise TestFailure(f"{method} {path} ({key}) was never answered within {give_up_after}s (last: {last})")


def draw_until_answered(nodes, start, key, body, clients, give_up_after=40.0):
    return until_answered(nodes, start, "POST", "/v1/draw", body, key, clients, give_up_after)


_keys = iter(range(1, 1 << 62))


def fresh_key(prefix):
    return f"{prefix}-{os.getpid()}-{random.randrange(1 << 30)}-{next(_keys)}"


def write_on(node, method, path, body, clients=None, key=None):
    """One write through `node` only (retried there with one key until answered)."""
    clients = clients if clients is not None else {}
    answer, _ = until_answered([node], 0, method, path, body, key or fresh_key("w"), clients)
    return answer


def settled(node, method, path, body=None, headers=None, give_up_after=20.0):
    """The first answer of `node` that is not 503/504: for errors decided after the log (404 of an
    absent item, 422), which an election under load may turn into 503/504 first. Writes that may be
    retried carry an Idempotency-Key in `headers`."""
    client = node.client(timeout=10.0)
    deadline = time.monotonic() + give_up_after
    try:
        while True:
            r = client.request(method, path, body, headers or {})
            if r.status not in (503, 504) or time.monotonic() > deadline:
                return r
            time.sleep(0.1)
    finally:
        client.close()


def read_on(node, clients=None, give_up_after=20.0):
    """A default (linearizable) read through `node`, retried there on 503/504 (elections under load)."""
    clients = clients if clients is not None else {}
    client = clients.setdefault(node.id, node.client(timeout=10.0))
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            r = client.get("/v1/pool")
            if r.status == 200:
                return r.json
            check(r.status in (503, 504), f"GET /v1/pool on {node}: {r}")
        except CONN_ERRORS as e:
            r = e
        check(time.monotonic() < deadline, f"GET /v1/pool on {node} unanswered for {give_up_after}s: {r}")
        time.sleep(0.05)


def draw_on(node, count, clients=None, what="draw"):
    body = write_on(node, "POST", "/v1/draw", {"count": count} if count is not None else {}, clients)
    return expect_ok_draw_json(body, count or 1, f"{what} on {node}")


class Load:
    """Several threads drawing through all nodes, each write with its own Idempotency-Key, retried
    with the same key until answered."""

    def __init__(self, nodes, threads=4, prefix="load", key_bytes=0):
        self.nodes = nodes
        self.key_bytes = key_bytes  # pads keys (up to 128) to make log entries, and segments, fill faster
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers = []  # (key, body json)
        self.errors = []
        self.prefix = f"{prefix}-{random.randrange(1 << 30)}"
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, t):
        clients = {}
        seq = 0
        try:
            while not self.stop_event.is_set():
                key = f"{self.prefix}-t{t}-{seq}"
                key += "." * max(0, self.key_bytes - len(key))
                count = 1 + seq % 2
                body, _ = draw_until_answered(self.nodes, t + seq, key, {"count": count}, clients)
                check(len(body["draws"]) == count, f"draw {key}: {len(body['draws'])} draws, asked {count}")
                with self.lock:
                    self.answers.append((key, body))
                seq += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append(f"thread {t}: {e}")
        finally:
            for c in clients.values():
                c.close()

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def count(self):
        with self.lock:
            return len(self.answers)

    def finish(self, timeout=60.0):
        self.stop_event.set()
        for th in self.threads:
            th.join(timeout)
            check(not th.is_alive(), "a load thread did not finish")
        check(not self.errors, "load threads failed:\n  " + "\n  ".join(self.errors))
        return self.answers


def acked_checks(answers, pool, initial):
    """Every acknowledged draw is in the pool exactly once (docs/api.md, Guarantees)."""
    ids = [d["request_id"] for _, body in answers for d in body["draws"]]
    dup = [i for i, n in collections.Counter(ids).items() if n > 1]
    check(not dup, f"request_ids acknowledged twice: {sorted(dup)[:20]}")
    last = pool["last_request_id"]
    check(not ids or max(ids) <= last, f"acknowledged request_id {max(ids)} > last_request_id {last}: a lost write")
    # Every write was retried until answered, so every applied draw was acknowledged.
    missing = sorted(set(range(1, last + 1)) - set(ids))
    check(not missing, f"request_ids applied but never acknowledged (or skipped): {missing[:20]} "
                       f"({len(missing)} of {last})")
    by_index = sorted((body["draws"][0]["request_id"], body["index"]) for _, body in answers)
    for (r1, i1), (r2, i2) in zip(by_index, by_index[1:]):
        check(i1 <= i2, f"request_id {r1} at index {i1} but request_id {r2} at index {i2}: ids not in commit order")
    drawn = collections.Counter(d["item_id"] for _, body in answers for d in body["draws"])
    items = {i["item_id"]: i for i in pool["items"]}
    for item in initial:
        if item["quantity"] >= 0:
            now = items[item["item_id"]]["quantity"]
            check(item["quantity"] - now == drawn[item["item_id"]],
                  f"{item['item_id']}: quantity {item['quantity']} -> {now}, but {drawn[item['item_id']]} "
                  f"acknowledged draws of it")


def metric(node, name):
    r = node.get("/metrics")
    check(r.status == 200, f"/metrics on {node}: {r}")
    m = re.search(rf"^{re.escape(name)} (\S+)$", r.body.decode(), re.M)
    check(m, f"/metrics on {node} has no {name}")
    return float(m.group(1))


def run_tool(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


BIG_CATALOG = [
    {"item_id": "diamond", "quantity": 100000, "probability": 10},
    {"item_id": "gold", "quantity": 100000, "probability": 20},
    {"item_id": "mud", "quantity": -1, "probability": 70},
]


# --- 1 ----------------------------------------------------------------------------------------

@test
def three_nodes_form_a_cluster_draws_through_every_node_get_request_ids_1_to_n(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    for n in c.nodes:
        info = n.client().get("/v1/cluster").json
        check(info["node_id"] == n.id, f"{n}: node_id {info['node_id']}")
        check(sorted((m["id"], m["http"], m["voter"]) for m in info["members"]) ==
              [(m.id, f"{m.host}:{m.http_port}", True) for m in c.nodes], f"{n}: members {info['members']}")
        check(info["role"] in ("leader", "follower", "candidate", "pre_candidate"), f"{n}: role {info['role']}")
    clients = {n.id: n.client() for n in c.nodes}
    catalog_ids = {i["item_id"] for i in c.catalog}
    ids, drawn, last_index = [], collections.Counter(), 0
    for rnd in range(4):
        for n in c.nodes:
            count = [1, 3, 1, 7][rnd]
            # {} draws the default one. A 503/504 (an election under load) is retried on the same node, same key.
            r = draw_on(n, count if rnd != 2 else None, clients, f"draw {count}")
            got = [d["request_id"] for d in r["draws"]]
            check(got[0] == len(ids) + 1, f"draw on {n}: request_ids {got}, expected to start at {len(ids) + 1}")
            check(r["index"] > last_index, f"draw on {n}: index {r['index']} not after the previous {last_index}")
            last_index = r["index"]
            for d in r["draws"]:
                check(d["item_id"] in catalog_ids and "error" not in d, f"draw on {n}: bad draw {d}")
                drawn[d["item_id"]] += 1
            ids += got
    check(ids == list(range(1, len(ids) + 1)), f"request_ids are not 1..N: {ids}")
    pools = c.converge()
    for nid, p in pools.items():
        check(p["last_request_id"] == len(ids), f"node {nid}: last_request_id {p['last_request_id']} != {len(ids)}")
        check(p["index"] >= last_index, f"node {nid}: index {p['index']} < last write index {last_index}")
        items = {i["item_id"]: i for i in p["items"]}
        for item in c.catalog:
            want = item["quantity"] if item["quantity"] < 0 else item["quantity"] - drawn[item["item_id"]]
            check(items[item["item_id"]]["quantity"] == want,
                  f"node {nid}: {item['item_id']} quantity {items[item['item_id']]['quantity']}, expected {want}")
            check(items[item["item_id"]]["probability"] == item["probability"], f"node {nid}: probability changed")
        check(re.fullmatch(r"[0-9a-f]{64}", p["digest"]), f"node {nid}: digest {p['digest']!r} is not sha256 hex")
    for cl in clients.values():
        cl.close()


# --- 2 ----------------------------------------------------------------------------------------

@test
def an_idempotency_key_retried_on_another_node_after_the_leader_is_killed_returns_the_first_answer(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    key = f"exactly-once-{random.randrange(1 << 40)}"
    hdr = {"Idempotency-Key": key}
    first = expect_ok_draw_json(write_on(leader, "POST", "/v1/draw", {"count": 3}, key=key), 3, "first draw")
    check([d["request_id"] for d in first["draws"]] == [1, 2, 3], f"first draw: {first}")
    again = settled(leader, "POST", "/v1/draw", {"count": 3}, hdr)
    check(again.status == 200 and again.json == first, f"repeat on the leader: {again}, first was {first}")

    leader.kill()
    survivors = [n for n in c.nodes if n is not leader]
    clients = {}
    retried, attempts = draw_until_answered(survivors, 0, key, {"count": 3}, clients)
    check(retried == first, f"retry after the leader died: {retried}, first answer {first} ({attempts} attempts)")
    # The key did not apply twice: the next draw is request 4.
    nxt = draw_on(survivors[1], 1, clients, "next draw")
    check(nxt["draws"][0]["request_id"] == 4, f"next draw after the retry got {nxt['draws']}, expected request 4")
    for n in survivors:
        r = settled(n, "POST", "/v1/draw", {"count": 2}, hdr)
        expect_error(r, 422, "idempotency_key_reused", f"same key, different body on {n}")
    # The old leader comes back and answers the key the same way.
    leader.start()
    c.wait_ready([leader])
    r = settled(leader, "POST", "/v1/draw", {"count": 3}, hdr)
    check(r.status == 200 and r.json == first, f"key on the restarted old leader: {r}, first was {first}")
    p = c.pool(leader)
    check(p["last_request_id"] == 4, f"last_request_id {p['last_request_id']}, expected 4 (3 + 1)")
    for cl in clients.values():
        cl.close()


# --- 3 ----------------------------------------------------------------------------------------

@test
def sigkill_of_a_follower_then_of_the_leader_during_concurrent_draws_loses_no_acknowledged_draw(ctx):
    c = ctx.cluster(catalog=BIG_CATALOG)
    c.start_all()
    load = Load(c.nodes, threads=4, prefix="kill").start()
    wait_until(lambda: load.count() >= 20, 20, "20 answered draws before any kill")

    follower = c.followers()[0]
    note(f"SIGKILL follower {follower} after {load.count()} draws")
    follower.kill()
    n0 = load.count()
    wait_until(lambda: load.count() >= n0 + 30, 20, "30 more draws with a follower down")
    follower.start()
    c.wait_ready([follower])
    n0 = load.count()
    wait_until(lambda: load.count() >= n0 + 20, 20, "20 more draws after the follower returned")

    leader = c.leader()
    note(f"SIGKILL leader {leader} after {load.count()} draws")
    leader.kill()
    n0 = load.count()
    wait_until(lambda: load.count() >= n0 + 30, 30, "30 more draws after the leader died")
    new_leader = c.leader(among=[n for n in c.nodes if n is not leader])
    check(new_leader is not leader, "no new leader")
    leader.start()
    c.wait_ready([leader])
    n0 = load.count()
    wait_until(lambda: load.count() >= n0 + 20, 20, "20 more draws after the old leader returned")
    answers = load.finish()
    note(f"{len(answers)} draws acknowledged")

    pools = c.converge()
    pool = next(iter(pools.values()))
    acked_checks(answers, pool, BIG_CATALOG)
    for nid, p in pools.items():
        check(p["last_request_id"] == pool["last_request_id"], f"node {nid}: last_request_id differs")


# --- 4 ----------------------------------------------------------------------------------------

def stat_of(ctx, data_dir):
    r = run_tool([ctx.args.rpool_wal, "stat", data_dir])
    check(r.returncode == 0, f"rpool-wal stat {data_dir}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


@test
def a_stopped_follower_catches_up_through_installsnapshot_after_the_log_is_compacted(ctx):
    c = ctx.cluster(catalog=BIG_CATALOG, snapshot_entries=50, segment_bytes=65536)
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    warm = Load(c.nodes, threads=2, prefix="warm").start()
    wait_until(lambda: warm.count() >= 10, 20, "10 draws before the follower stops")
    answers = warm.finish()
    follower_index = c.pool(follower, stale=True)["index"]
    rc = follower.terminate()
    check(rc == 0, f"{follower} exited {rc} after SIGTERM")

    live = [n for n in c.nodes if n is not follower]
    # 128-byte keys: ~250 B per entry, so 800 draws fill several 64 KiB segments that compaction can drop.
    load = Load(live, threads=6, prefix="snap", key_bytes=128).start()
    wait_until(lambda: load.count() >= 800, 90, "800 draws with the follower down")
    answers += load.finish()
    leader = c.leader()
    check(metric(leader, "rpool_snapshots_total") >= 1, f"{leader} took no snapshot with snapshot_entries 50")
    # The leader's log no longer holds the entries right after the follower's last one.
    stat = stat_of(ctx, leader.data_dir)
    m = re.search(r"indexes (\d+)\.\.(\d+)", stat)
    check(m, f"rpool-wal stat prints no index range:\n{stat}")
    check(int(m.group(1)) > follower_index + 1,
          f"the leader's log still starts at {m.group(1)} (follower stopped at {follower_index}); "
          f"nothing was compacted:\n{stat}")

    note(f"restarting {follower}")
    follower.start()
    c.wait_ready([follower], timeout=30)
    note(f"{follower} ready")
    # A few dozen entries after the snapshot: catching up takes well under a second when it works.
    pools = c.converge(timeout=10)
    note("converged")
    acked_checks(answers, next(iter(pools.values())), BIG_CATALOG)
    fstat = stat_of(ctx, follower.data_dir)
    check(not re.search(r"^snapshot: none", fstat, re.M), f"the follower has no snapshot after catching up:\n{fstat}")
    if "installed snapshot" not in follower.log_text():
        note("the follower's log has no 'installed snapshot' line")


# --- 5 ----------------------------------------------------------------------------------------

@test
def a_write_acked_on_one_node_is_seen_by_a_default_read_on_another(ctx):
    c = ctx.cluster()
    c.start_all()
    clients = {n.id: n.client() for n in c.nodes}
    for i in range(30):
        a, b = c.nodes[i % 3], c.nodes[(i + 1 + i // 3) % 3]
        if a is b:
            b = c.nodes[(i + 1) % 3]
        w = draw_on(a, 1, clients)
        rid = w["draws"][0]["request_id"]
        p = read_on(b, clients)
        check(p["last_request_id"] >= rid,
              f"draw {rid} acked on {a} (index {w['index']}) but a default read on {b} shows "
              f"last_request_id {p['last_request_id']} (index {p['index']})")
        check(p["index"] >= w["index"], f"read on {b} at index {p['index']} < write index {w['index']}")
    for i in range(6):
        a, b = c.nodes[i % 3], c.nodes[(i + 2) % 3]
        write_on(a, "PUT", f"/v1/items/ryw-{i}", {"quantity": i, "probability": 1}, clients)
        p = read_on(b, clients)
        items = {x["item_id"]: x for x in p["items"]}
        check(items.get(f"ryw-{i}", {}).get("quantity") == i, f"item ryw-{i} put on {a} not seen on {b}: {p}")
    for cl in clients.values():
        cl.close()


@test
def every_read_stale_or_not_shows_exactly_the_state_at_its_index_while_draws_commit(ctx):
    # The leader applies and answers committed entries while its next write is being synced, and
    # renders GET /v1/pool once per applied index: a read must still show precisely the pool of
    # the index it names (not a later or earlier one), on the leader and on followers.
    c = ctx.cluster(catalog=BIG_CATALOG)
    c.start_all()
    leader = c.leader()
    load = Load([leader], threads=6, prefix="reads").start()
    reads, errors = [], []
    stop = threading.Event()

    def reader(node, path):
        client = node.client(timeout=10.0)
        try:
            while not stop.is_set():
                with load.lock:  # a draw acknowledged before a default read starts is in it
                    floor = max((body["index"] for _, body in load.answers), default=0)
                try:
                    r = client.get(path)
                except CONN_ERRORS as e:
                    errors.append(f"{path} on {node}: {e}")
                    return
                if r.status == 200:
                    if "stale" not in path and r.json["index"] < floor:
                        errors.append(f"{path} on {node}: index {r.json['index']}, but a draw at index "
                                      f"{floor} was acknowledged before the read began")
                        return
                    reads.append((f"{path} on {node}", r.json))
                elif r.status not in (503, 504):
                    errors.append(f"{path} on {node}: {r}")
                    return
        finally:
            client.close()

    readers = [threading.Thread(target=reader, args=(n, p), daemon=True)
               for n in c.nodes for p in ("/v1/pool", "/v1/pool?consistency=stale")]
    for th in readers:
        th.start()
    wait_until(lambda: load.count() >= 400 and len(reads) >= 400, 60, "400 draws and 400 reads")
    stop.set()
    for th in readers:
        th.join(15)
    answers = load.finish()
    check(not errors, "readers failed:\n  " + "\n  ".join(errors[:10]))
    # Every draw was retried until answered, so the acknowledged draws are every draw: the state at
    # index I is the catalog minus the draws of entries at or below I.
    by_index = sorted((body["index"], body["draws"]) for _, body in answers)
    indexes = [i for i, _ in by_index]
    limited = {item["item_id"]: item["quantity"] for item in BIG_CATALOG if item["quantity"] >= 0}
    checked = 0
    # A stale read on a follower that has not yet applied the entry seeding the catalog shows an
    # empty pool: then no draw may be at or below its index, and every read with items must be at
    # a later index than every empty one.
    empty = [p["index"] for _, p in reads if not p["items"]]
    seeded = [p["index"] for _, p in reads if p["items"]]
    if empty and seeded:
        check(max(empty) < min(seeded), f"an empty pool read at index {max(empty)}, a seeded one at {min(seeded)}")
    for what, p in reads:
        upto = bisect.bisect_right(indexes, p["index"])
        if not p["items"]:
            check(upto == 0 and p["last_request_id"] == 0,
                  f"{what} at index {p['index']} shows no items, after {upto} acknowledged draws")
            continue
        drawn = collections.Counter(d["item_id"] for _, draws in by_index[:upto] for d in draws)
        last = max((d["request_id"] for _, draws in by_index[:upto] for d in draws), default=0)
        check(p["last_request_id"] == last,
              f"{what} at index {p['index']}: last_request_id {p['last_request_id']}, but the draws at or "
              f"below that index end at request_id {last}")
        quantities = {i["item_id"]: i["quantity"] for i in p["items"]}
        for item, initial in limited.items():
            check(quantities[item] == initial - drawn[item],
                  f"{what} at index {p['index']}: {item} quantity {quantities[item]}, expected "
                  f"{initial} - {drawn[item]} drawn at or below that index")
        checked += 1
    note(f"{checked} reads checked against {len(answers)} acknowledged draws, {len(empty)} before the catalog")


@test
def a_cut_off_follower_answers_stale_reads_and_fails_default_reads_within_the_deadline(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    draw_on(leader, 5)
    c.converge()
    follower = c.followers(leader)[0]
    others = [n for n in c.nodes if n is not follower]
    fc = follower.client(timeout=30.0)
    try:
        for n in others:
            n.stop()
        # At once: the follower still believes in its leader, which no longer answers.
        t0 = time.monotonic()
        r = fc.get("/v1/pool")
        took = time.monotonic() - t0
        check(r.status in (503, 504), f"default read right after the isolation: {r}")
        expect_error(r, r.status, "no_leader" if r.status == 503 else "outcome_unknown", "default read, isolated")
        check(took < 8.0, f"the default read failed only after {took:.1f}s")
        note(f"default read right after the isolation: {r.status} {r.json['error']} after {took:.2f}s")
        # Stale reads answer from local state, at once, however long the isolation lasts.
        for _ in range(3):
            t0 = time.monotonic()
            r = fc.get("/v1/pool?consistency=stale")
            took = time.monotonic() - t0
            check(r.status == 200 and r.json["last_request_id"] == 5, f"stale read on the isolated follower: {r}")
            check(took < 1.0, f"stale read took {took:.2f}s")
            time.sleep(0.4)
        for attempt in range(2):
            t0 = time.monotonic()
            r = fc.get("/v1/pool")
            took = time.monotonic() - t0
            check(r.status in (503, 504), f"default read on the isolated follower (attempt {attempt}): {r}")
            expect_error(r, r.status, "no_leader" if r.status == 503 else "outcome_unknown", "default read, isolated")
            if r.status == 503:
                check("retry-after" in r.headers, f"503 without Retry-After: {r.headers}")
            check(took < 8.0, f"default read failed only after {took:.1f}s")
            note(f"isolated default read: {r.status} {r.json['error']} after {took:.2f}s")
        r = fc.get("/v1/pool?consistency=stale")
        check(r.status == 200, f"stale read after failed default reads: {r}")
    finally:
        fc.close()
        for n in others:
            n.cont()
    c.wait_ready(timeout=20)
    r = follower.client().get("/v1/pool")
    check(r.status == 200 and r.json["last_request_id"] == 5, f"default read after the isolation ended: {r}")


# --- 6 ----------------------------------------------------------------------------------------

def raw_http(host, port, data, timeout=15.0):
    """Sends raw bytes, reads until the server closes; returns the bytes read."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


@test
def every_error_of_the_contract_is_json_with_its_status_and_code_and_the_node_keeps_serving(ctx):
    token = "it-secret-token"
    c = ctx.cluster(admin_token=token)
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    auth = {"Authorization": f"Bearer {token}"}
    for node in (follower, leader):
        cl = node.client()

        def serving(what):
            r = cl.get("/healthz")
            check(r.status == 200, f"/healthz on {node} after {what}: {r}")

        cases = [
            ("POST", "/v1/draw", b"{", {}, "malformed JSON"),
            ("POST", "/v1/draw", b'{"count": "3"}', {}, "count as a string"),
            ("POST", "/v1/draw", b'{"count": 1.5}', {}, "count as a fraction"),
            ("POST", "/v1/draw", b'{"count": 0}', {}, "count 0"),
            ("POST", "/v1/draw", b'{"count": 1001}', {}, "count 1001"),
            ("POST", "/v1/draw", b'{"count": -1}', {}, "count -1"),
            ("POST", "/v1/draw", b'[1]', {}, "an array body"),
            ("POST", "/v1/draw", b'{"count": 1}', {"Idempotency-Key": "k" * 129}, "a 129-char Idempotency-Key"),
            ("PUT", "/v1/items/bad$id", b'{"quantity": 1, "probability": 1}', auth, "bad item_id"),
            ("PUT", "/v1/items/" + "x" * 65, b'{"quantity": 1, "probability": 1}', auth, "65-char item_id"),
            ("PUT", "/v1/items/ok", b'{"quantity": "1", "probability": 1}', auth, "quantity as a string"),
            ("PUT", "/v1/items/ok", b'{"quantity": -2, "probability": 1}', auth, "quantity -2"),
            ("PUT", "/v1/items/ok", b'{"quantity": 1, "probability": -1}', auth, "probability -1"),
        ]
        for method, path, body, hdrs, what in cases:
            expect_error(cl.request(method, path, body, hdrs), 400, "bad_request", f"{what} on {node}")
            serving(what)
        # 401
        expect_error(cl.request("PUT", "/v1/items/x", {"quantity": 1, "probability": 1}), 401, "unauthorized",
                     f"PUT without token on {node}")
        expect_error(cl.request("PUT", "/v1/items/x", {"quantity": 1, "probability": 1},
                                {"Authorization": "Bearer wrong"}), 401, "unauthorized", f"wrong token on {node}")
        expect_error(cl.request("DELETE", "/v1/items/gold", None, {"Authorization": token}), 401, "unauthorized",
                     f"token without 'Bearer' on {node}")
        serving("401")
        # 404
        expect_error(cl.get("/v1/nope"), 404, "not_found", f"unknown path on {node}")
        # GET / is the web console; a file it does not have is not found.
        expect_error(cl.get("/console/nope.js"), 404, "not_found", f"/console/nope.js on {node}")
        expect_error(settled(node, "DELETE", "/v1/items/absent", None, {**auth, "Idempotency-Key": fresh_key("del")}),
                     404, "not_found", f"DELETE absent on {node}")
        serving("404")
        # 405
        for method, path in (("GET", "/v1/draw"), ("DELETE", "/v1/pool"), ("POST", "/v1/pool"),
                             ("GET", "/v1/items/gold"), ("POST", "/healthz")):
            r = cl.request(method, path, None, auth)
            expect_error(r, 405, "method_not_allowed", f"{method} {path} on {node}")
        serving("405")
        # 413: a body over 64 KiB (the server may close the connection after answering).
        big = b'{"count": 1, "pad": "' + b"x" * (70 * 1024) + b'"}'
        try:
            r = cl.post("/v1/draw", big)
            expect_error(r, 413, "payload_too_large", f"70 KiB body on {node}")
        except CONN_ERRORS as e:
            raise TestFailure(f"70 KiB body on {node}: connection failed without a 413 answer: {e!r}")
        serving("413")
        cl.close()

    # 422 (through the follower, then on the leader).
    key = {"Idempotency-Key": "errors-422"}
    expect_ok_draw_json(write_on(follower, "POST", "/v1/draw", {"count": 2}, key="errors-422"), 2, "keyed draw")
    for node in (follower, leader):
        expect_error(settled(node, "POST", "/v1/draw", {"count": 3}, key), 422, "idempotency_key_reused",
                     f"reused key on {node}")
    # 409 membership_change_in_progress and 507 insufficient_storage: see operate.py.

    # 504 then 503: the leader loses both followers (SIGSTOP). A draw it already proposed cannot commit:
    # outcome unknown. Once it knows it has lost its quorum, writes get 503 no_leader.
    others = [n for n in c.nodes if n is not leader]
    lc = leader.client(timeout=30.0)
    try:
        for n in others:
            n.stop()
        t0 = time.monotonic()
        r = lc.post("/v1/draw", {"count": 1}, headers={"Idempotency-Key": "errors-504"})
        took = time.monotonic() - t0
        expect_error(r, 504, "outcome_unknown", "draw on a leader that lost its followers")
        check(took < 10.0, f"504 only after {took:.1f}s")
        note(f"504 after {took:.2f}s")

        def no_leader():
            rr = lc.post("/v1/draw", {"count": 1})
            if rr.status == 503:
                return rr
            check(rr.status == 504, f"draw on the isolated old leader: {rr}")
            return None
        r = wait_until(no_leader, 20, "503 from the isolated old leader")
        expect_error(r, 503, "no_leader", "draw without a quorum")
        check("retry-after" in r.headers, f"503 no_leader without Retry-After: {r.headers}")
    finally:
        lc.close()
        for n in others:
            n.cont()
    # 503 on a follower whose leader and other peer are dead.
    c.wait_ready(timeout=20)
    leader = c.leader()
    survivor = c.followers(leader)[0]
    for n in c.nodes:
        if n is not survivor:
            n.kill()
    sc = survivor.client()
    r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(sc.post("/v1/draw", {"count": 1})),
                   15, "503 from a lone survivor")
    expect_error(r, 503, "no_leader", "draw on a lone survivor")
    check("retry-after" in r.headers, f"503 no_leader without Retry-After: {r.headers}")
    check(sc.get("/healthz").status == 200, "the survivor stopped serving /healthz")
    r = sc.get("/v1/pool?consistency=stale")
    check(r.status == 200, f"stale read on the survivor: {r}")
    sc.close()
    for n in c.nodes:
        if not n.running:
            n.start()
    c.wait_ready(timeout=20)
    draw_on(c.nodes[0], 1, what="draw after all the errors")


@test
def a_draw_or_read_sent_with_connection_close_or_http_1_0_gets_an_answer(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    draw_on(leader, 1)  # the cluster takes writes
    # Every answer that is produced asynchronously (a draw, a linearizable read) must reach a client
    # that asked to close the connection afterwards (HTTP/1.1 "Connection: close", or HTTP/1.0).
    body = b'{"count": 1}'
    draw = (b"POST /v1/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    read = b"GET /v1/pool HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    draw10 = (b"POST /v1/draw HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    failures = []
    for node, role in ((leader, "leader"), (follower, "follower")):
        for what, req, status_line, marker in (("draw, Connection: close", draw, b"HTTP/1.1 200", b'"draws"'),
                                               ("default read, Connection: close", read, b"HTTP/1.1 200", b'"digest"'),
                                               ("HTTP/1.0 draw", draw10, b"HTTP/1.0 200", b'"draws"')):
            raw = raw_http(node.host, node.http_port, req, timeout=10.0)
            if not raw.startswith(status_line) or marker not in raw:
                failures.append(f"{what} on the {role} {node}: got {raw[:200]!r}")
    check(not failures, "\n".join(failures))


@test
def get_v1_openapi_json_serves_the_document_of_the_tree_on_every_node(ctx):
    c = ctx.cluster()
    c.start_all()
    with open(openapi_check.DEFAULT_DOCUMENT, encoding="utf-8") as f:
        tree = json.load(f)
    for n in c.nodes:
        r = n.get("/v1/openapi.json")
        check(r.status == 200, f"GET /v1/openapi.json on {n}: {r}")
        check(r.headers.get("content-type", "").startswith("application/json"), f"{n}: {r.headers}")
        check(r.json == tree, f"{n} serves a document other than docs/openapi.json")
        expect_error(n.client().post("/v1/openapi.json", {}), 405, "method_not_allowed", f"POST /v1/openapi.json on {n}")


# --- 7 ----------------------------------------------------------------------------------------

@test
def rpool_wal_verify_passes_and_replay_matches_the_live_digest_on_every_node(ctx):
    c = ctx.cluster(catalog=BIG_CATALOG, snapshot_entries=50, segment_bytes=65536)
    c.start_all()
    # 128-byte keys fill 64 KiB segments in ~250 entries: rollover, snapshots and compaction.
    load = Load(c.nodes, threads=6, prefix="wal", key_bytes=128).start()
    wait_until(lambda: load.count() >= 700, 60, "700 draws")
    load.finish()
    pools = c.converge()
    live = next(iter(pools.values()))
    # The leader crashes (SIGKILL), the followers stop gracefully: both leave a directory that verifies.
    leader = c.leader()
    leader.kill()
    for n in c.nodes:
        if n is not leader:
            rc = n.terminate()
            check(rc == 0, f"{n} exited {rc} after SIGTERM")
    for n in c.nodes:
        r = run_tool([ctx.args.rpool_wal, "verify", n.data_dir])
        check(r.returncode == 0, f"rpool-wal verify {n.data_dir}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        stat = stat_of(ctx, n.data_dir)
        m = re.search(r"indexes (\d+)\.\.(\d+)", stat)
        check(m and int(m.group(1)) > 1, f"{n}: no segment was rolled over and compacted, so verify saw "
                                         f"too little:\n{stat}")
        check(re.search(r"^snapshot: snapshot-", stat, re.M), f"{n}: no snapshot for verify to check:\n{stat}")
    # `rpool-wal replay` is being written: while `--help` does not list it, the check is skipped.
    help_ = run_tool([ctx.args.rpool_wal, "--help"])
    if not re.search(r"^\s+replay\b", help_.stdout, re.M):
        note("`rpool-wal replay` does not exist yet: replay check skipped")
        return
    for n in c.nodes:
        r = run_tool([ctx.args.rpool_wal, "replay", n.data_dir])
        check(r.returncode == 0, f"rpool-wal replay {n.data_dir}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        try:
            replayed = json.loads(r.stdout)
        except ValueError:
            raise TestFailure(f"rpool-wal replay {n.data_dir}: not JSON: {r.stdout[:300]}")
        check(replayed.get("last_request_id") == live["last_request_id"],
              f"replay of {n}: last_request_id {replayed.get('last_request_id')} != live {live['last_request_id']}")
        check(replayed.get("items") == live["items"], f"replay of {n}: items {replayed.get('items')} != live {live['items']}")
        check(replayed.get("digest") == live["digest"],
              f"replay of {n}: digest {replayed.get('digest')} != live {live['digest']} "
              f"(replay index {replayed.get('index')}, live index {live['index']})")


# --- 8 ----------------------------------------------------------------------------------------

@test
def restarting_the_whole_cluster_keeps_every_quantity_and_the_request_id_sequence(ctx):
    c = ctx.cluster()
    c.start_all()
    clients = {}
    for i in range(10):
        draw_on(c.nodes[i % 3], 3, clients)
    item = write_on(c.nodes[1], "PUT", "/v1/items/ruby", {"quantity": 7, "probability": 5}, clients)
    check(item.get("item_id") == "ruby" and item.get("quantity") == 7, f"PUT ruby answered {item}")
    write_on(c.nodes[2], "DELETE", "/v1/items/gold", None, clients)
    before = c.converge()
    b = next(iter(before.values()))
    for n in c.nodes:
        t0 = time.monotonic()
        rc = n.terminate(timeout=5.0)
        check(rc == 0, f"{n} exited {rc} after SIGTERM")
        note(f"{n} exited 0 {time.monotonic() - t0:.2f}s after SIGTERM")
    c.start_all()
    after = c.converge()
    for nid, p in after.items():
        check(p["items"] == b["items"], f"node {nid} after restart: items {p['items']}, before {b['items']}")
        check(p["last_request_id"] == b["last_request_id"] == 30,
              f"node {nid}: last_request_id {p['last_request_id']}, before {b['last_request_id']}")
        check(p["digest"] == b["digest"], f"node {nid}: digest changed across the restart")
    r = draw_on(c.nodes[2], 1, what="draw after restart")
    check(r["draws"][0]["request_id"] == 31, f"first draw after the restart: {r['draws']}, expected request 31")


# --- 9 ----------------------------------------------------------------------------------------

def rpoold_once(ctx, args, timeout=15):
    try:
        return subprocess.run([ctx.args.rpoold, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"rpoold {' '.join(args)} did not exit within {timeout}s")


def one_line(result, what):
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    check(len(lines) == 1, f"{what}: expected one line on stderr, got {len(lines)}:\n{result.stderr}")
    return lines[0]


@test
def bad_config_bad_usage_and_a_locked_data_dir_exit_with_one_clear_line(ctx):
    c = ctx.cluster()
    cases = [
        (lambda cfg: cfg.update(catalogue=[]), "catalogue"),
        (lambda cfg: cfg["raft"].update(heartbeat=50), "raft.heartbeat"),
        (lambda cfg: cfg["wal"].update(segment_bytes=1024), "wal.segment_bytes"),
        (lambda cfg: cfg["members"][1].update(port=1), "members[1].port"),
    ]
    for mutate, field in cases:
        cfg = copy.deepcopy(c.config)
        mutate(cfg)
        path = os.path.join(c.dir, "bad.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = rpoold_once(ctx, ["--config", path, "--id", "1"])
        check(r.returncode == 2, f"config with {field}: exit {r.returncode}, expected 2\n{r.stderr}")
        line = one_line(r, f"config with {field}")
        check(field in line, f"config with {field}: the line does not name it: {line!r}")
    r = rpoold_once(ctx, ["--config", c.config_path])
    check(r.returncode == 2, f"missing --id: exit {r.returncode}, expected 2\n{r.stderr}")
    check("--id" in one_line(r, "missing --id"), f"missing --id: {r.stderr!r}")
    r = rpoold_once(ctx, ["--config", c.config_path, "--id", "9"])
    check(r.returncode == 2, f"--id 9 (not a member): exit {r.returncode}, expected 2\n{r.stderr}")
    one_line(r, "--id 9")
    r = rpoold_once(ctx, ["--config", os.path.join(c.dir, "absent.json"), "--id", "1"])
    check(r.returncode == 2, f"absent config file: exit {r.returncode}, expected 2\n{r.stderr}")
    one_line(r, "absent config")

    # A data dir in use by a running node: a second process (other ports, same dir) exits 1.
    node = c.node(1)
    node.start()
    wait_until(lambda: node.client(timeout=1).get("/healthz").status == 200, 15, f"{node} /healthz")
    cfg = copy.deepcopy(c.config)
    other = Cluster._free_ports(3)
    for m, (rp, hp) in zip(cfg["members"], other):
        host = m["raft"].split(":")[0]
        m["raft"], m["http"] = f"{host}:{rp}", f"{host}:{hp}"
    path = os.path.join(c.dir, "other-ports.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = rpoold_once(ctx, ["--config", path, "--id", "1", "--data-dir", node.data_dir])
    check(r.returncode == 1, f"second node on a locked data dir: exit {r.returncode}, expected 1\n{r.stderr}")
    line = one_line(r, "locked data dir")
    check(re.search(r"lock|in use|another process", line, re.I), f"the line does not say the dir is locked: {line!r}")
    check(node.running and node.client().get("/healthz").status == 200, "the first node suffered")
    check(node.terminate() == 0, "the first node did not exit 0 after SIGTERM")


# --- operating the cluster: operate.py ------------------------------------------------

import operate  # noqa: E402

operate.register(test, sys.modules[__name__])


# --- runner -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rpoold", required=True)
    ap.add_argument("--rpool-wal", required=True)
    ap.add_argument("-k", action="append", default=[], help="run tests whose name contains this (repeatable)")
    ap.add_argument("--xfail", action="append", default=[],
                    help="a known, tracked bug: a test whose name contains this may fail without failing "
                         "the run; it still runs, and its outcome is printed (repeatable)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    args.rpoold = os.path.abspath(args.rpoold)
    args.rpool_wal = os.path.abspath(args.rpool_wal)
    tests = [t for t in TESTS if not args.k or any(k in t.__name__ for k in args.k)]
    if args.list:
        for t in tests:
            print(t.__name__)
        return 0
    for exe in (args.rpoold, args.rpool_wal):
        if not os.access(exe, os.X_OK):
            print(f"integration: {exe} is not an executable", file=sys.stderr)
            return 2
    passed, failed, xfailed, skipped = [], [], [], []
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
        except operate.Skipped as e:
            skipped.append(t.__name__)
            print(f"SKIPPED {t.__name__}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001
            known = any(x in t.__name__ for x in args.xfail)
            (xfailed if known else failed).append(t.__name__)
            print(f"{'XFAIL (known bug)' if known else 'FAIL'} {t.__name__} ({time.monotonic() - t0:.1f}s): {e}",
                  flush=True)
            if not isinstance(e, TestFailure):
                traceback.print_exc(file=sys.stdout)
            for cl in ctx.clusters:
                print(cl.tails(), flush=True)
        finally:
            ctx.close()
    if not openapi_check.finish("integration", sys.stdout):
        failed.append("answers-fit-openapi-json")
    print(f"integration: {len(passed)} passed, {len(failed)} failed, {len(xfailed)} known failures, "
          f"{len(skipped)} skipped in {time.monotonic() - started:.0f}s"
          + (f" (failed: {', '.join(failed)})" if failed else "")
          + (f" (SKIPPED: {', '.join(skipped)})" if skipped else "")
          + (f" (known failures: {', '.join(xfailed)})" if xfailed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run `finally` blocks: kill what we started
    sys.exit(main())
