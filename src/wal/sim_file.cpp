#include "wal/sim_file.h"

#include <algorithm>

#include "base/assert.h"
#include "wal/errc.h"
#include "wal/format.h"

namespace rpool::wal {

struct SimFileSystem::Pending {
  bool is_truncate = false;
  std::uint64_t offset = 0;  // write offset, or the new size of a truncation
  Bytes data;
};

struct SimFileSystem::Inode {
  Bytes durable;
  Bytes cache;
  std::vector<Pending> pending;
};

namespace {

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

void apply(Bytes& image, const SimFileSystem::Pending& p, std::size_t bytes) {
  if (p.is_truncate) {
    image.resize(p.offset);
    return;
  }
  if (image.size() < p.offset + bytes) image.resize(p.offset + bytes);
  std::copy_n(p.data.begin(), bytes, image.begin() + static_cast<std::ptrdiff_t>(p.offset));
}

}  // namespace

class SimFile final : public File {
 public:
  SimFile(SimFileSystem& fs, std::shared_ptr<SimFileSystem::Inode> inode, std::string path,
          std::uint64_t generation, bool writable)
      : fs_(fs),
        inode_(std::move(inode)),
        path_(std::move(path)),
        generation_(generation),
        writable_(writable) {}

  std::error_code write_at(std::uint64_t offset, ByteView data) override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(true)) return ec;
    SimFileSystem::Pending p{false, offset, Bytes(data.begin(), data.end())};
    if (auto ec = fs_.fault(SimFileSystem::Op::write, path_)) {
      // A failed write may have reached the page cache in part: up to a sector boundary of the
      // file, as a short write stops where the file system failed to get the next block.
      const std::uint64_t end = fs_.random(data.size()) + offset;
      const std::uint64_t aligned = end / sector_bytes * sector_bytes;
      const std::size_t part = aligned > offset ? static_cast<std::size_t>(aligned - offset) : 0;
      p.data.resize(part);
      if (part > 0) {
        apply(inode_->cache, p, part);
        inode_->pending.push_back(std::move(p));
      }
      return ec;
    }
    apply(inode_->cache, p, p.data.size());
    inode_->pending.push_back(std::move(p));
    return {};
  }

  std::error_code read_at(std::uint64_t offset, std::span<std::uint8_t> out) override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(false)) return ec;
    if (offset > inode_->cache.size() || inode_->cache.size() - offset < out.size()) {
      return errc::corrupt;
    }
    std::copy_n(inode_->cache.begin() + static_cast<std::ptrdiff_t>(offset), out.size(),
                out.begin());
    return {};
  }

  std::error_code sync_data() override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(false)) return ec;
    if (auto ec = fs_.fault(SimFileSystem::Op::sync_data, path_)) return ec;
    for (const auto& p : inode_->pending) apply(inode_->durable, p, p.data.size());
    inode_->pending.clear();
    RPOOL_ASSERT(inode_->durable == inode_->cache);
    ++fs_.data_syncs_;
    return {};
  }

  std::error_code truncate(std::uint64_t size) override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(true)) return ec;
    if (auto ec = fs_.fault(SimFileSystem::Op::truncate, path_)) return ec;
    SimFileSystem::Pending p{true, size, {}};
    apply(inode_->cache, p, 0);
    inode_->pending.push_back(std::move(p));
    return {};
  }

  std::error_code allocate(std::uint64_t size) override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(true)) return ec;
    if (auto ec = fs_.fault(SimFileSystem::Op::allocate, path_)) return ec;
    if (inode_->cache.size() < size) {
      SimFileSystem::Pending p{true, size, {}};
      apply(inode_->cache, p, 0);
      inode_->pending.push_back(std::move(p));
    }
    return {};
  }

  std::error_code size(std::uint64_t& out) override {
    std::lock_guard guard(fs_.mutex_);
    if (auto ec = check(false)) return ec;
    out = inode_->cache.size();
    return {};
  }

 private:
  std::error_code check(bool write) const {
    if (generation_ != fs_.generation_) return errc::io_error;  // the process "died"
    if (write && !writable_) return errc::io_error;
    return {};
  }

  SimFileSystem& fs_;
  std::shared_ptr<SimFileSystem::Inode> inode_;
  std::string path_;
  std::uint64_t generation_;
  bool writable_;
};

class SimLock final : public DirLock {
 public:
  SimLock(SimFileSystem& fs, std::string path, std::uint64_t generation)
      : fs_(fs), path_(std::move(path)), generation_(generation) {}
  ~SimLock() override {
    std::lock_guard guard(fs_.mutex_);
    if (generation_ == fs_.generation_) fs_.locks_.erase(path_);
  }
  SimLock(const SimLock&) = delete;
  SimLock& operator=(const SimLock&) = delete;

 private:
  SimFileSystem& fs_;
  std::string path_;
  std::uint64_t generation_;
};

SimFileSystem::SimFileSystem(std::uint64_t seed) : rng_(seed) {}
SimFileSystem::~SimFileSystem() = default;

std::uint64_t SimFileSystem::random(std::uint64_t bound) {
  return std::uniform_int_distribution<std::uint64_t>(0, bound)(rng_);
}

std::error_code SimFileSystem::fault(Op op, const std::string& path) {
  return hook_ ? hook_(op, path) : std::error_code();
}

void SimFileSystem::set_fault_hook(FaultHook hook) {
  std::lock_guard guard(mutex_);
  hook_ = std::move(hook);
}

std::error_code SimFileSystem::open(const std::string& path, OpenMode mode,
                                    std::unique_ptr<File>& out) {
  std::lock_guard guard(mutex_);
  const std::string dir = parent_of(path);
  if (dirs_.count(dir) == 0) return errc::not_found;
  auto it = names_.find(path);
  if (it == names_.end()) {
    if (mode == OpenMode::read_only || mode == OpenMode::read_write) return errc::not_found;
    if (auto ec = fault(Op::create, path)) return ec;
    auto inode = std::make_shared<Inode>();
    it = names_.emplace(path, inode).first;
    pending_dir_ops_.push_back({dir, "", path, inode});
  } else if (mode == OpenMode::create_new) {
    return errc::io_error;  // EEXIST
  } else if (auto ec = fault(Op::open, path)) {
    return ec;
  }
  out =
      std::make_unique<SimFile>(*this, it->second, path, generation_, mode != OpenMode::read_only);
  return {};
}

std::error_code SimFileSystem::rename(const std::string& from, const std::string& to) {
  std::lock_guard guard(mutex_);
  RPOOL_ASSERT(parent_of(from) == parent_of(to));
  auto it = names_.find(from);
  if (it == names_.end()) return errc::not_found;
  if (auto ec = fault(Op::rename, from)) return ec;
  auto inode = it->second;
  names_.erase(it);
  names_[to] = inode;
  pending_dir_ops_.push_back({parent_of(from), from, to, inode});
  return {};
}

std::error_code SimFileSystem::remove(const std::string& path) {
  std::lock_guard guard(mutex_);
  auto it = names_.find(path);
  if (it == names_.end()) return errc::not_found;
  if (auto ec = fault(Op::remove, path)) return ec;
  pending_dir_ops_.push_back({parent_of(path), path, "", it->second});
  names_.erase(it);
  return {};
}

std::error_code SimFileSystem::sync_dir(const std::string& dir) {
  std::lock_guard guard(mutex_);
  if (dirs_.count(dir) == 0) return errc::not_found;
  if (auto ec = fault(Op::sync_dir, dir)) return ec;
  std::vector<DirOp> rest;
  for (auto& op : pending_dir_ops_) {
    if (op.dir != dir) {
      rest.push_back(std::move(op));
      continue;
    }
    if (!op.from.empty()) durable_names_.erase(op.from);
    if (!op.to.empty()) durable_names_[op.to] = op.inode;
  }
  pending_dir_ops_ = std::move(rest);
  return {};
}

std::error_code SimFileSystem::list(const std::string& dir, std::vector<std::string>& names) {
  std::lock_guard guard(mutex_);
  names.clear();
  if (dirs_.count(dir) == 0) return errc::not_found;
  for (const auto& [path, inode] : names_) {
    if (parent_of(path) == dir) names.push_back(path.substr(dir.size() + 1));
  }
  return {};
}

std::error_code SimFileSystem::make_dirs(const std::string& dir) {
  std::lock_guard guard(mutex_);
  // Directories are created durably at once; the log never removes or renames one.
  std::string d = dir;
  while (!d.empty() && d != "." && d != "/") {
    dirs_.insert(d);
    d = parent_of(d);
  }
  return {};
}

std::error_code SimFileSystem::lock(const std::string& path, std::unique_ptr<DirLock>& out) {
  std::lock_guard guard(mutex_);
  if (!locks_.insert(path).second) return errc::locked;
  out = std::make_unique<SimLock>(*this, path, generation_);
  return {};
}

void SimFileSystem::crash(CrashMode mode) {
  std::lock_guard guard(mutex_);
  const bool torn = mode != CrashMode::drop_unsynced;
  // Directory changes: per directory, a prefix of the pending ones reaches the disk.
  std::map<std::string, bool> dir_stopped;
  for (const auto& op : pending_dir_ops_) {
    bool& stopped = dir_stopped[op.dir];
    if (!torn || stopped || random(3) == 0) {
      stopped = true;
      continue;
    }
    if (!op.from.empty()) durable_names_.erase(op.from);
    if (!op.to.empty()) durable_names_[op.to] = op.inode;
  }
  pending_dir_ops_.clear();
  // File data: per file, a prefix of the pending writes, the next one possibly torn at a sector
  // boundary; or, per sector, a prefix of the writes.
  std::set<Inode*> seen;
  auto settle = [&](Inode& inode) {
    if (!seen.insert(&inode).second) return;
    if (mode == CrashMode::torn_prefix && !inode.pending.empty()) {
      const std::size_t keep = random(inode.pending.size());
      for (std::size_t i = 0; i < keep; ++i)
        apply(inode.durable, inode.pending[i], inode.pending[i].data.size());
      if (keep < inode.pending.size() && random(1) == 1) {
        const auto& p = inode.pending[keep];
        if (!p.is_truncate) {
          // Up to a sector boundary of the file, at least... nothing of the write if none is inside
          // it.
          const std::uint64_t end = p.offset + p.data.size();
          const std::uint64_t cut = p.offset + random(p.data.size());
          const std::uint64_t aligned = cut / sector_bytes * sector_bytes;
          if (aligned > p.offset && aligned <= end) apply(inode.durable, p, aligned - p.offset);
        }
      }
    } else if (mode == CrashMode::sector_subsets && !inode.pending.empty()) {
      std::vector<Bytes> images{inode.durable};  // images[k]: after the first k pending operations
      std::size_t widest = inode.durable.size();
      for (const auto& p : inode.pending) {
        images.push_back(images.back());
        apply(images.back(), p, p.data.size());
        widest = std::max(widest, images.back().size());
      }
      Bytes out(widest, 0);
      for (std::uint64_t at = 0; at < widest; at += sector_bytes) {
        const Bytes& from = images[random(inode.pending.size())];
        const std::uint64_t end = std::min<std::uint64_t>(widest, at + sector_bytes);
        for (std::uint64_t b = at; b < end && b < from.size(); ++b) out[b] = from[b];
      }
      out.resize(images[random(inode.pending.size())].size());
      inode.durable = std::move(out);
    }
    inode.pending.clear();
    inode.cache = inode.durable;
  };
  for (auto& [path, inode] : durable_names_) settle(*inode);
  names_ = durable_names_;
  locks_.clear();
  ++generation_;
}

bool SimFileSystem::exists(const std::string& path) {
  std::lock_guard guard(mutex_);
  return names_.count(path) != 0;
}

Bytes SimFileSystem::contents(const std::string& path) {
  std::lock_guard guard(mutex_);
  auto it = names_.find(path);
  RPOOL_ASSERT(it != names_.end());
  return it->second->cache;
}

void SimFileSystem::set_contents(const std::string& path, Bytes bytes) {
  std::lock_guard guard(mutex_);
  auto it = names_.find(path);
  RPOOL_ASSERT(it != names_.end());
  it->second->pending.clear();
  it->second->durable = bytes;
  it->second->cache = std::move(bytes);
}

std::uint64_t SimFileSystem::data_syncs() {
  std::lock_guard guard(mutex_);
  return data_syncs_;
}

}  // namespace rpool::wal
