// The file-system calls the WAL makes, behind an interface, so that tests can run the log over a
// simulated disk that loses unsynced data at a "crash" and fails writes or fsyncs on demand.
//
// Every call returns a wal::errc error code (see errc.h), never throws. Paths are plain strings;
// the log only ever works inside one directory, so there is no path normalisation.
//
// Thread safety: PosixFileSystem is stateless and safe to use from several threads (the log
// prepares its next segment on a helper thread). SimFileSystem serialises its calls with a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "base/bytes.h"

namespace rpool::wal {

// One open file. Offsets and sizes are in bytes.
class File {
 public:
  virtual ~File() = default;
  // Writes all of `data` at `offset`, extending the file if needed. A short write is an error.
  virtual std::error_code write_at(std::uint64_t offset, ByteView data) = 0;
  // Reads exactly out.size() bytes at `offset`; reading past the end is errc::corrupt.
  virtual std::error_code read_at(std::uint64_t offset, std::span<std::uint8_t> out) = 0;
  // fdatasync(2): the file's data, and the metadata needed to read it back, are on stable storage.
  virtual std::error_code sync_data() = 0;
  // ftruncate(2); extends with zeros or cuts. Follow with sync_data() to make the size durable.
  virtual std::error_code truncate(std::uint64_t size) = 0;
  // fallocate(2) mode 0: reserves [0, size) without writing it (unwritten extents on ext4).
  virtual std::error_code allocate(std::uint64_t size) = 0;
  virtual std::error_code size(std::uint64_t& out) = 0;
};

enum class OpenMode {
  read_only,   // must exist
  read_write,  // must exist
  create,      // read-write; created if missing, never truncated
  create_new,  // read-write; fails if it exists
};

// An advisory lock held for as long as the object lives.
class DirLock {
 public:
  virtual ~DirLock() = default;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual std::error_code open(const std::string& path, OpenMode mode,
                               std::unique_ptr<File>& out) = 0;
  // rename(2) within one directory; replaces `to` atomically if it exists.
  virtual std::error_code rename(const std::string& from, const std::string& to) = 0;
  virtual std::error_code remove(const std::string& path) = 0;
  // fsync(2) on the directory: creations, renames and removals in it become durable.
  virtual std::error_code sync_dir(const std::string& dir) = 0;
  // The names (not paths) of the entries of `dir`, unsorted, without "." and "..".
  virtual std::error_code list(const std::string& dir, std::vector<std::string>& names) = 0;
  // mkdir -p. Makes the new directories' entries durable in their parents.
  virtual std::error_code make_dirs(const std::string& dir) = 0;
  // flock(path, LOCK_EX | LOCK_NB) on a file created if missing; errc::locked when another
  // process (or another open log) holds it.
  virtual std::error_code lock(const std::string& path, std::unique_ptr<DirLock>& out) = 0;
};

// The real thing: POSIX calls, EINTR retried, errno mapped by from_errno().
FileSystem& posix_file_system();

// Reads a whole file into `out` (hard state, snapshot files).
inline std::error_code read_whole(FileSystem& fs, const std::string& path, Bytes& out) {
  std::unique_ptr<File> file;
  if (auto ec = fs.open(path, OpenMode::read_only, file)) return ec;
  std::uint64_t size = 0;
  if (auto ec = file->size(size)) return ec;
  out.resize(size);
  return file->read_at(0, out);
}

inline std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace rpool::wal
