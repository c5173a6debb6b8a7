// The POSIX implementation of the file layer.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/assert.h"
#include "wal/errc.h"
#include "wal/file.h"

namespace rpool::wal {
namespace {

std::error_code last_error() { return from_errno(errno); }

class PosixFile final : public File {
 public:
  explicit PosixFile(int fd) : fd_(fd) { RPOOL_ASSERT(fd_ >= 0); }
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  std::error_code write_at(std::uint64_t offset, ByteView data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n =
          ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      if (n == 0) return errc::io_error;
      done += static_cast<std::size_t>(n);
    }
    return {};
  }

  std::error_code read_at(std::uint64_t offset, std::span<std::uint8_t> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n =
          ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      if (n == 0) return errc::corrupt;  // the file is shorter than its records claim
      done += static_cast<std::size_t>(n);
    }
    return {};
  }

  std::error_code sync_data() override {
    // A failed fdatasync is never retried: the kernel may already have dropped the dirty pages.
    return ::fdatasync(fd_) == 0 ? std::error_code() : last_error();
  }

  std::error_code truncate(std::uint64_t size) override {
    while (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return last_error();
    }
    return {};
  }

  std::error_code allocate(std::uint64_t size) override {
    const int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(size));
    return from_errno(rc);
  }

  std::error_code size(std::uint64_t& out) override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return last_error();
    out = static_cast<std::uint64_t>(st.st_size);
    return {};
  }

 private:
  int fd_;
};

class PosixLock final : public DirLock {
 public:
  explicit PosixLock(int fd) : fd_(fd) {}
  ~PosixLock() override { ::close(fd_); }  // closing releases the flock
  PosixLock(const PosixLock&) = delete;
  PosixLock& operator=(const PosixLock&) = delete;

 private:
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  std::error_code open(const std::string& path, OpenMode mode,
                       std::unique_ptr<File>& out) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::read_only: flags |= O_RDONLY; break;
      case OpenMode::read_write: flags |= O_RDWR; break;
      case OpenMode::create: flags |= O_RDWR | O_CREAT; break;
      case OpenMode::create_new: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    }
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return last_error();
    out = std::make_unique<PosixFile>(fd);
    return {};
  }

  std::error_code rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? std::error_code() : last_error();
  }

  std::error_code remove(const std::string& path) override {
    return ::unlink(path.c_str()) == 0 ? std::error_code() : last_error();
  }

  std::error_code sync_dir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return last_error();
    const int rc = ::fsync(fd);
    const std::error_code ec = rc == 0 ? std::error_code() : last_error();
    ::close(fd);
    return ec;
  }

  std::error_code list(const std::string& dir, std::vector<std::string>& names) override {
    names.clear();
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return last_error();
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
      errno = 0;
    }
    const std::error_code ec = errno == 0 ? std::error_code() : last_error();
    ::closedir(d);
    return ec;
  }

  std::error_code make_dirs(const std::string& dir) override {
    if (dir.empty()) return {};
    if (auto ec = make_dirs_inner(dir)) return ec;
    // The leaf's parent is synced even when the leaf existed: a run that crashed between its
    // mkdir and this fsync left an entry that exists but may not be durable.
    return sync_dir(parent_of(dir));
  }

  static std::string parent_of(const std::string& dir) {
    const auto slash = dir.find_last_of('/', dir.size() > 1 ? dir.size() - 2 : 0);
    return slash == std::string::npos ? "." : (slash == 0 ? "/" : dir.substr(0, slash));
  }

  // mkdir -p, fsyncing the parent of each directory it creates.
  std::error_code make_dirs_inner(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
      return S_ISDIR(st.st_mode) ? std::error_code() : std::error_code(errc::io_error);
    }
    const std::string parent = parent_of(dir);
    if (auto ec = make_dirs_inner(parent)) return ec;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return last_error();
    return sync_dir(parent);
  }

  std::error_code lock(const std::string& path, std::unique_ptr<DirLock>& out) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return last_error();
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      return err == EWOULDBLOCK ? std::error_code(errc::locked) : from_errno(err);
    }
    out = std::make_unique<PosixLock>(fd);
    return {};
  }
};

}  // namespace

FileSystem& posix_file_system() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace rpool::wal
