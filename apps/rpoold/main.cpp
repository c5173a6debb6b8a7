// rpoold: one rpool cluster node (docs/api.md).
//
//   rpoold --config FILE --id N [--data-dir DIR] [--log-format json|text] [--join]
//          [--force-new-cluster]
//
// Exit codes: 0 after SIGTERM/SIGINT (graceful), 2 for bad usage or a bad config (one line on
// stderr naming the field), 1 for a fatal runtime error (corrupt log, locked data directory, disk
// error, address in use), always with one clear line on stderr.
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "net/tls/tls.h"
#include "node/config.h"
#include "node/server.h"

namespace {

int fail(int code, const std::string& line) {
  std::fprintf(stderr, "rpoold: %s\n", line.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rpoold: one node of an rpool cluster (a replicated reward pool)"};
  std::string config_path;
  std::uint64_t id = 0;
  std::string data_dir;
  std::string log_format = "text";
  bool join = false;
  bool force_new_cluster = false;
  app.add_option("--config", config_path, "cluster config file (JSON)")->required();
  app.add_option("--id", id, "this node's id in the config's members")->required();
  app.add_option("--data-dir", data_dir, "data directory (default: the config's data_dir)");
  app.add_option("--log-format", log_format, "json or text")
      ->check(CLI::IsMember({"json", "text"}));
  auto* join_flag =
      app.add_flag("--join", join,
                   "join a running cluster: start as a non-member and wait to be added with "
                   "POST /v1/cluster/members (the config names the current members and this node)");
  app.add_flag("--force-new-cluster", force_new_cluster,
               "disaster recovery when a majority is lost for good: keep this node's data and "
               "cluster id, make it the only voter (written to its log), and serve; add new nodes "
               "with --join")
      ->excludes(join_flag);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, fmt::format("{} (see --help)", e.what()));
  }

  std::string error;
  auto config = rpool::node::load_config(config_path, error);
  if (!config) return fail(2, error);
  if (config->member(rpool::NodeId(id)) == nullptr) {
    return fail(2, fmt::format("--id {}: no member with this id in {}", id, config_path));
  }

  // TLS: the files must load, the key match, and the certificate cover this node's own raft host
  // (peers check it) and, with tls.http, its HTTP host (clients check it).
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (config->tls) {
    const rpool::node::TlsSettings files = config->tls_for(rpool::NodeId(id));
    tls = rpool::net::make_tls_context({files.ca, files.cert, files.key}, error);
    if (!tls) return fail(2, fmt::format("config: {}", error));
    const rpool::node::Member& self = *config->member(rpool::NodeId(id));
    std::vector<std::string> hosts{self.raft.host};
    if (files.http) hosts.push_back(self.http.host);
    for (const std::string& host : hosts) {
      if (!rpool::net::own_certificate_covers(*tls, host)) {
        return fail(2, fmt::format("config: tls.cert: {} has no subjectAltName covering {}, "
                                   "an address of node {}",
                                   files.cert, host, id));
      }
    }
  }
  std::optional<std::string> admin_token;
  if (config->admin_token_file) {
    admin_token = rpool::node::read_admin_token_file(*config->admin_token_file, error);
    if (!admin_token) return fail(2, fmt::format("config: {}", error));
  }

  // A peer or client that goes away mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  boost::asio::io_context io(1);
  rpool::node::ServerOptions options;
  options.replica.config = std::move(*config);
  options.replica.id = rpool::NodeId(id);
  options.replica.data_dir = data_dir;
  options.replica.join = join;
  options.force_new_cluster = force_new_cluster;
  options.log_format =
      log_format == "json" ? rpool::node::Logger::Format::json : rpool::node::Logger::Format::text;
  options.tls = std::move(tls);
  options.admin_token = std::move(admin_token);

  int open_exit = 1;
  auto node = rpool::node::Server::open(io, std::move(options), error, &open_exit);
  if (!node) return fail(open_exit, error);
  int exit_code = 0;
  // A fatal storage error: the node has answered what was waiting; let those answers go out
  // (a graceful stop, bounded by a deadline), then exit 1.
  boost::asio::steady_timer fatal_deadline(io);
  node->on_fatal([&] {
    exit_code = 1;
    node->shutdown([&] { io.stop(); });
    fatal_deadline.expires_after(std::chrono::seconds(2));
    fatal_deadline.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) io.stop();
    });
  });
  if (!node->start(error)) return fail(1, error);

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    node->shutdown([&] { io.stop(); });
    // A second signal stops at once.
    signals.async_wait([&](const boost::system::error_code& ec2, int) {
      if (!ec2) io.stop();
    });
  });
  // SIGHUP: read admin_token_file again (a bad file keeps the old token, and says why).
  boost::asio::signal_set hangups(io, SIGHUP);
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      node->reload_admin_token();
      on_hangup();
    });
  };
  on_hangup();
  io.run();
  if (node->fatal()) return fail(1, *node->fatal());
  return exit_code;
}
