// A simulated disk for tests: a FileSystem whose crash() behaves like a power loss.
//
// Every file has a durable image and a page-cache image. Writes and truncations go to the page
// cache and are remembered as pending operations; sync_data() makes the file's pending operations
// durable. Directory changes (create, rename, remove) are likewise pending until sync_dir() of
// their directory. crash() then decides what reached the disk:
//   - CrashMode::drop_unsynced: nothing pending survives;
//   - CrashMode::torn_prefix: for each file, a random prefix of its pending operations survives,
//     and the first operation that does not survive whole may survive as a prefix torn at a sector
//     boundary; a random prefix of each directory's pending changes survives too.
//   - CrashMode::sector_subsets: each 512-byte sector of each file (counted from the file's start)
//     independently holds the file's content after some prefix of its pending operations (so the
//     sectors of one write persist in any order and any subset), and the file's size is that
//     after another such prefix; directories as in torn_prefix.
// A sector is never torn inside: disks write sectors atomically (format.h, sector_bytes).
// After a crash every handle opened before it fails with errc::io_error, and locks are released,
// as if the process had died.
//
// Faults: set_fault_hook() is asked before every mutating call and can make it fail (for example
// ENOSPC on the 7th write). A failed write may still have written a random prefix of its data
// to the page cache, ending at a sector boundary of the file (a short write stops at a block); a
// failed sync_data() makes nothing durable, and the pending data then may or may not survive a
// crash, as on Linux.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "wal/file.h"

namespace rpool::wal {

class SimFileSystem final : public FileSystem {
 public:
  // open: opening an existing file (create: a new one).
  enum class Op { write, sync_data, truncate, allocate, create, open, rename, remove, sync_dir };
  enum class CrashMode { drop_unsynced, torn_prefix, sector_subsets };
  // Returns an error to inject for this call, or {} to let it proceed.
  using FaultHook = std::function<std::error_code(Op op, const std::string& path)>;

  explicit SimFileSystem(std::uint64_t seed = 1);
  ~SimFileSystem() override;

  std::error_code open(const std::string& path, OpenMode mode, std::unique_ptr<File>& out) override;
  std::error_code rename(const std::string& from, const std::string& to) override;
  std::error_code remove(const std::string& path) override;
  std::error_code sync_dir(const std::string& dir) override;
  std::error_code list(const std::string& dir, std::vector<std::string>& names) override;
  std::error_code make_dirs(const std::string& dir) override;
  std::error_code lock(const std::string& path, std::unique_ptr<DirLock>& out) override;

  void set_fault_hook(FaultHook hook);
  void crash(CrashMode mode);

  // Test access to the current (page-cache) view. set_contents() writes durably.
  bool exists(const std::string& path);
  Bytes contents(const std::string& path);
  void set_contents(const std::string& path, Bytes bytes);
  std::uint64_t data_syncs();

  struct Inode;
  struct Pending;

 private:
  friend class SimFile;
  friend class SimLock;
  std::error_code fault(Op op, const std::string& path);  // with mutex_ held
  std::uint64_t random(std::uint64_t bound);              // [0, bound]

  std::mutex mutex_;
  std::mt19937_64 rng_;
  FaultHook hook_;
  std::uint64_t generation_ = 1;  // bumped by crash(); older handles are dead
  std::uint64_t data_syncs_ = 0;
  std::map<std::string, std::shared_ptr<Inode>> names_;          // the page-cache namespace
  std::map<std::string, std::shared_ptr<Inode>> durable_names_;  // what a crash falls back to
  struct DirOp {
    std::string dir;
    std::string from;  // empty for a creation
    std::string to;    // empty for a removal
    std::shared_ptr<Inode> inode;
  };
  std::vector<DirOp> pending_dir_ops_;
  std::set<std::string> dirs_;
  std::set<std::string> locks_;
};

}  // namespace rpool::wal
