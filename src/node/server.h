// Server: one rpool node as rpoold runs it. It builds a Replica on the real world: Asio timers and
// the kernel's CSPRNG (AsioEnv), the peer transport over TCP, the WAL on a thread of its own
// (ThreadStorage), and the HTTP API on Beast.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "net/http/http.h"
#include "net/peer/peer_transport.h"
#include "node/env.h"
#include "node/http_api.h"
#include "node/logger.h"
#include "node/replica.h"
#include "node/storage.h"

namespace rpool::node {

struct ServerOptions {
  ReplicaOptions replica;
  Logger::Format log_format = Logger::Format::text;
  // rpoold --force-new-cluster: make this node the only voter before it starts (disaster.h).
  bool force_new_cluster = false;
  // From net::make_tls_context over the config's tls files; null without `tls`. Peers always use
  // it when set; HTTP (server and forwarding client) when the config's tls.http is on.
  std::shared_ptr<boost::asio::ssl::context> tls;
  // The token read from the config's admin_token_file at start, if it names one.
  std::optional<std::string> admin_token;
};

// Env on an io_context: steady_clock, the system clock, getrandom(2), Asio timers, and one
// background thread (destroying the Env waits for the work it is doing, and drops the rest).
class AsioEnv final : public Env {
 public:
  explicit AsioEnv(boost::asio::io_context& io) : io_(io) {}
  ~AsioEnv() override;
  AsioEnv(const AsioEnv&) = delete;
  AsioEnv& operator=(const AsioEnv&) = delete;
  Clock::time_point now() override { return Clock::now(); }
  std::uint64_t wall_clock_ms() override;
  std::uint64_t random_u64() override;
  void post(std::function<void()> fn) override;  // safe from any thread
  void after(std::chrono::milliseconds delay, std::function<void()> fn) override;
  void background(std::function<void()> work, std::function<void()> done) override;

 private:
  boost::asio::io_context& io_;
  boost::asio::thread_pool background_{1};
  // Work finished after the Env is gone does not call back into it (done runs on io_'s thread,
  // and the Env is destroyed there, so this is only ever read and reset on that thread).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class Server {
 public:
  // Opens the data directory and recovers the node's state from it (snapshot + log). On failure
  // returns null and sets `error` to one line; the caller exits with `*exit_code` when given
  // (1, or 2 for --force-new-cluster on an empty data directory: a usage error).
  static std::unique_ptr<Server> open(boost::asio::io_context& io, ServerOptions options,
                                      std::string& error, int* exit_code = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the raft and HTTP listeners and starts the replica. On failure sets `error` (exit 1).
  bool start(std::string& error);
  // Graceful stop: no new connections, in-flight requests finish (bounded by the write timeout),
  // the log is synced and closed. `done` runs on the io_context thread.
  void shutdown(std::function<void()> done);
  // Set when storage failed in a way the node cannot recover from; the caller exits 1.
  const std::optional<std::string>& fatal() const { return replica_->fatal(); }
  void on_fatal(std::function<void()> callback) { replica_->on_fatal(std::move(callback)); }

  // Reads the config's admin_token_file again and uses the token from now on; on failure keeps
  // the old token. Either way one line is logged (never the token). No-op without the file.
  void reload_admin_token();

  std::uint16_t http_port() const;
  std::uint16_t raft_port() const;
  const Replica& replica() const { return *replica_; }

 private:
  class Transport;  // MessageTransport over net::PeerTransport
  Server(boost::asio::io_context& io, ServerOptions options);
  // A peer of ours handshook with another cluster's id: says so once, naming --join.
  void report_foreign_cluster(NodeId sender, std::uint64_t their_id);

  boost::asio::io_context& io_;
  ServerOptions options_;
  Logger logger_;
  AsioEnv env_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<wal::Log> recovered_log_;  // from open() until start() hands it to storage_
  wal::Options wal_options_;
  std::unique_ptr<ThreadStorage> storage_;
  std::unique_ptr<net::HttpServer> http_;
  std::unique_ptr<net::HttpClient> client_;
  std::unique_ptr<HttpApi> api_;
  bool stopping_ = false;
  bool foreign_cluster_reported_ = false;
};

}  // namespace rpool::node
