"""Shared helpers of bench/compare-etcd, bench/growth and bench/restart-time (python3 stdlib only).

rpool clusters: rpool_cluster() returns a Cluster of tests/integration/cluster.py, the launcher the
integration and chaos tests use too (nodes on 127.0.0.1..N, free ports below the ephemeral range,
every node killed by pid when the cluster closes), configured the benchmarks' way.

Other processes (etcd, nginx): everything started goes through Procs.start(), which remembers the
pid; Procs.stop_all() (run from the scripts' exit handlers) sends SIGTERM to exactly those pids,
waits, then SIGKILLs what is left. Nothing is ever stopped by name.

The build: ensure_build() builds the binaries in a meson build dir (build-rel/ by default, the
release tree scripts/test builds) and build_type() says what kind of build it is, which every
script prints beside its results.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from cluster import Cluster  # noqa: E402

# What the benchmarks measure unless told otherwise: the release tree, as users run rpoold.
DEFAULT_BUILD_DIR = "build-rel"
# The options scripts/test gives build-rel/, so that a tree set up here is the one CI builds.
RELEASE_OPTIONS = ["-Dbuildtype=release", "-Dwerror=true", "-Dbenchmarks=disabled"]


def log(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


def ensure_debs(debs):
    """Installs the Debian packages that are missing, the way scripts/deps.sh does."""
    missing = []
    for p in debs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if not missing:
        return
    log(f"installing: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                   check=True, env=env)


def ensure_build(build_dir, targets=("apps/rpoold", "tools/rpool-bench")):
    """meson setup (when the build dir is new) and ninja the binaries the benchmark needs. A new
    build/ is set up as scripts/test and scripts/cluster set it up (debugoptimized); any other new
    dir as a release tree, with the options scripts/test gives build-rel/."""
    bd = os.path.join(REPO, build_dir)
    if not os.path.exists(os.path.join(bd, "build.ninja")):
        dev = os.path.basename(os.path.normpath(bd)) == "build"
        options = ["-Dwerror=true"] if dev else RELEASE_OPTIONS
        log(f"meson setup {build_dir} {' '.join(options)}")
        subprocess.run(["meson", "setup", bd] + options, cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    log(f"ninja -C {build_dir} {' '.join(targets)}")
    subprocess.run(["nice", "ninja", "-C", bd] + list(targets), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    log(f"measuring {build_type(bd)['text']}")
    return bd


def source_commit(build_dir):
    """The commit of the checkout that holds `build_dir` (with "-dirty" for uncommitted changes),
    or "?" outside git."""
    r = subprocess.run(["git", "-C", build_dir, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "?"


def build_type(build_dir):
    """What kind of build `build_dir` holds, from `meson introspect --buildoptions`: a dict of the
    options that change speed, and 'text', one line for the report, e.g.
    "build-rel/: release (optimization 3, debug false, NDEBUG) at 1de132b"."""
    options = {o["name"]: o["value"] for o in json.loads(subprocess.check_output(
        ["meson", "introspect", "--buildoptions", build_dir]))}
    info = {k: options.get(k) for k in ("buildtype", "optimization", "debug", "b_ndebug",
                                         "b_sanitize", "b_lto")}
    ndebug = info["b_ndebug"] == "true" or (info["b_ndebug"] == "if-release"
                                            and info["buildtype"] == "release")
    details = [f"optimization {info['optimization']}", f"debug {str(info['debug']).lower()}"]
    if ndebug:
        details.append("NDEBUG")
    if info["b_sanitize"] not in (None, "none"):
        details.append(f"sanitize {info['b_sanitize']}")
    if info["b_lto"]:
        details.append("LTO")
    name = os.path.relpath(build_dir, REPO) + "/"
    info["dir"] = name
    info["commit"] = source_commit(build_dir)
    info["text"] = f"{name}: {info['buildtype']} ({', '.join(details)}) at {info['commit']}"
    return info


_taken = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host):
    """A port nothing listens on at `host` (nor on 127.0.0.1-3) right now, chosen below the
    ephemeral range, so that no client connection (or its TIME_WAIT) can take it between this check
    and the server's bind."""

    low, high = 20000, min(_ephemeral_low(), 65536)
    if high - low < 1000:
        low, high = 10000, high
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _taken:
            continue
        ok = True
        for h in {host, "127.0.0.1", "127.0.0.2", "127.0.0.3"}:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            _taken.add(port)
            return port
    raise RuntimeError("no free port found")


class Procs:
    """The processes this run started, by pid."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, logfile, cwd=None, env=None):
        f = open(logfile, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             start_new_session=True)
        f.close()
        p.bench_name = name
        self.procs.append(p)
        return p

    def stop(self, p, timeout=20):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{p.bench_name} (pid {p.pid}) ignored SIGTERM for {timeout} s; SIGKILL")
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


# For https:// URLs: trust only this CA (set_ca), as the nodes' clients do.
_tls_context = None


def set_ca(cafile):
    global _tls_context
    import ssl
    _tls_context = ssl.create_default_context(cafile=cafile)


def http_get(url, timeout=1.0, data=None, method=None):
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    context = _tls_context if url.startswith("https://") else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
        return r.status, r.read()


def wait_http_ok(url, deadline_s, procs_alive=(), interval=0.02):
    """Polls `url` until it answers 200; returns the seconds it took, raises on timeout or on the
    death of one of `procs_alive`."""
    t0 = time.monotonic()
    while True:
        try:
            status, _ = http_get(url, timeout=0.5)
            if status == 200:
                return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, OSError, TimeoutError):
            pass
        for p in procs_alive:
            if p.poll() is not None:
                name = getattr(p, "bench_name", f"pid {p.pid}")
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {url}")
        if time.monotonic() - t0 > deadline_s:
            raise RuntimeError(f"{url} not ready after {deadline_s} s")
        time.sleep(interval)


def catalog(items):
    """`items` unlimited items item-000000, item-000001, ..., so the pool never empties."""
    return [{"item_id": f"item-{k:06d}", "quantity": -1, "probability": 1 + k % 7}
            for k in range(items)]


def rpool_cluster(build_dir, parent, nodes=3, catalog_items=100, snapshot_entries=100000,
                  keep=False, tls=False, fsync=True):
    """A Cluster (tests/integration/cluster.py) of `build_dir`'s rpoold, not started yet: nodes
    on 127.0.0.1..N, fsync on (off with fsync=False), 64 MiB segments, `catalog_items` unlimited
    items, its directory under `parent`; with `tls`, TLS on both ports (certificates from
    scripts/certs in its directory). Use it in a `with` block (or close() it): that kills its
    nodes by pid and, unless `keep`, removes its directory."""
    os.makedirs(parent, exist_ok=True)
    return Cluster(os.path.join(build_dir, "apps", "rpoold"), nodes=nodes,
                   catalog=catalog(catalog_items), snapshot_entries=snapshot_entries,
                   segment_bytes=64 << 20, keep_dir=keep, parent_dir=parent, tls=tls,
                   fsync=fsync)


def cpu_ticks(pid):
    """utime + stime of process `pid` (every thread), in clock ticks, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after pid and comm


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def which_or_die(name):
    if shutil.which(name) is None:
        raise RuntimeError(f"{name} not found on PATH")
