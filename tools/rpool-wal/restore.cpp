#include "restore.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "api/api.h"
#include "node/backup.h"
#include "node/config.h"
#include "node/replica.h"
#include "pool/state_machine.h"
#include "raft/types.h"
#include "wal/recovery.h"

namespace rpool::tools {
namespace {

namespace fs = std::filesystem;

// The term the restored cluster starts in: nothing of the old cluster's terms matters to it.
constexpr Term restored_term{1};

// The new cluster's id: from the backup's checksum and the founding members (as rpoold derives a
// founding cluster's id from the members alone), so that every member restored from the same
// backup and config agrees on it, and none agrees with a member started empty from the config
// alone (that id is node::cluster_id_of(config)) or restored from another backup.
std::uint64_t restored_cluster_id(const node::Config& config, const std::string& backup_sha256) {
  const std::string text =
      fmt::format("restore;{};{:016x}", backup_sha256, node::cluster_id_of(config));
  const std::uint64_t id = load_u64le(api::request_hash(text).data());
  return id == 0 ? 1 : id;  // 0 means "unknown" in the peer handshake
}

bool read_file(const std::string& path, Bytes& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot open {}", path);
    return false;
  }
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    error = fmt::format("cannot read {}", path);
    return false;
  }
  return true;
}

}  // namespace

int wal_restore(const RestoreOptions& options, std::ostream& out, std::ostream& err) {
  std::string error;
  const auto config = node::load_config(options.config, error);
  if (!config) {
    err << "rpool-wal restore: " << error << "\n";
    return 2;
  }
  const NodeId self(options.id);
  if (config->member(self) == nullptr) {
    err << fmt::format("rpool-wal restore: --id {}: no member with this id in {}\n", options.id,
                       options.config);
    return 2;
  }
  const std::string dir = options.data_dir.empty() ? config->data_dir_for(self) : options.data_dir;

  // The backup first: nothing is written for a backup that does not check out.
  Bytes file;
  if (!read_file(options.backup, file, error)) {
    err << "rpool-wal restore: " << error << "\n";
    return 1;
  }
  node::Backup backup;
  if (const auto why = node::decode_backup(file, backup)) {
    err << fmt::format("rpool-wal restore: {} is not a usable backup: {}\n", options.backup, *why);
    return 1;
  }
  const std::string backup_sha256 = node::sha256_hex(file);
  file = Bytes();
  pool::StateMachine state;
  if (const auto why = node::restore_backup(backup, state)) {
    err << fmt::format("rpool-wal restore: {} is not a usable backup: {}\n", options.backup, *why);
    return 1;
  }
  backup.state = Bytes();
  backup.entries.clear();
  if (backup.index == LogIndex(0)) {
    err << fmt::format("rpool-wal restore: {} is of log index 0: a backup of nothing\n",
                       options.backup);
    return 1;
  }

  std::error_code fs_ec;
  if (fs::exists(dir, fs_ec) && !fs::is_empty(dir, fs_ec)) {
    err << fmt::format(
        "rpool-wal restore: {} is not empty: restore writes only a new node's directory (move "
        "the old one away first)\n",
        dir);
    return 1;
  }

  const std::uint64_t cluster_id = restored_cluster_id(*config, backup_sha256);
  raft::Membership membership;
  for (const node::Member& m : config->members) {
    membership.voters.push_back(m.id);
    membership.context[m.id] = node::member_context_json(m);
  }
  std::sort(membership.voters.begin(), membership.voters.end());

  wal::Options wal_options;
  wal_options.known_kinds = wal::kinds({1, 2, 3});  // raft::EntryType: normal, noop, config
  {
    wal::RecoverResult opened = wal::recover(dir, wal_options);
    if (opened.error) {
      err << fmt::format("rpool-wal restore: cannot create {}: {} ({})\n", dir, opened.detail,
                         opened.error.message());
      return 1;
    }
    wal::Log& log = *opened.state.log;
    auto failed = [&](std::string_view what, std::error_code ec) {
      err << fmt::format("rpool-wal restore: cannot write {} in {}: {} {}\n", what, dir,
                         ec.message(), log.error_detail());
      return 1;
    };
    // The cluster id first: a directory holding a snapshot but not yet its id would found the
    // old cluster's id (rpoold derives one from the config when the file is absent).
    if (const auto ec =
            log.save_file(node::cluster_id_file, as_bytes(node::cluster_id_text(cluster_id))))
      return failed("the cluster id", ec);
    // The state at the backup's index, serialised once more: the image with its commands applied.
    const wal::SnapshotFile snapshot{backup.index, restored_term,
                                     raft::encode_membership(membership), state.snapshot()};
    if (const auto ec = log.save_snapshot(snapshot)) return failed("the snapshot", ec);
    if (const auto ec = log.reset(backup.index.next())) return failed("the log", ec);
    if (const auto ec = log.save_hard_state({restored_term, NodeId(), backup.index}))
      return failed("the hard state", ec);
  }  // closes the log and releases its lock

  // As rpoold will find it.
  wal::RecoverResult check = wal::recover(dir, wal_options);
  if (check.error || !check.state.snapshot || check.state.snapshot->index != backup.index) {
    err << fmt::format("rpool-wal restore: {} does not recover as written: {}\n", dir,
                       check.error ? check.detail : "the snapshot is not the one written");
    return 1;
  }

  std::uint64_t pools = state.pool_count();
  out << fmt::format(
      "restored {} (index {}, taken from cluster {:016x}, sha256 {}) into {}\n"
      "  node {} is a founding member of the new cluster {:016x} with members {}\n"
      "  {} pool(s); pool default: last_request_id {}, digest {}; {} idempotency key(s)\n"
      "  restore every founding member from this same backup and config, then start them all "
      "(without --join)\n",
      options.backup, backup.index, backup.cluster_id, backup_sha256, dir, options.id, cluster_id,
      fmt::join(membership.voters, ","), pools, state.last_request_id(), state.digest_hex(),
      state.idempotency_keys());
  return 0;
}

}  // namespace rpool::tools
