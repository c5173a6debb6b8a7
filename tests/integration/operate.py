"""Operating the cluster (docs/api.md's admin endpoints): membership changes under load,
replacing a node, rolling restarts, admin auth, 409 and 507, snapshots on demand.

The tests are registered by run.py (`operate.register(test, helpers)`), which passes itself as
`h` for its helpers (Load, acked_checks, expect_error, ...).
"""

import json
import os
import re
import subprocess
import threading
import time

from cluster import TestFailure, check, wait_until

TOKEN = "ops-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Skipped(Exception):
    """The test cannot run on this machine; the runner reports it as skipped, never as passed."""


def admin(node, method, path, body=None, token=TOKEN, timeout=90.0):
    c = node.client(timeout=timeout)
    try:
        return c.request(method, path, body, headers={"Authorization": f"Bearer {token}"} if token else {})
    finally:
        c.close()


def until_admin_ok(nodes, method, path, body=None, give_up_after=90.0, what=""):
    """An admin call repeated (rotating over `nodes`) until 200; 503/504/409 and connection
    errors are the retryable answers of a membership change under load (docs/api.md)."""
    deadline = time.monotonic() + give_up_after
    i, last = 0, None
    while time.monotonic() < deadline:
        node = nodes[i % len(nodes)]
        try:
            r = admin(node, method, path, body)
        except OSError as e:
            last, i = repr(e), i + 1
            time.sleep(0.1)
            continue
        if r.status == 200:
            return r.json
        check(r.status in (409, 503, 504), f"{what or method + ' ' + path} on {node}: {r}")
        last, i = repr(r), i + 1
        time.sleep(0.2)
    raise TestFailure(f"{what or method + ' ' + path} not done within {give_up_after}s (last: {last})")


def cluster_info(node):
    r = node.get("/v1/cluster")
    check(r.status == 200, f"GET /v1/cluster on {node}: {r}")
    return r.json


def voters(node):
    return sorted(m["id"] for m in cluster_info(node)["members"] if m["voter"])


def wait_members(nodes, want_voters, want_learners=(), timeout=20.0):
    """Every node in `nodes` shows exactly these voters and learners, with the right addresses."""
    def agreed():
        for n in nodes:
            info = cluster_info(n)
            got_v = sorted(m["id"] for m in info["members"] if m["voter"])
            got_l = sorted(m["id"] for m in info["members"] if not m["voter"])
            if got_v != sorted(want_voters) or got_l != sorted(want_learners):
                return None
            by_id = {m.id: m for m in n.cluster.nodes}
            for m in info["members"]:
                node = by_id.get(m["id"])
                if node is not None and (m["http"], m["raft"]) != (f"{node.host}:{node.http_port}",
                                                                   f"{node.host}:{node.raft_port}"):
                    raise TestFailure(f"{n} has wrong addresses for node {m['id']}: {m}")
        return True
    wait_until(agreed, timeout, f"voters {sorted(want_voters)} and learners {sorted(want_learners)} on {nodes}")


def register(test, h):
    def load_until(load, more, timeout=60.0):
        target = load.count() + more
        wait_until(lambda: load.count() >= target or load.errors, timeout, f"{more} more acknowledged draws")
        check(not load.errors, "load threads failed:\n  " + "\n  ".join(load.errors))

    @test
    def the_cluster_grows_from_3_to_5_and_shrinks_back_to_3_removing_its_leader_under_load(ctx):
        c = ctx.cluster(nodes=5, founders=3, admin_token=TOKEN, catalog=h.BIG_CATALOG)
        c.start_all()
        n1, n2, n3, n4, n5 = c.nodes
        wait_members([n1, n2, n3], [1, 2, 3])
        load = h.Load([n1, n2, n3], threads=3).start()
        try:
            load_until(load, 30)
            for new in (n4, n5):
                new.start()
                t0 = time.monotonic()
                answer = until_admin_ok([n1, n2, n3], "POST", "/v1/cluster/members", new.member(), what=f"add {new}")
                check(answer.get("id") == new.id and answer.get("voter") is True, f"add {new}: answer {answer}")
                h.note(f"{new} added and voting after {time.monotonic() - t0:.2f}s")
                load.nodes.append(new)
                load_until(load, 20)
            wait_members(c.nodes, [1, 2, 3, 4, 5])
            # Shrink: the current leader first (it steps down once its removal commits), then one more.
            leader = c.leader()
            rest = [n for n in c.nodes if n is not leader]
            load.nodes[:] = rest
            answer = until_admin_ok(rest, "DELETE", f"/v1/cluster/members/{leader.id}", what=f"remove leader {leader}")
            check(answer.get("removed") is True and leader.id not in [m["id"] for m in answer["members"]],
                  f"remove {leader}: answer {answer}")
            check(leader.terminate() == 0, f"removed {leader} did not exit 0 on SIGTERM")
            new_leader = c.leader(among=rest, timeout=20)
            h.note(f"removed leader {leader}; {new_leader} leads")
            load_until(load, 20)
            victim = next(n for n in rest if n is not new_leader)
            rest.remove(victim)
            load.nodes[:] = rest
            until_admin_ok(rest, "DELETE", f"/v1/cluster/members/{victim.id}", what=f"remove {victim}")
            check(victim.terminate() == 0, f"removed {victim} did not exit 0 on SIGTERM")
            load_until(load, 20)
        finally:
            answers = load.finish()
        wait_members(rest, [n.id for n in rest])
        pools = c.converge(nodes=rest)
        pool = next(iter(pools.values()))
        h.acked_checks(answers, pool, c.catalog)
        h.note(f"{len(answers)} acknowledged draws, last_request_id {pool['last_request_id']}, "
               f"members {[n.id for n in rest]}")
        # Membership survives a restart of the remaining members (it lives in the log).
        for n in rest:
            check(n.terminate() == 0, f"{n} did not exit 0")
        for n in rest:
            n.start()
        c.wait_ready(rest)
        wait_members(rest, [n.id for n in rest])

    @test
    def a_replacement_node_with_an_empty_data_dir_catches_up_by_snapshot(ctx):
        c = ctx.cluster(nodes=4, founders=3, admin_token=TOKEN, catalog=h.BIG_CATALOG, snapshot_entries=50,
                        segment_bytes=65536)
        c.start_all()
        n1, n2, n3, n4 = c.nodes
        clients = {}
        for i in range(120):
            h.draw_on(c.nodes[i % 3], 1 + i % 3, clients)
        until_admin_ok([n1, n2], "DELETE", "/v1/cluster/members/3", what="remove node 3")
        check(n3.terminate() == 0, "node 3 did not exit 0")
        wait_members([n1, n2], [1, 2])
        for i in range(60):  # more entries, so that the log the new node needs is compacted away
            h.draw_on(c.nodes[i % 2], 2, clients)
        n4.start()
        answer = until_admin_ok([n1, n2], "POST", "/v1/cluster/members", n4.member(), what="add node 4")
        check(answer["voter"] is True, f"add node 4: {answer}")
        wait_members([n1, n2, n4], [1, 2, 4])
        pools = c.converge(nodes=[n1, n2, n4])
        check("installed snapshot" in n4.log_text(), "node 4 did not catch up through InstallSnapshot:\n" + n4.tail())
        stat = h.stat_of(ctx, n4.data_dir)
        check(re.search(r"snapshot", stat), f"node 4 has no snapshot on disk:\n{stat}")
        h.note(f"node 4 caught up to index {pools[4]['index']} by snapshot")
        for cl in clients.values():
            cl.close()

    @test
    def a_rolling_restart_with_sigterm_under_load_fails_no_request_and_costs_one_term_per_restart(ctx):
        c = ctx.cluster(admin_token=TOKEN, catalog=h.BIG_CATALOG)
        c.start_all()
        load = h.Load(list(c.nodes), threads=3).start()  # any answer but 200/503/504 fails the load
        try:
            load_until(load, 30)
            first_leader = c.leader()
            order = [n for n in c.nodes if n is not first_leader] + [first_leader]
            for n in order:
                before = max(cluster_info(m)["term"] for m in c.running())
                was_leader = c.leader() is n
                check(n.terminate() == 0, f"{n} did not exit 0 after SIGTERM")
                others = [m for m in c.nodes if m is not n]
                c.leader(among=others, timeout=20)
                n.start()
                c.wait_ready([n])
                load_until(load, 20)
                after = max(cluster_info(m)["term"] for m in c.nodes)
                check(after - before <= 1, f"restarting {n} moved the term from {before} to {after}")
                if was_leader:
                    check("leadership transferred" in n.log_text(),
                          f"the leader {n} did not hand over before exiting:\n{n.tail()}")
                h.note(f"restarted {n}{' (leader)' if was_leader else ''}: term {before} -> {after}")
        finally:
            answers = load.finish()
        pools = c.converge()
        h.acked_checks(answers, next(iter(pools.values())), c.catalog)

    @test
    def admin_calls_without_or_with_a_wrong_token_get_401_and_change_nothing(ctx):
        c = ctx.cluster(nodes=4, founders=3, admin_token=TOKEN)
        c.start_all()
        n1, n2, n3, n4 = c.nodes
        leader = c.leader()
        follower = next(n for n in (n1, n2, n3) if n is not leader)
        h.draw_on(leader, 3)
        before = c.pool(leader)
        snapshots = h.metric(leader, "rpool_snapshots_total")
        calls = [("PUT", "/v1/items/gold", {"quantity": 1, "probability": 1}),
                 ("DELETE", "/v1/items/gold", None),
                 ("POST", "/v1/cluster/members", n4.member()),
                 ("DELETE", f"/v1/cluster/members/{follower.id}", None),
                 ("POST", "/v1/cluster/leader", {"to": follower.id}),
                 ("POST", "/v1/snapshot", None)]
        headers = [None, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Basic {TOKEN}", TOKEN]
        for node in (leader, follower):
            cl = node.client()
            for method, path, body in calls:
                for header in headers:
                    r = cl.request(method, path, body, headers={"Authorization": header} if header else {})
                    h.expect_error(r, 401, "unauthorized", f"{method} {path} on {node} with {header!r}")
            cl.close()
        after = c.pool(leader)
        check((after["items"], after["last_request_id"]) == (before["items"], before["last_request_id"]),
              f"the pool changed: {before} -> {after}")
        wait_members([n1, n2, n3], [1, 2, 3])
        check(c.leader() is leader, "the leader changed")
        check(h.metric(leader, "rpool_snapshots_total") == snapshots, "a snapshot was taken")
        # The right token works (through the follower, which forwards).
        r = admin(follower, "PUT", "/v1/items/gold", {"quantity": 5, "probability": 1})
        check(r.status == 200 and r.json["quantity"] == 5, f"PUT with the token: {r}")
        # The scheme is matched case-insensitively (RFC 9110 §11.1); the token is not.
        for scheme in ("bearer", "BEARER", "BeArEr"):
            cl = follower.client()
            r = cl.request("PUT", "/v1/items/gold", {"quantity": 6, "probability": 1},
                           headers={"Authorization": f"{scheme} {TOKEN}"})
            cl.close()
            check(r.status == 200, f"PUT with the scheme spelt {scheme!r}: {r}")

    @test
    def a_second_membership_change_or_transfer_during_one_gets_409(ctx):
        c = ctx.cluster(admin_token=TOKEN)
        c.start_all()
        leader = c.leader()
        follower = next(n for n in c.nodes if n is not leader)
        # Node 9 never starts: as a learner it never catches up, so its addition stays under way.
        ghost = {"id": 9, "raft": f"{leader.host}:1", "http": f"{leader.host}:2"}
        outcome = {}

        def add_ghost():
            try:
                outcome["r"] = admin(follower, "POST", "/v1/cluster/members", ghost, timeout=120)
            except OSError as e:
                outcome["r"] = e
        t = threading.Thread(target=add_ghost, daemon=True)
        t.start()
        wait_members(c.nodes, [1, 2, 3], [9])
        other = {"id": 8, "raft": f"{leader.host}:3", "http": f"{leader.host}:4"}
        for node in (leader, follower):
            h.expect_error(admin(node, "POST", "/v1/cluster/members", other), 409, "membership_change_in_progress",
                           f"a second addition on {node}")
            h.expect_error(admin(node, "DELETE", f"/v1/cluster/members/{follower.id}"), 409,
                           "membership_change_in_progress", f"a removal during the addition on {node}")
            h.expect_error(admin(node, "POST", "/v1/cluster/leader", {"to": follower.id}), 409,
                           "membership_change_in_progress", f"a transfer during the addition on {node}")
        # The cluster keeps serving meanwhile, and the learner does not count toward the quorum.
        h.draw_on(follower, 2)
        wait_members(c.nodes, [1, 2, 3], [9])
        check("r" not in outcome, f"the addition of a node that never started was answered: {outcome}")

    @test
    def a_full_disk_answers_507_changes_nothing_and_the_node_recovers_when_space_returns(ctx):
        if os.geteuid() != 0:
            raise Skipped("mounting a small tmpfs needs root")
        c = ctx.cluster(admin_token=TOKEN, segment_bytes=65536)
        n2 = c.node(2)
        os.makedirs(n2.data_dir)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", n2.data_dir],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Skipped(f"mount -t tmpfs failed: {r.stderr.strip()}")
        try:
            c.start_all()
            if c.leader() is not n2:
                until_admin_ok([n2], "POST", "/v1/cluster/leader", {"to": 2}, what="transfer to node 2")
            check(c.leader() is n2, "node 2 does not lead")
            filler = os.path.join(n2.data_dir, "filler")
            st = os.statvfs(n2.data_dir)
            with open(filler, "wb") as f:
                try:
                    f.write(b"\0" * (st.f_bavail * st.f_frsize))
                except OSError:
                    pass
            cl = n2.client()
            answers, full = [], None
            for i in range(5000):
                key = f"disk-full-{i}"
                r = cl.request("POST", "/v1/draw", {"count": 1}, headers={"Idempotency-Key": key})
                if r.status == 507:
                    full = (i, key)
                    h.expect_error(r, 507, "insufficient_storage", "a draw on the node with a full disk")
                    break
                if r.status == 200:
                    answers.append((key, r.json))
                else:
                    # The write in flight when the disk filled: outcome unknown; retried below.
                    h.expect_error(r, 504, "outcome_unknown", "the draw in flight when the disk filled")
                    answers.append((key, None))
            check(full is not None, "5,000 draws fit on a full 1 MiB disk")
            h.note(f"507 after {full[0]} draws")
            for _ in range(3):
                h.expect_error(cl.request("POST", "/v1/draw", {"count": 1}), 507, "insufficient_storage",
                               "another draw on the full node")
            check(n2.running, "the node with a full disk exited")
            check(n2.client().get("/readyz").status == 503, "/readyz of the node with a full disk is not 503")
            os.remove(filler)
            # Space is back: the node resumes (it retries every second). Retry the unknown ones.
            c.wait_ready([n2], timeout=20)
            done = []
            for key, body in answers + [(full[1], None)]:
                if body is None:
                    body, _ = h.until_answered([n2, c.node(1), c.node(3)], 0, "POST", "/v1/draw", {"count": 1}, key, {})
                done.append((key, body))
            pools = c.converge()
            h.acked_checks(done, next(iter(pools.values())), c.catalog)
            check("the log is writable again" in n2.log_text(), "node 2 did not report its recovery")
            for n in c.nodes:
                check(n.terminate() == 0, f"{n} did not exit 0")
            v = h.run_tool([ctx.args.rpool_wal, "verify", n2.data_dir])
            check(v.returncode == 0, f"rpool-wal verify after the full disk: {v.stdout}{v.stderr}")
        finally:
            c.close()
            subprocess.run(["umount", "-l", n2.data_dir], capture_output=True)

    @test
    def post_snapshot_takes_a_snapshot_now_and_compacts_the_log(ctx):
        c = ctx.cluster(admin_token=TOKEN, segment_bytes=65536, catalog=h.BIG_CATALOG)
        c.start_all()
        leader = c.leader()
        follower = next(n for n in c.nodes if n is not leader)
        load = h.Load(list(c.nodes), threads=3, key_bytes=100).start()
        load_until(load, 1500, timeout=120)
        answers = load.finish()
        segments_before = len(re.findall(r"\.wal", h.stat_of(ctx, follower.data_dir)))
        r = admin(follower, "POST", "/v1/snapshot")
        check(r.status == 200 and isinstance(r.json.get("snapshot_index"), int), f"POST /v1/snapshot: {r}")
        index = r.json["snapshot_index"]
        applied = cluster_info(follower)["applied_index"]
        check(0 < index <= applied, f"snapshot_index {index}, applied {applied}")
        stat = h.stat_of(ctx, follower.data_dir)
        check(f"{index:020}" in stat or re.search(rf"\b{index}\b", stat), f"no snapshot at {index} in:\n{stat}")
        segments_after = len(re.findall(r"\.wal", stat))
        check(segments_after < segments_before, f"the log was not compacted: {segments_before} -> {segments_after} segments\n{stat}")
        check(h.metric(follower, "rpool_snapshots_total") >= 1, "rpool_snapshots_total did not move")
        pools = c.converge()
        h.acked_checks(answers, next(iter(pools.values())), c.catalog)
        # The node restarts from its snapshot.
        check(follower.terminate() == 0, f"{follower} did not exit 0")
        follower.start()
        c.wait_ready([follower])
        c.converge()

    @test
    def metrics_parse_as_prometheus_text_and_the_counters_move_with_draws(ctx):
        import prom

        c = ctx.cluster(admin_token=TOKEN)
        c.start_all()
        leader = c.leader()
        follower = next(n for n in c.nodes if n is not leader)

        def scrape(node):
            r = node.get("/metrics")
            check(r.status == 200, f"/metrics on {node}: {r}")
            check(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
                  f"/metrics content type {r.headers.get('content-type')!r}")
            text = r.body.decode()
            try:
                families = prom.parse(text)
            except ValueError as e:
                raise TestFailure(f"/metrics on {node} is not valid Prometheus text: {e}")
            if not prom.cross_check(text):
                h.note("Prometheus' own parser (python3-prometheus-client) is not installed: strict parser only")
            return families

        def value(families, name, **labels):
            family = None
            for suffix in ("", "_total", "_count", "_sum", "_bucket"):
                if suffix and name.endswith(suffix) and name[:-len(suffix)] in families:
                    family = families[name[:-len(suffix)]]
            family = families.get(name, family)
            check(family is not None, f"no metric family for {name}")
            for sample, sample_labels, v in family["samples"]:
                if sample == name and all(sample_labels.get(k) == str(w) for k, w in labels.items()):
                    return v
            return 0.0

        before = {n.id: scrape(n) for n in (leader, follower)}
        for name in ("rpool_term", "rpool_role", "rpool_leader_id", "rpool_commit_index", "rpool_applied_index",
                     "rpool_leader_changes_total", "rpool_proposals_total", "rpool_proposals_failed_total",
                     "rpool_draws_total", "rpool_draws_pool_empty_total", "rpool_http_requests_total",
                     "rpool_http_request_duration_seconds", "rpool_wal_fsync_duration_seconds", "rpool_wal_bytes_total",
                     "rpool_snapshots_total", "rpool_snapshot_bytes", "rpool_snapshot_duration_seconds",
                     "rpool_peer_connected", "rpool_peer_sent_bytes_total", "rpool_follower_lag_entries"):
            fams = before[leader.id]
            check(name in fams or name.removesuffix("_total") in fams, f"the leader's /metrics has no {name}")
        check(value(before[leader.id], "rpool_role", role="leader") == 1, "the leader's rpool_role{role=leader} is not 1")
        check(value(before[follower.id], "rpool_role", role="follower") == 1, "a follower's rpool_role is not follower")
        check(value(before[leader.id], "rpool_leader_id") == leader.id, "rpool_leader_id is wrong")
        check(value(before[leader.id], "rpool_peer_connected", peer=follower.id) == 1, "the peer is not connected")

        clients = {}
        for i in range(10):
            h.draw_on(follower if i % 2 else leader, 3, clients)
        r = admin(leader, "POST", "/v1/snapshot")
        check(r.status == 200, f"POST /v1/snapshot: {r}")
        after = {n.id: scrape(n) for n in (leader, follower)}
        L0, L1 = before[leader.id], after[leader.id]
        check(value(L1, "rpool_draws_total") - value(L0, "rpool_draws_total") == 30, "rpool_draws_total did not move by 30")
        check(value(L1, "rpool_proposals_total") - value(L0, "rpool_proposals_total") >= 10, "rpool_proposals_total")
        check(value(L1, "rpool_http_requests_total", route="draw", status=200)
              - value(L0, "rpool_http_requests_total", route="draw", status=200) == 10,
              "the leader did not count 10 answered draws (5 its own, 5 forwarded)")
        F0, F1 = before[follower.id], after[follower.id]
        check(value(F1, "rpool_forwarded_total") - value(F0, "rpool_forwarded_total") == 5, "rpool_forwarded_total on the follower")
        check(value(L1, "rpool_wal_fsync_duration_seconds_count") > value(L0, "rpool_wal_fsync_duration_seconds_count"),
              "no fsync was timed")
        check(value(L1, "rpool_http_request_duration_seconds_count", route="draw")
              >= value(L0, "rpool_http_request_duration_seconds_count", route="draw") + 10, "draw latency not observed")
        check(value(L1, "rpool_snapshots_total") == value(L0, "rpool_snapshots_total") + 1, "rpool_snapshots_total")
        check(value(L1, "rpool_snapshot_duration_seconds_count") >= 1, "the snapshot was not timed")
        check(value(L1, "rpool_snapshot_bytes") > 0, "rpool_snapshot_bytes is 0")
        check(value(L1, "rpool_commit_index") > value(L0, "rpool_commit_index"), "rpool_commit_index did not move")
        check(value(L1, "rpool_peer_sent_bytes_total", peer=follower.id)
              > value(L0, "rpool_peer_sent_bytes_total", peer=follower.id), "no bytes counted to the follower")
        for cl in clients.values():
            cl.close()

    @test
    def a_follower_a_little_behind_catches_up_from_the_log_and_only_a_far_one_needs_a_snapshot(ctx):
        # Snapshots every 50 entries; the log keeps the entries since the previous snapshot.
        c = ctx.cluster(catalog=h.BIG_CATALOG, snapshot_entries=50)
        c.start_all()
        leader = c.leader()
        lagging = next(n for n in c.nodes if n is not leader)
        clients = {}
        # A stopped process would still take the leader's appends into its socket buffer: kill it.
        lagging.kill()
        start = cluster_info(leader)["applied_index"]
        while cluster_info(leader)["applied_index"] < start + 60:  # past one snapshot, within the margin
            h.draw_on(leader, 1, clients)
        lagging.start()
        c.wait_ready([lagging])
        c.converge()
        check("installed snapshot" not in lagging.log_text(),
              f"{lagging}, 60 entries behind, was sent a snapshot instead of the entries:\n{lagging.tail()}")
        lagging.kill()
        start = cluster_info(leader)["applied_index"]
        while cluster_info(leader)["applied_index"] < start + 160:  # beyond the margin
            h.draw_on(leader, 1, clients)
        lagging.start()
        c.wait_ready([lagging])
        c.converge()
        check("installed snapshot" in lagging.log_text(), f"{lagging}, 160 entries behind, got no snapshot")
        for cl in clients.values():
            cl.close()

    @test
    def a_disk_error_stops_the_node_with_exit_1_and_its_waiting_requests_get_503_or_504_never_500(ctx):
        import shutil
        if not shutil.which("fiu-run") or not shutil.which("fiu-ctrl"):
            raise Skipped("fiu-run/fiu-ctrl (Debian fiu-utils) are not installed")
        c = ctx.cluster(catalog=h.BIG_CATALOG)
        c.start_all()
        leader = c.leader()
        # The leader again, under libfiu: its fdatasync can be made to fail from outside.
        leader.kill()
        c.leader(among=[n for n in c.nodes if n is not leader], timeout=20)
        leader.proc = None
        log = open(leader.log_path, "ab")
        leader.proc = subprocess.Popen(["fiu-run", "-x", c.rpoold, "--config", c.config_path, "--id", str(leader.id)],
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=c.dir)
        log.close()
        c.started_pids.add(leader.proc.pid)
        c.wait_ready([leader])
        until_admin_ok([leader], "POST", "/v1/cluster/leader", {"to": leader.id}, what="transfer back to the fiu node")
        statuses, lock, stop = {}, threading.Lock(), threading.Event()

        def draw_there(i):
            cl = leader.client(timeout=10.0)
            while not stop.is_set():
                try:
                    r = cl.get("/v1/pool") if i % 3 == 2 else cl.post("/v1/draw", {"count": 1})
                    key = r.status
                    if r.status != 200:
                        h.expect_error(r, r.status, {503: "no_leader", 504: "outcome_unknown"}.get(r.status, "?"),
                                       "an answer of the node whose disk failed")
                except OSError:
                    key = "connection"
                    time.sleep(0.05)
                except TestFailure as e:
                    key = str(e)
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
            cl.close()
        threads = [threading.Thread(target=draw_there, args=(i,), daemon=True) for i in range(12)]
        for t in threads:
            t.start()
        wait_until(lambda: statuses.get(200, 0) >= 50, 30, "50 draws before the fault")
        r = subprocess.run(["fiu-ctrl", "-c", "enable name=posix/io/sync/fdatasync", str(leader.proc.pid)],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"fiu-ctrl: {r.stderr}")
        try:
            rc = leader.proc.wait(timeout=20)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        check(rc == 1, f"the node whose fdatasync failed exited {rc}, not 1")
        lines = [l for l in leader.log_text().splitlines() if l.startswith("rpoold:")]
        check(len(lines) == 1 and "fdatasync" in lines[0], f"no one clear stderr line naming the failure: {lines}")
        bad = {k: v for k, v in statuses.items() if k not in (200, 503, 504, "connection")}
        check(not bad, f"answers other than 200/503/504 (or a closed connection): {bad}")
        h.note(f"answers around the fault: {statuses}; stderr: {lines[0]}")
        others = [n for n in c.nodes if n is not leader]
        h.draw_on(c.leader(among=others, timeout=20), 2)
