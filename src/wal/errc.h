// The expected failures of the storage layer, as std::error_code values of category "wal".
//
// Raw OS errors from the file layer are mapped into this category as well (ENOSPC -> disk_full,
// EMFILE/ENFILE -> descriptors_exhausted, anything else -> io_error) so callers test one enum; the
// message keeps the OS text.
#pragma once

#include <system_error>

namespace rpool::wal {

enum class errc {
  ok = 0,
  disk_full,     // ENOSPC / EDQUOT on write, fsync or allocation
  io_error,      // any other failed system call (EIO, ...)
  corrupt,       // a bad checksum, a bad header, a gap in the indexes, a missing segment
  locked,        // another process holds the data directory's LOCK
  poisoned,      // an earlier write or fsync failed; reopen the log before writing again
  not_found,     // the file or directory does not exist
  compacted,     // the index was removed by compact() (below first_index())
  unavailable,   // the index is beyond last_index()
  bad_argument,  // a caller broke a documented precondition that is checked, not asserted
  read_only,     // a write on a log opened with Options::read_only
  // EMFILE / ENFILE: the process or the system has no file descriptor left. Nothing on disk is
  // wrong and nothing was lost, so this is never io_error (which the node treats as a failed
  // disk): the caller may retry once descriptors are released. Does not poison the log.
  descriptors_exhausted,
};

const std::error_category& wal_category();
std::error_code make_error_code(errc e);

// Maps an errno value to the closest wal::errc (ENOSPC/EDQUOT -> disk_full, ENOENT -> not_found,
// EWOULDBLOCK -> locked, EMFILE/ENFILE -> descriptors_exhausted, else io_error).
std::error_code from_errno(int err);

}  // namespace rpool::wal

template <>
struct std::is_error_code_enum<rpool::wal::errc> : std::true_type {};
