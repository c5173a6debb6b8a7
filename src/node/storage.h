// Storage: where a Replica keeps what must survive a crash (entries, hard state, snapshots), over
// a wal::Log.
//
// LogStore does the work synchronously on one wal::Log: it applies a Ready with raft::persist(),
// the one implementation of the Ready/storage contract (raft/storage.h), over WalStore, the WAL's
// DurableStore: a snapshot first (then the log continues after it or is reset to it), then the
// entries (a conflicting suffix truncated first), then the hard state (term, vote, commit index) as
// a record behind them in the same segment, then one fdatasync for all of it. ThreadStorage
// runs a LogStore on a thread of its own so that rpoold's event loop never waits for the disk;
// tests/sim runs one in simulated time over a simulated file system. Either way every `done` runs
// on the replica's thread, in the order the calls were made, except save_snapshot()'s: its file is
// written beside the log (Env::background), so writes made after it may finish first.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "base/bytes.h"
#include "node/env.h"
#include "raft/storage.h"
#include "wal/log.h"

namespace rpool::node {

// One Ready's writes: the Ready itself (read-only on both threads: the replica applies its
// committed entries while the storage thread writes it), and whether its hard state is written.
struct PersistJob {
  std::shared_ptr<const raft::Ready> ready;
  // False when only the commit index changed and it may wait (the replica saves it at most once
  // a second: the commit index is advisory, and every save is a record in the log).
  bool hard_state = true;
  bool fsync = true;
};

struct StorageResult {
  std::error_code ec;
  std::string detail;        // the log's error detail when ec is set
  double fsync_seconds = 0;  // the fdatasync's duration (0 without one)
};

struct SnapshotResult {
  std::error_code ec;  // saving the snapshot or compacting the log
  std::string detail;
  // After a full disk the log is reopened at once, so the failure does not poison the writes that
  // follow; this is how that went.
  std::error_code reopen_ec;
  std::string reopen_detail;
};

// A failure the node waits out, retrying on a reopened log: a full disk, or no file descriptor to
// spare. Any other storage error stops the node.
bool disk_full(std::error_code ec);
bool retryable(std::error_code ec);

class Storage {
 public:
  virtual ~Storage() = default;
  // Writes one Ready's job; with `reopen`, closes and reopens the log first (after a failure,
  // which poisons a wal::Log). A retried job may find part of its entries written: they are
  // written again.
  virtual void write(std::shared_ptr<const PersistJob> job, bool reopen,
                     std::function<void(StorageResult)> done) = 0;
  // Saves a snapshot file, then compacts the log up to `compact_to` (nothing if it is below the
  // log's first index). The file is written without holding up the write()s made meanwhile.
  virtual void save_snapshot(std::shared_ptr<const wal::SnapshotFile> file, LogIndex compact_to,
                             std::function<void(SnapshotResult)> done) = 0;
  // Closes and reopens the log (clears a failure).
  virtual void reopen(std::function<void(StorageResult)> done) = 0;
  // Saves a small named file beside the log (the cluster id); a failure is only logged.
  virtual void save_file(std::string name, Bytes content,
                         std::function<void(std::error_code, std::string)> done) = 0;
  // Syncs what the log holds and stops; no calls after.
  virtual void close(std::function<void()> done) = 0;
};

// The synchronous work, on one wal::Log.
class LogStore {
 public:
  LogStore(std::string dir, wal::Options options, std::unique_ptr<wal::Log> log);
  StorageResult write(const PersistJob& job, bool reopen);
  // A snapshot in two steps (wal::Log::write_snapshot_file): the file, on any thread beside this
  // store's other calls, through file_system() and dir(); then keep_snapshot() on the store's
  // thread, which keeps the newest snapshot files and compacts the log up to `compact_to`.
  static SnapshotResult write_snapshot_file(wal::FileSystem& fs, const std::string& dir,
                                            const wal::SnapshotFile& file);
  SnapshotResult keep_snapshot(const wal::SnapshotFile& file, LogIndex compact_to);
  wal::FileSystem& file_system() const;
  const std::string& dir() const { return dir_; }
  StorageResult reopen();
  std::error_code save_file(const std::string& name, const Bytes& content, std::string& detail);
  void sync();

 private:
  std::error_code reopen(std::string& detail);
  std::error_code run(const PersistJob& job, double& fsync_seconds);

  std::string dir_;
  wal::Options options_;
  std::unique_ptr<wal::Log> log_;  // null after a failed reopen
};

// A LogStore on a thread of its own; completions are posted to the replica's thread through Env.
class ThreadStorage final : public Storage {
 public:
  ThreadStorage(Env& env, std::unique_ptr<LogStore> store);
  ~ThreadStorage() override;
  void write(std::shared_ptr<const PersistJob> job, bool reopen,
             std::function<void(StorageResult)> done) override;
  void save_snapshot(std::shared_ptr<const wal::SnapshotFile> file, LogIndex compact_to,
                     std::function<void(SnapshotResult)> done) override;
  void reopen(std::function<void(StorageResult)> done) override;
  void save_file(std::string name, Bytes content,
                 std::function<void(std::error_code, std::string)> done) override;
  void close(std::function<void()> done) override;

 private:
  // Runs `work` on the storage thread, then `done(result)` on the replica's thread.
  template <typename Result>
  void run(std::function<Result()> work, std::function<void(Result)> done);

  Env& env_;
  std::unique_ptr<LogStore> store_;  // touched only on the storage thread
  // A snapshot file written after this storage is gone is not followed up (read and reset only
  // on the replica's thread).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  boost::asio::io_context io_;
  std::thread thread_;
};

}  // namespace rpool::node
