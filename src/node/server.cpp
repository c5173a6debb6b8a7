#include "node/server.h"

#include <sys/random.h>

#include <cerrno>
#include <filesystem>
#include <iterator>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "base/fd_limit.h"
#include "node/disaster.h"
#include "wal/errc.h"
#include "wal/recovery.h"

namespace rpool::node {

namespace asio = boost::asio;

// --- AsioEnv ------------------------------------------------------------------------------------

std::uint64_t AsioEnv::wall_clock_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// Eight bytes from the kernel's CSPRNG (getrandom(2)): draw seeds and election-timeout seeds.
// The kernel is asked for 4 KiB at a time and the bytes are handed out in order, each once: one
// system call per 512 seeds instead of one per draw (it was a quarter of the leader's system calls
// under load). Every seed is still the kernel's CSPRNG output, unpredictable before it is used.
std::uint64_t AsioEnv::random_u64() {
  struct Buffer {
    std::uint64_t values[512];
    std::size_t next = std::size(values);  // all used: refill first
  };
  thread_local Buffer buffer;
  if (buffer.next == std::size(buffer.values)) {
    auto* p = reinterpret_cast<unsigned char*>(buffer.values);
    std::size_t got = 0;
    while (got < sizeof buffer.values) {
      const ssize_t n = getrandom(p + got, sizeof buffer.values - got, 0);
      if (n < 0) {
        RPOOL_ASSERT(errno == EINTR);  // getrandom(2) on Linux >= 3.17 fails only when interrupted
        continue;
      }
      got += static_cast<std::size_t>(n);
    }
    buffer.next = 0;
  }
  const std::uint64_t value = buffer.values[buffer.next];
  buffer.values[buffer.next++] = 0;  // handed out once; not left in memory
  return value;
}

void AsioEnv::post(std::function<void()> fn) { asio::post(io_, std::move(fn)); }

void AsioEnv::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(io_, delay);
  timer->async_wait([timer, fn = std::move(fn)](const boost::system::error_code& ec) {
    if (!ec) fn();
  });
}

void AsioEnv::background(std::function<void()> work, std::function<void()> done) {
  asio::post(background_, [&io = io_, alive = std::weak_ptr<bool>(alive_), work = std::move(work),
                           done = std::move(done)]() mutable {
    work();
    asio::post(io, [alive = std::move(alive), done = std::move(done)] {
      if (alive.lock()) done();
    });
  });
}

AsioEnv::~AsioEnv() {
  alive_.reset();
  background_.stop();
  background_.join();
}

// --- the peer transport -------------------------------------------------------------------------

class Server::Transport final : public MessageTransport {
 public:
  std::unique_ptr<net::PeerTransport> peers;
  void send(raft::Message&& m) override {
    if (peers) peers->send(std::move(m));
  }
  void set_peer(NodeId id, const Endpoint& raft) override {
    if (peers) peers->set_peer(id, raft.host, raft.port);
  }
  void remove_peer(NodeId id) override {
    if (peers) peers->remove_peer(id);
  }
};

// --- Server -------------------------------------------------------------------------------------

Server::Server(asio::io_context& io, ServerOptions options)
    : io_(io),
      options_(std::move(options)),
      logger_(options_.log_format, options_.replica.id.value()),
      env_(io),
      transport_(std::make_unique<Transport>()) {}

Server::~Server() {
  if (transport_->peers) transport_->peers->stop();
  storage_.reset();  // joins the storage thread before the replica goes
}

std::unique_ptr<Server> Server::open(asio::io_context& io, ServerOptions options,
                                     std::string& error, int* exit_code) {
  if (exit_code) *exit_code = 1;
  ReplicaOptions& ro = options.replica;
  if (ro.data_dir.empty()) ro.data_dir = ro.config.data_dir_for(ro.id);
  std::unique_ptr<Server> server(new Server(io, std::move(options)));
  const std::string& dir = server->options_.replica.data_dir;
  std::error_code fs_ec;
  if (server->options_.force_new_cluster &&
      (!std::filesystem::exists(dir, fs_ec) || std::filesystem::is_empty(dir, fs_ec))) {
    // Checked before recovery, which would create the directory: a mistyped path is not a node.
    error = fmt::format(
        "--force-new-cluster: the data directory {} is missing or empty: there "
        "is nothing to keep (point it at a survivor's data directory)",
        dir);
    if (exit_code) *exit_code = 2;
    return nullptr;
  }
  std::filesystem::create_directories(dir, fs_ec);
  if (fs_ec) {
    error = fmt::format("cannot create data directory {}: {}", dir, fs_ec.message());
    return nullptr;
  }
  server->wal_options_.segment_bytes = server->options_.replica.config.wal.segment_bytes;
  server->wal_options_.known_kinds =
      wal::kinds({1, 2, 3});  // raft::EntryType: normal, noop, config
  Logger* logger = &server->logger_;
  server->wal_options_.warn = [logger](const std::string& line) { logger->warn(line); };
  // The log, the hard state and the snapshot, checked against each other (wal/recovery.h): a
  // damaged directory stops the node here with the file and offset named, and nothing changed.
  wal::RecoverResult recovered = wal::recover(dir, server->wal_options_);
  if (recovered.error) {
    if (recovered.error == wal::errc::corrupt) {
      error = fmt::format("corrupt data directory: {}", recovered.detail);
    } else if (recovered.error == wal::errc::locked) {
      error = recovered.detail;
    } else if (recovered.error == wal::errc::descriptors_exhausted) {
      error = fmt::format("out of file descriptors: {}", recovered.detail);
    } else {
      error = fmt::format("cannot open the data directory {}: {} ({})", dir, recovered.detail,
                          recovered.error.message());
    }
    return nullptr;
  }
  if (server->options_.force_new_cluster) {
    const ReplicaOptions& replica = server->options_.replica;  // `options` was moved from
    const ForceResult forced = force_new_cluster(recovered.state, replica.config, replica.id);
    if (forced.status == ForceResult::Status::empty ||
        forced.status == ForceResult::Status::failed) {
      error = forced.message;
      if (exit_code && forced.status == ForceResult::Status::empty) *exit_code = 2;
      return nullptr;
    }
    logger->warn(forced.message);
  }
  wal::Log& log = *recovered.state.log;
  if (log.segments().empty()) {
    // A new log: create (and zero-fill) its first segment now rather than on the first append,
    // where it would hold up the first election by the time it takes to write a segment.
    if (const auto ec = log.reset(log.first_index())) {
      error =
          fmt::format("cannot create the log in {}: {} {}", dir, ec.message(), log.error_detail());
      return nullptr;
    }
  }
  server->replica_ = std::make_unique<Replica>(server->env_, *server->transport_, server->logger_,
                                               server->options_.replica);
  if (!server->replica_->recover(log, recovered.state.hard_state,
                                 std::move(recovered.state.snapshot), error))
    return nullptr;
  server->recovered_log_ = std::move(recovered.state.log);
  return server;
}

bool Server::start(std::string& error) {
  const ReplicaOptions& ro = options_.replica;
  const Member* self = ro.config.member(ro.id);
  RPOOL_ASSERT(self != nullptr);

  net::PeerTransport::Options peer_options;
  peer_options.self = ro.id;
  peer_options.cluster_id = replica_->cluster_id();
  peer_options.adopt_cluster_id = replica_->cluster_id() == 0;
  peer_options.on_cluster_id = [this](std::uint64_t id) { replica_->adopt_cluster_id(id); };
  peer_options.on_foreign_cluster = [this](NodeId sender, std::uint64_t their_id) {
    report_foreign_cluster(sender, their_id);
  };
  peer_options.listen_host = self->raft.host;
  peer_options.listen_port = self->raft.port;
  peer_options.bind_host = self->raft.host;
  peer_options.log = [this](std::string_view line) { logger_.info(line); };
  peer_options.tls = options_.tls;
  transport_->peers = std::make_unique<net::PeerTransport>(
      io_, peer_options, [this](raft::Message&& m) { replica_->step(std::move(m)); });
  if (const auto ec = transport_->peers->start()) {
    error = fmt::format("cannot listen for peers on {}: {}", self->raft.to_string(), ec.message());
    return false;
  }

  net::HttpClientOptions client_options;
  client_options.bind_host = self->http.host;
  const bool https = options_.tls && ro.config.tls && ro.config.tls->http;
  if (https) client_options.tls = options_.tls;
  client_ = std::make_unique<net::HttpClient>(io_, client_options);
  api_ = std::make_unique<HttpApi>(*replica_, *client_, transport_->peers.get());
  if (options_.admin_token) api_->set_admin_token(options_.admin_token);

  net::HttpServerOptions http_options;
  http_options.host = self->http.host;
  http_options.port = self->http.port;
  http_options.body_bytes_max = api::body_bytes_max;
  // The file limit raised to its hard limit, and HTTP connections capped below it: a flood of
  // connections is refused (503) rather than taking the descriptors the WAL and snapshots need.
  http_options.connections_max = net::connections_max_for_fd_limit(raise_fd_limit());
  http_options.log = [this](std::string_view line) { logger_.warn(line); };
  if (https) http_options.tls = options_.tls;
  http_ = std::make_unique<net::HttpServer>(io_, http_options,
                                            [this](HttpRequest&& request, Respond respond) {
                                              api_->handle(std::move(request), std::move(respond));
                                            });
  if (const auto ec = http_->start()) {
    error = fmt::format("cannot listen for HTTP on {}: {}", self->http.to_string(), ec.message());
    return false;
  }

  storage_ = std::make_unique<ThreadStorage>(
      env_, std::make_unique<LogStore>(ro.data_dir, wal_options_, std::move(recovered_log_)));
  replica_->start(*storage_);
  logger_.info(
      "serving",
      {{"raft", self->raft.to_string()},
       {"http", self->http.to_string()},
       {"peer_tls", std::string(options_.tls ? "mutual" : "off: the raft port trusts its network")},
       {"http_tls", https}});
  return true;
}

void Server::report_foreign_cluster(NodeId sender, std::uint64_t their_id) {
  // Once: the peer keeps reconnecting, and the operator needs one clear line, not a stream.
  if (foreign_cluster_reported_ || options_.replica.join) return;
  foreign_cluster_reported_ = true;
  logger_.error(fmt::format(
      "peer {} belongs to another cluster ({:016x}), already formed, but this node was started "
      "without --join and founded cluster {:016x} from its config. If it is meant to join that "
      "cluster: stop it, empty its data directory {}, start it with --join, and add it with "
      "POST /v1/cluster/members",
      sender, their_id, replica_->cluster_id(), options_.replica.data_dir));
}

void Server::reload_admin_token() {
  const auto& path = options_.replica.config.admin_token_file;
  if (!path) {
    logger_.warn("SIGHUP: the config names no admin_token_file; nothing to reload");
    return;
  }
  std::string error;
  auto token = read_admin_token_file(*path, error);
  if (!token) {
    logger_.warn("SIGHUP: keeping the current admin token", {{"error", error}});
    return;
  }
  options_.admin_token = token;
  if (api_) api_->set_admin_token(std::move(token));
  logger_.info("SIGHUP: admin token reloaded", {{"file", *path}});
}

std::uint16_t Server::http_port() const { return http_ ? http_->port() : 0; }
std::uint16_t Server::raft_port() const {
  return transport_->peers ? transport_->peers->listen_port() : 0;
}

void Server::shutdown(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  if (http_) http_->stop_accepting();
  auto finish = [this, done = std::move(done)]() mutable {
    if (transport_->peers) transport_->peers->stop();
    if (client_) client_->close_all();
    if (storage_) {
      replica_->close(std::move(done));
    } else {
      done();
    }
  };
  // The replica drains first (a leader hands over), then HTTP finishes what it is answering.
  replica_->shutdown([this, finish = std::move(finish)]() mutable {
    if (http_) {
      http_->shutdown(std::move(finish));
    } else {
      finish();
    }
  });
}

}  // namespace rpool::node
