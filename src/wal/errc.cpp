#include "wal/errc.h"

#include <cerrno>
#include <string>

namespace rpool::wal {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "wal"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::ok: return "ok";
      case errc::disk_full: return "disk full";
      case errc::io_error: return "I/O error";
      case errc::corrupt: return "corrupt log data";
      case errc::locked: return "data directory is locked by another process";
      case errc::poisoned: return "log refuses writes after an earlier write or fsync failure";
      case errc::not_found: return "no such file or directory";
      case errc::compacted: return "index compacted away";
      case errc::unavailable: return "index beyond the end of the log";
      case errc::bad_argument: return "bad argument";
      case errc::read_only: return "log opened read-only";
      case errc::descriptors_exhausted:
        return "no file descriptor left (EMFILE/ENFILE); retry later";
    }
    return "unknown wal error";
  }
};

}  // namespace

const std::error_category& wal_category() {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) { return {static_cast<int>(e), wal_category()}; }

std::error_code from_errno(int err) {
  switch (err) {
    case 0: return {};
    case ENOSPC:
    case EDQUOT: return errc::disk_full;
    case ENOENT: return errc::not_found;
    case EWOULDBLOCK: return errc::locked;
    case EMFILE:
    case ENFILE: return errc::descriptors_exhausted;
    default: return errc::io_error;
  }
}

}  // namespace rpool::wal
