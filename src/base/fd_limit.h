// The process's file-descriptor limit (RLIMIT_NOFILE), raised once at start.
//
// Many systems start processes with a soft limit of 1024 and a far higher hard limit. A node
// serving thousands of HTTP connections would run out at the soft limit, and the descriptor it
// fails to get may be the one its log needed. Raising the soft limit to the hard one is allowed
// to any process; the HTTP server's connection cap is then derived from the result.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <limits>

namespace rpool {

// Raises the soft RLIMIT_NOFILE to the hard limit, and returns the soft limit in force
// afterwards (unchanged if the raise is refused; a kernel caps RLIM_INFINITY at fs.nr_open, so
// that case keeps the old limit too). An unlimited limit is returned as the largest uint64.
inline std::uint64_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;  // the common default
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(limit.rlim_cur);
}

}  // namespace rpool
