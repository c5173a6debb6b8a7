// rpool-wal COMMAND DATA_DIR [options]: offline inspection of a node's data directory
// (README, "rpool-wal"). Each command is a CLI11 subcommand calling one function of
// inspect.h; `replay` is added the same way.
#include <iostream>

#include <CLI/CLI.hpp>

#include "draws.h"
#include "inspect.h"
#include "pool/command.h"
#include "replay.h"
#include "restore.h"

int main(int argc, char** argv) {
  CLI::App app{
      "rpool-wal: inspect a node's data directory (read-only and safe beside a running node, but "
      "for repair)"};
  app.require_subcommand(1);
  std::string dir;

  auto* stat = app.add_subcommand(
      "stat", "segments with their index ranges and sizes, the snapshot, term and vote");
  stat->add_option("DATA_DIR", dir, "the node's data directory")->required();

  rpool::tools::DumpOptions dump_options;
  std::string format = "text";
  auto* dump = app.add_subcommand("dump", "one line per entry: index, term, kind, decoded payload");
  dump->add_option("DATA_DIR", dir, "the node's data directory")->required();
  dump->add_option("--from", dump_options.from,
                   "first index to show (default: the first in the log)");
  dump->add_option("--to", dump_options.to, "last index to show, inclusive (default: the last)");
  dump->add_option("--format", format, "text or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  auto* verify =
      app.add_subcommand("verify", "check every record and snapshot; exit 1 naming each fault");
  verify->add_option("DATA_DIR", dir, "the node's data directory")->required();

  bool yes = false;
  auto* repair = app.add_subcommand(
      "repair", "cut the log at its first fault, keeping the cut bytes in <file>.broken (writes!)");
  repair->add_option("DATA_DIR", dir, "the node's data directory (the node must be stopped)")
      ->required();
  repair->add_flag("--yes", yes, "do it; without --yes only say what would be done");

  rpool::tools::ReplayOptions replay_options;
  auto* replay = app.add_subcommand(
      "replay", "pool P as of index I (default: last) as GET /v1/pools/P JSON, recomputed offline");
  replay->add_option("DATA_DIR", dir, "the node's data directory")->required();
  replay->add_option("--at", replay_options.at,
                     "the log index to replay up to (default: the last entry)");
  replay->add_option("--pool", replay_options.pool_id, "the pool to show (default: default)")
      ->check(CLI::Validator(
          [](std::string& id) {
            return rpool::pool::valid_pool_id(id)
                       ? std::string()
                       : std::string("a pool_id is 1-64 of A-Z a-z 0-9 _ . -");
          },
          "POOL_ID"));

  rpool::tools::RestoreOptions restore_options;
  auto* restore = app.add_subcommand("restore",
                                     "write the data dir of founding member N of a NEW cluster "
                                     "holding a backup's state (writes!)");
  restore->add_option("SNAPSHOT", restore_options.backup, "the backup (GET /v1/snapshot)")
      ->required();
  restore->add_option("--config", restore_options.config, "the new cluster's config")->required();
  restore->add_option("--id", restore_options.id, "the member to write the directory of")
      ->required();
  restore->add_option("--data-dir", restore_options.data_dir,
                      "the directory to write (default: the config's data_dir); must be empty");

  // The audit trail: one line per unit drawn (draws.h).
  rpool::tools::DrawsOptions draws_options;
  std::string draws_format = "text";
  auto* draws = app.add_subcommand(
      "draws", "one line per unit drawn: request_id, item, index, term, leader time, key");
  draws->add_option("DATA_DIR", dir, "the node's data directory")->required();
  draws->add_option("--pool", draws_options.pool_id, "the pool (default: default)");
  draws->add_option("--from-request", draws_options.from_request, "first request_id shown");
  draws->add_option("--to-request", draws_options.to_request, "last request_id shown, inclusive");
  draws->add_option("--format", draws_format, "text, csv or json (one object per line)")
      ->check(CLI::IsMember({"text", "csv", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // bad usage
  }
  std::ios::sync_with_stdio(false);
  if (stat->parsed()) return rpool::tools::wal_stat(dir, std::cout, std::cerr);
  if (dump->parsed()) {
    dump_options.json = format == "json";
    return rpool::tools::wal_dump(dir, dump_options, std::cout, std::cerr);
  }
  if (verify->parsed()) return rpool::tools::wal_verify(dir, std::cout, std::cerr);
  if (repair->parsed()) return rpool::tools::wal_repair(dir, yes, std::cout, std::cerr);
  if (restore->parsed()) return rpool::tools::wal_restore(restore_options, std::cout, std::cerr);
  if (replay->parsed()) return rpool::tools::wal_replay(dir, replay_options, std::cout, std::cerr);
  if (draws->parsed()) {
    draws_options.format = draws_format == "csv"    ? rpool::tools::DrawsOptions::Format::csv
                           : draws_format == "json" ? rpool::tools::DrawsOptions::Format::json
                                                    : rpool::tools::DrawsOptions::Format::text;
    return rpool::tools::wal_draws(dir, draws_options, std::cout, std::cerr);
  }
  return 2;
}
