"""The chaos harness: a real rpoold cluster, concurrent clients that record every
operation, and nemeses that kill, crash, pause, partition and starve nodes while the clients run.

    with ChaosCluster(rpoold, rpool_wal, nodes=3) as cc:
        cc.start_all()
        history = cc.history = History()
        load = Workload(cc, history, random.Random(7)).start()
        nemesis = LeaderKill(cc, random.Random(8)).start()
        ...
        nemesis.stop(); load.stop(); final = cc.final_states()
        violations = checker.check(history.ops, final)

Clients: each write (POST /v1/draw, PUT /v1/items/{id}) carries its own Idempotency-Key and is
retried with the same key and body, rotating over the nodes, on 503/504/507, connection errors and
timeouts, until a definitive answer (200, or a 4xx). Each operation is recorded once, with the
monotonic time of its invocation (a write: its first attempt; a read: the attempt that answered,
since an unanswered read had no effect) and of its completion, the node that answered, and the
answer. The checker (checker.py) works on those records alone plus the final node states.

Every process is killed by pid, every nftables table deleted and every tmpfs unmounted in
`finally` blocks; random choices come from seeded random.Random objects.
"""

import collections
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from cluster import Cluster, TestFailure, check, wait_until  # noqa: E402,F401

CONN_ERRORS = (OSError, http.client.HTTPException)
# 500 is not in the contract's error table; the clients retry it like 503/504 (with the same
# key, so safely) to keep the history checkable, and the runner reports every 500 it saw.
RETRYABLE = (500, 503, 504, 507)
ADMIN_TOKEN = "chaos-admin-token"

# A small, exhaustible pool: diamond and gold run out within a run, and the workload's item updates
# restock them, switch the unlimited "mud" off and on (so pool_empty happens) and add "ruby".
CHAOS_CATALOG = [
    {"item_id": "diamond", "quantity": 15, "probability": 10},
    {"item_id": "gold", "quantity": 60, "probability": 30},
    {"item_id": "mud", "quantity": -1, "probability": 60},
]
PUT_ITEMS = ["diamond", "gold", "mud", "ruby"]

# The multi-pool workload: "default" (the config's catalog) and seven pools the harness creates
# through PUT /v1/pools/{pool_id} before any fault, each smaller than the chaos catalog, since each
# sees about a tenth of the draws: they run out and are restocked within a run too.
POOL_CATALOG = [
    {"item_id": "diamond", "quantity": 3, "probability": 10},
    {"item_id": "gold", "quantity": 10, "probability": 30},
    {"item_id": "mud", "quantity": -1, "probability": 60},
]
CHAOS_POOLS = {f"event-{k}": POOL_CATALOG for k in range(1, 8)}


def pool_paths(pool_id, legacy):
    """(draw, item prefix, read) paths of `pool_id`; for "default" with `legacy`, the single-pool
    endpoints, which are the same pool."""
    if pool_id == "default" and legacy:
        return "/v1/draw", "/v1/items/", "/v1/pool"
    return f"/v1/pools/{pool_id}/draw", f"/v1/pools/{pool_id}/items/", f"/v1/pools/{pool_id}"


def log(message):
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"    {stamp} {message}", flush=True)


# --- the history ---------------------------------------------------------------------------------

class History:
    """Thread-safe list of operation records (dicts; see Workload._record)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.statuses = collections.Counter()  # (node id, status or error name) of every attempt

    def add(self, op):
        with self.lock:
            op["id"] = len(self.ops)
            self.ops.append(op)

    def attempt(self, node_id, outcome):
        with self.lock:
            self.statuses[(node_id, outcome)] += 1

    def count(self, pred=lambda op: True):
        with self.lock:
            return sum(1 for op in self.ops if pred(op))

    def snapshot(self):
        with self.lock:
            return list(self.ops)


# --- the cluster ---------------------------------------------------------------------------------

class ChaosCluster(Cluster):
    """A Cluster (tests/integration/cluster.py) with an admin token, the chaos catalog, counters the
    nemeses bump, and the end-of-run collection of final states."""

    def __init__(self, rpoold, rpool_wal, nodes=3, catalog=None, snapshot_entries=1_000_000_000, pools=None,
                 **kw):
        # No snapshots unless a scenario asks for them: the checker places item updates (whose
        # answers carry no index) by their key in the log, so it wants the whole log.
        super().__init__(rpoold, nodes=nodes, catalog=catalog or CHAOS_CATALOG, admin_token=ADMIN_TOKEN,
                         snapshot_entries=snapshot_entries, **kw)
        self.rpool_wal = rpool_wal
        # {pool_id: catalog}: pools create_pools() makes before the workload; None: one pool.
        self.pools = dict(pools) if pools else None
        self.counters = collections.Counter()  # leader_kills, crashes, partitions, pauses, disk_fulls
        self.lock = threading.Lock()

    def bump(self, name, n=1):
        with self.lock:
            self.counters[name] += n

    def leader_or_none(self, timeout=3.0):
        """The running node that says it leads, in the highest term any running node reports (a
        quick look for the nemeses: unlike leader(), it does not wait for every node to agree);
        None if there is none within `timeout`."""
        def find():
            best = None
            for n in self.running():
                c = n.client(timeout=1.0)
                try:
                    r = c.get("/v1/cluster")
                except CONN_ERRORS:
                    continue
                finally:
                    c.close()
                if r.status == 200 and r.json.get("role") == "leader":
                    if best is None or r.json["term"] > best[0]:
                        best = (r.json["term"], n)
            return best[1] if best else None
        try:
            return wait_until(find, timeout, "a leader")
        except TestFailure:
            return None

    # Nemeses may run together (a leader kill during a whole-cluster crash): they start and kill
    # nodes through these, which hold one lock and never start a node twice.
    def kill_node(self, node):
        with self.lock:
            node.kill()

    def start_node(self, node):
        with self.lock:
            if not node.running:
                node.start()

    def restart_missing(self):
        """Starts every node that is not running and continues every paused one."""
        with self.lock:
            for n in self.nodes:
                if n.stopped:
                    n.cont()
                if not n.running:
                    n.start()

    def create_pools(self, timeout=30.0):
        """Creates self.pools through PUT /v1/pools/{pool_id} (with an Idempotency-Key, retried on
        any node until answered 200)."""
        for pool_id, items in sorted((self.pools or {}).items()):
            headers = {"Idempotency-Key": f"create-{pool_id}", "Authorization": f"Bearer {ADMIN_TOKEN}"}

            def created(pool_id=pool_id, items=items, headers=headers):
                for n in self.running():
                    c = n.client(timeout=5.0)
                    try:
                        r = c.request("PUT", f"/v1/pools/{pool_id}", {"items": items}, headers=headers)
                    except CONN_ERRORS:
                        continue
                    finally:
                        c.close()
                    if r.status == 200:
                        return True
                    check(r.status in RETRYABLE, f"PUT /v1/pools/{pool_id} on {n}: {r}")
                return False
            wait_until(created, timeout, f"pool {pool_id} created")

    def final_states(self, converge_timeout=60.0):
        """Heals nothing (the caller has stopped the nemeses): waits for one leader and for all nodes
        to reach one index, reads every node's pool there, stops every node with SIGTERM, then runs
        `rpool-wal verify`, `replay` and `dump` on each data directory. Returns the dict the checker
        takes as `final`. With several pools, see final_states_pools()."""
        if self.pools:
            return self.final_states_pools(converge_timeout)
        final = {"catalog": self.catalog, "pools": {}, "exit_codes": {}, "verify": {}, "replays": {},
                 "log_keys": {}, "errors": []}
        try:
            self.wait_ready(self.nodes, timeout=converge_timeout)
            pools = self.converge(self.nodes, timeout=converge_timeout)
            final["pools"] = {nid: p for nid, p in pools.items()}
            final["linearizable"] = self.pool(self.leader())
        except TestFailure as e:
            final["errors"].append(f"the cluster did not converge: {e}")
            for n in self.nodes:
                if n.running:
                    try:
                        final["pools"][n.id] = self.pool(n, stale=True)
                    except (TestFailure, *CONN_ERRORS) as e2:
                        final["errors"].append(f"{n}: no stale read: {e2}")
        # Followers first, the leader last: stopping the leader first would let the others elect a
        # new one, whose no-op entry would move the logs past the state read above.
        leader = self.leader_or_none(timeout=2.0)
        for n in sorted(self.nodes, key=lambda n: n is leader):
            if n.running:
                try:
                    final["exit_codes"][n.id] = n.terminate(timeout=20.0)
                except TestFailure as e:
                    final["exit_codes"][n.id] = f"{e}"
        at = (final.get("linearizable") or {}).get("index")
        final["replays_at"] = {}
        for n in self.nodes:
            v = run_tool([self.rpool_wal, "verify", n.data_dir])
            final["verify"][n.id] = (v.returncode, (v.stdout + v.stderr).strip()[-2000:])
            final["replays"][n.id] = replay(self.rpool_wal, n.data_dir)
            if at is not None:
                final["replays_at"][n.id] = replay(self.rpool_wal, n.data_dir, at)
        # Where each Idempotency-Key landed in the log (PUT answers carry no index): from the data
        # directory that replays furthest (all of them, when the cluster converged).
        def replay_index(n):
            rep = final["replays"].get(n.id)
            return rep.get("index", -1) if isinstance(rep, dict) else -1
        source = max(self.nodes, key=replay_index)
        d = run_tool([self.rpool_wal, "dump", source.data_dir, "--format", "json"], timeout=300)
        if d.returncode != 0:
            final["errors"].append(f"rpool-wal dump {source.data_dir}: exit {d.returncode}: {d.stderr[-300:]}")
        keys = collections.defaultdict(list)
        first = None
        for line in d.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e.get("index"), int):
                first = e["index"] if first is None else min(first, e["index"])
            key = (e.get("command") or {}).get("idempotency_key")
            if key is not None:
                keys[key].append(e["index"])
        final["log_keys"] = dict(keys)
        final["log_first_index"] = first  # above 1 when a snapshot compacted the log
        return final


    def converge_pool(self, pool_id, timeout):
        """Like Cluster.converge, for one pool: {node_id: GET /v1/pools/{pool_id}?consistency=stale}
        at one index, at or after the leader's linearizable read of it (returned too)."""
        path = f"/v1/pools/{pool_id}"
        linearizable = self.read_pool(self.leader(), path, timeout)

        def same():
            pools = {n.id: self.read_pool(n, path + "?consistency=stale", timeout) for n in self.nodes}
            indexes = {p["index"] for p in pools.values()}
            return pools if len(indexes) == 1 and indexes.pop() >= linearizable["index"] else None
        return wait_until(same, timeout, f"pool {pool_id} on every node at one index", interval=0.1), linearizable

    def read_pool(self, node, path, timeout):
        """GET `path` on `node`, retried on 503/504 and connection errors for up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            c = node.client(timeout=10.0)
            try:
                r = c.get(path)
            except CONN_ERRORS as e:
                r = e
            finally:
                c.close()
            if not isinstance(r, Exception) and r.status == 200:
                return r.json
            if time.monotonic() > deadline or (not isinstance(r, Exception) and r.status not in (503, 504)):
                raise TestFailure(f"GET {path} on {node}: {r}")
            time.sleep(0.1)  # pacing between retries while a leader is elected

    def final_states_pools(self, converge_timeout):
        """final_states() for a cluster of several pools: the `final` checker.check_pools takes.
        Per pool: every node's stale read at one index, the leader's linearizable read, and
        `rpool-wal replay --pool` (to the end, and at the linearizable read's index) of every data
        directory; the keys of the log's entries on that pool. Once: every node's GET /v1/pools,
        verify, the exit codes."""
        all_pools = dict({"default": self.catalog}, **self.pools)
        per_pool = {p: {"catalog": items, "pools": {}, "replays": {}, "replays_at": {}, "log_keys": {}}
                    for p, items in all_pools.items()}
        final = {"per_pool": per_pool, "pool_lists": {}, "exit_codes": {}, "verify": {}, "errors": []}
        try:
            self.wait_ready(self.nodes, timeout=converge_timeout)
            for pool_id in sorted(all_pools):
                reads, linearizable = self.converge_pool(pool_id, converge_timeout)
                per_pool[pool_id]["pools"] = reads
                per_pool[pool_id]["linearizable"] = linearizable
            for n in self.nodes:
                final["pool_lists"][n.id] = self.read_pool(n, "/v1/pools?consistency=stale", converge_timeout)
        except TestFailure as e:
            final["errors"].append(f"the cluster did not converge: {e}")
        final["linearizable"] = per_pool["default"].get("linearizable")  # for the run's statistics
        leader = self.leader_or_none(timeout=2.0)
        for n in sorted(self.nodes, key=lambda n: n is leader):
            if n.running:
                try:
                    final["exit_codes"][n.id] = n.terminate(timeout=20.0)
                except TestFailure as e:
                    final["exit_codes"][n.id] = f"{e}"
        for n in self.nodes:
            v = run_tool([self.rpool_wal, "verify", n.data_dir])
            final["verify"][n.id] = (v.returncode, (v.stdout + v.stderr).strip()[-2000:])
            for pool_id, f in per_pool.items():
                f["replays"][n.id] = replay(self.rpool_wal, n.data_dir, pool=pool_id)
                at = (f.get("linearizable") or {}).get("index")
                if at is not None:
                    f["replays_at"][n.id] = replay(self.rpool_wal, n.data_dir, at, pool=pool_id)

        def replay_index(n):
            rep = per_pool["default"]["replays"].get(n.id)
            return rep.get("index", -1) if isinstance(rep, dict) else -1
        source = max(self.nodes, key=replay_index)
        d = run_tool([self.rpool_wal, "dump", source.data_dir, "--format", "json"], timeout=300)
        if d.returncode != 0:
            final["errors"].append(f"rpool-wal dump {source.data_dir}: exit {d.returncode}: {d.stderr[-300:]}")
        first = None
        for line in d.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e.get("index"), int):
                first = e["index"] if first is None else min(first, e["index"])
            command = e.get("command") or {}
            key = command.get("idempotency_key")
            if key is not None and command.get("pool_id") in per_pool:
                per_pool[command["pool_id"]]["log_keys"].setdefault(key, []).append(e["index"])
        final["log_first_index"] = first
        return final


def replay(rpool_wal, data_dir, at=None, pool=None):
    """`rpool-wal replay` as a dict, or a string saying what went wrong."""
    r = run_tool([rpool_wal, "replay", data_dir] + (["--at", str(at)] if at is not None else [])
                 + (["--pool", pool] if pool is not None else []))
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr.strip()[-500:]}"
    try:
        return json.loads(r.stdout)
    except ValueError:
        return f"not JSON: {r.stdout[:300]!r}"


def run_tool(args, timeout=120):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"timed out after {timeout}s")


# --- the clients ---------------------------------------------------------------------------------

class Workload:
    """`threads` client threads; each runs operations one after another until stop():
    draws (count 1..max_count), default reads, item updates (put_rate) and idempotency probes
    (probe_rate: an answered write sent again with the same key and body, to another node; its
    answer must equal the first).

    `read_after_write`: after each answered write, the thread reads through a different node than
    the one that answered (a linearizable read must then show that write).

    `pools` (a list of pool ids, "default" among them): each operation goes to one of them, a
    third of them to "default" (through the single-pool endpoints or /v1/pools/default, at
    random), and is recorded with its `pool`. Without it, every operation is the default pool's
    through the single-pool endpoints, as before pools existed, and drawing the same random
    numbers."""

    def __init__(self, cluster, history, rng, threads=4, read_rate=0.3, put_rate=0.04, probe_rate=0.03,
                 max_count=5, attempt_timeout=3.0, read_after_write=False, prefix=None, pools=None):
        self.cluster = cluster
        self.history = history
        self.nodes = list(cluster.nodes)
        self.read_rate, self.put_rate, self.probe_rate = read_rate, put_rate, probe_rate
        self.max_count = max_count
        self.attempt_timeout = attempt_timeout
        self.read_after_write = read_after_write
        self.pools = sorted(pools) if pools else None
        self.prefix = prefix or f"c{rng.randrange(1 << 30):x}"
        self.seeds = [rng.randrange(1 << 62) for _ in range(threads)]
        self.stop_event = threading.Event()
        self.give_up_at = None  # set by stop(): in-flight writes keep retrying until then
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self, finish_within=60.0):
        """No new operations; in-flight ones retry until answered or `finish_within` seconds pass
        (then they are recorded unanswered, which the checker reports)."""
        self.give_up_at = time.monotonic() + finish_within
        self.stop_event.set()
        for th in self.threads:
            th.join(finish_within + 30)
        alive = [th for th in self.threads if th.is_alive()]
        check(not alive, f"{len(alive)} client threads did not finish")
        return self.errors

    def _run(self, t):
        rng = random.Random(self.seeds[t])
        clients = {}
        seq = 0
        try:
            while not self.stop_event.is_set():
                pool_id = None
                draw_path, item_path, read_path = pool_paths("default", True)
                if self.pools:
                    pool_id = "default" if rng.random() < 1 / 3 else rng.choice(self.pools)
                    draw_path, item_path, read_path = pool_paths(pool_id, rng.random() < 0.5)
                r = rng.random()
                if r < self.read_rate:
                    self._read(t, rng, clients, rng.randrange(len(self.nodes)), path=read_path, pool=pool_id)
                    continue
                seq += 1
                key = f"{self.prefix}-t{t}-{seq}"
                if r < self.read_rate + self.put_rate:
                    item = rng.choice(PUT_ITEMS)
                    # Mostly restocks; now and then an item switched off (probability 0) or emptied.
                    quantity = 0 if rng.random() < 0.1 else rng.choice([-1, rng.randrange(1, 30)])
                    probability = 0 if rng.random() < 0.1 else rng.randrange(1, 60)
                    op = self._write(t, rng, clients, "put", key, "PUT", item_path + item,
                                     {"quantity": quantity, "probability": probability}, pool=pool_id)
                else:
                    op = self._write(t, rng, clients, "draw", key, "POST", draw_path,
                                     {"count": rng.randint(1, self.max_count)}, pool=pool_id)
                if op["status"] == 200 and rng.random() < self.probe_rate:
                    others = [i for i in range(len(self.nodes)) if self.nodes[i].id != op["node"]]
                    self._write(t, rng, clients, "probe", key, op["method"], op["path"], op["body"],
                                start=rng.choice(others), pool=pool_id)
                if op["status"] == 200 and self.read_after_write:
                    others = [i for i in range(len(self.nodes)) if self.nodes[i].id != op["node"]]
                    self._read(t, rng, clients, rng.choice(others), give_up_after=0, path=read_path, pool=pool_id)
        except Exception as e:  # noqa: BLE001 - reported by the scenario
            self.errors.append(f"client thread {t}: {e!r}")
        finally:
            for c in clients.values():
                c.close()

    def _client(self, clients, node):
        c = clients.get(node.id)
        if c is None:
            c = clients[node.id] = node.client(timeout=self.attempt_timeout)
        return c

    ERROR_CODES = {503: "no_leader", 504: "outcome_unknown", 507: "insufficient_storage"}

    def _attempt(self, clients, node, method, path, body, headers):
        """One request; returns (status or None, json or None, outcome name). A retryable error
        whose body is not the contract's {"error": code, "message": text} is counted as
        '<status>:bad-body' (the runner reports those)."""
        try:
            r = self._client(clients, node).request(method, path, body, headers=headers)
        except CONN_ERRORS as e:
            return None, None, type(e).__name__
        outcome = str(r.status) if r.status != 500 else f"500 {method} {path.split('/')[2]}"
        code = self.ERROR_CODES.get(r.status)
        if code and not (isinstance(r.json, dict) and r.json.get("error") == code and r.json.get("message")):
            outcome += ":bad-body"
        return r.status, r.json, outcome

    def _write(self, t, rng, clients, kind, key, method, path, body, start=None, pool=None):
        headers = {"Idempotency-Key": key}
        if method == "PUT":
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        i = rng.randrange(len(self.nodes)) if start is None else start
        invoke = time.monotonic()
        attempts, seen = 0, collections.Counter()
        status = answer = node = None
        while True:
            n = self.nodes[i % len(self.nodes)]
            attempts += 1
            status, answer, outcome = self._attempt(clients, n, method, path, body, headers)
            self.history.attempt(n.id, outcome)
            seen[outcome] += 1
            if status is not None and status not in RETRYABLE:
                node = n.id
                break
            if self.give_up_at is not None and time.monotonic() > self.give_up_at:
                status, answer = None, None
                break
            i += 1
            # Pacing between retries (not synchronisation): do not spin while there is no leader.
            time.sleep(0.02 if status is None else 0.05)
        op = {"kind": kind, "thread": t, "key": key, "method": method, "path": path, "body": body,
              "node": node, "invoke": invoke, "complete": time.monotonic(), "status": status,
              "answer": answer, "attempts": attempts, "outcomes": dict(seen)}
        if pool is not None:
            op["pool"] = pool
        self.history.add(op)
        return op

    def _read(self, t, rng, clients, start, give_up_after=5.0, path="/v1/pool", pool=None):
        """A default read of `path`, retried (rotating) on 503/504/errors for up to `give_up_after` seconds;
        an unanswered read is recorded as such (it had no effect). Returns the record."""
        i = start
        first = time.monotonic()
        attempts = 0
        while True:
            n = self.nodes[i % len(self.nodes)]
            attempts += 1
            invoke = time.monotonic()
            status, answer, outcome = self._attempt(clients, n, "GET", path, None, {})
            self.history.attempt(n.id, outcome)
            if status is not None and status not in RETRYABLE:
                break
            if self.stop_event.is_set() or time.monotonic() - first > give_up_after:
                status, answer = None, None
                break
            i += 1
            time.sleep(0.02 if status is None else 0.05)
        op = {"kind": "read", "thread": t, "key": None, "method": "GET", "path": path, "body": None,
              "node": n.id if status is not None else None, "invoke": invoke, "complete": time.monotonic(),
              "status": status, "answer": answer, "attempts": attempts}
        if pool is not None:
            op["pool"] = pool
        self.history.add(op)
        return op


# --- nftables ------------------------------------------------------------------------------------

class Unavailable(Exception):
    """A fault this machine cannot inject (nft refused, no tmpfs, no fiu-run): the scenario is
    reported SKIPPED with the reason, never passed."""


NftUnavailable = Unavailable


class Nft:
    """One nftables table for this process (`rpool_chaos_<pid>`), with an output chain that drops
    raft traffic between chosen nodes. Only raft ports are matched, so clients' HTTP (and the nodes'
    HTTP forwarding) still flows. Connections are told apart by address: every node binds its
    outgoing peer connections to its own 127.0.0.x."""

    PREFIX = "rpool_chaos"

    def __init__(self, nodes):
        self.nodes = {n.id: n for n in nodes}
        self.table = f"{self.PREFIX}_{os.getpid()}"
        self.created = False
        self.cut_pairs = set()  # (a, b): a's raft connections to b are dropped

    @staticmethod
    def _nft(*args, stdin=None):
        try:
            return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=10)
        except FileNotFoundError as e:
            raise NftUnavailable(f"nft not found: {e}")
        except subprocess.TimeoutExpired:
            raise NftUnavailable("nft timed out")

    @classmethod
    def remove_stale(cls):
        """Deletes tables of this harness left by dead processes (and a plain `rpool_chaos`)."""
        r = cls._nft("list", "tables")
        if r.returncode != 0:
            return
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(cls.PREFIX):
                name = parts[2]
                pid = name[len(cls.PREFIX) + 1:]
                if name == cls.PREFIX or (pid.isdigit() and not os.path.exists(f"/proc/{pid}")):
                    cls._nft("delete", "table", parts[1], name)

    def setup(self):
        """Creates the table; raises NftUnavailable with the reason when nft is missing or refuses."""
        self.remove_stale()
        self._nft("delete", "table", "inet", self.table)
        r = self._nft("-f", "-", stdin=f"table inet {self.table} {{\n"
                                        f"  chain output {{ type filter hook output priority 0; policy accept; }}\n"
                                        f"}}\n")
        if r.returncode != 0:
            raise NftUnavailable((r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout).strip()
                                 else f"exit {r.returncode}")
        self.created = True

    def teardown(self):
        if self.created:
            self._nft("delete", "table", "inet", self.table)
            self.created = False
            self.cut_pairs.clear()

    def _rules(self, a, b):
        """The rules that drop every packet of a's raft connections to b (both directions)."""
        na, nb = self.nodes[a], self.nodes[b]
        return [f"ip saddr {na.host} ip daddr {nb.host} tcp dport {nb.raft_port} drop",
                f"ip saddr {nb.host} ip daddr {na.host} tcp sport {nb.raft_port} drop"]

    def apply(self, pairs):
        """Replaces the cut with `pairs` (a set of (from, to) node ids), atomically."""
        script = f"flush chain inet {self.table} output\n"
        for a, b in sorted(pairs):
            for rule in self._rules(a, b):
                script += f"add rule inet {self.table} output {rule}\n"
        r = self._nft("-f", "-", stdin=script)
        if r.returncode != 0:
            raise NftUnavailable(f"nft refused a rule: {r.stderr.strip()}")
        self.cut_pairs = set(pairs)

    def heal(self):
        self.apply(set())

    @staticmethod
    def isolate(group_a, group_b):
        """Both directions between every node of group_a and every node of group_b."""
        return {(a, b) for a in group_a for b in group_b} | {(b, a) for a in group_a for b in group_b}


def nft_check():
    """None if nftables works here, else the reason (for the loud SKIPPED line)."""
    t = Nft([])
    try:
        t.setup()
        return None
    except NftUnavailable as e:
        return str(e)
    finally:
        t.teardown()


# --- nemeses -------------------------------------------------------------------------------------

class Nemesis:
    """A fault injector that runs in its own thread from start() to stop(); stop() heals what it
    broke (restarts killed nodes, continues paused ones, removes partitions). Waits between
    faults are pacing, drawn from the seeded rng."""

    name = "nemesis"

    def __init__(self, cc, rng):
        self.cc = cc
        self.rng = rng
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._guarded, daemon=True)
        self.errors = []

    def start(self):
        self.setup()
        self.thread.start()
        return self

    def setup(self):
        pass

    def _guarded(self):
        try:
            self.run()
        except Exception as e:  # noqa: BLE001 - reported by the scenario
            self.errors.append(f"{self.name}: {e!r}")

    def wait(self, lo, hi):
        """Waits a random time in [lo, hi]; True if stop() was asked meanwhile."""
        return self.stop_event.wait(self.rng.uniform(lo, hi))

    def sustain(self, counter, what, down, undo):
        """A fault just injected: counts and logs it, keeps it for a random time in `down`, then
        undoes it. True if stop() was asked meanwhile."""
        self.cc.bump(counter)
        log(f"{self.name}: {what}")
        stopped = self.wait(*down)
        undo()
        return stopped

    # One fault of each simple kind, shared by its own nemesis and by Mixed. True if stopped.
    def kill_leader_once(self, down):
        leader = self.cc.leader_or_none()
        if leader is None:
            return False
        self.cc.kill_node(leader)
        return self.sustain("leader_kills", f"SIGKILL leader {leader}", down, lambda: self.cc.start_node(leader))

    def crash_all_once(self, down):
        for n in self.cc.nodes:
            self.cc.kill_node(n)

        def restart():
            for n in self.cc.nodes:
                self.cc.start_node(n)
        return self.sustain("crashes", "SIGKILL all nodes", down, restart)

    def pause_once(self, target, down):
        target.stop()
        return self.sustain("pauses", f"SIGSTOP {target}", down, target.cont)

    def partition_once(self, nft, cut, mode, down):
        pairs, what = cut(mode)
        nft.apply(pairs)
        return self.sustain("partitions", what, down, nft.heal)

    def stop(self):
        self.stop_event.set()
        self.thread.join(60)
        self.heal()
        return self.errors

    def heal(self):
        self.cc.restart_missing()


class LeaderKill(Nemesis):
    """SIGKILL of the current leader every few seconds; restarted after a random delay."""
    name = "leader_kill"

    def __init__(self, cc, rng, every=(1.0, 2.5), down=(0.2, 1.5)):
        super().__init__(cc, rng)
        self.every, self.down = every, down

    def run(self):
        while not self.wait(*self.every):
            if self.kill_leader_once(self.down):
                return


class CrashAll(Nemesis):
    """Every node SIGKILLed at once, then all restarted after a random delay."""
    name = "crash_all"

    def __init__(self, cc, rng, every=(2.5, 5.0), down=(0.1, 1.5)):
        super().__init__(cc, rng)
        self.every, self.down = every, down

    def run(self):
        while not self.wait(*self.every):
            if self.crash_all_once(self.down):
                return


class Pause(Nemesis):
    """SIGSTOP of a random node (often the leader) for a while, then SIGCONT."""
    name = "pause"

    def run(self):
        while not self.wait(1.0, 2.5):
            target = self.cc.leader_or_none() if self.rng.random() < 0.5 else None
            target = target or self.rng.choice([n for n in self.cc.nodes if n.running])
            if self.pause_once(target, (0.5, 2.5)):
                return


class Partition(Nemesis):
    """Network partitions of the raft traffic with nftables. `modes` is a list of:
    leader (the leader isolated), split (a random majority/minority), one_way (the leader's own
    raft connections to every follower cut, so it cannot send but still hears them; or one random
    pair), follower (one follower isolated), flapping (a random cut toggled on and off quickly)."""
    name = "partition"
    MODES = ("leader", "split", "one_way", "follower", "flapping")

    def __init__(self, cc, rng, modes=("leader", "split", "one_way"), hold=(1.5, 3.5), gap=(0.5, 1.5)):
        super().__init__(cc, rng)
        self.modes = list(modes)
        self.hold, self.gap = hold, gap
        self.nft = Nft(cc.nodes)

    def setup(self):
        self.nft.setup()  # NftUnavailable: the scenario is skipped

    def _cut(self, mode):
        ids = [n.id for n in self.cc.nodes]
        leader = self.cc.leader_or_none(timeout=2.0)
        lid = leader.id if leader else self.rng.choice(ids)
        others = [i for i in ids if i != lid]
        if mode == "leader":
            return self.nft.isolate([lid], others), f"leader {lid} isolated from {others}"
        if mode == "follower":
            f = self.rng.choice(others)
            return self.nft.isolate([f], [i for i in ids if i != f]), f"follower {f} isolated"
        if mode == "split":
            shuffled = ids[:]
            self.rng.shuffle(shuffled)
            minority, majority = sorted(shuffled[:len(ids) // 2]), sorted(shuffled[len(ids) // 2:])
            return self.nft.isolate(minority, majority), f"minority {minority} | majority {majority}"
        if mode == "one_way":
            if self.rng.random() < 0.6:
                return {(lid, o) for o in others}, f"one-way: leader {lid} cannot reach {others}"
            a, b = self.rng.sample(ids, 2)
            return {(a, b)}, f"one-way: {a} cannot reach {b}"
        raise ValueError(mode)

    def run(self):
        while not self.wait(*self.gap):
            mode = self.rng.choice(self.modes)
            if mode == "flapping":
                base = self.rng.choice(["leader", "split", "one_way", "follower"])
                pairs, what = self._cut(base)
                log(f"{self.name}: flapping {what}")
                self.cc.bump("partitions")
                end = time.monotonic() + self.rng.uniform(*self.hold) * 1.5
                on = False
                while time.monotonic() < end and not self.stop_event.is_set():
                    on = not on
                    self.nft.apply(pairs if on else set())
                    if self.wait(0.1, 0.6):
                        break
                self.nft.heal()
                continue
            if self.partition_once(self.nft, self._cut, mode, self.hold):
                return

    def heal(self):
        try:
            self.nft.teardown()
        finally:
            super().heal()


class Mixed(Nemesis):
    """All nemeses mixed at random (the soak): each round picks one fault."""
    name = "mixed"

    def __init__(self, cc, rng, with_partitions=True, disk_error=None, slow_disk=None):
        super().__init__(cc, rng)
        self.with_partitions = with_partitions
        self.disk_error = disk_error  # a prepared DiskError, or None
        self.slow_disk = slow_disk    # a prepared SlowDisk, or None
        self.nft = Nft(cc.nodes)
        self.partition = Partition(cc, rng, modes=Partition.MODES)
        self.partition.nft = self.nft
        self.partition.stop_event = self.stop_event

    def setup(self):
        if self.with_partitions:
            self.nft.setup()

    def run(self):
        kinds = ["leader_kill", "leader_kill", "crash_all", "pause"] + (["partition"] * 3 if self.with_partitions else [])
        kinds += ["disk_error"] if self.disk_error is not None else []
        kinds += ["slow_disk"] if self.slow_disk is not None else []
        while not self.wait(0.5, 2.0):
            kind = self.rng.choice(kinds)
            if kind == "slow_disk":
                self.slow_disk.stop_event = self.stop_event
                stopped = self.slow_disk.slow_once()
            elif kind == "disk_error":
                self.disk_error.stop_event = self.stop_event
                stopped = self.disk_error.inject_once()
            elif kind == "leader_kill":
                stopped = self.kill_leader_once((0.2, 2.5))
            elif kind == "crash_all":
                stopped = self.crash_all_once((0.1, 1.5))
            elif kind == "pause":
                stopped = self.pause_once(self.rng.choice([n for n in self.cc.nodes if n.running]), (0.5, 2.5))
            else:
                mode = self.rng.choice(Partition.MODES)
                if mode == "flapping":
                    mode = self.rng.choice(["leader", "split", "one_way", "follower"])
                    pairs, what = self.partition._cut(mode)
                    self.cc.bump("partitions")
                    log(f"mixed: flapping {what}")
                    stopped = False
                    for k in range(self.rng.randint(3, 8)):
                        self.nft.apply(pairs if k % 2 == 0 else set())
                        stopped = self.wait(0.1, 0.6)
                        if stopped:
                            break
                    self.nft.heal()
                else:
                    stopped = self.partition_once(self.nft, self.partition._cut, mode, (1.0, 3.5))
            if stopped:
                return

    def heal(self):
        try:
            self.nft.teardown()
        finally:
            super().heal()


class DiskFull(Nemesis):
    """One node's data directory on a small tmpfs (mounted before the cluster starts: call
    mount() first). The nemesis fills it with a filler file, waits until writes routed to that node
    answer 507, holds, deletes the filler, and records whether the node recovers (a write through
    it answers 200 and it catches up) without a restart. Unmounts in unmount() (after the cluster
    has stopped)."""
    name = "disk_full"

    def __init__(self, cc, rng, node, size="4m", hold=(1.5, 3.0), recover_timeout=10.0):
        super().__init__(cc, rng)
        self.node = node
        self.size = size
        self.hold = hold
        self.recover_timeout = recover_timeout
        self.mounted = False
        self.filler = os.path.join(node.data_dir, "chaos-filler")
        self.saw_507 = 0
        self.recovered = None  # True / False after a fill; None if never filled
        self.notes = []

    def mount(self):
        os.makedirs(self.node.data_dir, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.node.data_dir],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise NftUnavailable(f"tmpfs mount refused: {r.stderr.strip()}")
        self.mounted = True

    def unmount(self):
        if self.mounted:
            r = subprocess.run(["umount", self.node.data_dir], capture_output=True, text=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.node.data_dir], capture_output=True, text=True)
            self.mounted = False

    def fill(self):
        """Writes filler files until the tmpfs has no byte left (unbuffered, so nothing is pending)."""
        for path, chunk in ((self.filler, 64 * 1024), (self.filler + ".2", 512), (self.filler + ".3", 1)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
            finally:
                os.close(fd)

    def free(self):
        for p in (self.filler, self.filler + ".2", self.filler + ".3"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def make_leader(self):
        """Moves leadership to the node whose disk will fill (POST /v1/cluster/leader), so that
        half the runs fill the leader's disk rather than a follower's; best effort."""
        c = self.node.client(timeout=5.0)
        try:
            r = c.request("POST", "/v1/cluster/leader", {"to": self.node.id},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            log(f"{self.name}: leadership transfer to {self.node}: {r.status}")
        except CONN_ERRORS as e:
            log(f"{self.name}: leadership transfer to {self.node}: {e!r}")
            return
        finally:
            c.close()
        leader = self.cc.leader_or_none(timeout=5.0)
        log(f"{self.name}: the leader is now {leader}")

    def run(self):
        history = self.cc.history
        before = sum(v for (nid, o), v in history.statuses.items() if nid == self.node.id and o == "507")
        if self.wait(1.0, 2.0):
            return
        if self.rng.random() < 0.5:
            self.make_leader()
        self.fill()
        self.cc.bump("disk_fulls")
        log(f"{self.name}: filled the tmpfs under {self.node}")

        def saw_507():
            with history.lock:
                return sum(v for (nid, o), v in history.statuses.items() if nid == self.node.id and o == "507") > before
        try:
            wait_until(saw_507, 20, f"a 507 from {self.node}")
        except TestFailure as e:
            self.notes.append(f"no 507 from the full node: {e}")
        with history.lock:
            self.saw_507 = sum(v for (nid, o), v in history.statuses.items()
                               if nid == self.node.id and o == "507") - before
        log(f"{self.name}: {self.node} answered 507 {self.saw_507} times")
        self.wait(*self.hold)
        self.free()
        log(f"{self.name}: freed the tmpfs under {self.node}")

        def recovered():
            c = self.node.client(timeout=2.0)
            try:
                r = c.get("/readyz")
            finally:
                c.close()
            if r.status != 200:
                return False
            with history.lock:
                recent = [op for op in history.ops[-200:] if op["node"] == self.node.id
                          and op["kind"] in ("draw", "put") and op["status"] == 200
                          and op["complete"] > freed_at]
            return bool(recent)
        freed_at = time.monotonic()
        try:
            wait_until(recovered, self.recover_timeout, f"{self.node} to write again after space returned")
            self.recovered = True
            log(f"{self.name}: {self.node} recovered")
        except TestFailure as e:
            self.recovered = False
            self.notes.append(f"{self.node} did not recover within {self.recover_timeout:.0f}s of space "
                              f"returning: {e}")
            log(f"{self.name}: {self.node} did NOT recover without a restart")

    def heal(self):
        self.free()
        if self.recovered is False and self.node.running:
            # It did not recover (reported as a failure): restart it so the run can finish its checks.
            self.cc.kill_node(self.node)
        super().heal()


class DiskError(Nemesis):
    """fsync failures: every node runs under `fiu-run -x` (libfiu's POSIX preload, remote control
    through named pipes in the cluster directory), with no fault enabled. Every few seconds one node
    (often the leader) gets fdatasync failing with EIO. A failed fdatasync is a fatal disk error:
    the node must exit 1 with a clear line, not acknowledge anything it did not sync, and recover
    from its data directory when restarted (without the fault). Call prepare() before the cluster
    starts."""
    name = "disk_error"

    def __init__(self, cc, rng, every=(1.5, 3.0)):
        super().__init__(cc, rng)
        self.every = every
        self.ctrl = os.path.join(cc.dir, "fiu-ctrl")
        self.exits = []  # (node id, exit code, last log line)
        self.notes = []

    @staticmethod
    def available():
        missing = [t for t in ("fiu-run", "fiu-ctrl") if shutil.which(t) is None]
        if missing:
            return f"{' and '.join(missing)} not found (Debian package fiu-utils)"
        if not os.path.exists("/usr/lib/fiu/fiu_posix_preload.so"):
            return "libfiu's POSIX preload library /usr/lib/fiu/fiu_posix_preload.so is missing"
        return None

    def prepare(self):
        reason = self.available()
        if reason:
            raise Unavailable(reason)
        for n in self.cc.nodes:
            n.command_prefix = ["fiu-run", "-x", "-f", self.ctrl]

    def run(self):
        while not self.wait(*self.every):
            if self.inject_once():
                return

    def inject_once(self):
        """One node's fdatasync fails; waits for it to exit, restarts it. True if stop() was asked."""
        target = self.cc.leader_or_none(timeout=2.0) if self.rng.random() < 0.6 else None
        running = [n for n in self.cc.nodes if n.running and not n.stopped]
        if target is None and not running:
            return False
        target = target or self.rng.choice(running)
        pid = target.proc.pid
        r = subprocess.run(["fiu-ctrl", "-f", self.ctrl, "-c",
                            "enable name=posix/io/sync/fdatasync,failinfo=5", str(pid)],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            self.notes.append(f"fiu-ctrl on {target}: {r.stderr.strip()}")
            return False
        self.cc.bump("disk_errors")
        log(f"{self.name}: fdatasync fails with EIO on {target}")
        try:
            wait_until(lambda: target.proc.poll() is not None, 15, f"{target} to exit after a failed fdatasync")
            rc = target.proc.returncode
            # The contract's "one clear line on stderr": rpoold prints it as "rpoold: ...".
            lines = [ln for ln in target.tail(10).splitlines() if ln.startswith("rpoold:")]
            self.exits.append((target.id, rc, lines[-1] if lines else "(no 'rpoold: ...' line)"))
            log(f"{self.name}: {target} exited {rc}")
        except TestFailure as e:
            self.notes.append(str(e))
            self.cc.kill_node(target)
        stopped = self.wait(0.2, 1.0)
        self.cc.start_node(target)
        return stopped

    def problems(self):
        """Exits other than the contract's fatal runtime error (exit 1, one clear line)."""
        out = [f"node {nid} exited {rc} after a failed fdatasync (expected 1); last line: {line!r}"
               for nid, rc, line in self.exits if rc != 1]
        out += [f"node {nid}'s stderr line after a failed fdatasync does not say why: {line!r}"
                for nid, rc, line in self.exits if rc == 1 and not re.search(r"storage|disk|sync|I/O|fatal",
                                                                             line, re.I)]
        return out + self.notes

    def exit_lines(self):
        return [line for _, _, line in self.exits]


class SlowDisk(Nemesis):
    """A slow disk: every node runs with tests/faults' librpool-slow-fsync.so preloaded, which
    delays each fdatasync/fsync by the number of milliseconds in a per-node file. Every few seconds
    one node (often the leader) gets 20-400 ms per sync for a while, then none. Expected: nothing
    lost or doubled; writes may answer 504 and are retried. Call prepare() before the cluster starts."""
    name = "slow_disk"

    def __init__(self, cc, rng, library, every=(0.5, 1.5), hold=(1.0, 3.0)):
        super().__init__(cc, rng)
        self.library = library
        self.every, self.hold = every, hold

    @staticmethod
    def available(library):
        if not library or not os.path.exists(library):
            return f"the slow-fsync library {library!r} is not built (tests/faults: librpool-slow-fsync.so)"
        return None

    def delay_file(self, node):
        return os.path.join(self.cc.dir, f"slow-fsync-{node.id}")

    def prepare(self):
        reason = self.available(self.library)
        if reason:
            raise Unavailable(reason)
        lib = os.path.abspath(self.library)
        for n in self.cc.nodes:
            self.set_delay(n, 0)
            if n.command_prefix:
                # After fiu-run (which sets LD_PRELOAD itself): add the library to its list. sh execs
                # rpoold ($0), so the pid stays rpoold's.
                n.command_prefix = n.command_prefix + [
                    "sh", "-c", f'LD_PRELOAD="$LD_PRELOAD {lib}" RPOOL_SLOW_FSYNC_FILE="{self.delay_file(n)}" '
                                'exec "$0" "$@"']
            else:
                # `env` execs rpoold: the pid stays rpoold's.
                n.command_prefix = ["env", f"LD_PRELOAD={lib}", f"RPOOL_SLOW_FSYNC_FILE={self.delay_file(n)}"]

    def set_delay(self, node, ms):
        tmp = self.delay_file(node) + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{ms}\n")
        os.replace(tmp, self.delay_file(node))

    def run(self):
        while not self.wait(*self.every):
            if self.slow_once():
                return

    def slow_once(self):
        """One node's syncs slower for a while; True if stop() was asked meanwhile."""
        target = self.cc.leader_or_none(timeout=2.0) if self.rng.random() < 0.6 else None
        target = target or self.rng.choice(self.cc.nodes)
        ms = self.rng.choice([20, 50, 100, 200, 400])
        self.set_delay(target, ms)
        self.cc.bump("slow_disks")
        log(f"{self.name}: {target} syncs {ms} ms slower")
        stopped = self.wait(*self.hold)
        self.set_delay(target, 0)
        return stopped

    def heal(self):
        for n in self.cc.nodes:
            self.set_delay(n, 0)
        super().heal()
