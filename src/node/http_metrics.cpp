// HttpApi's /metrics: Prometheus text format 0.0.4, every name prefixed rpool_.
#include <algorithm>

#include <fmt/format.h>

#include "node/http_api.h"

namespace rpool::node {
namespace {

const char* route_name(api::Route r) {
  switch (r) {
    case api::Route::draw: return "draw";
    case api::Route::pool: return "pool";
    case api::Route::item: return "item";
    case api::Route::cluster: return "cluster";
    case api::Route::members: return "members";
    case api::Route::member: return "member";
    case api::Route::leader: return "leader";
    case api::Route::snapshot: return "snapshot";
    case api::Route::healthz: return "healthz";
    case api::Route::readyz: return "readyz";
    case api::Route::metrics: return "metrics";
    case api::Route::openapi: return "openapi";
    case api::Route::pools: return "pools";
    case api::Route::named_pool: return "named_pool";
    case api::Route::pool_draw: return "pool_draw";
    case api::Route::pool_item: return "pool_item";
    case api::Route::console: return "console";
    case api::Route::status: return "status";
    case api::Route::not_found: return "not_found";
  }
  return "not_found";
}

double as_double(std::uint64_t v) { return static_cast<double>(v); }

}  // namespace

void HttpApi::count_answer(api::Route route, unsigned status, double seconds) {
  ++http_answers_[{route, status}];
  auto it = http_seconds_.find(route);
  if (it == http_seconds_.end()) {
    it = http_seconds_.emplace(route, metrics::Histogram(metrics::latency_buckets())).first;
  }
  it->second.observe(seconds);
}

void HttpApi::handle_metrics(HttpRequest&& request, Respond respond) {
  metrics::Exposition out;
  const raft::Core& core = replica_.core();
  const ReplicaCounters& counters = replica_.counters();
  const raft::Log& log = core.log();
  const bool leading = core.role() == raft::Role::leader;

  // Consensus.
  out.gauge("rpool_term", "Current Raft term.", as_double(core.current_term().value()));
  for (raft::Role r : {raft::Role::follower, raft::Role::pre_candidate, raft::Role::candidate,
                       raft::Role::leader}) {
    out.gauge("rpool_role", "1 for this node's current Raft role, 0 for the others.",
              core.role() == r ? 1 : 0, {{"role", role_name(r)}});
  }
  out.gauge("rpool_is_leader", "1 if this node leads.", leading ? 1 : 0);
  out.gauge("rpool_leader_id", "Id of the known leader, 0 if none.",
            as_double(core.leader().value()));
  out.gauge("rpool_commit_index", "Highest log index known committed.",
            as_double(log.commit_index().value()));
  out.gauge("rpool_applied_index", "Highest log index applied to the pool.",
            as_double(replica_.applied().value()));
  out.gauge("rpool_last_index", "Last index of this node's log.",
            as_double(log.last_index().value()));
  out.gauge("rpool_snapshot_index", "Index of the newest durable snapshot.",
            as_double(replica_.snapshot_index().value()));
  out.gauge("rpool_members", "Members in the current configuration, by kind.",
            as_double(core.membership().voters.size()), {{"kind", "voter"}});
  out.gauge("rpool_members", "Members in the current configuration, by kind.",
            as_double(core.membership().learners.size()), {{"kind", "learner"}});
  out.counter("rpool_leader_changes_total", "Leader changes seen by this node.",
              as_double(counters.leader_changes));

  // Writes and the pool.
  out.counter("rpool_proposals_total", "Writes proposed by this node as leader.",
              as_double(counters.proposals));
  out.counter("rpool_proposals_failed_total",
              "Writes that failed after being proposed (not applied, or outcome unknown).",
              as_double(counters.proposals_failed));
  out.counter("rpool_forwarded_total", "Requests forwarded to the leader.", as_double(forwarded_));
  // Per pool, from the draw statistics (which count what the totals above count, by pool):
  // "default" first (always there, so a reader of one series finds it), then the other pools
  // that drew, in pool_id order.
  std::vector<std::pair<std::string_view, const DrawStats::Pool*>> by_pool;
  static const DrawStats::Pool none;
  const DrawStats::PoolMap& stats_pools = replica_.draw_stats().pools();
  for (const auto& [id, p] : stats_pools) {
    if (id != pool::default_pool_id && p.units > 0) by_pool.emplace_back(id, &p);
  }
  std::sort(by_pool.begin(), by_pool.end());
  const auto def = stats_pools.find(pool::default_pool_id);
  by_pool.insert(by_pool.begin(),
                 {pool::default_pool_id, def == stats_pools.end() ? &none : &def->second});
  for (const auto& [id, draws] : by_pool) {
    out.counter("rpool_draws_total",
                "Drawn units applied (request_ids handed out), pool_empty included, by pool.",
                as_double(draws->units), {{"pool", std::string(id)}});
  }
  for (const auto& [id, draws] : by_pool) {
    out.counter("rpool_draws_pool_empty_total", "Drawn units answered pool_empty, by pool.",
                as_double(draws->pool_empty), {{"pool", std::string(id)}});
  }
  out.gauge("rpool_pools", "Pools in the cluster, \"default\" included.",
            as_double(replica_.pool().pool_count()));
  out.gauge("rpool_last_request_id", "Last request_id handed out in the pool \"default\".",
            as_double(replica_.pool().last_request_id()));
  out.gauge("rpool_pool_items", "Items in the pool \"default\".",
            as_double(replica_.pool().items().size()));
  out.gauge("rpool_idempotency_keys", "Idempotency keys remembered.",
            as_double(replica_.pool().idempotency_keys()));

  // Fairness: what was drawn per item since this process started, against what the published
  // weights made expected (node/draw_stats.h). Counted by every replica as it applies.
  const DrawStats& draw_stats = replica_.draw_stats();
  const auto each_item = [&](auto&& emit) {
    for (const auto* entry : draw_stats.sorted_pools()) {
      const auto& [pool_id, p] = *entry;
      for (const auto& [item_id, item] : p.items) emit(pool_id, p, item_id, item);
    }
  };
  each_item([&](const std::string& pool_id, const DrawStats::Pool&, const std::string& item_id,
                const DrawStats::Item& item) {
    out.counter("rpool_draws_by_item_total",
                "Drawn units applied since this node started, by pool and item.",
                as_double(item.observed), {{"pool", pool_id}, {"item", item_id}});
  });
  each_item([&](const std::string& pool_id, const DrawStats::Pool& p, const std::string& item_id,
                const DrawStats::Item& item) {
    out.counter("rpool_draws_expected_by_item_total",
                "Units the published weights made expected for the item since this node started "
                "(a sum of probabilities: compare with rpool_draws_by_item_total).",
                DrawStats::expected(p, item), {{"pool", pool_id}, {"item", item_id}});
  });
  each_item([&](const std::string& pool_id, const DrawStats::Pool& p, const std::string& item_id,
                const DrawStats::Item& item) {
    out.gauge(
        "rpool_draw_expected_share",
        "The item's share of its pool's drawable weight now: the chance that a draw picks it.",
        DrawStats::expected_share(p, item), {{"pool", pool_id}, {"item", item_id}});
  });

  // HTTP.
  for (const auto& [key, count] : http_answers_) {
    out.counter("rpool_http_requests_total", "HTTP requests answered, by route and status.",
                as_double(count),
                {{"route", route_name(key.first)}, {"status", std::to_string(key.second)}});
  }
  for (const auto& [route, histogram] : http_seconds_) {
    out.histogram("rpool_http_request_duration_seconds",
                  "Time from a request read to its answer, by route.", histogram,
                  {{"route", route_name(route)}});
  }

  // Storage.
  out.counter("rpool_wal_bytes_total", "Bytes of log records written.",
              as_double(counters.wal_bytes));
  out.counter("rpool_wal_writes_total", "Batches written to the log (group commits).",
              as_double(counters.wal_syncs));
  out.histogram("rpool_wal_fsync_duration_seconds", "Time of each log fdatasync (one per batch).",
                counters.wal_fsync_seconds);
  out.counter("rpool_storage_failures_total",
              "Times the log could not be written (disk full or I/O error).",
              as_double(counters.storage_failures));
  out.gauge("rpool_storage_failed", "1 while the log cannot be written (writes answer 507).",
            replica_.storage_failed() ? 1 : 0);
  out.counter("rpool_snapshots_total", "Snapshots taken by this node.",
              as_double(counters.snapshots));
  out.counter("rpool_snapshots_installed_total",
              "Snapshots received from the leader and installed.",
              as_double(counters.snapshots_installed));
  out.gauge("rpool_snapshot_bytes", "Size of the last snapshot taken.",
            as_double(counters.snapshot_bytes_last));
  out.histogram("rpool_snapshot_duration_seconds", "Time to take a snapshot and write it.",
                counters.snapshot_seconds);

  // Peers.
  const std::vector<NodeId> peers = transport_ ? transport_->peers() : std::vector<NodeId>{};
  std::vector<std::pair<NodeId, net::PeerStats>> stats;
  for (NodeId id : peers) stats.emplace_back(id, transport_->stats(id));
  // One family at a time (Exposition wants a family's series together), one series per peer.
  for (const auto& [id, s] : stats) {
    out.gauge("rpool_peer_connected", "1 while this node's connection to the peer is up.",
              s.connected ? 1 : 0, {{"peer", std::to_string(id.value())}});
  }
  struct PeerCounter {
    const char* name;
    const char* help;
    std::uint64_t net::PeerStats::*field;
  };
  static constexpr PeerCounter peer_counters[] = {
      {"rpool_peer_sent_bytes_total", "Bytes sent to the peer.", &net::PeerStats::bytes_sent},
      {"rpool_peer_received_bytes_total", "Bytes received from the peer.",
       &net::PeerStats::bytes_received},
      {"rpool_peer_dropped_frames_total",
       "Messages to the peer dropped (not connected, queue full).",
       &net::PeerStats::frames_dropped},
      {"rpool_peer_malformed_frames_total", "Malformed frames received from the peer.",
       &net::PeerStats::frames_malformed},
      {"rpool_peer_connects_total", "Connections established to the peer.",
       &net::PeerStats::connects},
  };
  for (const PeerCounter& c : peer_counters) {
    for (const auto& [id, s] : stats) {
      out.counter(c.name, c.help, as_double(s.*c.field), {{"peer", std::to_string(id.value())}});
    }
  }
  if (leading) {
    for (const auto& [id, s] : stats) {
      const raft::Progress* pr = core.progress(id);
      if (pr == nullptr) continue;
      out.gauge("rpool_follower_lag_entries",
                "Leader only: entries the follower lacks (last index - its match index).",
                as_double(log.last_index().value() - pr->match_index.value()),
                {{"peer", std::to_string(id.value())}});
    }
  }
  for (std::size_t i = 0; i < raft::reject_reason_count; ++i) {
    out.counter("rpool_peer_rejected_messages_total",
                "Peer messages refused before they reached Raft, by reason.",
                as_double(counters.peer_rejected[i]),
                {{"reason", raft::to_string(static_cast<raft::RejectReason>(i))}});
  }
  if (transport_) {
    out.counter("rpool_peer_handshakes_rejected_total",
                "Peer connections refused at the handshake (wrong cluster, id or version).",
                as_double(transport_->handshakes_rejected_total()));
    for (std::size_t i = 0; i < net::peer_reject_reason_count; ++i) {
      const auto reason = static_cast<net::PeerRejectReason>(i);
      out.counter("rpool_peer_rejected_connections_total",
                  "Peer connections closed before their first frame, by reason (TLS: "
                  "no_certificate, untrusted_certificate, unknown_member, wrong_identity).",
                  as_double(transport_->rejected_connections(reason)),
                  {{"reason", std::string(net::to_string(reason))}});
    }
  }

  HttpResponse res = json_response(request, 200, out.take());
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  respond(std::move(res));
}

}  // namespace rpool::node
