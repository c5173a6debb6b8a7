// HttpApi: the HTTP routes of docs/api.md over a Replica. It parses and validates each request,
// turns it into a replica operation, and renders the outcome as the contract's JSON answer; on a
// follower it forwards writes and linearizable reads to the leader. All on the node's thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json_fwd.hpp>

#include "api/api.h"
#include "api/metrics.h"
#include "net/http/http.h"
#include "net/peer/peer_transport.h"
#include "node/replica.h"

namespace rpool::node {

using net::HttpRequest;
using net::HttpResponse;
using net::Respond;
namespace http = net::http;

// The one mapping from the replica's (and a forward's) failures, and the pool's refusals of a
// command, to the contract's errors.
api::Error error_of(std::error_code ec);

// What a write acts on, for the sentences of its answers.
struct Subject {
  std::string pool_id;
  std::string item_id;  // empty for draws and pool writes
};
// The one human sentence for a pool's refusal `ec` of a write on `subject`; names the limit
// when a limit refused it.
std::string pool_error_message(std::error_code ec, const Subject& subject);

// Reads the Idempotency-Key header into `command`, with the hash of `operation`; false (and
// answered 400) if it is malformed.
bool take_key(const HttpRequest& request, pool::Command& command, std::string_view operation,
              const Respond& respond);

class HttpApi {
 public:
  // `client` carries forwarded requests to the leader; `transport` (may be null) is read for
  // /metrics only.
  HttpApi(Replica& replica, net::HttpClient& client, const net::PeerTransport* transport);
  ~HttpApi();  // backup.cpp: waits for a backup being built
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;
  void handle(HttpRequest&& request, Respond respond);

  static HttpResponse json_response(const HttpRequest& request, unsigned status, std::string body);
  static HttpResponse error_response(const HttpRequest& request, api::Error e,
                                     std::string_view message);
  static HttpResponse outcome_response(const HttpRequest& request, const Outcome& outcome);

  std::uint64_t forwarded() const { return forwarded_; }

  // The admin token the admin endpoints require from now on (null: none). Starts as the
  // config's admin_token; the server sets the one read from admin_token_file (and on SIGHUP).
  void set_admin_token(std::optional<std::string> token) { admin_token_ = std::move(token); }

 private:
  void handle_draw(HttpRequest&& request, Respond respond, const std::string& pool_id);
  void handle_item(HttpRequest&& request, Respond respond, Subject subject);
  void handle_pool(HttpRequest&& request, Respond respond, bool stale);
  // Many pools (http_pools.cpp).
  void handle_pools(HttpRequest&& request, Respond respond, bool stale);
  void handle_named_pool(HttpRequest&& request, Respond respond, const std::string& pool_id,
                         bool stale);
  void read_named_pool(HttpRequest&& request, Respond respond, const std::string& pool_id,
                       bool stale);
  void create_pool(HttpRequest&& request, Respond respond, const std::string& pool_id);
  void delete_pool(HttpRequest&& request, Respond respond, const std::string& pool_id);
  // Answers 400 and returns false when `pool_id` breaks the pool_id rules.
  static bool check_pool_id(const HttpRequest& request, const Respond& respond,
                            const std::string& pool_id);
  void handle_cluster(HttpRequest&& request, Respond respond);
  void handle_readyz(HttpRequest&& request, Respond respond);
  void handle_metrics(HttpRequest&& request, Respond respond);
  void handle_snapshot(HttpRequest&& request, Respond respond);
  // GET /v1/snapshot: a backup of the whole state (backup.cpp).
  void handle_backup(HttpRequest&& request, Respond respond);
  void handle_transfer(HttpRequest&& request, Respond respond);
  void handle_add_member(HttpRequest&& request, Respond respond);
  void handle_remove_member(HttpRequest&& request, Respond respond, NodeId id);
  // The web console (http_console.cpp).
  void handle_console(HttpRequest&& request, Respond respond, const std::string& asset);
  void handle_status(HttpRequest&& request, Respond respond, bool from_leader);
  bool authorized(const HttpRequest& request) const;
  // Renders the answer to a write from the pool's result for it.
  using Render = HttpResponse (*)(const HttpRequest&, const pool::Result&, const Subject& subject);
  void write(HttpRequest&& request, Respond respond, pool::Command command, Render render,
             Subject subject);
  void forward(HttpRequest&& request, Respond respond, std::chrono::milliseconds timeout);
  void count_answer(api::Route route, unsigned status, double seconds);
  // GET /v1/pool's body at the applied index (cached until it moves).
  const std::string& pool_json();
  // GET /v1/pools' body at the applied index (cached until it moves).
  const std::string& pools_json();
  nlohmann::json members_json() const;

  Replica& replica_;
  net::HttpClient& client_;
  const net::PeerTransport* transport_;
  std::optional<std::string> admin_token_;
  std::string pool_json_cache_;
  LogIndex pool_json_cache_index_;
  std::string pools_json_cache_;
  LogIndex pools_json_cache_index_;
  std::uint64_t forwarded_ = 0;
  // Backups being built, <= backups_in_flight_max (backup.h); shared with the thread that builds
  // one, whose answer is posted back to the loop.
  std::shared_ptr<std::size_t> backups_in_flight_ = std::make_shared<std::size_t>(0);
  std::thread backup_thread_;  // joined before the next one starts, and by the destructor
  // Answers by route and status; latency by route (from the request read to the answer).
  std::map<std::pair<api::Route, unsigned>, std::uint64_t> http_answers_;
  std::map<api::Route, metrics::Histogram> http_seconds_;
};

}  // namespace rpool::node
