#!/usr/bin/env python3
"""Checks the files in contrib/ against the tree: the meson tests 'grafana-dashboard',
'prometheus-rules' and 'systemd-unit'.

    check_contrib.py dashboard  --metrics-source src/node/http_metrics.cpp contrib/grafana/rpool-dashboard.json
    check_contrib.py rules      --metrics-source src/node/http_metrics.cpp RULES.yml RULES.test.yml
    check_contrib.py systemd    --rpoold build/apps/rpoold contrib/rpoold@.service

Every rpool_* metric a dashboard query or an alert rule names must be one rpoold serves (read from
the source of GET /metrics), so a renamed metric cannot leave a silent panel or an alert that never
fires. The rules are checked with `promtool check rules` and their unit tests with `promtool test
rules`; the unit with `systemd-analyze verify`. Exit 77 (meson's SKIP) when that tool is missing:
the checks that need no tool have passed by then.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def served_metrics(source):
    """The metric names rpoold serves: every "rpool_..." literal of the /metrics handler, and for
    each histogram its _bucket, _sum and _count series."""
    with open(source, encoding="utf-8") as f:
        text = f.read()
    names = set(re.findall(r'"(rpool_[a-z0-9_]+)"', text))
    for h in re.findall(r'out\.histogram\(\s*"(rpool_[a-z0-9_]+)"', text):
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    if len(names) < 20:
        fail(f"found only {len(names)} metric names in {source}: the pattern no longer matches the code")
    return names


def check_names(texts, served, where):
    used = set()
    for text in texts:
        used |= set(re.findall(r"\brpool_[a-z0-9_]+", text))
    unknown = sorted(used - served)
    if unknown:
        fail(f"{where} names metrics rpoold does not serve: {', '.join(unknown)}")
    if not used:
        fail(f"{where} names no rpool_ metric at all")
    return used


def dashboard(args):
    with open(args.file, encoding="utf-8") as f:
        try:
            dash = json.load(f)
        except ValueError as e:
            fail(f"{args.file}: not JSON: {e}")
    served = served_metrics(args.metrics_source)
    ids, exprs = set(), []
    for p in dash.get("panels", []):
        if p.get("id") in ids:
            fail(f"{args.file}: panel id {p.get('id')} is used twice")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            fail(f"{args.file}: panel {p.get('title')!r} has no gridPos")
        if p.get("type") == "row":
            continue
        targets = [t.get("expr", "") for t in p.get("targets", [])]
        if not targets or not all(targets):
            fail(f"{args.file}: panel {p.get('title')!r} has no query")
        exprs += targets
    used = check_names(exprs, served, args.file)
    want = ["rpool_leader_id", "rpool_term", "rpool_commit_index", "rpool_applied_index", "rpool_follower_lag_entries",
            "rpool_proposals_total", "rpool_draws_total", "rpool_http_request_duration_seconds_bucket",
            "rpool_wal_fsync_duration_seconds_bucket", "rpool_storage_failures_total", "rpool_snapshots_total"]
    missing = [m for m in want if m not in used]
    if missing:
        fail(f"{args.file}: no panel shows {', '.join(missing)}")
    print(f"grafana-dashboard: {len(exprs)} queries over {len(used)} metrics, all served by rpoold")
    return 0


def rules(args):
    served = served_metrics(args.metrics_source)
    texts = []
    for path in (args.file, args.tests):
        with open(path, encoding="utf-8") as f:
            # Comments may name metrics to come; only the rules and series count.
            texts.append("\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("#")))
    used = check_names(texts, served, args.file)
    print(f"prometheus-rules: the rules and their tests name {len(used)} metrics, all served by rpoold")
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool is not installed (Debian package prometheus): the rules were not checked by it")
        return SKIP
    for cmd in ([promtool, "check", "rules", os.path.abspath(args.file)], [promtool, "test", "rules", os.path.abspath(args.tests)]):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(args.tests)))
        print(r.stdout.strip())
        if r.returncode != 0:
            print(r.stderr.strip())
            fail(f"{' '.join(cmd[1:])} exited {r.returncode}")
    return 0


# What contrib/rpoold@.service must say, whatever else it says: the contract's graceful stop, one
# instance per node id, and the hardening the deployment relies on.
UNIT_REQUIRED = [
    "ExecStart=/usr/local/bin/rpoold --config /etc/rpool/cluster.json --id %i",
    "KillSignal=SIGTERM", "Restart=on-failure", "RestartPreventExitStatus=2", "NoNewPrivileges=yes", "PrivateTmp=yes",
    "ProtectSystem=strict", "ProtectHome=yes", "CapabilityBoundingSet=",
]
UNIT_PREFIXES = ["StateDirectory=", "LimitNOFILE=", "TimeoutStopSec=", "User="]


def systemd(args):
    with open(args.file, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    for want in UNIT_REQUIRED:
        if want not in lines:
            fail(f"{args.file}: no line {want!r}")
    for prefix in UNIT_PREFIXES:
        if not any(line.startswith(prefix) and len(line) > len(prefix) for line in lines):
            fail(f"{args.file}: no {prefix}...")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIP: systemd-analyze is not installed: the unit was checked for its directives only")
        return SKIP
    # verify insists that ExecStart's program exists: point it at the one just built (the only change).
    rpoold = os.path.abspath(args.rpoold)
    with tempfile.TemporaryDirectory(prefix="rpool-unit-") as tmp:
        unit = os.path.join(tmp, os.path.basename(args.file))
        with open(unit, "w", encoding="utf-8") as f:
            f.write("\n".join(line.replace("/usr/local/bin/rpoold", rpoold) for line in lines) + "\n")
        r = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                           env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # verify exits 0 on directives it ignores (a misspelt signal, an unknown key) but says so: any
    # line about our unit is a fault.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "rpoold@" in line]
    if r.returncode != 0 or ours:
        fail(f"systemd-analyze verify {args.file} (exit {r.returncode}):\n" + "\n".join(ours or [r.stderr.strip()]))
    print(f"systemd-unit: {args.file} has the required directives and passes systemd-analyze verify")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dashboard")
    d.add_argument("--metrics-source", required=True)
    d.add_argument("file")
    r = sub.add_parser("rules")
    r.add_argument("--metrics-source", required=True)
    r.add_argument("file")
    r.add_argument("tests")
    s = sub.add_parser("systemd")
    s.add_argument("--rpoold", required=True)
    s.add_argument("file")
    args = ap.parse_args()
    return {"dashboard": dashboard, "rules": rules, "systemd": systemd}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
