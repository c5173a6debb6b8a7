// HttpApi's web console: the embedded files (GET /, /console/{asset}) and their status feed
// (GET /v1/status), which adds to /v1/cluster what the console shows and the JSON API lacks:
// peer connectivity, each follower's lag, recent leader changes, the draw latency histogram, and
// the observed and expected draws per item (docs/api.md, "The console's status").
#include <chrono>

#include <nlohmann/json.hpp>

#include "api/console.h"
#include "node/http_api.h"

namespace rpool::node {
namespace {

// The console runs its own scripts and styles and talks to its own origin only; no inline
// script, no frame around it.
constexpr std::string_view console_policy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

std::uint64_t wall_ms_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

nlohmann::json histogram_json(const metrics::Histogram* h) {
  if (h == nullptr) {
    const metrics::Histogram empty(metrics::latency_buckets());
    return {{"bounds", empty.bounds()}, {"counts", empty.counts()}, {"sum", 0}};
  }
  return {{"bounds", h->bounds()}, {"counts", h->counts()}, {"sum", h->sum()}};
}

}  // namespace

void HttpApi::handle_console(HttpRequest&& request, Respond respond, const std::string& asset) {
  const api::ConsoleAsset* file = api::console_asset(asset);
  if (file == nullptr) {
    respond(
        error_response(request, api::Error::not_found, "No such file of the console: " + asset));
    return;
  }
  HttpResponse res{http::status::ok, request.version()};
  res.set(http::field::content_type, file->content_type);
  res.set(http::field::cache_control, "no-cache");
  res.set("Content-Security-Policy", console_policy);
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(request.keep_alive());
  res.body() = std::string(file->body);
  res.prepare_payload();
  respond(std::move(res));
}

void HttpApi::handle_status(HttpRequest&& request, Respond respond, bool from_leader) {
  const raft::Core& core = replica_.core();
  const bool leading = core.role() == raft::Role::leader;
  if (from_leader && !leading) {
    forward(std::move(request), std::move(respond), replica_.options().read_timeout);
    return;
  }
  const raft::Log& log = core.log();
  nlohmann::json peers = nlohmann::json::array();
  const raft::Membership& m = core.membership();
  auto add_peer = [&](NodeId id) {
    if (id == replica_.id()) return;
    nlohmann::json peer = {{"id", id.value()},
                           {"connected", nullptr},
                           {"match_index", nullptr},
                           {"lag_entries", nullptr}};
    if (transport_ != nullptr) peer["connected"] = transport_->stats(id).connected;
    if (const raft::Progress* pr = leading ? core.progress(id) : nullptr) {
      peer["match_index"] = pr->match_index.value();
      peer["lag_entries"] = log.last_index().value() - pr->match_index.value();
    }
    peers.push_back(std::move(peer));
  };
  for (NodeId id : m.voters) add_peer(id);
  for (NodeId id : m.learners) add_peer(id);

  nlohmann::json changes = nlohmann::json::array();
  for (const LeaderChange& c : replica_.leader_changes()) {
    changes.push_back(
        {{"wall_ms", c.wall_ms}, {"leader_id", c.leader.value()}, {"term", c.term.value()}});
  }

  nlohmann::json fairness = nlohmann::json::array();
  for (const auto* entry : replica_.draw_stats().sorted_pools()) {
    const auto& [pool_id, p] = *entry;
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [item_id, item] : p.items) {
      items.push_back({{"item_id", item_id},
                       {"observed", item.observed},
                       {"expected", DrawStats::expected(p, item)},
                       {"expected_share", DrawStats::expected_share(p, item)},
                       {"weight", item.weight}});
    }
    fairness.push_back({{"pool_id", pool_id},
                        {"units", p.units},
                        {"pool_empty", p.pool_empty},
                        {"tracked", p.tracked},
                        {"items", std::move(items)}});
  }

  const auto latency = http_seconds_.find(api::Route::draw);
  const ReplicaCounters& counters = replica_.counters();
  const nlohmann::json body = {
      {"node_id", replica_.id().value()},
      {"role", role_name(core.role())},
      {"term", core.current_term().value()},
      {"leader_id", core.leader().value()},
      {"commit_index", log.commit_index().value()},
      {"applied_index", replica_.applied().value()},
      {"last_index", log.last_index().value()},
      {"snapshot_index", replica_.snapshot_index().value()},
      {"wall_ms", wall_ms_now()},
      {"peers", std::move(peers)},
      {"leader_changes", std::move(changes)},
      {"draws", {{"total", counters.draws}, {"pool_empty", counters.draws_pool_empty}}},
      {"draw_latency_seconds",
       histogram_json(latency == http_seconds_.end() ? nullptr : &latency->second)},
      {"fairness", std::move(fairness)},
  };
  respond(json_response(request, 200, body.dump()));
}

}  // namespace rpool::node
