#!/usr/bin/env python3
"""Forged raft frames against a real cluster: each is refused, counted, and the node keeps running.

    forged_peer.py --rpoold build/apps/rpoold

Anyone who can reach a raft port and knows the cluster id (here read from the node's data
directory) passes the handshake. This client then sends, as a made-up node, the frames that used
to abort rpoold on an assertion in the raft core:

    to the leader:    a heartbeat at term 0                         -> reason bad_term
                      an append at the leader's own term            -> reason leader_conflict
    to a follower:    a heartbeat whose commit is beyond its log    -> reason commit_beyond_log
                      a snapshot chunk larger than its declared size -> reason snapshot_bounds

and checks that each target is still running, that its
rpool_peer_rejected_messages_total{reason=...} counter moved by one, and that the cluster still
commits writes. The frame format is src/net/peer/peer_transport.h's header comment; the message
encoding is raft::encode_message in src/raft/types.cpp.
"""

import argparse
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, TestFailure, check, wait_until  # noqa: E402
import prom  # noqa: E402

STRANGER_ID = 77  # not a member: any id passes the handshake

# raft::MessageType
APPEND, HEARTBEAT, SNAPSHOT = 5, 7, 9


def handshake(cluster_id, sender, receiver):
    return b"RPLP" + struct.pack("<BQQQ", 1, cluster_id, sender, receiver)


def membership(voters):
    """raft::encode_membership, version 2, no learners, no contexts."""
    out = struct.pack("<BI", 2, len(voters)) + b"".join(struct.pack("<Q", v) for v in voters)
    return out + struct.pack("<I", 0) + struct.pack("<I", 0)


def message(mtype, sender, to, term, log_term=0, index=0, commit=0, entries=(), snapshot=None):
    """raft::encode_message. `entries`: (term, index, type, data); `snapshot`: dict of the chunk."""
    out = struct.pack("<BBQQQQQQQBQ", 1, mtype, sender, to, term, log_term, index, commit, 0, 0, 0)
    out += struct.pack("<I", len(entries))
    for e_term, e_index, e_type, data in entries:
        out += struct.pack("<QQBI", e_term, e_index, e_type, len(data)) + data
    if mtype == SNAPSHOT:
        s = snapshot
        out += struct.pack("<BQQ", 1, s["index"], s["term"]) + membership(s["voters"])
        out += struct.pack("<QQI", s["offset"], s["snapshot_bytes"], len(s["data"])) + s["data"]
        out += struct.pack("<B", 1 if s["done"] else 0)
    else:
        out += struct.pack("<B", 0)
    return out


def frame(payload):
    return struct.pack("<IB", len(payload), 1) + payload


def metrics(node):
    r = node.get("/metrics")
    check(r.status == 200, f"GET /metrics on {node}: {r}")
    return prom.parse(r.body.decode())


def gauge(families, name):
    return int(families[name]["samples"][0][2])


def rejected(families, reason):
    family = families.get("rpool_peer_rejected_messages_total")
    check(family is not None, "no rpool_peer_rejected_messages_total in /metrics")
    for _, labels, value in family["samples"]:
        if labels.get("reason") == reason:
            return int(value)
    raise TestFailure(f"no rpool_peer_rejected_messages_total{{reason={reason!r}}} in /metrics")


def send_forged(node, cluster_id, payload):
    """Handshakes with `node` as STRANGER_ID and sends one frame."""
    with socket.create_connection((node.host, node.raft_port), timeout=5) as s:
        s.sendall(handshake(cluster_id, STRANGER_ID, node.id) + frame(payload))
        # The node never writes on this connection; wait for it to read (or abort) by half-closing
        # and reading until it closes or stays quiet.
        s.shutdown(socket.SHUT_WR)
        s.settimeout(2.0)
        try:
            s.recv(1)
        except (socket.timeout, ConnectionResetError):
            pass


def forge_and_check(node, cluster_id, what, reason, payload):
    before = rejected(metrics(node), reason)
    send_forged(node, cluster_id, payload)
    wait_until(lambda: not node.running or rejected(metrics(node), reason) == before + 1, 10,
               f"{node} to count the {what} as {reason}")
    check(node.running, f"{node} exited after the {what}:\n{node.tail()}")
    print(f"  {node}: {what} refused as {reason}", flush=True)


def run(rpoold):
    with Cluster(rpoold, nodes=3) as cluster:
        try:
            cluster.start_all()
            leader = cluster.leader()
            follower = next(n for n in cluster.nodes if n is not leader)
            with open(os.path.join(leader.data_dir, "cluster-id")) as f:
                cluster_id = int(f.read().strip(), 16)
            lf = metrics(leader)
            term = gauge(lf, "rpool_term")

            forge_and_check(leader, cluster_id, "heartbeat at term 0", "bad_term",
                            message(HEARTBEAT, STRANGER_ID, leader.id, 0))
            forge_and_check(leader, cluster_id, "append at the leader's own term", "leader_conflict",
                            message(APPEND, STRANGER_ID, leader.id, term, index=0, log_term=0,
                                    entries=[(term, 1, 1, b"forged")]))
            fterm = gauge(metrics(follower), "rpool_term")
            forge_and_check(follower, cluster_id, "heartbeat with a commit beyond the log",
                            "commit_beyond_log",
                            message(HEARTBEAT, STRANGER_ID, follower.id, fterm, commit=1 << 40))
            forge_and_check(follower, cluster_id, "snapshot chunk larger than its declared size",
                            "snapshot_bounds",
                            message(SNAPSHOT, STRANGER_ID, follower.id, fterm,
                                    snapshot={"index": 1 << 40, "term": fterm, "voters": [1, 2, 3],
                                              "offset": 0, "snapshot_bytes": 10,
                                              "data": b"x" * 11, "done": True}))

            # The cluster was not disturbed: same leader, same term, and it still commits.
            check(cluster.leader() is leader, "the leader changed")
            check(gauge(metrics(leader), "rpool_term") == term, "the term changed")
            r = cluster.client(leader).post("/v1/draw", {"count": 1})
            check(r.status == 200, f"a draw after the forged frames: {r}")
            for n in cluster.nodes:
                check(n.running, f"{n} is not running:\n{n.tail()}")
        except TestFailure:
            print(cluster.tails(), file=sys.stderr)
            raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rpoold", required=True)
    args = ap.parse_args()
    started = time.monotonic()
    try:
        run(os.path.abspath(args.rpoold))
    except TestFailure as e:
        print(f"forged_peer: FAILED: {e}", flush=True)
        return 1
    print(f"forged_peer: passed in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
