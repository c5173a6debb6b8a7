#!/usr/bin/env python3
"""Unit tests of checker.py on small hand-made histories: one valid history, and one history per
violation kind, each of which must be detected (and nothing else reported where that is exact).

    python3 tests/chaos/checker_test.py
"""

import copy
import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402

CATALOG = [
    {"item_id": "diamond", "quantity": 1, "probability": 10},
    {"item_id": "mud", "quantity": -1, "probability": 90},
]


class Shared:
    """What the pools of one cluster share: the clock, the log's indexes, the list of operations."""

    def __init__(self):
        self.ops = []
        self.t = 0.0
        self.index = 1  # the bootstrap entry


class H:
    """A tiny history builder for one pool: a clock that moves forward, and a log that hands out
    indexes. Several H on one Shared build a history over several pools (`pool`: its ops name it
    and use the /v1/pools/{pool} paths; None: the single-pool endpoints, no `pool` field)."""

    def __init__(self, catalog=CATALOG, pool=None, shared=None):
        self.shared = shared or Shared()
        self.ops = self.shared.ops
        self.pool_id = pool
        self.rid = 0
        self.log_keys = {}
        self.items = {i["item_id"]: [i["quantity"], i["probability"]] for i in catalog}
        self.catalog = catalog

    t = property(lambda self: self.shared.t, lambda self, v: setattr(self.shared, "t", v))
    index = property(lambda self: self.shared.index, lambda self, v: setattr(self.shared, "index", v))

    def _path(self, single, rest):
        return single if self.pool_id is None else f"/v1/pools/{self.pool_id}{rest}"

    def _tag(self, op):
        if self.pool_id is not None:
            op["pool"] = self.pool_id
        self.ops.append(op)
        return op

    def _times(self, overlap):
        invoke = self.t
        self.t += 1.0
        return (invoke - 0.5, self.t) if overlap else (invoke, self.t)

    def draw(self, items, node=1, overlap=False, key=None):
        """A sequential (or, with overlap, concurrent with the previous) answered draw of `items`
        (None = pool_empty), applied at the next index."""
        self.index += 1
        draws = []
        for item in items:
            self.rid += 1
            if item is None:
                draws.append({"request_id": self.rid, "item_id": None, "error": "pool_empty"})
            else:
                draws.append({"request_id": self.rid, "item_id": item})
                if self.items[item][0] > 0:
                    self.items[item][0] -= 1
        key = key or f"k{len(self.ops)}"
        self.log_keys[key] = [self.index]
        invoke, complete = self._times(overlap)
        op = {"id": len(self.ops), "kind": "draw", "key": key, "method": "POST", "path": self._path("/v1/draw", "/draw"),
              "body": {"count": len(items)}, "node": node, "invoke": invoke, "complete": complete, "status": 200,
              "answer": {"draws": draws, "index": self.index}}
        return self._tag(op)

    def put(self, item, quantity, probability):
        self.index += 1
        self.items[item] = [quantity, probability]
        key = f"k{len(self.ops)}"
        self.log_keys[key] = [self.index]
        invoke, complete = self._times(False)
        op = {"id": len(self.ops), "kind": "put", "key": key, "method": "PUT",
              "path": self._path(f"/v1/items/{item}", f"/items/{item}"),
              "body": {"quantity": quantity, "probability": probability}, "node": 2, "invoke": invoke,
              "complete": complete, "status": 200,
              "answer": {"item_id": item, "quantity": quantity, "probability": probability}}
        return self._tag(op)

    def pool(self):
        items = [{"item_id": k, "quantity": q, "probability": p} for k, (q, p) in sorted(self.items.items())]
        digest = hashlib.sha256(repr((self.pool_id, items, self.rid)).encode()).hexdigest()
        return {"items": items, "last_request_id": self.rid, "index": self.index, "digest": digest}

    def read(self, node=3):
        invoke, complete = self._times(False)
        op = {"id": len(self.ops), "kind": "read", "key": None, "method": "GET", "path": self._path("/v1/pool", ""),
              "body": None, "node": node, "invoke": invoke, "complete": complete, "status": 200, "answer": self.pool()}
        return self._tag(op)

    def final(self):
        p = self.pool()
        return {"catalog": self.catalog, "pools": {1: dict(p), 2: dict(p), 3: dict(p)}, "linearizable": dict(p),
                "replays": {1: dict(p), 2: dict(p), 3: dict(p)}, "replays_at": {1: dict(p), 2: dict(p), 3: dict(p)},
                "verify": {1: (0, ""), 2: (0, ""), 3: (0, "")},
                "exit_codes": {1: 0, 2: 0, 3: 0}, "log_keys": copy.deepcopy(self.log_keys), "errors": []}


def valid_history():
    h = H()
    h.draw(["mud"])
    h.read()
    h.draw(["diamond", "mud"], node=2)
    h.read()
    h.put("mud", 0, 0)                     # nothing drawable now: diamond is out, mud switched off
    h.draw([None, None])
    h.put("diamond", 2, 10)                # restocked
    h.draw(["diamond"], overlap=True)
    h.read()
    h.draw(["diamond"])
    probe = dict(h.ops[0], id=len(h.ops), kind="probe", invoke=h.t, complete=h.t + 0.5)
    h.ops.append(probe)                    # the same key sent again: the same answer
    return h


class CheckerTest(unittest.TestCase):
    def kinds(self, ops, final):
        return sorted({v.kind for v in checker.check(ops, final)})

    def assertOnly(self, kind, ops, final, also=()):
        """`kind` is reported, and nothing but `kind` and the consequences listed in `also`."""
        violations = checker.check(ops, final)
        self.assertTrue(violations, f"no violation reported, expected {kind}")
        self.assertEqual({v.kind for v in violations} - set(also), {kind}, f"expected {kind}, got {violations}")
        return violations

    def test_a_valid_history_has_no_violation(self):
        h = valid_history()
        self.assertEqual(checker.check(h.ops, h.final()), [])

    def test_an_acknowledged_draw_lost_is_caught(self):
        h = valid_history()
        f = h.final()
        # The cluster forgot the last draw: its request_id is above the final last_request_id.
        for p in (list(f["pools"].values()) + list(f["replays"].values()) + list(f["replays_at"].values())
                  + [f["linearizable"]]):
            p["last_request_id"] -= 1
            p["items"] = [dict(i, quantity=i["quantity"] + 1) if i["item_id"] == "diamond" else i for i in p["items"]]
        del f["log_keys"][h.ops[-2]["key"]]
        v = self.assertOnly("lost_write", h.ops, f, also=("final_state",))
        self.assertIn("final_state", {x.kind for x in v})

    def test_a_duplicate_request_id_is_caught(self):
        h = valid_history()
        h.ops[2]["answer"]["draws"][0]["request_id"] = 1  # a second answer with request_id 1
        h.ops[2]["answer"]["draws"][1]["request_id"] = 2
        self.assertOnly("duplicate_request_id", h.ops, h.final(), also=("model", "request_id_gap"))

    def test_a_gap_in_request_ids_is_caught(self):
        h = valid_history()
        del h.ops[2]  # a draw that was applied but whose answer we "lost"
        self.assertIn("request_id_gap", self.kinds(h.ops, h.final()))

    def test_an_unanswered_write_is_reported(self):
        h = valid_history()
        h.ops[2]["status"], h.ops[2]["answer"] = None, None
        self.assertOnly("unanswered", h.ops, h.final())

    def test_a_draw_answer_with_fewer_draws_than_asked_is_caught(self):
        h = valid_history()
        h.ops[2]["body"] = {"count": 3}  # answered with 2 draws
        self.assertIn("bad_answer", self.kinds(h.ops, h.final()))

    def test_a_read_answered_with_an_error_is_caught(self):
        h = valid_history()
        h.ops[1] = dict(h.ops[1], status=500, answer={"error": "internal", "message": "x"})
        self.assertOnly("bad_answer", h.ops, h.final())

    def test_every_violation_kind_has_a_test(self):
        # Keep this list in step with checker.KINDS: each kind is exercised above.
        tested = {"unanswered", "bad_answer", "idempotency", "lost_write", "duplicate_request_id", "request_id_gap",
                  "over_drawn", "real_time", "model", "final_state", "divergence", "replay", "verify"}
        self.assertEqual(tested, set(checker.KINDS))

    def test_an_over_drawn_item_is_caught(self):
        h = H()
        h.draw(["diamond"])
        h.draw(["diamond"])  # the catalog had one
        self.assertOnly("over_drawn", h.ops, h.final())

    def test_an_over_draw_after_a_restock_to_zero_is_caught(self):
        h = H([{"item_id": "diamond", "quantity": 5, "probability": 10}])
        h.draw(["diamond"])
        h.put("diamond", 1, 10)
        h.draw(["diamond"])
        h.draw(["diamond"])  # only 1 after the update
        self.assertOnly("over_drawn", h.ops, h.final())

    def test_a_read_that_misses_an_earlier_write_is_a_real_time_violation(self):
        h = valid_history()
        stale = h.ops[1]["answer"]                    # the state after draw 1
        r = h.read()
        r["answer"] = copy.deepcopy(stale)             # a later read showing old state
        v = checker.check(h.ops, h.final())
        self.assertIn("real_time", {x.kind for x in v}, v)

    def test_writes_ordered_against_real_time_are_caught(self):
        h = H()
        a = h.draw(["mud"])
        b = h.draw(["mud"])
        # b completed before a was invoked, yet a's index is lower.
        a["invoke"], a["complete"] = 10.0, 11.0
        b["invoke"], b["complete"] = 5.0, 6.0
        self.assertOnly("real_time", h.ops, h.final())

    def test_pool_empty_while_something_was_drawable_is_caught(self):
        h = H()
        h.draw([None])
        self.assertOnly("model", h.ops, h.final())

    def test_a_draw_of_an_undrawable_item_is_caught(self):
        h = H()
        h.put("mud", -1, 0)
        h.draw(["mud"])
        self.assertOnly("model", h.ops, h.final())

    def test_a_read_showing_state_other_than_the_model_is_caught(self):
        h = valid_history()
        r = h.read()
        r["answer"]["items"][1]["quantity"] = 99  # "mud" quantity made up
        self.assertIn("model", self.kinds(h.ops, h.final()))

    def test_two_answers_for_one_key_that_differ_are_caught(self):
        h = valid_history()
        h.ops[-1] = copy.deepcopy(h.ops[-1])
        h.ops[-1]["answer"]["draws"][0]["request_id"] = 99
        self.assertOnly("idempotency", h.ops, h.final())

    def test_a_key_logged_twice_is_fine_when_the_retry_was_deduplicated(self):
        h = valid_history()
        f = h.final()
        f["log_keys"][h.ops[0]["key"]] = [2, 40]  # the probe proposed again, answered the first result
        self.assertEqual(checker.check(h.ops, f), [])

    def test_a_retry_logged_after_its_compacted_first_entry_is_fine(self):
        # The draw took effect at index 2, which a snapshot compacted away; a retry of its key was
        # proposed again at 40 and deduplicated. Seen in CI (chaos "snapshots", seed 1444299104).
        h = valid_history()
        f = h.final()
        f["log_first_index"] = 3
        f["log_keys"][h.ops[0]["key"]] = [40]
        self.assertEqual(checker.check(h.ops, f), [])

    def test_a_draw_answered_above_the_compaction_point_at_another_index_is_caught(self):
        h = valid_history()
        f = h.final()
        f["log_first_index"] = 2
        f["log_keys"][h.ops[2]["key"]] = [40]  # answered at 4, above the compaction point
        self.assertIn("lost_write", self.kinds(h.ops, f))

    def test_a_draw_answered_at_another_index_than_its_key_in_the_log_is_caught(self):
        h = valid_history()
        f = h.final()
        f["log_keys"][h.ops[0]["key"]] = [3]
        self.assertIn("lost_write", self.kinds(h.ops, f))

    def test_a_422_for_a_retry_with_the_same_body_is_caught(self):
        h = valid_history()
        h.ops[-1] = dict(h.ops[-1], status=422, answer={"error": "idempotency_key_reused", "message": "x"})
        self.assertOnly("idempotency", h.ops, h.final())

    def test_nodes_that_end_at_different_digests_are_caught(self):
        h = valid_history()
        f = h.final()
        f["pools"][3] = dict(f["pools"][3], digest="0" * 64)
        self.assertOnly("divergence", h.ops, f)

    def test_a_replay_that_differs_from_the_live_state_is_caught(self):
        h = valid_history()
        f = h.final()
        f["replays"][2] = dict(f["replays"][2], last_request_id=f["replays"][2]["last_request_id"] - 1)
        self.assertOnly("replay", h.ops, f)

    def test_a_replay_at_the_live_index_that_differs_is_caught(self):
        h = valid_history()
        f = h.final()
        f["replays_at"][3] = dict(f["replays_at"][3], index=f["replays_at"][3]["index"] + 1)
        self.assertOnly("replay", h.ops, f)

    def test_a_log_that_ends_past_the_live_state_with_a_no_op_is_fine(self):
        h = valid_history()
        f = h.final()
        f["replays"][1] = dict(f["replays"][1], index=f["replays"][1]["index"] + 1)
        self.assertEqual(checker.check(h.ops, f), [])

    def test_a_failed_verify_is_caught(self):
        h = valid_history()
        f = h.final()
        f["verify"][1] = (1, "segment 0000001.wal offset 4096: crc mismatch")
        self.assertOnly("verify", h.ops, f)

    def test_the_final_state_differing_from_the_model_is_caught(self):
        h = valid_history()
        f = h.final()
        for p in (list(f["pools"].values()) + list(f["replays"].values()) + list(f["replays_at"].values())
                  + [f["linearizable"]]):
            p["items"] = [dict(i, probability=i["probability"] + 1) for i in p["items"]]
        self.assertOnly("final_state", h.ops, f)

    def test_a_lost_item_update_is_caught(self):
        h = valid_history()
        f = h.final()
        del f["log_keys"][h.ops[4]["key"]]  # the put "mud" 0 0 is not in the log
        self.assertIn("lost_write", self.kinds(h.ops, f))

    def test_dropping_one_answer_from_a_real_history_is_caught(self):
        # "Break something on purpose": each answered draw of the valid history, dropped in turn.
        h = valid_history()
        for i, op in enumerate(h.ops):
            if op["kind"] != "draw":
                continue
            ops = h.ops[:i] + h.ops[i + 1:]
            self.assertTrue(checker.check(ops, h.final()), f"dropping op {i} went unnoticed")


# --- several pools -------------------------------------------------------------------------------

EVENT_CATALOG = [
    {"item_id": "skin", "quantity": 2, "probability": 1},
    {"item_id": "mud", "quantity": -1, "probability": 1},
]


def multi_history():
    """Three pools on one log: "default" through the single-pool endpoints, "event" and "daily"
    through /v1/pools/{pool}; their operations interleave, each pool numbers its draws from 1, and
    one Idempotency-Key is used in two pools (two independent draws)."""
    shared = Shared()
    hs = {"default": H(shared=shared), "event": H(EVENT_CATALOG, pool="event", shared=shared),
          "daily": H(CATALOG, pool="daily", shared=shared)}
    d, e, y = hs["default"], hs["event"], hs["daily"]
    d.draw(["mud"], key="same-key")
    e.draw(["skin"], key="same-key")
    y.draw(["diamond", "mud"])
    e.read()
    d.draw(["diamond"], node=2)
    e.draw(["skin", "mud"], overlap=True)
    y.read()
    e.put("mud", 0, 0)                     # event: nothing drawable now
    e.draw([None])
    d.read()
    y.put("diamond", 1, 10)                # daily restocked
    y.draw(["diamond"])
    e.read()
    probe = dict(hs["event"].ops[1], id=len(shared.ops), kind="probe", invoke=shared.t, complete=shared.t + 0.5)
    shared.ops.append(probe)               # event's key sent again to event: the same answer
    return hs


def multi_final(hs):
    per_pool = {}
    for pool_id, h in hs.items():
        f = h.final()
        for shared_key in ("verify", "exit_codes", "errors"):
            del f[shared_key]
        per_pool[pool_id] = f
    listing = [{"pool_id": pool_id, "item_count": len(h.pool()["items"]), "last_request_id": h.rid,
                "digest": h.pool()["digest"]} for pool_id, h in sorted(hs.items())]
    index = next(iter(hs.values())).index
    return {"per_pool": per_pool,
            "pool_lists": {nid: {"pools": copy.deepcopy(listing), "index": index} for nid in (1, 2, 3)},
            "verify": {1: (0, ""), 2: (0, ""), 3: (0, "")}, "exit_codes": {1: 0, 2: 0, 3: 0}, "errors": []}


def ops_of(hs):
    return next(iter(hs.values())).ops


class PoolsCheckerTest(unittest.TestCase):
    def only(self, kind, ops, final, pool, also=()):
        """`kind` is reported for `pool` (named in the message), and nothing but `kind` and `also`."""
        violations = checker.check_pools(ops, final)
        self.assertTrue(violations, f"no violation reported, expected {kind}")
        self.assertEqual({v.kind for v in violations} - set(also), {kind}, f"expected {kind}, got {violations}")
        self.assertTrue(all(v.message.startswith(f"pool {pool}: ") for v in violations if v.kind == kind),
                        f"expected every {kind} to name pool {pool}: {violations}")
        return violations

    def test_a_valid_history_over_several_pools_has_no_violation(self):
        hs = multi_history()
        self.assertEqual(checker.check_pools(ops_of(hs), multi_final(hs)), [])

    def test_each_pool_numbers_its_draws_from_one(self):
        # The valid history has request_id 1 in every pool: one sequence over all pools would not.
        hs = multi_history()
        firsts = {op.get("pool", "default"): op["answer"]["draws"][0]["request_id"]
                  for op in reversed(ops_of(hs)) if op["kind"] == "draw"}
        self.assertEqual(firsts, {"default": 1, "event": 1, "daily": 1})

    def test_one_key_in_two_pools_is_two_draws(self):
        # The same key answered differently in two pools is fine per pool; as one pool it is not.
        hs = multi_history()
        self.assertEqual(checker.check_pools(ops_of(hs), multi_final(hs)), [])
        flat = [dict(op, path="/v1/draw") for op in ops_of(hs) if op.get("key") == "same-key"]
        self.assertIn("idempotency", {v.kind for v in checker.check(flat, {})})

    def test_a_draw_numbered_in_another_pools_sequence_is_caught(self):
        hs = multi_history()
        ops = ops_of(hs)
        e = [op for op in ops if op.get("pool") == "event" and op["kind"] == "draw"][1]
        for k, d in enumerate(e["answer"]["draws"]):
            d["request_id"] = 3 + k  # as if event continued default's and daily's numbering
        v = checker.check_pools(ops, multi_final(hs))
        self.assertTrue(v)
        self.assertTrue(all(x.message.startswith("pool event: ") for x in v), v)

    def test_a_lost_draw_in_one_pool_is_caught_and_named(self):
        hs = multi_history()
        f = multi_final(hs)
        ev = f["per_pool"]["event"]
        for p in list(ev["pools"].values()) + list(ev["replays"].values()) + list(ev["replays_at"].values()) \
                + [ev["linearizable"]]:
            p["last_request_id"] -= 1  # event forgot its last draw (a pool_empty)
        for listing in f["pool_lists"].values():
            for p in listing["pools"]:
                if p["pool_id"] == "event":
                    p["last_request_id"] -= 1
        self.only("lost_write", ops_of(hs), f, "event", also=("final_state",))

    def test_an_over_draw_in_one_pool_is_caught(self):
        shared = Shared()
        hs = {"default": H(shared=shared), "event": H(EVENT_CATALOG, pool="event", shared=shared)}
        hs["default"].draw(["diamond"])
        hs["event"].draw(["skin", "skin"])
        hs["event"].draw(["skin"])  # event had two; default's diamond is no excuse
        self.only("over_drawn", ops_of(hs), multi_final(hs), "event")

    def test_a_read_showing_another_pools_state_is_caught(self):
        hs = multi_history()
        ops = ops_of(hs)
        read = [op for op in ops if op.get("pool") == "daily" and op["kind"] == "read"][0]
        read["answer"] = dict(read["answer"], items=copy.deepcopy(hs["event"].pool()["items"]))
        self.only("model", ops, multi_final(hs), "daily")

    def test_a_read_missing_an_earlier_write_of_its_pool_is_caught(self):
        hs = multi_history()
        ops = ops_of(hs)
        read = [op for op in ops if op.get("pool") == "event" and op["kind"] == "read"][-1]
        # It shows event before its last draw, yet began after that draw was answered.
        read["answer"] = dict(read["answer"], index=read["answer"]["index"] - 3, last_request_id=3)
        self.assertIn("real_time", {v.kind for v in checker.check_pools(ops, multi_final(hs))})

    def test_a_node_listing_another_digest_for_a_pool_is_caught(self):
        hs = multi_history()
        f = multi_final(hs)
        f["pool_lists"][2]["pools"][0]["digest"] = "0" * 64
        v = checker.check_pools(ops_of(hs), f)
        self.assertEqual([x.kind for x in v], ["divergence"])
        self.assertTrue(v[0].message.startswith("node 2: GET /v1/pools differs") and "'daily'" in v[0].message, v)

    def test_a_node_listing_a_pool_too_few_is_caught(self):
        hs = multi_history()
        f = multi_final(hs)
        del f["pool_lists"][3]["pools"][1]
        self.assertEqual({v.kind for v in checker.check_pools(ops_of(hs), f)}, {"divergence"})

    def test_operations_on_a_pool_without_a_final_state_are_caught(self):
        hs = multi_history()
        f = multi_final(hs)
        del f["per_pool"]["daily"]
        for listing in f["pool_lists"].values():
            listing["pools"] = [p for p in listing["pools"] if p["pool_id"] != "daily"]
        self.only("final_state", ops_of(hs), f, "daily")

    def test_a_replay_of_one_pool_that_differs_is_caught(self):
        hs = multi_history()
        f = multi_final(hs)
        f["per_pool"]["daily"]["replays"][3]["digest"] = "0" * 64
        self.only("replay", ops_of(hs), f, "daily")

    def test_a_failed_verify_is_reported_once(self):
        hs = multi_history()
        f = multi_final(hs)
        f["verify"][1] = (1, "crc mismatch")
        v = checker.check_pools(ops_of(hs), f)
        self.assertEqual([x.kind for x in v], ["verify"])

    def test_dropping_one_answer_from_a_multi_pool_history_is_caught(self):
        hs = multi_history()
        ops = ops_of(hs)
        for i, op in enumerate(ops):
            if op["kind"] != "draw":
                continue
            self.assertTrue(checker.check_pools(ops[:i] + ops[i + 1:], multi_final(hs)), f"dropping op {i} went unnoticed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
