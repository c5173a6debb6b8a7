#!/usr/bin/env python3
"""Black-box tests of many pools in one cluster, on real rpoold processes (docs/api.md, "Pools").

    pools.py --rpoold build/apps/rpoold [-k SUBSTRING] [--list]

- 50 pools drawn in concurrently through every node while the leader is SIGKILLed three times:
  per pool, the acknowledged request_ids are exactly 1..last_request_id (none lost, none twice),
  no limited item is drawn more often than its quantity, and every node shows the same digest of
  every pool at one index.
- One Idempotency-Key sent to two pools makes two independent draws; a repeat in each pool returns
  that pool's first answer.
- A deleted pool created again continues its request_id sequence; the pool errors of the contract.
- The default pool's endpoints answer as before, and as /v1/pools/default.
- The limits: a config over them exits 2 naming the limit; the API answers 400 naming it.

Each test starts its own cluster (see cluster.py) and kills every process it started. The last
line is `pools: N passed, M failed`; the exit code is non-zero on any failure.
"""

import argparse
import collections
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Context, TestFailure, check, wait_until  # noqa: E402
import openapi_check  # noqa: E402
import prom  # noqa: E402

TESTS = []
CONN_ERRORS = (OSError, http.client.HTTPException)


def test(fn):
    TESTS.append(fn)
    return fn


def note(message):
    print(f"    note {time.strftime('%H:%M:%S', time.gmtime())}: {message}", flush=True)


def expect_error(response, status, code, what, message_has=None):
    """An error answer per docs/api.md: the status, {"error": code, "message": a sentence}."""
    check(response.status == status, f"{what}: expected {status} {code}, got {response}")
    body = response.json
    check(isinstance(body, dict) and body.get("error") == code, f"{what}: expected error {code!r}, got {body}")
    check(isinstance(body.get("message"), str) and body["message"].strip(), f"{what}: no message in {body}")
    if message_has is not None:
        check(message_has in body["message"], f"{what}: the message {body['message']!r} does not name {message_has!r}")


def until_answered(nodes, start, method, path, body, key, clients, give_up_after=40.0):
    """A write with an Idempotency-Key, retried with that key over `nodes` on 503/504 and connection
    errors (the contract's "retry with the same key") until an answer that is neither; returns it."""
    deadline = time.monotonic() + give_up_after
    i, last = start, None
    while time.monotonic() < deadline:
        node = nodes[i % len(nodes)]
        if not node.running:
            i += 1
            continue
        client = clients.setdefault(node.id, node.client(timeout=10.0))
        try:
            r = client.request(method, path, body, headers={"Idempotency-Key": key})
        except CONN_ERRORS as e:
            last = repr(e)
        else:
            if r.status not in (503, 504):
                return r
            expect_error(r, r.status, "no_leader" if r.status == 503 else "outcome_unknown", f"{method} {path}")
            last = repr(r)
        i += 1
        time.sleep(0.05)
    raise TestFailure(f"{method} {path} ({key}) was never answered within {give_up_after}s (last: {last})")


def write(nodes, method, path, body=None, clients=None, start=0):
    """One keyed write, retried until answered; returns the answer (any status but 503/504)."""
    clients = clients if clients is not None else {}
    key = f"w-{os.getpid()}-{random.randrange(1 << 40)}"
    return until_answered(nodes, start, method, path, body, key, clients)


def ok(response, what):
    check(response.status == 200, f"{what}: expected 200, got {response}")
    return response.json


def read(node, path, give_up_after=20.0):
    """A linearizable read through `node`, retried there on 503/504 (elections)."""
    client = node.client(timeout=10.0)
    deadline = time.monotonic() + give_up_after
    try:
        while True:
            try:
                r = client.get(path)
                if r.status not in (503, 504):
                    return r
            except CONN_ERRORS as e:
                r = e
            check(time.monotonic() < deadline, f"GET {path} on {node} unanswered for {give_up_after}s: {r}")
            time.sleep(0.05)
    finally:
        client.close()


def pool_items(i):
    """Pool i's items: two limited items with small quantities (so that many pools run dry and
    answer pool_empty) and, in every other pool, an unlimited one. Quantities differ by pool, so
    that a draw applied to the wrong pool shows."""
    items = [{"item_id": "rare", "quantity": 2 + i % 5, "probability": 10},
             {"item_id": "common", "quantity": 10 + i % 13, "probability": 40}]
    if i % 2:
        items.append({"item_id": "mud", "quantity": -1, "probability": 50})
    return items


def converge_pools(cluster, nodes, timeout=30.0):
    """Waits until every node's local list of pools is at one index, at or after a linearizable
    read's, and returns {node_id: {pool_id: summary}}."""
    target = ok(read(cluster.leader(), "/v1/pools"), "GET /v1/pools")["index"]

    def same():
        lists = {n.id: n.get("/v1/pools?consistency=stale", timeout=10.0).json for n in nodes}
        indexes = {v["index"] for v in lists.values()}
        if len(indexes) == 1 and indexes.pop() >= target:
            return {nid: {p["pool_id"]: p for p in v["pools"]} for nid, v in lists.items()}
        return None

    return wait_until(same, timeout, f"the pools of {nodes} at one index >= {target}", interval=0.1)


class PoolLoad:
    """Threads drawing in random pools through every node, each draw with its own key, retried
    with it until answered; keeps (pool_id, key, answer) of every acknowledged draw."""

    def __init__(self, nodes, pool_ids, threads=6):
        self.nodes, self.pool_ids = nodes, pool_ids
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers = []
        self.errors = []
        self.prefix = f"pl-{random.randrange(1 << 30)}"
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, t):
        clients = {}
        rng = random.Random(t)
        seq = 0
        try:
            while not self.stop_event.is_set():
                pool_id = rng.choice(self.pool_ids)
                count = 1 + seq % 3
                key = f"{self.prefix}-t{t}-{seq}"
                r = until_answered(self.nodes, t + seq, "POST", f"/v1/pools/{pool_id}/draw", {"count": count}, key,
                                   clients)
                body = ok(r, f"draw {key} in {pool_id}")
                check(len(body["draws"]) == count, f"draw {key}: {len(body['draws'])} draws, asked {count}")
                with self.lock:
                    self.answers.append((pool_id, key, body))
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


def check_pool(pool_id, answers, pool, initial):
    """Every acknowledged draw of one pool is in it exactly once, and no item was over-drawn."""
    ids = [d["request_id"] for body in answers for d in body["draws"]]
    doubled = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    check(not doubled, f"{pool_id}: request_ids acknowledged twice: {doubled[:20]}")
    last = pool["last_request_id"]
    # Every draw was retried until answered, so every applied draw was acknowledged.
    check(sorted(ids) == list(range(1, last + 1)),
          f"{pool_id}: acknowledged request_ids are not exactly 1..{last}: "
          f"missing {sorted(set(range(1, last + 1)) - set(ids))[:20]}, beyond {sorted(i for i in ids if i > last)[:20]}")
    drawn = collections.Counter(d["item_id"] for body in answers for d in body["draws"])
    items = {i["item_id"]: i for i in pool["items"]}
    for item in initial:
        if item["quantity"] < 0:
            continue
        name, quantity = item["item_id"], item["quantity"]
        check(drawn[name] <= quantity, f"{pool_id}: {name} drawn {drawn[name]} times, its quantity was {quantity}")
        check(name in items, f"{pool_id}: {name} is gone from the pool")
        check(items[name]["quantity"] == quantity - drawn[name],
              f"{pool_id}: {name} quantity {quantity} -> {items[name]['quantity']}, but {drawn[name]} acknowledged draws")
    unknown = set(drawn) - {i["item_id"] for i in initial} - {None}
    check(not unknown, f"{pool_id}: drew items it never held: {unknown}")
    return drawn[None]


# --- tests ------------------------------------------------------------------------------------

@test
def fifty_pools_drawn_through_every_node_while_the_leader_is_killed_keep_every_sequence_exact(ctx):
    c = ctx.cluster()
    c.start_all()
    pool_ids = [f"pool-{i:02d}" for i in range(50)]
    initial = {pid: pool_items(i) for i, pid in enumerate(pool_ids)}
    clients = {}
    for i, pid in enumerate(pool_ids):  # created through every node: followers forward
        ok(write(c.nodes, "PUT", f"/v1/pools/{pid}", {"items": initial[pid]}, clients, start=i), f"PUT {pid}")
    for cl in clients.values():
        cl.close()

    load = PoolLoad(c.nodes, pool_ids).start()
    wait_until(lambda: load.count() >= 300, 30, "300 acknowledged draws before any kill")
    for kill in range(3):
        leader = c.leader()
        note(f"SIGKILL leader {leader} after {load.count()} draws")
        leader.kill()
        n0 = load.count()
        wait_until(lambda: load.count() >= n0 + 300, 30, f"300 more draws after leader kill {kill + 1}")
        leader.start()
        c.wait_ready([leader])
        n0 = load.count()
        wait_until(lambda: load.count() >= n0 + 200, 30, "200 more draws after the old leader returned")
    answers = load.finish()
    note(f"{len(answers)} draws acknowledged over {len(pool_ids)} pools")

    lists = converge_pools(c, c.nodes)
    first = next(iter(lists.values()))
    check(set(first) == {"default", *pool_ids}, f"the pools listed are {sorted(first)}")
    for nid, pools in lists.items():
        for pid, summary in pools.items():
            check(summary == first[pid], f"node {nid} shows {pid} as {summary}, node {c.nodes[0].id} as {first[pid]}")
    by_pool = collections.defaultdict(list)
    for pid, _, body in answers:
        by_pool[pid].append(body)
    empties = 0
    for pid in pool_ids:
        pool = ok(read(c.nodes[0], f"/v1/pools/{pid}"), f"GET /v1/pools/{pid}")
        check(pool["digest"] == first[pid]["digest"], f"{pid}: the pool's digest differs from the list's")
        check(pool["last_request_id"] == first[pid]["last_request_id"], f"{pid}: last_request_id differs from the list")
        empties += check_pool(pid, by_pool[pid], pool, initial[pid])
    check(first["default"]["last_request_id"] == 0, "draws in the pools moved the default pool's sequence")
    check(empties > 0, "no pool ran dry: the over-draw check saw no exhausted item")
    note(f"every pool exact; {empties} draws answered pool_empty")


@test
def one_idempotency_key_in_two_pools_makes_two_draws_and_a_repeat_in_each_returns_its_first(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    items = [{"item_id": "gem", "quantity": -1, "probability": 1}]
    for pid in ("a", "b"):
        ok(write([leader], "PUT", f"/v1/pools/{pid}", {"items": items}), f"PUT /v1/pools/{pid}")
    key = {"Idempotency-Key": "shared-key-1"}
    fc, lc = follower.client(), leader.client()
    first_a = ok(fc.request("POST", "/v1/pools/a/draw", {"count": 2}, headers=key), "draw in a")
    first_b = ok(lc.request("POST", "/v1/pools/b/draw", {"count": 2}, headers=key), "draw in b with a's key")
    check([d["request_id"] for d in first_a["draws"]] == [1, 2], f"a: {first_a}")
    check([d["request_id"] for d in first_b["draws"]] == [1, 2], f"b: {first_b}")
    check(first_a["index"] != first_b["index"], "the two draws applied as one entry")
    # A repeat in each pool, through the other node, is that pool's first answer.
    check(ok(lc.request("POST", "/v1/pools/a/draw", {"count": 2}, headers=key), "repeat in a") == first_a,
          "a repeat in a did not return a's first answer")
    check(ok(fc.request("POST", "/v1/pools/b/draw", {"count": 2}, headers=key), "repeat in b") == first_b,
          "a repeat in b did not return b's first answer")
    # The default pool is a third key space; the same key with another body is 422 in its pool.
    first_default = ok(lc.request("POST", "/v1/draw", {"count": 1}, headers=key), "draw in default")
    check([d["request_id"] for d in first_default["draws"]] == [1], f"default: {first_default}")
    expect_error(fc.request("POST", "/v1/pools/a/draw", {"count": 3}, headers=key), 422, "idempotency_key_reused",
                 "the key of a with another count")
    for pid in ("a", "b"):
        check(ok(read(follower, f"/v1/pools/{pid}"), pid)["last_request_id"] == 2, f"{pid} drew more than once")
    fc.close()
    lc.close()

    # /metrics: the draw counters by pool, on every node once it applied them (no node restarted,
    # so each counted every draw it applied).
    want = {"default": 1, "a": 2, "b": 2}

    def counted(node):
        families = prom.parse(node.get("/metrics").body.decode())
        samples = families["rpool_draws_total"]["samples"]
        return {labels.get("pool"): v for _, labels, v in samples} == want and samples[0][1] == {"pool": "default"}

    for n in c.nodes:
        wait_until(lambda: counted(n), 10, f"rpool_draws_total by pool on {n} to be {want}")


@test
def a_deleted_pool_created_again_continues_its_request_id_sequence_and_pool_errors_are_the_contracts(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    fc = follower.client()
    items = [{"item_id": "gem", "quantity": 3, "probability": 1}]
    ok(fc.request("PUT", "/v1/pools/p", {"items": items}), "PUT /v1/pools/p")
    expect_error(fc.request("PUT", "/v1/pools/p", {"items": []}), 409, "pool_exists", "PUT of an existing pool", '"p"')
    drawn = ok(fc.request("POST", "/v1/pools/p/draw", {"count": 5}), "draw 5 in p")["draws"]
    check([d["request_id"] for d in drawn] == [1, 2, 3, 4, 5], f"draws: {drawn}")
    check([d["item_id"] for d in drawn] == ["gem"] * 3 + [None] * 2, f"3 gems then pool_empty: {drawn}")
    deleted = ok(fc.request("DELETE", "/v1/pools/p"), "DELETE /v1/pools/p")
    check(deleted["pool_id"] == "p" and deleted["deleted"] is True, f"DELETE answer {deleted}")
    expect_error(read(follower, "/v1/pools/p"), 404, "not_found", "GET of a deleted pool", '"p"')
    expect_error(fc.request("POST", "/v1/pools/p/draw"), 404, "not_found", "draw in a deleted pool", '"p"')
    expect_error(fc.request("DELETE", "/v1/pools/p"), 404, "not_found", "DELETE of a deleted pool")
    check("p" not in {x["pool_id"] for x in ok(read(follower, "/v1/pools"), "list")["pools"]}, "p is still listed")
    ok(fc.request("PUT", "/v1/pools/p", {"items": [{"item_id": "coin", "quantity": -1, "probability": 1}]}),
       "PUT /v1/pools/p again")
    again = ok(fc.request("POST", "/v1/pools/p/draw", {"count": 2}), "draw in p created again")["draws"]
    check([d["request_id"] for d in again] == [6, 7], f"the sequence did not continue from 5: {again}")
    check(ok(read(leader, "/v1/pools/p"), "GET p")["last_request_id"] == 7, "last_request_id is not 7")

    # The errors of unknown pools, bad pool_ids and the default pool.
    expect_error(fc.request("POST", "/v1/pools/nope/draw"), 404, "not_found", "draw in an unknown pool", '"nope"')
    expect_error(read(follower, "/v1/pools/nope"), 404, "not_found", "GET of an unknown pool")
    expect_error(fc.request("GET", "/v1/pools/nope?consistency=stale"), 404, "not_found", "stale GET, unknown pool")
    expect_error(fc.request("PUT", "/v1/pools/nope/items/gem", {"quantity": 1, "probability": 1}), 404, "not_found",
                 "item in an unknown pool")
    expect_error(fc.request("DELETE", "/v1/pools/p/items/absent"), 404, "not_found", "an absent item", '"absent"')
    expect_error(fc.request("DELETE", "/v1/pools/default"), 400, "bad_request", "DELETE of default", "default")
    expect_error(fc.request("PUT", "/v1/pools/a$b", {"items": []}), 400, "bad_request", "a bad pool_id", "pool_id")
    expect_error(fc.request("POST", "/v1/pools/a$b/draw"), 400, "bad_request", "draw in a bad pool_id", "pool_id")
    expect_error(fc.request("PUT", "/v1/pools/q", {"items": [{"item_id": "x", "quantity": 1}]}), 400, "bad_request",
                 "an item without probability", "probability")
    expect_error(fc.request("POST", "/v1/pools/p"), 405, "method_not_allowed", "POST on a pool")
    fc.close()


@test
def the_default_pool_endpoints_answer_as_before_and_as_pools_default(ctx):
    c = ctx.cluster()
    c.start_all()
    leader = c.leader()
    follower = c.followers(leader)[0]
    fc = follower.client()
    ok(fc.request("PUT", "/v1/pools/other", {"items": [{"item_id": "gold", "quantity": -1, "probability": 1}]}),
       "PUT /v1/pools/other")
    # /v1/draw and /v1/pools/default/draw share one sequence; another pool's draws are not in it.
    one = ok(fc.request("POST", "/v1/draw", {"count": 2}), "POST /v1/draw")
    ok(fc.request("POST", "/v1/pools/other/draw", {"count": 3}), "draw in other")
    two = ok(fc.request("POST", "/v1/pools/default/draw", {"count": 2}), "POST /v1/pools/default/draw")
    check([d["request_id"] for d in one["draws"] + two["draws"]] == [1, 2, 3, 4], f"{one} {two}")
    # The answers of the item endpoints, byte for byte, on both paths.
    r = fc.request("PUT", "/v1/items/ruby", {"quantity": 5, "probability": 1})
    check(r.body == b'{"item_id":"ruby","quantity":5,"probability":1}', f"PUT /v1/items/ruby: {r.body!r}")
    r = fc.request("PUT", "/v1/pools/default/items/opal", {"quantity": 6, "probability": 2})
    check(r.body == b'{"item_id":"opal","quantity":6,"probability":2}', f"PUT .../items/opal: {r.body!r}")
    r = fc.request("DELETE", "/v1/items/absent")
    check(r.status == 404 and r.body == b'{"error":"not_found","message":"No item \\"absent\\"."}', f"{r.body!r}")
    r = fc.request("DELETE", "/v1/pools/default/items/opal")
    check(r.status == 200 and json.loads(r.body)["deleted"] is True, f"DELETE .../items/opal: {r}")
    # GET /v1/pool and GET /v1/pools/default are one body at one index (no write in between).
    a = read(follower, "/v1/pool")
    b = read(follower, "/v1/pools/default")
    check(a.status == 200 and a.body == b.body, f"/v1/pool {a.body!r} != /v1/pools/default {b.body!r}")
    pool = a.json
    check(list(pool) == ["items", "last_request_id", "index", "digest"], f"GET /v1/pool's fields: {list(pool)}")
    check(pool["last_request_id"] == 4, f"last_request_id {pool['last_request_id']}, expected 4")
    check({i["item_id"] for i in pool["items"]} == {"diamond", "gold", "mud", "ruby"}, f"items: {pool['items']}")
    listed = {p["pool_id"]: p for p in ok(read(follower, "/v1/pools"), "GET /v1/pools")["pools"]}
    check(listed["default"]["digest"] == pool["digest"] and listed["default"]["item_count"] == 4,
          f"the list's default {listed['default']} is not GET /v1/pool's {pool}")
    fc.close()


def rpoold_exit(ctx, config, what):
    """Runs rpoold on `config` (written to a file) and returns its one stderr line; it must exit 2."""
    c = ctx.cluster()
    c.config.update(config)
    c.write_config()
    r = subprocess.run([ctx.args.rpoold, "--config", c.config_path, "--id", "1"], capture_output=True, text=True,
                       timeout=30)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    check(r.returncode == 2, f"{what}: exit {r.returncode}, expected 2; stderr:\n{r.stderr}")
    check(len(lines) == 1, f"{what}: expected one line on stderr, got:\n{r.stderr}")
    return lines[0]


@test
def the_pool_limits_exit_2_from_the_config_and_answer_400_from_the_api_naming_the_limit(ctx):
    line = rpoold_exit(ctx, {"pools": {f"p{i}": [] for i in range(10000)}}, "10,000 pools besides default")
    check("pools_max" in line and "10000" in line, f"the line does not name pools_max: {line}")
    line = rpoold_exit(ctx, {"pools": {"default": []}}, "a pool named default")
    check("pools.default" in line and "catalog" in line, f"the line does not name the conflict: {line}")
    line = rpoold_exit(ctx, {"pools": {"a/b": []}}, "a bad pool_id")
    check('"a/b"' in line, f"the line does not quote the pool_id: {line}")
    # Counted before any item is read: empty objects stand for items and keep the file small.
    many = {f"p{i}": [{}] * 1000 for i in range(1000)}
    line = rpoold_exit(ctx, {"pools": many}, "1,000,000 items besides the catalog's")
    check("items_total_max" in line and "1000000" in line, f"the line does not name items_total_max: {line}")

    # 9,999 pools from the config, with "default" the most a cluster holds.
    c = ctx.cluster()
    c.config["pools"] = {f"p{i:04d}": [] for i in range(9999)}
    c.write_config()
    c.start_all()
    leader = c.leader()
    lc = leader.client(timeout=30.0)
    listed = ok(read(leader, "/v1/pools"), "GET /v1/pools")["pools"]
    check(len(listed) == 10000, f"{len(listed)} pools listed, expected 10000")
    expect_error(lc.request("PUT", "/v1/pools/one-more", {"items": []}), 400, "bad_request", "pool 10,001",
                 "pools_max")
    ok(lc.request("DELETE", "/v1/pools/p0000"), "DELETE /v1/pools/p0000")
    ok(lc.request("PUT", "/v1/pools/one-more", {"items": []}), "PUT once a pool was deleted")
    lc.close()


# --- runner -----------------------------------------------------------------------------------

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
        print(f"pools: {args.rpoold} is not an executable", file=sys.stderr)
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
    if not openapi_check.finish("pools", sys.stdout):
        failed.append("answers-fit-openapi-json")
    print(f"pools: {len(passed)} passed, {len(failed)} failed in {time.monotonic() - started:.0f}s"
          + (f" (failed: {', '.join(failed)})" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run `finally` blocks: kill what we started
    sys.exit(main())
