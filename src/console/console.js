// The rpool console: polls the node that served it once a second and shows the cluster, the
// pool, live charts and the fairness panel; admin actions once the token is typed in. Every
// request goes to this page's own origin: a follower forwards to the leader what must go there.
"use strict";

(() => {
  const POLL_MS = 1000;
  const REQUEST_TIMEOUT_MS = 2500;
  const HISTORY_MS = 5 * 60 * 1000;   // the charts' span
  const WINDOW_MS = 60 * 1000;        // the fairness panel's recent window
  const ALPHA = 0.001;                // a p-value below this is flagged
  const POOLS_EVERY = 5;              // polls between two reads of GET /v1/pools

  let adminToken = null;              // in this page's memory only: never stored
  let poolId = "default";
  let poolsAvailable = null;          // null: not asked yet; false: the node has no /v1/pools
  let polls = 0;
  // Samples of the leader's status: {t, node, draws, latency counts, fairness by pool}.
  const history = [];
  const rateSeries = [];
  const latencySeries = {p50: [], p90: [], p99: []};

  const $ = id => document.getElementById(id);
  const fmt = n => (n === null || n === undefined) ? "–" : String(n);

  function text(id, value) { $(id).textContent = fmt(value); }

  function row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
    for (const c of cells) {
      const td = document.createElement("td");
      if (typeof c === "object" && c !== null) {
        td.textContent = fmt(c.text);
        if (c.cls) td.className = c.cls;
        for (const [k, v] of Object.entries(c.data || {})) td.dataset[k] = v;
      } else {
        td.textContent = fmt(c);
      }
      tr.appendChild(td);
    }
    return tr;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // GET or another method on this origin; resolves to {ok, status, body} and never throws.
  async function call(method, path, body) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (adminToken !== null && method !== "GET") headers["Authorization"] = "Bearer " + adminToken;
    try {
      const res = await fetch(path, {method, headers, signal: ctrl.signal, cache: "no-store",
                                     body: body === undefined ? undefined : JSON.stringify(body)});
      let parsed = null;
      try { parsed = await res.json(); } catch (e) { parsed = null; }
      return {ok: res.ok, status: res.status, body: parsed};
    } catch (e) {
      return {ok: false, status: 0, body: {error: "unreachable", message: String(e.message || e)}};
    } finally {
      clearTimeout(timer);
    }
  }

  function poolPath(suffix) {
    return poolId === "default" ? (suffix ? `/v1/items/${encodeURIComponent(suffix)}` : "/v1/pool")
      : `/v1/pools/${encodeURIComponent(poolId)}` + (suffix ? `/items/${encodeURIComponent(suffix)}` : "");
  }

  // --- the cluster ----------------------------------------------------------------------------

  function showCluster(local, leader, cluster) {
    $("served-by").textContent = local
      ? `served by node ${local.node_id} (${local.role}, term ${local.term})` : "node unreachable";
    const leaderId = (leader && leader.leader_id) || (local && local.leader_id) || 0;
    const health = $("health");
    health.textContent = leaderId ? "leader known" : "no leader";
    health.className = "badge " + (leaderId ? "ok" : "bad");
    text("leader-id", leaderId ? `node ${leaderId}` : "none");
    const view = leader || local;
    text("term", view && view.term);
    text("commit-index", view && view.commit_index);
    text("applied-index", local && local.applied_index);
    if (!cluster) return;
    const connected = new Map(((local && local.peers) || []).map(p => [p.id, p.connected]));
    const lag = new Map(((leader && leader.peers) || []).map(p => [p.id, p.lag_entries]));
    fill($("members").tBodies[0], cluster.members.map(m => {
      const isLeader = m.id === leaderId;
      const self = local && m.id === local.node_id;
      const conn = self ? "this node" : connected.has(m.id)
        ? (connected.get(m.id) === null ? "–" : (connected.get(m.id) ? "yes" : "no")) : "–";
      return row([m.id, m.raft, m.http, m.voter ? "yes" : "learner",
                  isLeader ? "leader" : (leaderId ? "follower" : "?"),
                  {text: conn, cls: conn === "no" ? "bad" : ""},
                  {text: isLeader ? 0 : (lag.has(m.id) ? lag.get(m.id) : null), cls: "num"}],
                 {"data-id": m.id, class: isLeader ? "leader" : ""});
    }));
    const select = $("transfer-to");
    const wanted = cluster.members.filter(m => m.voter && m.id !== leaderId).map(m => String(m.id));
    if ([...select.options].map(o => o.value).join() !== wanted.join()) {
      select.replaceChildren(...wanted.map(id => new Option(`node ${id}`, id)));
    }
    const changes = (leader && leader.leader_changes) || (local && local.leader_changes) || [];
    $("leader-changes").replaceChildren(...changes.slice().reverse().map(c => {
      const li = document.createElement("li");
      li.textContent = `${new Date(c.wall_ms).toLocaleTimeString()}: ` +
        (c.leader_id ? `node ${c.leader_id} leads` : "no leader") + ` (term ${c.term})`;
      return li;
    }));
  }

  // --- the pool -------------------------------------------------------------------------------

  function showPool(pool) {
    if (!pool) return;
    text("last-request-id", pool.last_request_id);
    text("pool-index", pool.index);
    text("digest", pool.digest);
    const drawable = pool.items.filter(i => i.quantity !== 0);
    const total = drawable.reduce((s, i) => s + i.probability, 0);
    fill($("items").tBodies[0], pool.items.map(i => {
      const share = i.quantity === 0 || total === 0 ? 0 : i.probability / total;
      return row([i.item_id, {text: i.quantity === -1 ? "unlimited" : i.quantity, cls: "num"},
                  {text: i.probability, cls: "num"}, {text: (100 * share).toFixed(2) + " %", cls: "num"}],
                 {"data-item": i.item_id});
    }));
  }

  function showPools(list) {
    const select = $("pool-select");
    if (!list) return;
    $("pools-list").hidden = false;
    select.hidden = false;
    const ids = list.pools.map(p => p.pool_id);
    if ([...select.options].map(o => o.value).join() !== ids.join()) {
      select.replaceChildren(...ids.map(id => new Option(id, id)));
      select.value = ids.includes(poolId) ? poolId : "default";
    }
    fill($("pools").tBodies[0], list.pools.map(p =>
      row([p.pool_id, {text: p.item_count, cls: "num"}, {text: p.last_request_id, cls: "num"},
           {text: p.digest.slice(0, 16) + "…", cls: "mono"}], {"data-pool": p.pool_id})));
  }

  // --- charts ---------------------------------------------------------------------------------

  // The q-quantile of a histogram of non-cumulative counts (last: above every bound), linear
  // within a bucket, as Prometheus' histogram_quantile does.
  function quantile(q, bounds, counts) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0) return NaN;
    let rank = q * total, below = 0;
    for (let i = 0; i < counts.length; i++) {
      if (below + counts[i] >= rank && counts[i] > 0) {
        if (i === bounds.length) return bounds[bounds.length - 1];
        const lo = i === 0 ? 0 : bounds[i - 1];
        return lo + (bounds[i] - lo) * (rank - below) / counts[i];
      }
      below += counts[i];
    }
    return bounds[bounds.length - 1];
  }

  function record(leader) {
    const now = Date.now();
    const sample = {t: now, node: leader.node_id, draws: leader.draws.total,
                    latency: leader.draw_latency_seconds, fairness: leader.fairness};
    const prev = history[history.length - 1];
    history.push(sample);
    while (history.length > 0 && now - history[0].t > HISTORY_MS) history.shift();
    // A new leader counts from its own start: deltas across the change mean nothing.
    if (prev && prev.node === sample.node && sample.t > prev.t) {
      const dt = (sample.t - prev.t) / 1000;
      rateSeries.push([now, Math.max(0, sample.draws - prev.draws) / dt]);
      // Latency over the last 10 s of samples.
      const base = history.find(h => h.node === sample.node && now - h.t <= 10000) || prev;
      const delta = sample.latency.counts.map((c, i) => c - (base.latency.counts[i] || 0));
      for (const [name, q] of [["p50", 0.5], ["p90", 0.9], ["p99", 0.99]]) {
        latencySeries[name].push([now, 1000 * quantile(q, sample.latency.bounds, delta)]);
      }
    }
    for (const s of [rateSeries, ...Object.values(latencySeries)]) {
      while (s.length > 0 && now - s[0][0] > HISTORY_MS) s.shift();
    }
    text("draws-total", leader.draws.total);
    text("draws-empty", leader.draws.pool_empty);
    Charts.draw($("chart-rate"), [{name: "draws/s", points: rateSeries}], now, HISTORY_MS);
    Charts.draw($("chart-latency"), Object.entries(latencySeries).map(([name, points]) => ({name, points})),
                now, HISTORY_MS);
  }

  // --- fairness -------------------------------------------------------------------------------

  function showVerdict(prefix, result) {
    text(prefix + "-chi2", Number.isFinite(result.chi2) ? result.chi2.toFixed(3) : null);
    text(prefix + "-dof", result.dof > 0 ? result.dof : null);
    const p = $(prefix + "-p");
    p.textContent = Number.isNaN(result.p) ? "–" : result.p.toPrecision(6);
    p.dataset.value = Number.isNaN(result.p) ? "" : String(result.p);
    const v = Fairness.verdict(result, ALPHA);
    const flag = $(prefix + "-flag");
    flag.textContent = v.label;
    flag.className = "badge " + v.cls;
  }

  function showFairness(leader) {
    const pool = (leader.fairness || []).find(p => p.pool_id === poolId);
    $("fair-pool").textContent = `pool ${poolId}` + (pool && !pool.tracked ? " (too many items to track)" : "");
    if (!pool) return;
    const now = Date.now();
    // The oldest sample of this leader within the window is the window's start.
    const start = history.find(h => h.node === leader.node_id && now - h.t <= WINDOW_MS);
    const before = new Map();
    if (start) {
      const p0 = (start.fairness || []).find(p => p.pool_id === poolId);
      for (const i of (p0 ? p0.items : [])) before.set(i.item_id, i);
    }
    text("fair-window-s", Math.round((start ? now - start.t : 0) / 1000));
    const totalObserved = pool.items.reduce((s, i) => s + i.observed, 0);
    const rowsTotal = [], rowsWindow = [];
    const rows = pool.items.map(i => {
      const b = before.get(i.item_id) || {observed: 0, expected: 0};
      const wo = i.observed - b.observed, we = i.expected - b.expected;
      rowsTotal.push({observed: i.observed, expected: i.expected});
      rowsWindow.push({observed: wo, expected: we});
      return row([i.item_id,
                  {text: i.observed, cls: "num", data: {observed: i.observed}},
                  {text: i.expected.toFixed(1), cls: "num", data: {expected: i.expected}},
                  {text: totalObserved ? (100 * i.observed / totalObserved).toFixed(2) + " %" : "–", cls: "num"},
                  {text: (100 * i.expected_share).toFixed(2) + " %", cls: "num"},
                  {text: wo, cls: "num"}, {text: we.toFixed(1), cls: "num"}],
                 {"data-item": i.item_id});
    });
    fill($("fairness").tBodies[0], rows);
    showVerdict("fair-total", Fairness.test(rowsTotal));
    showVerdict("fair-window", Fairness.test(rowsWindow));
  }

  // --- the poll loop --------------------------------------------------------------------------

  async function poll() {
    polls++;
    const askPools = poolsAvailable !== false && (poolsAvailable === null || polls % POOLS_EVERY === 0);
    const [local, leader, cluster, pool, pools] = await Promise.all([
      call("GET", "/v1/status"),
      call("GET", "/v1/status?from=leader"),
      call("GET", "/v1/cluster"),
      call("GET", poolPath()),
      askPools ? call("GET", "/v1/pools") : Promise.resolve(null),
    ]);
    if (pools) {
      // A node built before pools existed answers 404: the console shows the default pool only.
      if (pools.status === 404) poolsAvailable = false;
      else if (pools.ok) { poolsAvailable = true; showPools(pools.body); }
    }
    showCluster(local.ok ? local.body : null, leader.ok ? leader.body : null,
                cluster.ok ? cluster.body : null);
    if (pool.ok) {
      showPool(pool.body);
    } else {
      // No leader for a linearizable read: show this node's own state meanwhile.
      const stale = await call("GET", poolPath() + "?consistency=stale");
      if (stale.ok) showPool(stale.body);
    }
    if (leader.ok) {
      record(leader.body);
      showFairness(leader.body);
    }
  }

  async function loop() {
    try {
      await poll();
    } catch (e) {
      // A bug in the page: shown where it can be read, and the loop goes on.
      log(`console error: ${e.message || e}`, true);
    }
    setTimeout(loop, POLL_MS);
  }

  // --- admin ----------------------------------------------------------------------------------

  function log(message, bad) {
    const li = document.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
    if (bad) li.className = "bad";
    $("admin-log").prepend(li);
    while ($("admin-log").children.length > 50) $("admin-log").lastChild.remove();
  }

  async function admin(what, method, path, body) {
    const res = await call(method, path, body);
    if (res.ok) log(`${what}: done ${JSON.stringify(res.body)}`);
    else log(`${what}: ${res.status} ${res.body ? res.body.error + ": " + res.body.message : ""}`, true);
    return res;
  }

  function setToken(token) {
    adminToken = token;
    $("admin-actions").disabled = token === null;
    $("token-state").textContent = token === null
      ? "locked: the token stays in this page's memory only" : "unlocked (token in memory only)";
    $("token").value = "";
  }

  function wire() {
    $("token-form").addEventListener("submit", e => {
      e.preventDefault();
      const t = $("token").value;
      setToken(t === "" ? null : t);
    });
    $("token-clear").addEventListener("click", () => setToken(null));
    $("upsert-form").addEventListener("submit", e => {
      e.preventDefault();
      const id = $("upsert-id").value.trim();
      admin(`upsert ${id}`, "PUT", poolPath(id),
            {quantity: Number($("upsert-quantity").value), probability: Number($("upsert-probability").value)});
    });
    $("delete-form").addEventListener("submit", e => {
      e.preventDefault();
      const id = $("delete-id").value.trim();
      admin(`delete ${id}`, "DELETE", poolPath(id));
    });
    $("snapshot-form").addEventListener("submit", e => {
      e.preventDefault();
      admin("snapshot", "POST", "/v1/snapshot");
    });
    $("transfer-form").addEventListener("submit", e => {
      e.preventDefault();
      const to = Number($("transfer-to").value);
      if (to) admin(`transfer to node ${to}`, "POST", "/v1/cluster/leader", {to});
    });
    $("pool-select").addEventListener("change", e => {
      poolId = e.target.value;
      history.length = 0;
    });
  }

  wire();
  loop();
})();
