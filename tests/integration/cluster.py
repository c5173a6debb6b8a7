"""A harness for black-box tests of real rpoold processes on loopback (docs/api.md).

    with Cluster(rpoold, nodes=3) as cluster:
        cluster.start_all()
        leader = cluster.leader()
        answer = cluster.client(leader).post("/v1/draw", {"count": 2})

Every process a Cluster starts is killed (by pid) when the `with` block ends, even on failure.
Each node's stdout and stderr go to a file in the cluster's temporary directory; `tails()` returns
the last lines of each for a failure report.

The one launcher of rpoold clusters: tests/integration, tests/chaos and bench/ all start theirs here.
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import openapi_check

CERTS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "certs")


def make_certs(directory, nodes):
    """scripts/certs into `directory`: ca.pem, and node-<i>.pem / node-<i>-key.pem for node i on
    127.0.0.i, i = 1..nodes. Running it again on the same directory reuses the CA."""
    subprocess.run([CERTS_SCRIPT, directory, "--nodes", str(nodes)], check=True,
                   stdout=subprocess.DEVNULL)
    return directory


def tls_client_context(cafile):
    """An HTTPS client context that trusts only `cafile` and checks the server's address."""
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = True
    return context


HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]

DEFAULT_CATALOG = [
    {"item_id": "diamond", "quantity": 100, "probability": 10},
    {"item_id": "gold", "quantity": 1000, "probability": 20},
    {"item_id": "mud", "quantity": -1, "probability": 70},
]


class TestFailure(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls `predicate` until it returns a true value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout:.1f}s waiting for {what}"
                              + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


def port_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict with lower-case names
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        text = self.body[:300].decode("utf-8", "replace") if self.body else ""
        return f"<{self.status} {text}>"


class Client:
    """One kept-alive HTTP/1.1 connection to one node. Not thread-safe: one per thread."""

    def __init__(self, host, port, timeout=15.0, tls=None):
        """`tls`: an ssl.SSLContext for HTTPS (tls_client_context); None: plain HTTP."""
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=None):
        """Sends one request; raises OSError / HTTPException on a connection failure (after closing
        the connection, so the next request opens a new one). A GET on a reused connection that the
        server closed meanwhile is retried once on a new connection."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                if self.tls is not None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.tls,
                                                            timeout=timeout or self.timeout)
                else:
                    self.conn = http.client.HTTPConnection(self.host, self.port,
                                                           timeout=timeout or self.timeout)
            elif timeout is not None:
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                res = self.conn.getresponse()
                data = res.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                stale_keepalive = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                                 ConnectionResetError))
                if attempt == 0 and reused and method == "GET" and stale_keepalive:
                    continue
                raise
            headers_out = {k.lower(): v for k, v in res.getheaders()}
            if res.will_close:
                self.close()
            elif timeout is not None:
                self.conn.timeout = self.timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(self.timeout)
            response = Response(res.status, headers_out, data)
            openapi_check.observe(method, path, response)  # against docs/openapi.json, once enabled
            return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


class Node:
    def __init__(self, cluster, node_id, host, raft_port, http_port):
        self.cluster = cluster
        self.id = node_id
        self.host = host
        self.raft_port = raft_port
        self.http_port = http_port
        self.data_dir = os.path.join(cluster.dir, f"node-{node_id}")
        self.log_path = os.path.join(cluster.dir, f"node-{node_id}.log")
        self.proc = None
        self.stopped = False  # SIGSTOPped
        self.command_prefix = []  # e.g. ["fiu-run", "-x", ...]: must exec rpoold (same pid)

    def __repr__(self):
        return f"node {self.id} ({self.host}:{self.http_port})"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self):
        """The base URL of its HTTP API, e.g. http://127.0.0.2:20003 (https:// with TLS)."""
        scheme = "https" if self.cluster.tls_client is not None else "http"
        return f"{scheme}://{self.host}:{self.http_port}"

    def member(self):
        """This node as POST /v1/cluster/members wants it."""
        return {"id": self.id, "raft": f"{self.host}:{self.raft_port}", "http": f"{self.host}:{self.http_port}"}

    def start(self, extra_args=()):
        assert not self.running, f"{self} already running"
        log = open(self.log_path, "ab")
        log.write(f"=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        # A spare (not a founder) joins: `--join`, with a config naming every node.
        spare = self.id > self.cluster.founders
        config = self.cluster.join_config_path if spare else self.cluster.config_path
        self.proc = subprocess.Popen(
            [*self.command_prefix, self.cluster.rpoold, "--config", config, "--id", str(self.id),
             *(["--join"] if spare else []), *extra_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.cluster.dir)
        log.close()
        self.cluster.started_pids.add(self.proc.pid)
        self.stopped = False

    def signal(self, sig):
        if self.running:
            os.kill(self.proc.pid, sig)

    def kill(self):
        """SIGKILL, then reap."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait()
        self.stopped = False
        return rc

    def terminate(self, timeout=10.0):
        """SIGTERM; returns the exit code, or raises TestFailure if it does not exit in time."""
        assert self.proc is not None
        if self.stopped:
            self.cont()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"{self} did not exit within {timeout}s of SIGTERM")

    def stop(self):
        """SIGSTOP: the process freezes (its sockets stay open)."""
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        self.signal(signal.SIGCONT)
        self.stopped = False

    def restart(self):
        self.kill()
        self.start()

    def client(self, timeout=15.0):
        return Client(self.host, self.http_port, timeout=timeout, tls=self.cluster.tls_client)

    def get(self, path, timeout=5.0):
        """One GET on a connection of its own."""
        c = self.client(timeout=timeout)
        try:
            return c.get(path)
        finally:
            c.close()

    def tail(self, lines=25):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(data[-lines:])

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Cluster:
    def __init__(self, rpoold, nodes=3, catalog=None, admin_token=None, heartbeat_ms=50,
                 election_timeout_ms=500, snapshot_entries=None, segment_bytes=None, keep_dir=False,
                 founders=None, parent_dir=None, tls=False, admin_token_file=None, fsync=True):
        """`founders` (default: all): how many of the nodes form the cluster; the others are
        spares that join later (started with `--join` and a config naming every node).
        `parent_dir` (default: $TMPDIR or /tmp): where the cluster's temporary directory goes.
        `tls`: certificates made with scripts/certs in <dir>/certs, TLS on the raft and HTTP
        ports, and clients that speak HTTPS trusting that CA (self.certs_dir, self.tls_client).
        `admin_token_file`: the config's admin_token_file (the caller writes the file).
        `fsync`: the config's wal.fsync (benchmarks turn it off to measure all but the disk)."""
        if nodes > len(HOSTS):
            raise ValueError(f"a Cluster has at most {len(HOSTS)} nodes ({nodes} asked)")
        self.rpoold = rpoold
        self.dir = tempfile.mkdtemp(prefix="rpool-it-", dir=parent_dir)
        self.keep_dir = keep_dir or bool(os.environ.get("RPOOL_IT_KEEP"))
        self.started_pids = set()
        self.catalog = catalog if catalog is not None else DEFAULT_CATALOG
        self.nodes = []
        ports = self._free_ports(nodes)
        for i in range(nodes):
            raft_port, http_port = ports[i]
            self.nodes.append(Node(self, i + 1, HOSTS[i], raft_port, http_port))
        self.founders = founders if founders is not None else nodes
        self.config = {
            "members": [{"id": n.id, "raft": f"{n.host}:{n.raft_port}", "http": f"{n.host}:{n.http_port}"}
                        for n in self.nodes[:self.founders]],
            "data_dir": os.path.join(self.dir, "node-{id}"),
            "catalog": self.catalog,
            "raft": {"heartbeat_ms": heartbeat_ms, "election_timeout_ms": election_timeout_ms},
            "wal": {"fsync": fsync},
        }
        if admin_token is not None:
            self.config["admin_token"] = admin_token
        if admin_token_file is not None:
            self.config["admin_token_file"] = admin_token_file
        self.certs_dir = None
        self.tls_client = None
        if tls:
            self.certs_dir = make_certs(os.path.join(self.dir, "certs"), nodes)
            self.config["tls"] = {"ca": os.path.join(self.certs_dir, "ca.pem"),
                                  "cert": os.path.join(self.certs_dir, "node-{id}.pem"),
                                  "key": os.path.join(self.certs_dir, "node-{id}-key.pem"),
                                  "http": True}
            self.tls_client = tls_client_context(os.path.join(self.certs_dir, "ca.pem"))
        if snapshot_entries is not None:
            self.config["raft"]["snapshot_entries"] = snapshot_entries
        if segment_bytes is not None:
            self.config["wal"]["segment_bytes"] = segment_bytes
        self.config_path = os.path.join(self.dir, "cluster.json")
        self.join_config_path = os.path.join(self.dir, "cluster-join.json")
        self.write_config()

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        joined = dict(self.config, members=[{"id": n.id, "raft": f"{n.host}:{n.raft_port}",
                                             "http": f"{n.host}:{n.http_port}"} for n in self.nodes])
        with open(self.join_config_path, "w") as f:
            json.dump(joined, f, indent=2)

    @staticmethod
    def _free_ports(n):
        for _ in range(200):
            # Below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default):
            # a port that an outgoing connection (or its TIME_WAIT) holds cannot be listened on,
            # and under chaos load clients churn through thousands of those.
            base = random.randrange(10000, 32000, 2)
            ports = [(base + 2 * i + 200, base + 2 * i + 201) for i in range(n)]
            if all(port_free(HOSTS[i], p) for i in range(n) for p in ports[i]):
                return ports
        raise RuntimeError("no free ports found")

    # --- lifetime -------------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Kills every process this cluster started (by pid), then removes the directory."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                try:
                    os.kill(node.proc.pid, signal.SIGCONT)
                    os.kill(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                node.proc.wait()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def tails(self, lines=25):
        return "\n".join(f"--- {n} log tail ({n.log_path}):\n{n.tail(lines)}" for n in self.nodes)

    # --- nodes ----------------------------------------------------------------------------------

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def start_all(self, ready_timeout=20.0):
        founders = self.nodes[:self.founders]
        first = not any(os.path.exists(n.data_dir) for n in self.nodes)
        for n in founders:
            n.start()
        try:
            self.wait_ready(founders, ready_timeout)
        except TestFailure:
            # A port taken between our check and the node's bind: new ports, a clean start, once.
            if not first or not any("in use" in n.log_text() for n in founders):
                raise
            for n in founders:
                n.kill()
                shutil.rmtree(n.data_dir, ignore_errors=True)
            for n, (raft_port, http_port) in zip(self.nodes, self._free_ports(len(self.nodes))):
                n.raft_port, n.http_port = raft_port, http_port
            self.config["members"] = [{"id": n.id, "raft": f"{n.host}:{n.raft_port}",
                                       "http": f"{n.host}:{n.http_port}"} for n in founders]
            self.write_config()
            for n in founders:
                n.start()
            self.wait_ready(founders, ready_timeout)

    def running(self):
        return [n for n in self.nodes if n.running and not n.stopped]

    def wait_ready(self, nodes=None, timeout=20.0):
        """Polls /readyz on each node until 200 (a leader known, applied what it knows committed)."""
        for n in nodes if nodes is not None else self.running():
            c = n.client(timeout=2.0)
            try:
                def ready():
                    if not n.running:
                        raise TestFailure(f"{n} exited with {n.proc.returncode} while waiting for /readyz")
                    return c.get("/readyz").status == 200
                wait_until(ready, timeout, f"{n} /readyz")
            finally:
                c.close()

    def leader(self, timeout=10.0, among=None):
        """The node that all running nodes (or `among`) agree leads, and that says it leads."""
        nodes = among if among is not None else self.running()

        def find():
            seen = {}
            for n in nodes:
                r = n.get("/v1/cluster", timeout=2.0)
                if r.status != 200:
                    return None
                seen[n.id] = r.json
            leader_ids = {v["leader_id"] for v in seen.values()}
            if len(leader_ids) != 1:
                return None
            lid = leader_ids.pop()
            if lid == 0 or lid not in seen or seen[lid]["role"] != "leader":
                return None
            return self.node(lid)

        return wait_until(find, timeout, "one agreed leader")

    def followers(self, leader=None):
        leader = leader or self.leader()
        return [n for n in self.running() if n is not leader]

    def client(self, node, timeout=15.0):
        return node.client(timeout=timeout)

    # --- state ----------------------------------------------------------------------------------

    def pool(self, node, stale=False, timeout=20.0):
        """The pool as `node` answers it; a default read is retried on 503/504 (elections under load)."""
        c = node.client(timeout=10.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                r = c.get("/v1/pool?consistency=stale" if stale else "/v1/pool")
                if r.status == 200 or stale or r.status not in (503, 504) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            c.close()
        check(r.status == 200, f"GET /v1/pool{'?consistency=stale' if stale else ''} on {node}: {r}")
        return r.json

    def converge(self, nodes=None, timeout=20.0):
        """Waits until every node's local pool shows the same index, at or after the leader's
        linearizable read, and returns {node_id: pool}. Fails if the digests differ at that index."""
        nodes = nodes if nodes is not None else self.running()
        leader = self.leader()
        target = self.pool(leader)["index"]

        def same():
            pools = {n.id: self.pool(n, stale=True) for n in nodes}
            indexes = {p["index"] for p in pools.values()}
            if len(indexes) == 1 and indexes.pop() >= target:
                return pools
            return None

        pools = wait_until(same, timeout, f"the pools of {nodes} to reach one index >= {target}", interval=0.1)
        digests = {nid: p["digest"] for nid, p in pools.items()}
        check(len(set(digests.values())) == 1,
              f"digests differ at index {next(iter(pools.values()))['index']}: {digests}")
        return pools


class Context:
    """What a test gets: the command-line arguments, and the clusters it started (closed after it)."""

    def __init__(self, args):
        self.args = args
        self.clusters = []

    def cluster(self, **kw):
        c = Cluster(self.args.rpoold, **kw)
        self.clusters.append(c)
        return c

    def close(self):
        for c in self.clusters:
            c.close()
        self.clusters = []
