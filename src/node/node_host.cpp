#include "node/node_host.h"

#include <charconv>
#include <filesystem>
#include <system_error>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "base/assert.h"
#include "node/node_internal.h"
#include "node/planted_bugs.h"
#include "wal/errc.h"

namespace rpool::node {
namespace {

using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;
using detail::random_u64;
using detail::role_name;

// The cluster id in every peer handshake, so that nodes configured for another cluster never
// exchange messages: a hash of the founding members (ids and raft addresses), computed when the
// cluster forms and kept in the data directory (a node that joins later learns it from its
// first peer), so that later edits of the config's member list do not change it.
constexpr std::string_view cluster_id_file = "cluster-id";

// The file's content: 16 hex digits and a newline.
std::string cluster_id_text(std::uint64_t id) { return fmt::format("{:016x}\n", id); }

std::uint64_t cluster_id_of(const Config& config) {
  std::string text;
  std::vector<const Member*> members;
  for (const Member& m : config.members) members.push_back(&m);
  std::sort(members.begin(), members.end(), [](const Member* a, const Member* b) { return a->id < b->id; });
  for (const Member* m : members) text += fmt::format("{}={};", m->id, m->raft.to_string());
  const pool::Sha256 h = api::request_hash(text);
  return load_u64le(h.data());
}

wal::Entry to_wal(const raft::Entry& e) {
  return wal::Entry{e.term, e.index, static_cast<std::uint8_t>(e.type), e.data};
}

bool disk_full(std::error_code ec) { return ec == wal::errc::disk_full || ec == std::errc::no_space_on_device; }

// Commit index advances are saved with the hard state at most this often: the commit index is
// advisory (a restarted node relearns it from the leader), and every save costs three fsyncs.
constexpr auto commit_save_interval = std::chrono::seconds(1);

}  // namespace

NodeHost::NodeHost(asio::io_context& io, NodeOptions options)
    : io_(io),
      options_(std::move(options)),
      logger_(options_.log_format, options_.id.value()),
      ticker_(io),
      storage_timer_(io) {}

NodeHost::~NodeHost() {
  if (transport_) transport_->stop();
  wal_io_.stop();
  if (wal_thread_.joinable()) wal_thread_.join();
}

std::unique_ptr<NodeHost> NodeHost::open(asio::io_context& io, NodeOptions options, std::string& error) {
  if (options.data_dir.empty()) options.data_dir = options.config.data_dir_for(options.id);
  std::unique_ptr<NodeHost> node(new NodeHost(io, std::move(options)));
  if (!node->recover(error)) return nullptr;
  return node;
}

bool NodeHost::recover(std::string& error) {
  const std::string& dir = options_.data_dir;
  const auto recover_started = Clock::now();
  std::error_code fs_ec;
  std::filesystem::create_directories(dir, fs_ec);
  if (fs_ec) {
    error = fmt::format("cannot create data directory {}: {}", dir, fs_ec.message());
    return false;
  }
  wal_options_.segment_bytes = options_.config.wal.segment_bytes;
  wal_options_.warn = [this](const std::string& line) { logger_.warn(line); };
  wal::OpenResult opened = wal::Log::open(dir, wal_options_);
  if (opened.error) {
    error = fmt::format("cannot open data directory {}: {}{}{}", dir, opened.error.message(),
                        opened.detail.empty() ? "" : ": ", opened.detail);
    return false;
  }
  log_ = std::move(opened.log);
  if (log_->segments().empty()) {
    // A new log: create (and zero-fill) its first segment now rather than on the first append,
    // where it would hold up the first election by the time it takes to write a segment.
    if (const auto ec = log_->reset(log_->first_index())) {
      error = fmt::format("cannot create the log in {}: {} {}", dir, ec.message(), log_->error_detail());
      return false;
    }
  }

  wal::HardState hard;
  if (const auto ec = log_->load_hard_state(hard)) {
    error = fmt::format("cannot read the hard state in {}: {} {}", dir, ec.message(), log_->error_detail());
    return false;
  }
  std::optional<wal::SnapshotFile> snapshot_file;
  if (const auto ec = log_->load_latest_snapshot(snapshot_file)) {
    error = fmt::format("cannot read the snapshot in {}: {} {}", dir, ec.message(), log_->error_detail());
    return false;
  }

  raft::BootState boot;
  LogIndex from = log_->first_index();
  LogIndex snapshot_index;
  if (snapshot_file) {
    raft::Membership membership;
    if (!raft::decode_membership(snapshot_file->metadata, membership)) {
      error = fmt::format("snapshot {} in {}: its membership does not decode", snapshot_file->index, dir);
      return false;
    }
    auto data = std::make_shared<const Bytes>(std::move(snapshot_file->data));
    if (const auto ec = pool_.restore(*data)) {
      error = fmt::format("snapshot {} in {}: its pool state does not decode: {}", snapshot_file->index, dir, ec.message());
      return false;
    }
    snapshot_index = snapshot_file->index;
    margin_snapshot_ = {snapshot_index, data};
    boot.snapshot = raft::Snapshot{{snapshot_file->index, snapshot_file->term, std::move(membership)}, data};
    // The log must continue right after the snapshot. A log that ends before it, or holds a
    // different entry at its index, is what a crash while installing a snapshot leaves: drop it.
    Term term_at;
    const bool continues = log_->first_index() <= snapshot_index.next() && log_->last_index() >= snapshot_index &&
                           (log_->first_index() > snapshot_index ||
                            (!log_->term(snapshot_index, term_at) && term_at == snapshot_file->term));
    if (!continues) {
      if (const auto ec = log_->reset(snapshot_index.next())) {
        error = fmt::format("cannot reset the log in {} after snapshot {}: {}", dir, snapshot_index, ec.message());
        return false;
      }
    }
    from = snapshot_index.next();
  } else if (log_->first_index() != LogIndex(1)) {
    error = fmt::format("the log in {} starts at index {} but there is no snapshot before it", dir, log_->first_index());
    return false;
  }
  if (log_->last_index() >= from) {
    std::vector<wal::Entry> entries;
    if (const auto ec = log_->read(from, log_->last_index().next(), entries)) {
      error = fmt::format("cannot read the log in {}: {} {}", dir, ec.message(), log_->error_detail());
      return false;
    }
    boot.entries.reserve(entries.size());
    for (wal::Entry& e : entries) {
      if (e.kind < 1 || e.kind > 3) {
        error = fmt::format("log entry {} in {} has unknown kind {}", e.index, dir, e.kind);
        return false;
      }
      boot.entries.push_back(raft::Entry{e.term, e.index, static_cast<raft::EntryType>(e.kind), std::move(e.payload)});
    }
  }
  const LogIndex last = boot.entries.empty() ? snapshot_index : boot.entries.back().index;
  boot.hard_state = raft::HardState{hard.current_term, hard.voted_for,
                                    std::clamp(hard.commit_index, snapshot_index, last)};
  snapshot_index_ = snapshot_index;
  applied_ = snapshot_index;
  persisted_term_ = hard.current_term;
  persisted_vote_ = hard.voted_for;

  // The cluster id: kept in the data directory; a founding node computes it the first time, a
  // joining node learns it from the leader (start()).
  Bytes id_file;
  if (const auto ec = log_->load_file(cluster_id_file, id_file); !ec) {
    const std::string_view text = as_chars(id_file);
    std::from_chars(text.data(), text.data() + text.size(), cluster_id_, 16);
    if (cluster_id_ == 0 || cluster_id_text(cluster_id_) != text) {  // exactly what we write
      error = fmt::format("{}/{} does not hold a cluster id", dir, cluster_id_file);
      return false;
    }
  } else if (ec != wal::errc::not_found) {
    error = fmt::format("cannot read {}/{}: {}", dir, cluster_id_file, ec.message());
    return false;
  } else if (!options_.join) {
    cluster_id_ = cluster_id_of(options_.config);
    if (const auto save_ec = log_->save_file(cluster_id_file, as_bytes(cluster_id_text(cluster_id_)))) {
      error = fmt::format("cannot write {}/{}: {} {}", dir, cluster_id_file, save_ec.message(), log_->error_detail());
      return false;
    }
  }

  raft::Config rc;
  rc.id = options_.id;
  if (!options_.join) {
    // The founding members, until the log or a snapshot holds a membership.
    for (const Member& m : options_.config.members) {
      rc.initial_membership.voters.push_back(m.id);
      rc.initial_membership.context[m.id] = detail::member_context_json(m);
    }
    std::sort(rc.initial_membership.voters.begin(), rc.initial_membership.voters.end());
  }
  rc.heartbeat_ticks = 1;
  rc.election_ticks = std::max<int>(2, static_cast<int>(options_.config.raft.election_timeout_ms /
                                                        options_.config.raft.heartbeat_ms));
  rc.random_seed = random_u64();
  rc.unsafe_commit_alone = planted("ack_before_quorum");
  core_ = std::make_unique<raft::Core>(rc, std::move(boot));
  logger_.info("recovered", {{"data_dir", dir},
                             {"snapshot_index", snapshot_index.value()},
                             {"last_index", last.value()},
                             {"term", hard.current_term.value()},
                             {"last_request_id", pool_.last_request_id()},
                             {"ms", static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        Clock::now() - recover_started).count())}});
  return true;
}

bool NodeHost::start(std::string& error) {
  const Member* self = options_.config.member(options_.id);
  RPOOL_ASSERT(self != nullptr);

  PeerTransport::Options peer_options;
  peer_options.self = options_.id;
  peer_options.cluster_id = cluster_id_;
  peer_options.adopt_cluster_id = cluster_id_ == 0;
  peer_options.on_cluster_id = [this](std::uint64_t id) {
    cluster_id_ = id;
    asio::post(wal_io_, [this, id] {
      if (const auto ec = log_->save_file(cluster_id_file, as_bytes(cluster_id_text(id)))) {
        logger_.error("cannot save the cluster id", {{"error", ec.message()}, {"detail", log_->error_detail()}});
      }
    });
  };
  peer_options.listen_host = self->raft.host;
  peer_options.listen_port = self->raft.port;
  peer_options.bind_host = self->raft.host;
  peer_options.log = [this](std::string_view line) { logger_.info(line); };
  transport_ = std::make_unique<PeerTransport>(io_, peer_options, [this](raft::Message&& m) {
    auto message = std::make_shared<raft::Message>(std::move(m));
    with_core([this, message] { core_->step(*message); });
  });
  if (const auto ec = transport_->start()) {
    error = fmt::format("cannot listen for peers on {}: {}", self->raft.to_string(), ec.message());
    return false;
  }
  sync_peers();

  HttpServerOptions http_options;
  http_options.host = self->http.host;
  http_options.port = self->http.port;
  http_options.body_bytes_max = api::body_bytes_max;
  http_options.log = [this](std::string_view line) { logger_.warn(line); };
  http_ = std::make_unique<HttpServer>(io_, http_options,
                                       [this](HttpRequest&& request, Respond respond) {
                                         handle(std::move(request), std::move(respond));
                                       });
  if (const auto ec = http_->start()) {
    error = fmt::format("cannot listen for HTTP on {}: {}", self->http.to_string(), ec.message());
    return false;
  }
  HttpClientOptions client_options;
  client_options.bind_host = self->http.host;
  client_ = std::make_unique<HttpClient>(io_, client_options);

  // The WAL thread runs until shutdown; a work guard keeps its io_context alive while idle.
  wal_thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(wal_io_);
    wal_io_.run();
  });

  on_tick();
  schedule_ready();
  logger_.info("serving", {{"raft", self->raft.to_string()}, {"http", self->http.to_string()}});
  return true;
}

std::uint16_t NodeHost::http_port() const { return http_ ? http_->port() : 0; }
std::uint16_t NodeHost::raft_port() const { return transport_ ? transport_->listen_port() : 0; }

// --- the Ready cycle ----------------------------------------------------------------------------

void NodeHost::with_core(std::function<void()> input, std::shared_ptr<Held> held) {
  if (storage_failed_) {  // the core is frozen with an unpersisted Ready
    if (held) abandon_held(*held);
    return;
  }
  if (ready_outstanding_) {
    deferred_.emplace_back(std::move(input), std::move(held));
    return;
  }
  input();
  schedule_ready();
}

void NodeHost::abandon_held(Held& held) {
  if (!held.respond) return;
  Respond respond = std::move(held.respond);
  held.respond = nullptr;
  if (fatal_) {
    respond(error_response(*held.request, api::Error::no_leader, "This node stopped: its storage failed. Retry on another node."));
  } else {
    respond(error_response(*held.request, api::Error::insufficient_storage, "This node cannot write its log; nothing was applied."));
  }
}

void NodeHost::abandon_requests() {
  for (auto& [input, held] : deferred_) {
    if (held) abandon_held(*held);
  }
  deferred_.clear();
  for (auto& [context, read] : reads_) {
    read.respond(error_response(read.request, api::Error::no_leader, "This node stopped: its storage failed. Retry on another node."));
  }
  reads_.clear();
  if (change_) end_change(make_error_code(raft::errc::not_leader), "This node stopped: its storage failed. Repeat the request on another node.");
  if (transfer_) end_transfer(false, "This node stopped: its storage failed.");
}

void NodeHost::schedule_ready() {
  if (ready_scheduled_) return;
  ready_scheduled_ = true;
  asio::post(io_, [this] { process_ready(); });
}

void NodeHost::process_ready() {
  ready_scheduled_ = false;
  if (ready_outstanding_ || storage_failed_ || !core_->has_ready()) return;
  raft::Ready ready = core_->ready();
  ready_outstanding_ = true;
  for (raft::Message& m : ready.messages) transport_->send(std::move(m));
  ready.messages.clear();
  if (!ready.snapshot && ready.entries.empty() && !ready.hard_state) {
    on_persisted(std::move(ready));
    return;
  }
  const auto in_flight = persist(std::move(ready));
  // The committed entries of a Ready are durable already (the core hands out only entries of
  // earlier Readies, see raft::Core::ready), so they are applied and answered now, while this
  // Ready's fsync runs on the WAL thread, instead of after it: the answers' work overlaps the
  // write. Not with a snapshot: the pool is restored from it first (on_persisted). Everything
  // else of on_persisted (read states, advance, deferred inputs) still waits for the write.
  if (in_flight && !in_flight->snapshot) {
    for (const raft::Entry& e : in_flight->committed_entries) apply(e);
  }
}

std::shared_ptr<const raft::Ready> NodeHost::persist(raft::Ready ready) {
  auto job = std::make_shared<PersistJob>();
  if (ready.snapshot) {
    const raft::Snapshot& s = *ready.snapshot;
    job->snapshot = wal::SnapshotFile{s.meta.index, s.meta.term, raft::encode_membership(s.meta.membership), *s.data};
  }
  job->entries.reserve(ready.entries.size());
  for (const raft::Entry& e : ready.entries) {
    job->entries.push_back(to_wal(e));
    counters_.wal_bytes += e.data.size() + 25;
  }
  if (ready.hard_state) {
    // Term and vote must be durable before the messages that depend on them; a commit index
    // alone may wait (see commit_save_interval).
    const raft::HardState& h = *ready.hard_state;
    const bool vote_changed = h.current_term != persisted_term_ || h.voted_for != persisted_vote_;
    if (vote_changed || Clock::now() - last_commit_save_ >= commit_save_interval) {
      job->hard_state = wal::HardState{h.current_term, h.voted_for, h.commit_index};
      persisted_term_ = h.current_term;
      persisted_vote_ = h.voted_for;
      last_commit_save_ = Clock::now();
    }
  }
  job->fsync = options_.config.wal.fsync;
  if (!job->snapshot && job->entries.empty() && !job->hard_state) {
    // Only a commit index that may wait (see commit_save_interval): nothing to write.
    on_persisted(std::move(ready));
    return nullptr;
  }
  auto in_flight = std::make_shared<raft::Ready>(std::move(ready));
  write_ready(std::move(job), in_flight, false);
  return in_flight;
}

void NodeHost::write_ready(std::shared_ptr<const PersistJob> job, std::shared_ptr<raft::Ready> ready, bool reopen) {
  asio::post(wal_io_, [this, job = std::move(job), ready = std::move(ready), reopen]() mutable {
    std::error_code ec;
    std::string detail;
    double fsync_seconds = 0;
    if (reopen) ec = reopen_log(detail);
    if (!ec) {
      ec = run_persist_job(*job, fsync_seconds);
      if (ec) detail = log_->error_detail();
    }
    asio::post(io_, [this, job = std::move(job), ready = std::move(ready), ec, fsync_seconds,
                     detail = std::move(detail)]() mutable {
      ++counters_.wal_syncs;
      if (fsync_seconds > 0) counters_.wal_fsync_seconds.observe(fsync_seconds);
      if (ec) {
        // Kept for retry_storage(): after a full disk the same Ready is written again, on a
        // reopened log (the failure poisoned the old one).
        storage_retry_ = [this, job, ready] { write_ready(job, ready, true); };
        storage_failed(ec, detail);
        return;
      }
      on_persisted(std::move(*ready));
    });
  });
}

std::error_code NodeHost::run_persist_job(const PersistJob& job, double& fsync_seconds) {
  if (!log_) {  // an earlier reopen failed
    std::string ignored;
    if (const auto ec = reopen_log(ignored)) return ec;
  }
  wal::Log& log = *log_;
  std::error_code ec;
  if (job.snapshot) {
    const wal::SnapshotFile& s = *job.snapshot;
    ec = log.save_snapshot(s);
    if (!ec) {
      Term at;
      const bool continues = log.first_index() <= s.index && s.index <= log.last_index() &&
                             !log.term(s.index, at) && at == s.term;
      ec = continues ? log.compact(s.index) : log.reset(s.index.next());
    }
  }
  if (!ec && !job.entries.empty()) {
    // A retry after a failure may find part of the entries already there: rewrite them.
    const LogIndex first = job.entries.front().index;
    if (first <= log.last_index()) ec = log.truncate_suffix(first);
    if (!ec) ec = log.append(job.entries);
  }
  if (!ec && job.fsync) {
    const auto started = Clock::now();
    ec = log.sync();
    fsync_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  }
  if (!ec && job.hard_state) ec = log.save_hard_state(*job.hard_state);
  return ec;
}

std::error_code NodeHost::reopen_log(std::string& detail) {
  log_.reset();  // releases the data directory's lock
  wal::OpenResult opened = wal::Log::open(options_.data_dir, wal_options_);
  if (opened.error) {
    detail = opened.detail;
    return opened.error;
  }
  log_ = std::move(opened.log);
  return {};
}

void NodeHost::on_persisted(raft::Ready ready) {
  storage_recovered();
  for (raft::Message& m : ready.messages_after_persist) transport_->send(std::move(m));
  ready.messages_after_persist.clear();
  if (ready.snapshot) {
    const raft::Snapshot& s = *ready.snapshot;
    if (const auto restore_ec = pool_.restore(*s.data)) {
      fatal_ = fmt::format("the snapshot at index {} from the leader does not decode: {}", s.meta.index, restore_ec.message());
      logger_.error(*fatal_);
      if (on_fatal_) on_fatal_();
      return;
    }
    snapshot_index_ = s.meta.index;
    applied_ = s.meta.index;
    margin_snapshot_ = {s.meta.index, s.data};
    // Writes waiting for entries the snapshot covers can no longer be matched to their result.
    for (auto it = writes_.begin(); it != writes_.end() && it->first <= s.meta.index;) {
      fail_write(it->second, api::Error::outcome_unknown, "The write was overtaken by a snapshot; retry it with its Idempotency-Key.");
      it = writes_.erase(it);
    }
    ++counters_.snapshots_installed;
    logger_.info("installed snapshot", {{"index", s.meta.index.value()}, {"term", s.meta.term.value()}});
  }
  for (const raft::Entry& e : ready.committed_entries) {
    if (e.index > applied_) apply(e);  // else applied early, by process_ready
  }
  for (const raft::ReadState& rs : ready.read_states) {
    const auto it = reads_.find(rs.context);
    if (it == reads_.end()) continue;  // timed out meanwhile
    it->second.index = rs.index;
    it->second.indexed = true;
  }
  core_->advance(ready);
  ready_outstanding_ = false;
  observe_role();
  sync_peers();
  drive_change();
  drive_transfer();
  serve_reads();
  auto inputs = std::move(deferred_);
  deferred_.clear();
  for (auto& [input, held] : inputs) input();
  maybe_snapshot();
  schedule_ready();
  if (stopping_) maybe_finish_shutdown();
}

void NodeHost::fail_write(PendingWrite& write, api::Error e, std::string_view message) {
  ++counters_.proposals_failed;
  write.respond(error_response(*write.request, e, message));
}

void NodeHost::apply(const raft::Entry& entry) {
  RPOOL_ASSERT_OP(entry.index, >, applied_);
  applied_ = entry.index;
  const auto pending = writes_.find(entry.index);
  if (change_ && change_->entry == entry.index) {
    (entry.type == raft::EntryType::config && entry.term == change_->entry_term ? change_->committed : change_->lost) = true;
  }
  if (entry.type != raft::EntryType::normal) {
    if (pending != writes_.end()) {
      fail_write(pending->second, api::Error::outcome_unknown, "The write was lost in a leader change; retry it with its Idempotency-Key.");
      writes_.erase(pending);
    }
    return;
  }
  pool::Command command;
  if (const auto ec = pool::decode(entry.data, command)) {
    // Every replica skips it alike, so they stay identical; it can only be a bug of ours.
    logger_.error("committed entry does not decode as a pool command; skipped",
                  {{"index", entry.index.value()}, {"error", ec.message()}});
    if (pending != writes_.end()) {
      fail_write(pending->second, api::Error::internal, "The write could not be applied.");
      writes_.erase(pending);
    }
    return;
  }
  const pool::Result result = pool_.apply(entry.index.value(), command);
  if (!result.replayed) {
    counters_.draws += result.draws.size();
    for (const auto& d : result.draws) counters_.draws_pool_empty += d.item_id ? 0 : 1;
  }
  if (result.bootstrapped) logger_.info("catalog seeded", {{"items", std::uint64_t{pool_.items().size()}}});
  if (pending == writes_.end()) return;
  if (pending->second.term == entry.term) {
    pending->second.done(result);
  } else {
    fail_write(pending->second, api::Error::outcome_unknown, "The write was lost in a leader change; retry it with its Idempotency-Key.");
  }
  writes_.erase(pending);
}

void NodeHost::observe_role() {
  const raft::Role role = core_->role();
  const NodeId leader = core_->leader();
  if (leader != last_leader_) {
    ++counters_.leader_changes;
    logger_.info("leader changed", {{"leader", leader.value()}, {"term", core_->current_term().value()},
                                    {"role", std::string(role_name(role))}});
  }
  if (role == raft::Role::leader && last_role_ != raft::Role::leader) ensure_bootstrap();
  last_role_ = role;
  last_leader_ = leader;
}

void NodeHost::ensure_bootstrap() {
  // The catalog seeds the pool once, when the cluster first forms. Every new leader of a pool
  // not yet seeded proposes it before any write of its term; a duplicate is a no-op when applied.
  if (pool_.bootstrapped() || bootstrap_term_ == core_->current_term()) return;
  if (core_->role() != raft::Role::leader) return;
  pool::Command command{pool::Bootstrap{options_.config.catalog}, detail::wall_clock_ms(), {}, {}};
  const auto ec = core_->propose(pool::encode(command));
  // A proposal refused for a while (a leadership transfer) is tried again before the next write;
  // one that can never succeed (too large: the config check prevents it) is not retried per write.
  if (!ec || ec == raft::errc::too_large) bootstrap_term_ = core_->current_term();
  if (ec == raft::errc::too_large) {
    logger_.error("the catalog does not fit in one log entry; the pool is not seeded",
                  {{"items", std::uint64_t{options_.config.catalog.size()}}});
  }
}

void NodeHost::serve_reads() {
  const LogIndex applied = applied_;
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.indexed && it->second.index <= applied) {
      answer_pool(it->second);
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

void NodeHost::answer_pool(PendingRead& read) {
  read.respond(json_response(read.request, 200, pool_json()));
}

const std::string& NodeHost::pool_json() {
  // Every change of the pool advances applied_ (an applied entry, an installed snapshot), so the
  // body rendered at an index stays right until applied_ moves.
  if (pool_json_cache_.empty() || pool_json_cache_index_ != applied_) {
    pool_json_cache_ = api::pool_json(pool_, applied_);
    pool_json_cache_index_ = applied_;
  }
  return pool_json_cache_;
}

void NodeHost::maybe_snapshot() {
  const LogIndex applied = core_->log().applied_index();
  if (snapshot_in_progress_ || applied - snapshot_index_ < options_.config.raft.snapshot_entries) return;
  take_snapshot(false, {});
}

void NodeHost::take_snapshot(bool compact_all, std::function<void(std::error_code, LogIndex)> done) {
  RPOOL_ASSERT(!ready_outstanding_);
  const LogIndex index = core_->log().applied_index();
  RPOOL_ASSERT_OP(applied_, ==, index);  // the pool is at the core's applied index
  if (index <= snapshot_index_ || snapshot_in_progress_ || storage_failed_) {
    if (done) done(storage_failed_ ? make_error_code(wal::errc::disk_full) : std::error_code(), snapshot_index_);
    return;
  }
  snapshot_in_progress_ = true;
  const auto started = Clock::now();
  auto data = std::make_shared<const Bytes>(pool_.snapshot());
  const raft::SnapshotMeta meta = core_->snapshot_meta(index);
  // The log is compacted up to the PREVIOUS snapshot, not this one: the entries in between stay,
  // so that a follower a little behind catches up from the log instead of by a whole snapshot
  // (which, with a million idempotency keys, is tens of megabytes). POST /v1/snapshot compacts
  // all the way. The core forgets entries in memory now; the WAL keeps them until the snapshot
  // file is durable, so a crash in between loses nothing.
  const LogIndex compact_to = compact_all ? index : margin_snapshot_.first;
  const auto compact_data = compact_all ? data : margin_snapshot_.second;
  if (compact_to > core_->log().snapshot_index()) {
    if (const auto ec = core_->compact(compact_to, compact_data)) {
      snapshot_in_progress_ = false;
      if (done) done(ec, snapshot_index_);
      return;
    }
  }
  margin_snapshot_ = {index, data};
  auto file = std::make_shared<wal::SnapshotFile>(
      wal::SnapshotFile{meta.index, meta.term, raft::encode_membership(meta.membership), *data});
  const LogIndex wal_compact_to = std::max(compact_to, core_->log().snapshot_index());
  asio::post(wal_io_, [this, file, started, wal_compact_to, done = std::move(done)]() mutable {
    std::error_code ec = log_ ? log_->save_snapshot(*file) : make_error_code(wal::errc::poisoned);
    if (!ec && wal_compact_to >= log_->first_index()) ec = log_->compact(wal_compact_to);
    std::string detail = ec && log_ ? log_->error_detail() : std::string();
    // A full disk only fails this snapshot (the log stays as it was); reopen the log at once, so
    // that the failure does not poison the writes that follow. Any other error is fatal.
    std::error_code reopen_ec;
    std::string reopen_detail;
    if (disk_full(ec)) reopen_ec = reopen_log(reopen_detail);
    asio::post(io_, [this, file, ec, started, detail, reopen_ec, reopen_detail, done = std::move(done)] {
      snapshot_in_progress_ = false;
      if (ec) {
        logger_.error("snapshot failed", {{"index", file->index.value()}, {"error", ec.message()}, {"detail", detail}});
        if (!disk_full(ec)) {
          storage_failed(ec, detail);
        } else if (reopen_ec) {
          storage_failed(reopen_ec, reopen_detail);
        }
      } else {
        snapshot_index_ = file->index;
        ++counters_.snapshots;
        counters_.snapshot_bytes_last = file->data.size();
        counters_.snapshot_seconds.observe(std::chrono::duration<double>(Clock::now() - started).count());
        logger_.info("snapshot taken", {{"index", file->index.value()}, {"bytes", std::uint64_t{file->data.size()}}});
      }
      if (done) done(ec, snapshot_index_);
    });
  });
}

void NodeHost::on_tick() {
  with_core([this] {
    core_->tick();
    drive_change();
    drive_transfer();
  });
  expire_requests();
  ticker_.expires_after(std::chrono::milliseconds(options_.config.raft.heartbeat_ms));
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_tick();
  });
}

void NodeHost::expire_requests() {
  const auto now = Clock::now();
  for (auto it = writes_.begin(); it != writes_.end();) {
    if (it->second.deadline <= now) {
      fail_write(it->second, api::Error::outcome_unknown, "The write was not confirmed in time; retry it with its Idempotency-Key.");
      it = writes_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.deadline <= now) {
      const bool leaderless = core_->leader() == NodeId();
      it->second.respond(error_response(it->second.request, leaderless ? api::Error::no_leader : api::Error::outcome_unknown,
                                        leaderless ? "No leader is known right now; retry shortly."
                                                   : "The leader did not confirm the read in time; retry it."));
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
  if (stopping_) maybe_finish_shutdown();
}

void NodeHost::storage_failed(std::error_code ec, const std::string& detail) {
  const bool recoverable = disk_full(ec);
  if (!storage_failed_) {
    logger_.error(recoverable ? "the disk is full; this node stops writing and retries every second"
                              : "storage failed; this node stops",
                  {{"error", ec.message()}, {"detail", detail}});
  }
  storage_failed_ = true;
  ++counters_.storage_failures;
  // Their entries may still commit (the followers may have them): the outcome is unknown.
  for (auto& [index, w] : writes_) {
    fail_write(w, api::Error::outcome_unknown, "The log could not be written here; retry the write with its Idempotency-Key.");
  }
  writes_.clear();
  if (!recoverable) {
    fatal_ = fmt::format("storage failed: {} {}", ec.message(), detail);
    abandon_requests();
    if (on_fatal_) on_fatal_();
    return;
  }
  // Requests waiting for the core get 507 now rather than waiting for the disk.
  for (auto& [input, held] : deferred_) {
    if (held) abandon_held(*held);
  }
  std::erase_if(deferred_, [](const auto& d) { return d.second != nullptr; });
  retry_storage();
}

void NodeHost::retry_storage() {
  storage_timer_.expires_after(std::chrono::seconds(1));
  storage_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_ || !storage_failed_) return;
    if (storage_retry_) {
      storage_retry_();  // on_persisted() ends the failure, or storage_failed() comes again
      return;
    }
    // No Ready failed (a snapshot or a reopen did): reopen, then carry on.
    asio::post(wal_io_, [this] {
      std::string detail;
      const std::error_code reopen_ec = reopen_log(detail);
      asio::post(io_, [this, reopen_ec, detail] {
        if (reopen_ec) return storage_failed(reopen_ec, detail);
        storage_recovered();
      });
    });
  });
}

void NodeHost::storage_recovered() {
  if (!storage_failed_) return;
  storage_failed_ = false;
  storage_retry_ = nullptr;
  logger_.info("the log is writable again; this node resumes");
  schedule_ready();
}

// --- shutdown -----------------------------------------------------------------------------------

void NodeHost::shutdown(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  shutdown_done_ = std::move(done);
  logger_.info("shutting down");
  if (http_) http_->stop_accepting();
  // A leader hands over first, so that its going away costs the cluster no election timeout.
  if (core_->role() == raft::Role::leader && core_->membership().voters.size() > 1) start_shutdown_transfer();
  maybe_finish_shutdown();
}

void NodeHost::maybe_finish_shutdown() {
  if (!stopping_ || shutdown_started_ || !writes_.empty() || !reads_.empty() || transfer_) return;
  shutdown_started_ = true;
  auto finish = [this] {
    ticker_.cancel();
    if (transport_) transport_->stop();
    if (client_) client_->close_all();
    // Sync whatever the WAL thread holds, then let it finish.
    asio::post(wal_io_, [this] {
      if (log_ && !log_->poisoned()) (void)log_->sync();
      asio::post(io_, [this] {
        wal_io_.stop();
        if (wal_thread_.joinable()) wal_thread_.join();
        logger_.info("stopped");
        if (shutdown_done_) shutdown_done_();
      });
    });
  };
  if (http_) {
    http_->shutdown(finish);
  } else {
    finish();
  }
}

}  // namespace rpool::node
