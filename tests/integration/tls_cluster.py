#!/usr/bin/env python3
"""TLS on both ports of a real 3-node cluster, and the admin token read from a file.

    tls_cluster.py --rpoold build/apps/rpoold

Certificates are made at run time with scripts/certs (the cluster's CA, and a second, foreign CA)
in the cluster's temporary directory. Checks, in order:

  1. A draw sent over HTTPS to a follower is answered 200: the follower forwarded it to the leader
     over HTTPS, verifying the leader's certificate (rpool_forwarded_total moved).
  2. Strangers at the leader's raft port, each sending the handshake and one forged frame (a
     heartbeat at term 0, which the validator would count as bad_term had it been decoded):
       plaintext (no TLS at all)                          -> reason tls_handshake
       TLS without a client certificate                   -> reason no_certificate
       a certificate from another CA, claiming a member   -> reason untrusted_certificate
       member A's valid certificate, claiming member B    -> reason wrong_identity
       member A's valid certificate, claiming a non-member -> reason unknown_member
     Each moves rpool_peer_rejected_connections_total{reason} by one, and bad_term does not move:
     not one frame reached the core. The control: member A's certificate claiming A itself gets
     its frame to the validator (bad_term moves), so the frame would have been seen.
  3. The admin token comes from admin_token_file: an admin request with it is 200, without it 401.
     After the file is rewritten and SIGHUP sent, the new token works and the old one is 401. A
     bad file (empty) at SIGHUP keeps the token, and the node logs why.
  4. Bad TLS settings at start exit 2 naming the problem: a missing key file, a certificate that
     does not cover the node's addresses, a missing admin_token_file.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, TestFailure, check, make_certs, wait_until  # noqa: E402
from forged_peer import HEARTBEAT, frame, handshake, message, metrics, rejected  # noqa: E402

NOT_A_MEMBER = 77


def counter(families, name, **labels):
    family = families.get(name)
    check(family is not None, f"no {name} in /metrics")
    for _, sample_labels, value in family["samples"]:
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return int(value)
    raise TestFailure(f"no {name}{labels} in /metrics")


def connection_rejections(node, reason):
    return counter(metrics(node), "rpool_peer_rejected_connections_total", reason=reason)


def send_as(node, cluster_id, sender, cert=None, key=None, tls=True):
    """Connects to `node`'s raft port (TLS with the given client certificate, or none; or
    plaintext), sends the handshake as `sender` and one heartbeat at term 0, and waits for the node
    to close the connection or stay quiet."""
    payload = handshake(cluster_id, sender, node.id) + frame(message(HEARTBEAT, sender, node.id, 0))
    raw = socket.create_connection((node.host, node.raft_port), timeout=5)
    try:
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # a stranger does not care whom it talks to
            if cert is not None:
                context.load_cert_chain(cert, key)
            s = context.wrap_socket(raw, server_hostname=node.host)
        else:
            s = raw
        s.sendall(payload)
        s.settimeout(2.0)
        s.recv(1)  # the node never writes: this ends with its close (or an alert, or quiet)
    except (OSError, ssl.SSLError):
        pass
    finally:
        raw.close()


def strangers(cluster, leader, cluster_id, foreign):
    a, b = [n for n in cluster.nodes if n is not leader]
    certs = cluster.certs_dir

    def cert(directory, node_id):
        return os.path.join(directory, f"node-{node_id}.pem"), os.path.join(directory, f"node-{node_id}-key.pem")

    cases = [
        ("plaintext", "tls_handshake", dict(sender=a.id, tls=False)),
        ("TLS without a certificate", "no_certificate", dict(sender=a.id)),
        ("a certificate of another CA", "untrusted_certificate",
         dict(sender=a.id, **dict(zip(("cert", "key"), cert(foreign, a.id))))),
        (f"node {a.id}'s certificate claiming node {b.id}", "wrong_identity",
         dict(sender=b.id, **dict(zip(("cert", "key"), cert(certs, a.id))))),
        (f"node {a.id}'s certificate claiming non-member {NOT_A_MEMBER}", "unknown_member",
         dict(sender=NOT_A_MEMBER, **dict(zip(("cert", "key"), cert(certs, a.id))))),
    ]
    for what, reason, kw in cases:
        before = connection_rejections(leader, reason)
        bad_term = rejected(metrics(leader), "bad_term")
        send_as(leader, cluster_id, **kw)
        wait_until(lambda: connection_rejections(leader, reason) >= before + 1, 10,
                   f"{leader} to count {what} as {reason}")
        check(connection_rejections(leader, reason) == before + 1,
              f"{what}: {reason} moved by more than one")
        check(rejected(metrics(leader), "bad_term") == bad_term,
              f"{what}: a frame reached the validator (bad_term moved)")
        check(leader.running, f"{leader} exited after {what}")
        print(f"  {what}: closed before its frame, counted as {reason}", flush=True)

    # The control: the same frame under an identity that passes does reach the validator.
    bad_term = rejected(metrics(leader), "bad_term")
    send_as(leader, cluster_id, sender=a.id, **dict(zip(("cert", "key"), cert(certs, a.id))))
    wait_until(lambda: rejected(metrics(leader), "bad_term") == bad_term + 1, 10,
               "the control frame (a member's own certificate) to reach the validator")
    print("  control: a member's own certificate gets its frame to the validator", flush=True)


def admin_put(node, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return node.client().request("PUT", "/v1/items/ruby", body={"quantity": 5, "probability": 1},
                                 headers=headers).status


def rotate(cluster, token_path):
    node = cluster.nodes[0]
    check(admin_put(node, "first-token") == 200, "the token from admin_token_file was refused")
    check(admin_put(node, None) == 401, "an admin request without a token was accepted")
    with open(token_path, "w") as f:
        f.write("second-token\n")
    for n in cluster.nodes:
        n.signal(signal.SIGHUP)
    for n in cluster.nodes:
        wait_until(lambda: n.log_text().count("admin token reloaded") >= 1, 10, f"{n} to reload the token")
    check(admin_put(node, "second-token") == 200, "the rotated token was refused")
    check(admin_put(node, "first-token") == 401, "the old token still works after SIGHUP")
    print("  admin_token_file: rotated on SIGHUP", flush=True)

    with open(token_path, "w") as f:
        f.write("")
    node.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the current admin token" in node.log_text(), 10,
               f"{node} to refuse the empty token file")
    check(node.running, f"{node} exited on a bad token file at SIGHUP")
    check(admin_put(node, "second-token") == 200, "the token was lost on a bad file at SIGHUP")
    print("  admin_token_file: an empty file at SIGHUP keeps the token", flush=True)


def bad_starts(rpoold, cluster):
    """Each broken setting makes a fresh node exit 2 with a line naming it."""
    base = json.loads(json.dumps(cluster.config))
    base["data_dir"] = os.path.join(cluster.dir, "bad-{id}")
    certs = cluster.certs_dir
    cases = [
        ("a missing key", dict(tls=dict(base["tls"], key=os.path.join(certs, "nope.pem"))), "tls.key"),
        ("a certificate for another address",
         dict(tls=dict(base["tls"], cert=os.path.join(certs, "node-2.pem"),
                       key=os.path.join(certs, "node-2-key.pem"))), "subjectAltName"),
        ("a missing admin_token_file", dict(admin_token_file=os.path.join(cluster.dir, "nope")),
         "admin_token_file"),
    ]
    for what, change, needle in cases:
        config = dict(base, **change)
        path = os.path.join(cluster.dir, "bad.json")
        with open(path, "w") as f:
            json.dump(config, f)
        p = subprocess.run([rpoold, "--config", path, "--id", "1"], capture_output=True, timeout=20)
        err = p.stderr.decode()
        check(p.returncode == 2, f"{what}: exit {p.returncode}, stderr {err!r}")
        check(needle in err, f"{what}: stderr does not name {needle!r}: {err!r}")
        print(f"  {what}: exit 2: {err.strip()}", flush=True)


def run(rpoold):
    with Cluster(rpoold, nodes=3, tls=True) as cluster:
        token_path = os.path.join(cluster.dir, "admin-token")
        with open(token_path, "w") as f:
            f.write("first-token\n")
        cluster.config["admin_token_file"] = token_path
        cluster.write_config()
        try:
            cluster.start_all()
            leader = cluster.leader()
            follower = next(n for n in cluster.nodes if n is not leader)
            forwarded = counter(metrics(follower), "rpool_forwarded_total")
            r = follower.client().post("/v1/draw", {"count": 2})
            check(r.status == 200, f"a draw over HTTPS through the follower: {r}")
            check(counter(metrics(follower), "rpool_forwarded_total") == forwarded + 1,
                  "the follower did not forward the draw")
            print(f"  HTTPS draw through follower {follower.id}, forwarded over HTTPS: {r.json['draws']}",
                  flush=True)

            with open(os.path.join(leader.data_dir, "cluster-id")) as f:
                cluster_id = int(f.read().strip(), 16)
            foreign = make_certs(os.path.join(cluster.dir, "foreign-certs"), 3)
            strangers(cluster, leader, cluster_id, foreign)
            rotate(cluster, token_path)
            bad_starts(rpoold, cluster)
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
        print(f"tls_cluster: FAILED: {e}", flush=True)
        return 1
    print(f"tls_cluster: passed in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
