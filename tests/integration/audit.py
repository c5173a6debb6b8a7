#!/usr/bin/env python3
"""The audit trail against what clients were answered, through leader kills.

    audit.py --rpoold build/apps/rpoold --rpool-wal build/tools/rpool-wal

Clients draw with an Idempotency-Key on every request, through every node, and retry each request
with its key until it is answered (503 while no leader is known, 504 when the outcome is unknown,
a refused connection to a killed node), while the leader is killed (SIGKILL) three times and
restarted. Every request is answered exactly once, so the answers name every unit drawn. Then
every node is stopped, and `rpool-wal draws` on each data directory must print exactly those
units: the same request_ids, each with the item, the entry index and the key its answer had, no
line more and none less; the three nodes' trails are identical; terms never decrease along the log.
"""

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, TestFailure, check, wait_until  # noqa: E402
import openapi_check  # noqa: E402

CLIENTS = 3
KILLS = 3
REQUEST_DEADLINE_S = 30.0
# Limited items run out along the way, so the trail holds every kind of answer.
CATALOG = [
    {"item_id": "diamond", "quantity": 40, "probability": 10},
    {"item_id": "gold", "quantity": 200, "probability": 20},
    {"item_id": "mud", "quantity": -1, "probability": 70},
]


def draw_until_answered(nodes, key, count, rng, retries):
    """POSTs one keyed draw, on random running nodes, until a 200; returns its answer. Counts
    the failed tries by cause in `retries`."""
    deadline = time.monotonic() + REQUEST_DEADLINE_S
    while True:
        node = rng.choice(nodes)
        try:
            res = node.client(timeout=6.0).post("/v1/draw", {"count": count},
                                                 headers={"Idempotency-Key": key})
            if res.status == 200:
                return res.json
            check(res.status in (503, 504), f"draw {key} answered {res.status}: {res.body[:200]}")
            retries[res.status] += 1
        except OSError:
            retries["connection"] += 1  # a killed node: another one is tried
        check(time.monotonic() < deadline, f"draw {key} not answered in {REQUEST_DEADLINE_S} s")
        time.sleep(0.05)


def run(args):
    openapi_check.enable()
    with Cluster(os.path.abspath(args.rpoold), nodes=3, catalog=CATALOG) as cluster:
        try:
            cluster.start_all()
            answers = {}  # key -> answer
            lock = threading.Lock()
            stop = threading.Event()
            errors = []
            retries = collections.Counter()

            def client(cid):
                rng = random.Random(cid)
                n = 0
                try:
                    while not stop.is_set():
                        key = f"audit-{cid}-{n}"
                        answer = draw_until_answered(cluster.nodes, key, rng.randint(1, 8), rng,
                                                     retries)
                        with lock:
                            answers[key] = answer
                        n += 1
                except Exception as e:  # reported by the main thread
                    errors.append(e)

            threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
            for t in threads:
                t.start()
            kills = []
            try:
                for _ in range(KILLS):
                    time.sleep(1.0)
                    leader = cluster.leader(timeout=15.0)
                    leader.kill()
                    kills.append(leader.id)
                    cluster.leader(timeout=15.0, among=[n for n in cluster.nodes if n is not leader])
                    time.sleep(0.5)
                    leader.start()
                time.sleep(1.0)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            if errors:
                raise errors[0]
            # Every node holds the whole log, then stops cleanly.
            cluster.wait_ready(cluster.nodes)
            cluster.converge(cluster.nodes)
            for n in cluster.nodes:
                check(n.terminate() == 0, f"{n} exits 0 on SIGTERM")

            expected = {}
            for key, answer in answers.items():
                for d in answer["draws"]:
                    check(d["request_id"] not in expected, f"request_id {d['request_id']} answered twice")
                    expected[d["request_id"]] = (d["item_id"], answer["index"], key)
            check(sorted(expected) == list(range(1, len(expected) + 1)),
                  "the answered request_ids are 1..N without a gap")

            trails = {}
            for n in cluster.nodes:
                p = subprocess.run([args.rpool_wal, "draws", n.data_dir, "--format", "json"],
                                   capture_output=True, text=True, timeout=60)
                check(p.returncode == 0, f"rpool-wal draws on node {n.id}: {p.returncode} {p.stderr}")
                trails[n.id] = p.stdout
            check(len(set(trails.values())) == 1, "the three nodes' trails are identical")
            lines = [json.loads(line) for line in trails[1].splitlines()]
            got = {l["request_id"]: (l["item_id"], l["index"], l["idempotency_key"]) for l in lines}
            check(len(got) == len(lines), "one line per request_id")
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            wrong = sorted(r for r in set(got) & set(expected) if got[r] != expected[r])
            check(not missing and not extra and not wrong,
                  f"the trail differs from the answers: missing {missing[:5]}, extra {extra[:5]}, "
                  f"different {[(r, got[r], expected[r]) for r in wrong[:5]]}")
            terms = [l["term"] for l in sorted(lines, key=lambda l: l["index"])]
            check(terms == sorted(terms), "terms never decrease along the log")
            items = collections.Counter(l["item_id"] for l in lines)
            print(f"    {len(answers)} keyed requests, {len(lines)} units ({dict(items)}), "
                  f"retried {dict(retries)}, leaders killed: {kills}, terms {terms[0]}..{terms[-1]}: the trail matches every answer")
        except Exception:
            print(cluster.tails(), file=sys.stderr)
            raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpoold", required=True)
    parser.add_argument("--rpool-wal", required=True)
    args = parser.parse_args()
    args.rpool_wal = os.path.abspath(args.rpool_wal)
    started = time.monotonic()
    try:
        run(args)
    except (TestFailure, Exception):
        traceback.print_exc()
        print(f"audit: FAILED after {time.monotonic() - started:.1f} s")
        return 1
    print(f"audit: passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
