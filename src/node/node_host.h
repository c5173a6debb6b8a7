// NodeHost: one rpool node. It is where the pool, the log and the consensus core meet.
//
// Threads. Everything below runs on one io_context thread: the raft::Core, the
// pool::StateMachine, the HTTP server and client, and the peer transport. The wal::Log lives on a
// second thread (its own io_context) so that the event loop never waits for the disk; the two
// talk only by posting closures to each other's io_context.
//
// The Ready cycle (see raft/core.h for the contract). Inputs (peer messages, ticks, proposals,
// reads) go to the core at once unless a Ready is being persisted, in which case they wait in
// `deferred_` until advance(): the core accepts no input between ready() and advance(). After a
// burst of inputs, one ready() collects everything: all proposals made meanwhile become one WAL
// append and one fdatasync (group commit), and the leader's AppendEntries go out before its own
// fsync finishes (thesis §10.2.1).
//
// A write (draw, item update) is proposed on the leader and answered when its entry applies: the
// answer is the pool's result for that entry. A follower forwards writes to the leader over HTTP.
// A write whose entry is overwritten, or which does not apply within write_timeout, is answered
// 504 outcome_unknown: it may still apply, and the client retries with its Idempotency-Key.
//
// A linearizable read takes the ReadIndex path on whichever node receives it (a follower asks
// the leader for the read index), waits until applied >= read index, and answers from memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json_fwd.hpp>

#include "api/api.h"
#include "node/config.h"
#include "net/http/http.h"
#include "node/logger.h"
#include "api/metrics.h"
#include "net/peer/peer_transport.h"
#include "pool/state_machine.h"
#include "raft/core.h"
#include "wal/log.h"

namespace rpool::node {

// The transports this node drives (src/net).
using net::HttpClient;
using net::HttpClientOptions;
using net::HttpRequest;
using net::HttpResponse;
using net::HttpServer;
using net::HttpServerOptions;
using net::PeerStats;
using net::PeerTransport;
using net::Respond;
namespace http = net::http;

struct NodeOptions {
  Config config;
  NodeId id;
  std::string data_dir;  // empty: config.data_dir_for(id)
  Logger::Format log_format = Logger::Format::text;
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds read_timeout{5000};
  // A membership change answers 504 if it does not finish in this time (the learner may still
  // be catching up: repeating the request waits again).
  std::chrono::milliseconds change_timeout{60000};
  // This node joins a running cluster (rpoold --join): it starts with no membership and an
  // unknown cluster id, and waits for the leader to add it (POST /v1/cluster/members).
  bool join = false;
};

// Counters for /metrics and tests (all on the io_context thread).
struct NodeCounters {
  NodeCounters() : wal_fsync_seconds(metrics::latency_buckets()), snapshot_seconds(metrics::latency_buckets()) {}
  std::uint64_t proposals = 0;
  std::uint64_t proposals_failed = 0;
  std::uint64_t draws = 0;           // drawn units applied (request_ids handed out)
  std::uint64_t draws_pool_empty = 0;
  std::uint64_t leader_changes = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t snapshot_bytes_last = 0;
  std::uint64_t snapshots_installed = 0;  // received from the leader
  std::uint64_t wal_bytes = 0;
  std::uint64_t wal_syncs = 0;
  std::uint64_t storage_failures = 0;
  std::uint64_t forwarded = 0;
  metrics::Histogram wal_fsync_seconds;
  metrics::Histogram snapshot_seconds;
  // HTTP: answers by route and status; latency by route (from the request read to the answer).
  std::map<std::pair<api::Route, unsigned>, std::uint64_t> http_answers;
  std::map<api::Route, metrics::Histogram> http_seconds;
};

class NodeHost {
 public:
  // Opens the data directory and recovers the node's state from it (snapshot + log). On failure
  // returns null and sets `error` to one line (the caller exits 1).
  static std::unique_ptr<NodeHost> open(boost::asio::io_context& io, NodeOptions options, std::string& error);
  ~NodeHost();
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Binds the raft and HTTP listeners and starts ticking. On failure sets `error` (exit 1).
  bool start(std::string& error);
  // Graceful stop: no new connections, in-flight requests finish (bounded by the write timeout),
  // the log is synced and closed. `done` runs on the io_context thread.
  void shutdown(std::function<void()> done);
  // Set when storage failed in a way the node cannot recover from; the caller exits 1.
  const std::optional<std::string>& fatal() const { return fatal_; }
  void on_fatal(std::function<void()> callback) { on_fatal_ = std::move(callback); }

  std::uint16_t http_port() const;
  std::uint16_t raft_port() const;
  const NodeCounters& counters() const { return counters_; }

 private:
  // Renders the answer to a write from the result of applying it.
  using Render = std::function<HttpResponse(const HttpRequest&, const pool::Result&)>;
  // A write proposed at some index, waiting for it to be applied. Plain data, not closures: one
  // map node per write is its whole cost on the hot path.
  struct PendingWrite {
    Term term;
    std::chrono::steady_clock::time_point deadline;
    std::shared_ptr<const HttpRequest> request;  // for the answer's version and keep-alive
    Respond respond;
    Render render;
    void done(const pool::Result& result) { respond(render(*request, result)); }  // applied
  };
  // Answers a pending write whose outcome is unknown or failed, and counts it.
  void fail_write(PendingWrite& write, api::Error e, std::string_view message);
  struct PendingRead {
    std::chrono::steady_clock::time_point deadline;
    LogIndex index;        // 0 until the read index is known
    bool indexed = false;
    Respond respond;
    HttpRequest request;   // for the answer's version and keep-alive
    bool stale = false;
  };

  NodeHost(boost::asio::io_context& io, NodeOptions options);
  bool recover(std::string& error);

  // A request answered either by the core input that carries it or, if that input never runs
  // (the log failed meanwhile), by abandon_held().
  struct Held {
    std::shared_ptr<HttpRequest> request;
    Respond respond;
  };
  // Core inputs: run now, or after the Ready being persisted is advanced. An input that carries
  // a request names it in `held`, so that it is answered even if the input is dropped.
  void with_core(std::function<void()> input, std::shared_ptr<Held> held = nullptr);
  void abandon_held(Held& held);
  // The log failed for good: every waiting request gets an answer before the process exits.
  void abandon_requests();
  void schedule_ready();
  void process_ready();
  // One Ready's writes, run on the WAL thread (again after a disk-full failure).
  struct PersistJob {
    std::optional<wal::SnapshotFile> snapshot;
    std::vector<wal::Entry> entries;
    std::optional<wal::HardState> hard_state;
    bool fsync = true;
  };
  // Hands the Ready's writes to the WAL thread. Returns the Ready while its write is under way
  // (on_persisted() gets it back), or null when nothing needed writing and on_persisted() ran.
  std::shared_ptr<const raft::Ready> persist(raft::Ready ready);
  // Posts one Ready's writes to the WAL thread (on a reopened log after a failure); on success
  // on_persisted(), on failure storage_failed().
  void write_ready(std::shared_ptr<const PersistJob> job, std::shared_ptr<raft::Ready> ready, bool reopen);
  // WAL thread; `fsync_seconds` gets the time the fdatasync took (0 without one).
  std::error_code run_persist_job(const PersistJob& job, double& fsync_seconds);
  // WAL thread: closes and reopens the log, which clears a failure (wal::errc::poisoned).
  std::error_code reopen_log(std::string& detail);
  // After a disk-full failure: every second, reopen the log and retry the Ready that failed.
  void retry_storage();
  void storage_recovered();
  void on_persisted(raft::Ready ready);
  void apply(const raft::Entry& entry);
  void observe_role();
  void serve_reads();
  void maybe_snapshot();
  // Snapshots the pool at the applied index, compacts the core, then writes the snapshot file
  // and compacts the WAL on the WAL thread. `done` gets the outcome and the snapshot index.
  // compact_all: compact the log up to this snapshot (else up to the previous one, see there).
  void take_snapshot(bool compact_all, std::function<void(std::error_code, LogIndex)> done);
  void ensure_bootstrap();
  void maybe_finish_shutdown();
  void on_tick();
  void expire_requests();
  void storage_failed(std::error_code ec, const std::string& detail);

  // Membership and leadership (issue 6). A member's addresses come from the membership's
  // context (recorded when it was added; founding members get theirs from the config).
  const Member* member_info(NodeId id) const;
  nlohmann::json members_json() const;
  void sync_peers();  // the transport's peers follow the membership
  // Moves the membership change along after every Ready and tick; answers its waiters.
  void drive_change();
  // Answers every waiter: 200 with `body` when ec is ok, else the error for ec (body: its message).
  void end_change(std::error_code ec, std::string body = {});
  // 409 when a membership change or leadership transfer is under way (one at a time).
  bool answered_busy(const HttpRequest& request, const Respond& respond);
  void drive_transfer();
  void end_transfer(bool done, std::string_view message);
  // Shutdown on the leader: hand leadership to the most up-to-date voter first.
  void start_shutdown_transfer();

  // HTTP.
  void handle(HttpRequest&& request, Respond respond);
  void handle_draw(HttpRequest&& request, Respond respond);
  void handle_item(HttpRequest&& request, Respond respond, const std::string& item_id);
  void handle_pool(HttpRequest&& request, Respond respond, bool stale);
  void handle_cluster(HttpRequest&& request, Respond respond);
  void handle_readyz(HttpRequest&& request, Respond respond);
  void handle_metrics(HttpRequest&& request, Respond respond);
  void count_answer(api::Route route, unsigned status, double seconds);
  void handle_snapshot(HttpRequest&& request, Respond respond);
  void handle_transfer(HttpRequest&& request, Respond respond);
  void handle_add_member(HttpRequest&& request, Respond respond);
  void handle_remove_member(HttpRequest&& request, Respond respond, NodeId id);
  bool authorized(const HttpRequest& request) const;
  void forward(HttpRequest&& request, Respond respond);
  void forward(HttpRequest&& request, Respond respond, std::chrono::milliseconds timeout);
  // Proposes a pool command built from a validated request, or forwards the request.
  void write(HttpRequest&& request, Respond respond, pool::Command command, Render render);
  void answer_pool(PendingRead& read);
  // GET /v1/pool's body at applied_ (cached until applied_ moves).
  const std::string& pool_json();

  static HttpResponse json_response(const HttpRequest& request, unsigned status, std::string body);
  static HttpResponse error_response(const HttpRequest& request, api::Error e, std::string_view message);

  boost::asio::io_context& io_;
  NodeOptions options_;
  Logger logger_;
  std::uint64_t cluster_id_ = 0;

  // The WAL thread.
  boost::asio::io_context wal_io_;
  std::thread wal_thread_;
  std::unique_ptr<wal::Log> log_;  // touched only on the WAL thread once started

  std::unique_ptr<raft::Core> core_;
  pool::StateMachine pool_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<HttpClient> client_;
  boost::asio::steady_timer ticker_;

  bool ready_outstanding_ = false;     // a Ready is being persisted; inputs wait in deferred_
  bool ready_scheduled_ = false;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<Held>>> deferred_;
  bool storage_failed_ = false;        // the disk is full: writes answer 507 until a retry succeeds
  std::function<void()> storage_retry_;  // writes the failed Ready again (set only after a failure)
  boost::asio::steady_timer storage_timer_;
  wal::Options wal_options_;
  bool stopping_ = false;
  std::optional<std::string> fatal_;
  std::function<void()> on_fatal_;

  // The last committed entry applied (to the pool, or noted for a noop or config entry). Ahead of
  // the core's applied index while a Ready whose committed entries were applied early is being
  // written (see process_ready); equal to it otherwise.
  LogIndex applied_;
  // GET /v1/pool's body at applied_, rendered once for every read served at that index.
  std::string pool_json_cache_;
  LogIndex pool_json_cache_index_;

  std::map<LogIndex, PendingWrite> writes_;   // by the index their entry was proposed at
  std::map<std::uint64_t, PendingRead> reads_;  // by read context
  std::uint64_t next_read_context_ = 1;

  raft::Role last_role_ = raft::Role::follower;
  NodeId last_leader_;
  LogIndex snapshot_index_;            // of the newest durable snapshot
  bool snapshot_in_progress_ = false;
  // The newest snapshot (index, image): the core is compacted to it only at the next snapshot.
  std::pair<LogIndex, std::shared_ptr<const Bytes>> margin_snapshot_;
  Term bootstrap_term_;                // the term in which this node proposed the catalog
  Term persisted_term_;                // the hard state last saved
  NodeId persisted_vote_;
  std::chrono::steady_clock::time_point last_commit_save_;
  std::function<void()> shutdown_done_;
  bool shutdown_started_ = false;
  NodeCounters counters_;

  using Waiter = std::pair<std::shared_ptr<HttpRequest>, Respond>;
  struct MemberChange {
    enum class Kind : std::uint8_t { add, remove } kind = Kind::add;
    Member member;         // add: the new node; remove: its id
    LogIndex entry;        // the config entry being committed; 0: none yet
    Term entry_term;
    bool committed = false;  // the entry applied with entry_term
    bool lost = false;       // another entry applied at its index (a leader change)
    bool promoting = false;  // add: the learner entry committed, promotion next
    std::chrono::steady_clock::time_point deadline;
    std::vector<Waiter> waiters;
  };
  std::optional<MemberChange> change_;
  struct Transfer {
    NodeId to;
    std::chrono::steady_clock::time_point deadline;
    std::vector<Waiter> waiters;
    bool for_shutdown = false;
  };
  std::optional<Transfer> transfer_;
  bool peers_synced_ = false;
  raft::Membership synced_membership_;  // the membership and leader sync_peers() last saw
  NodeId synced_leader_;
  std::map<NodeId, Member> members_;    // addresses of every member (and config members)
  std::map<NodeId, Endpoint> peers_;    // what the transport was told
};

}  // namespace rpool::node
