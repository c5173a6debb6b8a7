"""The chaos checker: a pure function of a recorded history and the final node states.

    violations = check(ops, final)          # one pool
    violations = check_pools(ops, final)    # several pools: check() per pool (see check_pools)

`ops` is a list of operation records (chaos.Workload writes them):
    {"id", "kind": "draw" | "put" | "read" | "probe", "key", "method", "path", "body",
     "node", "invoke", "complete", "status", "answer", ...}
  - a write (draw, put) carries its own Idempotency-Key `key` and was retried with it until
    answered; `status` None means it never got a definitive answer;
  - a probe sent an answered write again (same key, same body): its answer must equal the first;
  - times are time.monotonic(); a write's `invoke` is its first attempt, a read's the attempt that
    answered.
`final` is what the cluster looked like after the run:
    {"catalog": [...], "pools": {node_id: GET /v1/pool?consistency=stale at one common index},
     "linearizable": GET /v1/pool through the leader (optional),
     "replays": {node_id: rpool-wal replay JSON, or an error string},
     "replays_at": {node_id: rpool-wal replay --at <the linearizable read's index>} (optional),
     "verify": {node_id: (exit code, output)}, "exit_codes": {node_id: exit code after SIGTERM},
     "log_keys": {idempotency key: [log indexes carrying it]}, "errors": [harness notes],
     "log_first_index": the first index in the dumped log (above 1 after a snapshot; optional)}

Checks (each violation is Violation(kind, message)):
  unanswered        a write never got a definitive answer (liveness; the model cannot be checked
                    without it, so later model checks are skipped);
  bad_answer        a write answered with an unexpected status or shape (422 for a retry with the
                    same body is an exactly-once bug);
  idempotency       two answers for one key differ, or a retry with the same body got 422;
  lost_write        an answered draw's request_id above the final last_request_id, or an answered
                    write whose key is not in the final log (or first at another index than answered);
  duplicate_request_id, request_id_gap
                    request_ids across answers are not exactly 1..last_request_id once each;
  over_drawn        a limited item drawn when the model had none left (per item, between updates);
  real_time         op A completed before op B was invoked but A's index > B's index (>= if B is a
                    write): the order by (index, request_id) contradicts real time;
  model             replaying the pool along (index, request_id): a draw of an item that was not
                    drawable, a request_id out of sequence, pool_empty while something was
                    drawable, a read that does not show exactly the model's state at its index;
  final_state       the final pool differs from the model after every answered write;
  divergence        nodes at different indexes or digests at the end, or not converged;
  replay            `rpool-wal replay` of a data directory differs from the live final state;
  verify            `rpool-wal verify` failed, or a node did not exit 0 after SIGTERM.
"""

import bisect
import collections

KINDS = ("unanswered", "bad_answer", "idempotency", "lost_write", "duplicate_request_id", "request_id_gap",
         "over_drawn", "real_time", "model", "final_state", "divergence", "replay", "verify")


class Violation:
    def __init__(self, kind, message):
        assert kind in KINDS, kind
        self.kind, self.message = kind, message

    def __repr__(self):
        return f"{self.kind}: {self.message}"


def _op(op):
    return (f"#{op.get('id')} {op['kind']} key={op.get('key')} body={op.get('body')} on node {op.get('node')} "
            f"[{op['invoke']:.3f}..{op['complete']:.3f}] -> {op.get('status')} {_short(op.get('answer'))}")


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _differences(got, model):
    """{item_id: (got, model)} for every item whose (quantity, probability) differs."""
    return {k: (got.get(k), model.get(k)) for k in set(got) | set(model) if got.get(k) != model.get(k)}


def _items(pool):
    return {i["item_id"]: (i["quantity"], i["probability"]) for i in pool["items"]}


def _drawable(items):
    return sorted(k for k, (q, p) in items.items() if q != 0 and p > 0)


def check(ops, final, max_per_kind=1000):
    out = []
    counts = collections.Counter()

    def bad(kind, message):
        counts[kind] += 1
        if counts[kind] <= max_per_kind:
            out.append(Violation(kind, message))

    for e in final.get("errors") or []:  # the harness could not collect a converged final state
        bad("divergence", e)
    log_keys = final.get("log_keys") or {}
    have_log = "log_keys" in final

    # --- the writes and their answers ---------------------------------------------------------
    writes = []   # canonical (first) record of each key that was answered 200
    by_key = collections.defaultdict(list)
    reads = []
    unanswered = 0
    for op in ops:
        if op["kind"] == "read":
            if op["status"] == 200:
                a = op["answer"]
                if not (isinstance(a, dict) and isinstance(a.get("index"), int) and isinstance(a.get("items"), list)
                        and isinstance(a.get("last_request_id"), int)):
                    bad("bad_answer", f"a read answer without index/items/last_request_id: {_op(op)}")
                    continue
                reads.append(op)
            elif op["status"] is not None:
                bad("bad_answer", f"a read answered {op['status']}: {_op(op)}")
            continue
        if op["status"] is None:
            if op["kind"] != "probe":
                unanswered += 1
                bad("unanswered", f"a write never got a definitive answer: {_op(op)}")
            continue
        if op["status"] != 200:
            what = "same key and same body answered 422 (exactly-once broken)" \
                if op["status"] == 422 else "unexpected answer"
            bad("idempotency" if op["status"] == 422 else "bad_answer", f"{what}: {_op(op)}")
            continue
        by_key[op["key"]].append(op)
        if op["kind"] == "probe":
            continue
        a = op["answer"]
        if op["kind"] == "draw":
            ok = (isinstance(a, dict) and isinstance(a.get("draws"), list) and isinstance(a.get("index"), int)
                  and len(a["draws"]) == op["body"].get("count", 1)
                  and all(isinstance(d.get("request_id"), int) for d in a["draws"]))
            if ok:
                rids = [d["request_id"] for d in a["draws"]]
                ok = rids == list(range(rids[0], rids[0] + len(rids)))
            if not ok:
                bad("bad_answer", f"a malformed draw answer (count, index or consecutive request_ids): {_op(op)}")
                continue
        elif op["kind"] == "put":
            body = op["body"]
            item_id = op["path"].rsplit("/", 1)[-1]
            if not (isinstance(a, dict) and a.get("item_id") == item_id and a.get("quantity") == body["quantity"]
                    and a.get("probability") == body["probability"]):
                bad("bad_answer", f"an item update answered with another item: {_op(op)}")
                continue
        writes.append(op)

    # Exactly once: every answer for a key is the first one; a key is applied once.
    for key, answers in by_key.items():
        first = answers[0]
        for other in answers[1:]:
            if other["answer"] != first["answer"]:
                bad("idempotency", f"key {key} answered differently: first {_short(first['answer'])}, "
                                   f"then {_op(other)}")
    # A key may be in the log more than once: a retry proposed again is deduplicated when applied
    # (it answers the first result). The first entry carrying it is the one that took effect; an
    # effect of a later one shows up as a gap, a duplicate request_id or a model violation.

    # Each write's index: a draw's from its answer, a put's from the log entry carrying its key.
    # Below log_first_index the log was compacted into a snapshot: keys there are not in the dump.
    compacted_below = final.get("log_first_index") or 1
    unplaceable = []
    placed = []  # (index, order, first request_id, op)
    for op in writes:
        logged = log_keys.get(op["key"])
        if op["kind"] == "draw":
            idx = op["answer"]["index"]
            if have_log and not logged and idx < compacted_below:
                pass
            elif have_log and not logged:
                bad("lost_write", f"an answered draw whose key is not in the final log: {_op(op)}")
            elif have_log and idx < compacted_below and logged[0] >= compacted_below:
                pass  # its entry was compacted; the logged copies are retries, deduplicated when applied
            elif have_log and idx != logged[0]:
                bad("lost_write", f"an answered draw at index {idx}, but its key is first in the log at "
                                  f"{logged[0]} (all: {logged}): {_op(op)}")
            placed.append((idx, 0, op["answer"]["draws"][0]["request_id"], op))
        else:
            if not logged and compacted_below > 1:
                unplaceable.append(op)  # maybe compacted: its index is unknown
                continue
            if not logged:
                bad("lost_write", f"an answered item update whose key is not in the final log: {_op(op)}")
                continue
            placed.append((logged[0], 0, 0, op))
    placed.sort(key=lambda t: (t[0], t[1], t[2]))
    for (i1, _, _, a), (i2, _, _, b) in zip(placed, placed[1:]):
        if i1 == i2:
            bad("model", f"two writes answered at one index {i1}: {_op(a)} and {_op(b)}")

    # --- request_ids: exactly 1..last, once each; none lost -----------------------------------
    pools = final.get("pools") or {}
    final_pool = final.get("linearizable") or (next(iter(pools.values())) if pools else None)
    rids = collections.Counter()
    rid_op = {}
    for _, _, _, op in placed:
        if op["kind"] == "draw":
            for d in op["answer"]["draws"]:
                rids[d["request_id"]] += 1
                rid_op.setdefault(d["request_id"], op)
    for rid, n in sorted(rids.items()):
        if n > 1:
            holders = [o for _, _, _, o in placed if o["kind"] == "draw"
                       and any(d["request_id"] == rid for d in o["answer"]["draws"])]
            bad("duplicate_request_id", f"request_id {rid} answered {n} times: " + "; ".join(_op(o) for o in holders[:3]))
    if final_pool is not None:
        last = final_pool["last_request_id"]
        for rid in sorted(r for r in rids if r > last):
            bad("lost_write", f"request_id {rid} was acknowledged but the final last_request_id is {last}: "
                              f"{_op(rid_op[rid])}")
        if not unanswered:
            missing = [r for r in range(1, last + 1) if r not in rids]
            if missing:
                runs = _runs(missing)
                bad("request_id_gap", f"{len(missing)} request_ids in 1..{last} applied but never answered "
                                      f"(or skipped): {runs}")

    # --- real time ----------------------------------------------------------------------------
    timed = [(op["answer"]["index"] if op["kind"] != "put" else idx, op) for idx, _, _, op in placed]
    timed = [(idx, op) for idx, op in timed] + [(op["answer"]["index"], op) for op in reads]
    by_complete = sorted(timed, key=lambda t: t[1]["complete"])
    completes = [t[1]["complete"] for t in by_complete]
    prefix_max = []  # (max index, op) over by_complete[:k+1]
    best = None
    for idx, op in by_complete:
        if best is None or idx > best[0]:
            best = (idx, op)
        prefix_max.append(best)
    for idx, op in timed:
        k = bisect.bisect_left(completes, op["invoke"])  # ops that completed strictly before op began
        if k == 0:
            continue
        max_idx, before = prefix_max[k - 1]
        is_write = op["kind"] != "read"
        if max_idx > idx or (is_write and max_idx == idx):
            bad("real_time", f"{_op(before)} (index {max_idx}) completed before {_op(op)} (index {idx}) "
                             f"was invoked, yet is ordered {'at' if max_idx == idx else 'after'} it")

    # --- the model, replayed along (index, request_id) ----------------------------------------
    model = {i["item_id"]: (i["quantity"], i["probability"]) for i in final.get("catalog", [])}
    last_rid = 0
    events = [(idx, 0, rid, op) for idx, _, rid, op in placed] + \
             [(op["answer"]["index"], 1, 0, op) for op in reads]
    events.sort(key=lambda t: (t[0], t[1], t[2], t[3]["id"] if t[3].get("id") is not None else 0))
    # Without every write placed, the model cannot be replayed (an item update lost to compaction:
    # scenarios with snapshots run without item updates).
    model_ok = not unanswered and not unplaceable
    if model_ok:
        for idx, _, _, op in events:
            if op["kind"] == "put":
                item_id = op["path"].rsplit("/", 1)[-1]
                model[item_id] = (op["body"]["quantity"], op["body"]["probability"])
            elif op["kind"] == "draw":
                for d in op["answer"]["draws"]:
                    rid = d["request_id"]
                    if rid != last_rid + 1:
                        bad("model", f"request_id {rid} at index {idx} follows request_id {last_rid}: {_op(op)}")
                    last_rid = max(last_rid, rid)
                    drawable = _drawable(model)
                    if d.get("error") == "pool_empty" or d.get("item_id") is None:
                        if d.get("error") != "pool_empty":
                            bad("model", f"request_id {rid}: no item and no pool_empty error: {_op(op)}")
                        elif drawable:
                            bad("model", f"request_id {rid}: pool_empty while {drawable} were drawable "
                                         f"(index {idx}): {_op(op)}")
                        continue
                    item = d["item_id"]
                    q, p = model.get(item, (None, None))
                    if q is None:
                        bad("model", f"request_id {rid}: drew {item}, which is not in the pool (index {idx}): {_op(op)}")
                    elif q == 0:
                        bad("over_drawn", f"request_id {rid}: drew {item} with none left (index {idx}): {_op(op)}")
                    elif p <= 0:
                        bad("model", f"request_id {rid}: drew {item} with probability {p} (index {idx}): {_op(op)}")
                    if q is not None and q > 0:
                        model[item] = (q - 1, p)
            else:  # a read shows the state after every write at index <= its index
                a = op["answer"]
                got = _items(a)
                if got != model or a["last_request_id"] != last_rid:
                    diff = _differences(got, model)
                    bad("model", f"a read at index {idx} shows last_request_id {a['last_request_id']} and "
                                 f"items differing from the model (read, model) {diff}, model last_request_id "
                                 f"{last_rid}: {_op(op)}")

    # --- the final state ----------------------------------------------------------------------
    if final_pool is not None and model_ok:
        got = _items(final_pool)
        if got != model or final_pool["last_request_id"] != last_rid:
            diff = _differences(got, model)
            bad("final_state", f"the final pool (index {final_pool['index']}, last_request_id "
                               f"{final_pool['last_request_id']}) differs from the model after every answered "
                               f"write (last_request_id {last_rid}): (final, model) {diff}")
    if final_pool is not None:
        if placed and max(t[0] for t in placed) > final_pool["index"]:
            bad("lost_write", f"a write answered at index {max(t[0] for t in placed)} but the final index is "
                              f"{final_pool['index']}")
    if pools:
        seen = {nid: (p["index"], p["digest"]) for nid, p in pools.items()}
        if len(set(seen.values())) != 1:
            bad("divergence", f"nodes differ at the end (index, digest): {seen}")
        if final.get("linearizable") and final_pool is not None:
            p0 = next(iter(pools.values()))
            if p0["index"] >= final_pool["index"] and p0["index"] == final_pool["index"] \
                    and p0["digest"] != final_pool["digest"]:
                bad("divergence", "the leader's linearizable read and the nodes' state differ at one index")
    # `rpool-wal replay` (to the end of the log) shows the live final pool; the log may end past the
    # live index only with entries that do not change the pool (a new leader's no-op).
    # `replay --at <live index>` shows exactly the live answer, index included.
    reference = final_pool if final_pool is not None else (next(iter(pools.values())) if pools else None)
    for label, replays, fields in (("replay", final.get("replays"), ("items", "last_request_id", "digest")),
                                   ("replay --at", final.get("replays_at"),
                                    ("items", "last_request_id", "digest", "index"))):
        for nid, rep in sorted((replays or {}).items()):
            if reference is None:
                break
            if not isinstance(rep, dict):
                bad("replay", f"rpool-wal {label} of node {nid}: {rep}")
                continue
            diff = {f: (rep.get(f), reference.get(f)) for f in fields if rep.get(f) != reference.get(f)}
            if isinstance(rep.get("index"), int) and rep["index"] < reference["index"]:
                diff["index"] = (rep["index"], reference["index"])
            if diff:
                bad("replay", f"rpool-wal {label} of node {nid} differs from the live final state (replay, live): "
                              f"{_short(diff, 600)}")
    for nid, (rc, text) in sorted((final.get("verify") or {}).items()):
        if rc != 0:
            bad("verify", f"rpool-wal verify of node {nid}: exit {rc}: {text[-400:]}")
    for nid, rc in sorted((final.get("exit_codes") or {}).items()):
        if rc != 0:
            bad("verify", f"node {nid} exited {rc} after SIGTERM (expected 0)")

    for kind, n in counts.items():
        if n > max_per_kind:
            out.append(Violation(kind, f"... and {n - max_per_kind} more {kind} violations"))
    return out


def check_pools(ops, final, max_per_kind=1000):
    """The checks of check(), pool by pool, on a history over several pools.

    Each op names its pool in `pool` ("default" when absent: the single-pool endpoints). `final`:
        {"per_pool": {pool_id: the single-pool `final` of check() for that pool (its catalog when
                      the workload began, its stale reads per node, linearizable read, replays
                      with --pool, log_keys of the entries on that pool)},
         "pool_lists": {node_id: GET /v1/pools?consistency=stale at the common final index},
         "verify", "exit_codes", "errors", "log_first_index": as for check()}
    Every pool is checked on its own: its request_ids, its model, its reads and real-time order,
    its final state, its replay. That is enough for the whole: linearizability is local (Herlihy
    and Wing), so a history whose every pool is linearizable is linearizable. Violations carry
    "pool P: " before their message. Then the node-wide checks (verify, exit codes, harness
    errors) once, and the pool lists: every node lists exactly the pools checked, each with the
    item count, last_request_id and digest that node shows for it (else divergence).
    """
    out = []
    per_pool = final.get("per_pool") or {}
    by_pool = collections.defaultdict(list)
    for op in ops:
        by_pool[op.get("pool", "default")].append(op)
    for pool_id in sorted(set(by_pool) | set(per_pool)):
        f = per_pool.get(pool_id)
        if f is None:
            out.append(Violation("final_state", f"pool {pool_id}: {len(by_pool[pool_id])} operations on it, "
                                                f"but no final state of it was collected"))
            continue
        f = dict(f, log_first_index=final.get("log_first_index"))
        out += [Violation(v.kind, f"pool {pool_id}: {v.message}") for v in check(by_pool[pool_id], f, max_per_kind)]
    out += check([], {k: final[k] for k in ("verify", "exit_codes", "errors") if k in final}, max_per_kind)
    for nid, listing in sorted((final.get("pool_lists") or {}).items()):
        if not isinstance(listing, dict) or not isinstance(listing.get("pools"), list):
            out.append(Violation("divergence", f"node {nid}: no pool list: {_short(listing)}"))
            continue
        got = {p.get("pool_id"): (p.get("item_count"), p.get("last_request_id"), p.get("digest"))
               for p in listing["pools"]}
        want = {}
        for pool_id, f in per_pool.items():
            p = (f.get("pools") or {}).get(nid) or f.get("linearizable")
            if isinstance(p, dict):
                want[pool_id] = (len(p["items"]), p["last_request_id"], p["digest"])
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        if diff:
            out.append(Violation("divergence", f"node {nid}: GET /v1/pools differs from the pools' own reads "
                                               f"(list, read) as (item_count, last_request_id, digest): "
                                               f"{_short(diff, 600)}"))
    return out


def _runs(numbers, limit=10):
    """[1,2,3,7,9,10] -> '1-3, 7, 9-10'."""
    runs = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        runs.append((start, prev))
        start = prev = n
    runs.append((start, prev))
    text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:limit])
    return text + (f", ... ({len(runs)} runs)" if len(runs) > limit else "")


def summary(violations, first=5):
    """'N violations (kind: n, ...)' and the first few explained."""
    counts = collections.Counter(v.kind for v in violations)
    lines = [", ".join(f"{k}: {n}" for k, n in counts.most_common())]
    lines += [f"  - {v}" for v in violations[:first]]
    return lines
