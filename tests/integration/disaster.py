#!/usr/bin/env python3
"""Backup and disaster recovery on real rpoold processes (README, "Backup and disaster recovery").

    disaster.py --rpoold build/apps/rpoold --rpool-wal build/tools/rpool-wal [-k SUBSTRING]

- a backup (GET /v1/snapshot) taken under load, the whole cluster destroyed, the backup restored
  into a new 3-node cluster (rpool-wal restore on each founding member);
- 2 of 3 nodes lost for good, `rpoold --force-new-cluster` on the survivor, two fresh nodes added
  with --join;
- a node started without --join next to a formed cluster says so once, naming --join.
Each test runs on its own cluster(s) in a temporary directory and stays under a minute.
"""

import argparse
import collections
import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Context, TestFailure, check, wait_until  # noqa: E402
import openapi_check  # noqa: E402
from run import (CONN_ERRORS, acked_checks, draw_on, expect_error, fresh_key, metric,  # noqa: E402
                 note, read_on, run_tool, until_answered)

TESTS = []
TOKEN = "backup-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test(fn):
    TESTS.append(fn)
    return fn


def get_backup(node, headers=AUTH, timeout=20.0):
    """GET /v1/snapshot on `node`, retried on 503 (an election); returns (index, body)."""
    deadline = time.monotonic() + timeout
    while True:
        c = node.client(timeout=15.0)
        try:
            r = c.get("/v1/snapshot", headers=headers)
        finally:
            c.close()
        if r.status == 200 or time.monotonic() > deadline or r.status != 503:
            break
        time.sleep(0.1)
    check(r.status == 200, f"GET /v1/snapshot on {node}: {r}")
    check(r.headers.get("content-type") == "application/octet-stream",
          f"GET /v1/snapshot: Content-Type {r.headers.get('content-type')!r}")
    index = int(r.headers["rpool-snapshot-index"])
    sha = r.headers["rpool-sha256"]
    check(hashlib.sha256(r.body).hexdigest() == sha,
          f"GET /v1/snapshot: Rpool-Sha256 {sha} is not the SHA-256 of the {len(r.body)}-byte body")
    check(r.body[:8] == b"RPOOLBAK" and struct.unpack_from("<Q", r.body, 16)[0] == index,
          "GET /v1/snapshot: the file does not carry the index of its header")
    return index, r.body


def keyed(node, body, key, clients, give_up_after=40.0):
    answer, _ = until_answered([node], 0, "POST", "/v1/draw", body, key, clients, give_up_after)
    return answer


class Drawer:
    """Threads drawing through `nodes` with fresh keys. An answered draw goes to `answers` as (key,
    body); a key whose outcome is unknown (the node died under it) to `unknown`: it is retried
    with the same key later, which gives its one answer."""

    def __init__(self, nodes, threads=3, prefix="d"):
        self.nodes = nodes
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers, self.unknown, self.errors = [], [], []
        self.prefix = f"{prefix}-{os.getpid()}"
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, t):
        clients = {}
        seq = 0
        while not self.stop_event.is_set():
            key = f"{self.prefix}-t{t}-{seq}"
            body = {"count": 1 + seq % 2}
            node = self.nodes[(t + seq) % len(self.nodes)]
            client = clients.setdefault(node.id, node.client(timeout=3.0))
            try:
                r = client.request("POST", "/v1/draw", body, headers={"Idempotency-Key": key})
            except CONN_ERRORS:
                r = None
                client.close()
            with self.lock:
                if r is not None and r.status == 200:
                    self.answers.append((key, r.json))
                elif r is None or r.status in (503, 504):
                    # 503 no_leader was refused before the log; 504 and a lost connection may
                    # have applied: either way the same key gets the one answer later.
                    self.unknown.append((key, body))
                else:
                    self.errors.append(f"{key}: {r}")
            seq += 1
            if r is None or r.status != 200:
                time.sleep(0.05)
        for c in clients.values():
            c.close()

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def count(self):
        with self.lock:
            return len(self.answers)

    def stop(self):
        self.stop_event.set()
        for th in self.threads:
            th.join(20)
            check(not th.is_alive(), "a drawing thread did not finish")
        check(not self.errors, "unexpected answers:\n  " + "\n  ".join(self.errors[:10]))


def pool_as_of(index, answers, catalog):
    """The pool `default` as of log index `index`, computed from every draw answered (each with the
    index that applied it): what GET /v1/pool shows, digest included (docs/api.md: SHA-256 of u32
    item count, then per item in item_id order u8 id length, id, i64 quantity, u64 probability,
    then u64 last_request_id)."""
    drawn = collections.Counter()
    last = 0
    for _, body in answers:
        if body["index"] <= index:
            for d in body["draws"]:
                last = max(last, d["request_id"])
                drawn[d["item_id"]] += 1
    items = sorted(({"item_id": i["item_id"], "probability": i["probability"],
                     "quantity": i["quantity"] if i["quantity"] < 0 else i["quantity"] - drawn[i["item_id"]]}
                    for i in catalog), key=lambda i: i["item_id"].encode())
    h = hashlib.sha256(struct.pack("<I", len(items)))
    for i in items:
        h.update(struct.pack("<B", len(i["item_id"])) + i["item_id"].encode()
                 + struct.pack("<qQ", i["quantity"], i["probability"]))
    h.update(struct.pack("<Q", last))
    return {"items": items, "last_request_id": last, "digest": h.hexdigest()}


def restore(ctx, backup_path, cluster, node, data_dir=None):
    args = [ctx.args.rpool_wal, "restore", backup_path, "--config", cluster.config_path, "--id", str(node.id)]
    if data_dir:
        args += ["--data-dir", data_dir]
    return run_tool(args)


# --- backup and restore -------------------------------------------------------------------------

@test
def a_backup_under_load_restores_into_a_new_cluster_with_its_pool_ids_and_keys(ctx):
    # Snapshots every 100 entries: the backup is a snapshot image plus the commands after it (and
    # the log still holds the backup's index for `rpool-wal replay` after 30 more draws).
    old = ctx.cluster(nodes=3, admin_token=TOKEN, snapshot_entries=100)
    old.start_all()
    leader = old.leader()
    follower = old.followers(leader)[0]
    clients = {}
    before_key = fresh_key("before-backup")
    before = keyed(leader, {"count": 3}, before_key, clients)
    drawer = Drawer(old.nodes, prefix="backup").start()
    wait_until(lambda: drawer.count() >= 150, 30, "150 draws before the backup")

    # Admin only.
    c = follower.client()
    expect_error(c.get("/v1/snapshot"), 401, "unauthorized", "GET /v1/snapshot without the token")
    c.close()
    # Linearizable: every draw acknowledged before the request began is in the backup.
    with drawer.lock:
        acked_before = max(d["request_id"] for _, b in drawer.answers for d in b["draws"])
    check(metric(follower, "rpool_snapshots_total") >= 1, f"{follower} took no snapshot before the backup")
    index, body = get_backup(follower)  # a follower: through the leader's read index
    after = drawer.count() + 30
    wait_until(lambda: drawer.count() >= after, 30, "30 more draws after the backup")
    drawer.stop()
    note(f"backup of index {index}: {len(body)} bytes; {drawer.count()} draws acknowledged")

    # What the backup must hold: the old cluster's state at its index, replayed from a log.
    # Every draw gets its one answer (unknown outcomes retried with their key), so that the pool
    # at any index can be computed from the answers.
    answers = [(before_key, before), *drawer.answers]
    for i, (key, body) in enumerate(drawer.unknown):
        answers.append((key, until_answered(old.nodes, i, "POST", "/v1/draw", body, key, clients)[0]))
    old_pool = read_on(leader)
    check(pool_as_of(old_pool["index"], answers, old.catalog)["digest"] == old_pool["digest"],
          f"the test's model of the pool does not match the live pool {old_pool}")
    expected = pool_as_of(index, answers, old.catalog)
    check(expected["last_request_id"] >= acked_before,
          f"the backup at index {index} holds request_ids up to {expected['last_request_id']}, but "
          f"{acked_before} was acknowledged before the backup was asked for")
    check(expected["last_request_id"] < old_pool["last_request_id"], "no draw after the backup: the test proves little")
    for n in old.nodes:
        check(n.terminate() == 0, f"{n} did not exit 0 after SIGTERM")

    backup_path = os.path.join(old.dir, "pool.backup")
    with open(backup_path, "wb") as f:
        f.write(body)
    # A damaged copy is refused before anything is written.
    damaged = os.path.join(old.dir, "damaged.backup")
    with open(damaged, "wb") as f:
        f.write(body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0x40]) + body[len(body) // 2 + 1:])

    # The whole cluster is destroyed.
    with open(os.path.join(leader.data_dir, "cluster-id")) as f:
        old_id = f.read()
    for n in old.nodes:
        shutil.rmtree(n.data_dir)

    new = ctx.cluster(nodes=3, admin_token=TOKEN)
    r = restore(ctx, damaged, new, new.nodes[0])
    check(r.returncode == 1 and "SHA-256" in r.stderr, f"restore of a damaged backup: exit {r.returncode}\n{r.stderr}")
    check(not os.path.exists(new.nodes[0].data_dir), "restore of a damaged backup wrote a directory")
    for n in new.nodes:
        r = restore(ctx, backup_path, new, n)
        check(r.returncode == 0, f"rpool-wal restore for {n}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    note(r.stdout.strip().splitlines()[0])
    r = restore(ctx, backup_path, new, new.nodes[0])
    check(r.returncode == 1 and "not empty" in r.stderr, f"restore into a non-empty directory: exit {r.returncode}\n{r.stderr}")
    new.start_all()
    restored = read_on(new.leader())
    for field in ("items", "last_request_id", "digest"):
        check(restored[field] == expected[field],
              f"restored {field}: {restored[field]!r}, the backup holds {expected[field]!r}")
    # Draws continue the sequence.
    nxt = draw_on(new.nodes[1], 2, what="first draw after the restore")
    check(nxt["draws"][0]["request_id"] == expected["last_request_id"] + 1,
          f"first draw after the restore got {nxt['draws']}, expected request_id {expected['last_request_id'] + 1}")
    # A key from before the backup answers its first answer, on any node.
    again = keyed(new.nodes[2], {"count": 3}, before_key, {})
    check(again == before, f"the key from before the backup answered {again}, first {before}")
    # The new cluster is another cluster: none of its nodes takes the old one's id.
    ids = set()
    for n in new.nodes:
        with open(os.path.join(n.data_dir, "cluster-id")) as f:
            ids.add(f.read())
    check(len(ids) == 1 and old_id not in ids, f"cluster ids: restored {ids}, old {old_id}")


# --- force a new cluster ------------------------------------------------------------------------

@test
def two_of_three_lost_for_good_the_survivor_forced_alone_then_two_fresh_nodes_join(ctx):
    c = ctx.cluster(nodes=5, founders=3, admin_token=TOKEN)
    c.start_all()
    leader = c.leader()
    drawer = Drawer([leader], prefix="force").start()
    wait_until(lambda: drawer.count() >= 150, 30, "150 draws")
    # The two followers are lost for good while draws go on; then the survivor crashes too.
    for n in c.followers(leader):
        n.kill()
    time.sleep(1.0)  # the leader keeps taking draws it can no longer commit: outcomes unknown
    leader.kill()
    drawer.stop()
    for n in c.nodes[:3]:
        if n is not leader:
            shutil.rmtree(n.data_dir)
    note(f"{drawer.count()} draws acknowledged, {len(drawer.unknown)} with an unknown outcome")

    # Without data there is nothing to force (exit 2, one line).
    empty = os.path.join(c.dir, "empty")
    os.mkdir(empty)
    r = run_tool([c.rpoold, "--config", c.config_path, "--id", str(leader.id), "--data-dir", empty,
                  "--force-new-cluster"], timeout=15)
    check(r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--force-new-cluster" in r.stderr,
          f"--force-new-cluster on an empty directory: exit {r.returncode}, stderr {r.stderr!r}")

    leader.start(extra_args=["--force-new-cluster"])
    c.wait_ready([leader])
    check("FORCED A NEW CLUSTER" in leader.log_text(), "the survivor did not say loudly what it did")
    members = leader.get("/v1/cluster").json["members"]
    check([m["id"] for m in members] == [leader.id], f"the survivor's members: {members}")

    # Fresh nodes join with --join.
    for spare in c.nodes[3:]:
        spare.start()
        admin = leader.client(timeout=70.0)
        r = admin.post("/v1/cluster/members", spare.member(), headers=AUTH)
        admin.close()
        check(r.status == 200, f"adding {spare}: {r}")
    c.wait_ready([leader, *c.nodes[3:]])
    members = leader.get("/v1/cluster").json["members"]
    check(sorted(m["id"] for m in members if m["voter"]) == sorted([leader.id, 4, 5]), f"members: {members}")

    # Every acknowledged draw answers again, unchanged; every unknown one gets its one answer.
    clients = {}
    nodes = [leader, *c.nodes[3:]]
    for i, (key, body) in enumerate(drawer.answers):
        again, _ = until_answered(nodes, i, "POST", "/v1/draw", {"count": len(body["draws"])}, key, clients)
        check(again == body, f"acknowledged draw {key} lost or changed: first {body}, now {again}")
    settled = list(drawer.answers)
    for i, (key, body) in enumerate(drawer.unknown):
        answer, _ = until_answered(nodes, i, "POST", "/v1/draw", body, key, clients)
        settled.append((key, answer))
    pool = read_on(c.nodes[4])
    acked_checks(settled, pool, c.catalog)  # every request_id 1..last answered exactly once: no gap
    nxt = draw_on(c.nodes[3], 1, what="draw on a joined node")
    check(nxt["draws"][0]["request_id"] == pool["last_request_id"] + 1,
          f"next draw got {nxt['draws']}, expected request_id {pool['last_request_id'] + 1}")


# --- joining by mistake -------------------------------------------------------------------------

FOREIGN_LINE = re.compile(r"belongs to another cluster .* without --join")


@test
def a_node_started_without_join_beside_a_formed_cluster_says_so_once_naming_join(ctx):
    c = ctx.cluster(nodes=2, founders=1, admin_token=TOKEN)
    c.start_all()
    first, stray = c.nodes
    # The mistake: the new node starts without --join (it founds a cluster of its own).
    stray.proc = subprocess.Popen(
        [c.rpoold, "--config", c.join_config_path, "--id", str(stray.id)],
        stdout=open(stray.log_path, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=c.dir)
    c.started_pids.add(stray.proc.pid)
    wait_until(lambda: "serving" in stray.log_text(), 10, f"{stray} serving")
    # The operator adds it: the cluster's leader connects to it, again and again.
    admin = first.client(timeout=3.0)
    try:
        admin.post("/v1/cluster/members", stray.member(), headers=AUTH)
    except CONN_ERRORS:
        pass  # the addition cannot finish: the node refuses the cluster
    admin.close()
    wait_until(lambda: FOREIGN_LINE.search(stray.log_text()), 10, "the stray node to name the mistake")
    # The leader keeps reconnecting (backoff at most 1 s); the line stays one.
    time.sleep(3.0)
    lines = [l for l in stray.log_text().splitlines() if FOREIGN_LINE.search(l)]
    check(len(lines) == 1, f"the mistake was reported {len(lines)} times:\n" + "\n".join(lines))
    check("--join" in lines[0] and stray.data_dir in lines[0], f"the line does not name the fix: {lines[0]}")


# --- runner -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rpoold", required=True)
    ap.add_argument("--rpool-wal", required=True)
    ap.add_argument("-k", action="append", default=[])
    args = ap.parse_args()
    args.rpoold = os.path.abspath(args.rpoold)
    args.rpool_wal = os.path.abspath(args.rpool_wal)
    tests = [t for t in TESTS if not args.k or any(k in t.__name__ for k in args.k)]
    openapi_check.enable()
    failed = []
    for t in tests:
        ctx = Context(args)
        t0 = time.monotonic()
        print(f"--- {t.__name__}", flush=True)
        try:
            t(ctx)
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
    if not openapi_check.finish("disaster", sys.stdout):
        failed.append("answers-fit-openapi-json")
    print(f"disaster: {len(tests) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
