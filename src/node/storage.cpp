#include "node/storage.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "base/assert.h"
#include "wal/errc.h"

namespace rpool::node {

bool disk_full(std::error_code ec) {
  return ec == wal::errc::disk_full || ec == std::errc::no_space_on_device;
}
bool retryable(std::error_code ec) {
  return disk_full(ec) || ec == wal::errc::descriptors_exhausted;
}

LogStore::LogStore(std::string dir, wal::Options options, std::unique_ptr<wal::Log> log)
    : dir_(std::move(dir)), options_(std::move(options)), log_(std::move(log)) {
  RPOOL_ASSERT(log_ != nullptr);
}

std::error_code LogStore::reopen(std::string& detail) {
  log_.reset();  // releases the data directory's lock
  wal::OpenResult opened = wal::Log::open(dir_, options_);
  if (opened.error) {
    detail = opened.detail;
    return opened.error;
  }
  log_ = std::move(opened.log);
  return {};
}

StorageResult LogStore::reopen() {
  StorageResult r;
  r.ec = reopen(r.detail);
  return r;
}

StorageResult LogStore::write(const PersistJob& job, bool reopen_first) {
  StorageResult r;
  if (reopen_first || !log_) r.ec = reopen(r.detail);
  if (!r.ec) {
    r.ec = run(job, r.fsync_seconds);
    if (r.ec) r.detail = log_->error_detail();
  }
  return r;
}

namespace {

// The WAL as a raft::DurableStore, for one job.
class WalStore final : public raft::DurableStore {
 public:
  WalStore(wal::Log& log, const PersistJob& job) : log_(log), job_(job) {}

  std::error_code save_snapshot(const raft::Snapshot& s) override {
    const wal::SnapshotFile file{s.meta.index, s.meta.term,
                                 raft::encode_membership(s.meta.membership), *s.data};
    if (const auto ec = log_.save_snapshot(file)) return ec;
    unsynced_ = true;
    Term at;
    const bool continues = log_.first_index() <= s.meta.index &&
                           s.meta.index <= log_.last_index() && !log_.term(s.meta.index, at) &&
                           at == s.meta.term;
    return continues ? log_.compact(s.meta.index) : log_.reset(s.meta.index.next());
  }

  std::error_code append_entries(const std::vector<raft::Entry>& entries) override {
    // A retry after a failure may find part of the entries already there: rewrite them.
    const LogIndex first = entries.front().index;
    if (first <= log_.last_index()) {
      if (const auto ec = log_.truncate_suffix(first)) return ec;
    }
    std::vector<wal::Entry> records;
    records.reserve(entries.size());
    for (const raft::Entry& e : entries)
      records.push_back(wal::Entry{e.term, e.index, static_cast<std::uint8_t>(e.type), e.data});
    unsynced_ = true;
    return log_.append(records);
  }

  std::error_code save_hard_state(const raft::HardState& h) override {
    if (!job_.hard_state) return {};
    // A record behind this Ready's entries, made durable by the same fdatasync (no file to
    // create, rename and fsync on the write path): a crash keeps it only with every entry
    // before it, so its commit index never points past the durable log.
    unsynced_ = true;
    return log_.append_hard_state(wal::HardState{h.current_term, h.voted_for, h.commit_index});
  }

  std::error_code sync() override {
    if (!job_.fsync || !unsynced_) return {};
    const auto started = Clock::now();
    const std::error_code ec = log_.sync();
    fsync_seconds += std::chrono::duration<double>(Clock::now() - started).count();
    if (!ec) unsynced_ = false;
    return ec;
  }

  double fsync_seconds = 0;

 private:
  wal::Log& log_;
  const PersistJob& job_;
  bool unsynced_ = false;
};

}  // namespace

std::error_code LogStore::run(const PersistJob& job, double& fsync_seconds) {
  WalStore store(*log_, job);
  const std::error_code ec = raft::persist(store, *job.ready);
  fsync_seconds = store.fsync_seconds;
  return ec;
}

SnapshotResult LogStore::write_snapshot_file(wal::FileSystem& fs, const std::string& dir,
                                             const wal::SnapshotFile& file) {
  SnapshotResult r;
  r.ec = wal::Log::write_snapshot_file(fs, dir, file, r.detail);
  return r;  // the log is untouched: nothing to reopen
}

SnapshotResult LogStore::keep_snapshot(const wal::SnapshotFile& file, LogIndex compact_to) {
  SnapshotResult r;
  r.ec = log_ ? log_->keep_snapshots(file) : make_error_code(wal::errc::poisoned);
  if (!r.ec && compact_to >= log_->first_index()) r.ec = log_->compact(compact_to);
  if (r.ec && log_) r.detail = log_->error_detail();
  // A full disk (or no descriptor to spare) only fails this snapshot (the log stays as it was):
  // reopen the log at once.
  if (retryable(r.ec)) r.reopen_ec = reopen(r.reopen_detail);
  return r;
}

wal::FileSystem& LogStore::file_system() const {
  return options_.fs != nullptr ? *options_.fs : wal::posix_file_system();
}

std::error_code LogStore::save_file(const std::string& name, const Bytes& content,
                                    std::string& detail) {
  if (!log_) return make_error_code(wal::errc::poisoned);
  const std::error_code ec = log_->save_file(name, content);
  if (ec) detail = log_->error_detail();
  return ec;
}

void LogStore::sync() {
  if (log_ && !log_->poisoned()) (void)log_->sync();
}

// --- ThreadStorage ------------------------------------------------------------------------------

ThreadStorage::ThreadStorage(Env& env, std::unique_ptr<LogStore> store)
    : env_(env), store_(std::move(store)) {
  // The thread runs until close() or destruction; a work guard keeps its io_context alive while
  // idle.
  thread_ = std::thread([this] {
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

ThreadStorage::~ThreadStorage() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

template <typename Result>
void ThreadStorage::run(std::function<Result()> work, std::function<void(Result)> done) {
  boost::asio::post(io_, [this, work = std::move(work), done = std::move(done)]() mutable {
    Result result = work();
    env_.post([done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  });
}

void ThreadStorage::write(std::shared_ptr<const PersistJob> job, bool reopen,
                          std::function<void(StorageResult)> done) {
  run<StorageResult>([this, job = std::move(job), reopen] { return store_->write(*job, reopen); },
                     std::move(done));
}

void ThreadStorage::save_snapshot(std::shared_ptr<const wal::SnapshotFile> file,
                                  LogIndex compact_to, std::function<void(SnapshotResult)> done) {
  // Tens of megabytes and an fdatasync: written on the Env's background thread, so that the
  // entries written meanwhile do not wait behind it. Then, on the storage thread, the log keeps
  // it and compacts.
  auto written = std::make_shared<SnapshotResult>();
  env_.background([fs = &store_->file_system(), dir = store_->dir(), file,
                   written] { *written = LogStore::write_snapshot_file(*fs, dir, *file); },
                  [this, alive = std::weak_ptr<bool>(alive_), file, compact_to, written,
                   done = std::move(done)]() mutable {
                    if (!alive.lock()) return;
                    if (written->ec) {
                      done(std::move(*written));
                      return;
                    }
                    run<SnapshotResult>(
                        [this, file = std::move(file), compact_to] {
                          return store_->keep_snapshot(*file, compact_to);
                        },
                        std::move(done));
                  });
}

void ThreadStorage::reopen(std::function<void(StorageResult)> done) {
  run<StorageResult>([this] { return store_->reopen(); }, std::move(done));
}

void ThreadStorage::save_file(std::string name, Bytes content,
                              std::function<void(std::error_code, std::string)> done) {
  run<StorageResult>(
      [this, name = std::move(name), content = std::move(content)] {
        StorageResult r;
        r.ec = store_->save_file(name, content, r.detail);
        return r;
      },
      [done = std::move(done)](StorageResult r) { done(r.ec, r.detail); });
}

void ThreadStorage::close(std::function<void()> done) {
  boost::asio::post(io_, [this, done = std::move(done)]() mutable {
    store_->sync();
    env_.post([this, done = std::move(done)] {
      io_.stop();
      if (thread_.joinable()) thread_.join();
      done();
    });
  });
}

}  // namespace rpool::node
