// Small helpers shared by node_host.cpp and node_http.cpp (not part of any interface).
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "node/config.h"
#include "raft/core.h"

namespace rpool::node::detail {

// The header a follower adds when it forwards a request to the leader; a node that receives a
// forwarded request while not leading answers 503 instead of forwarding again.
inline constexpr std::string_view forwarded_header = "Rpool-Forwarded-By";

// Eight bytes from the kernel's CSPRNG (getrandom(2)): draw seeds and election-timeout seeds.
// The kernel is asked for 4 KiB at a time and the bytes are handed out in order, each once: one
// system call per 512 seeds instead of one per draw (it was a quarter of the leader's system calls
// under load). Every seed is still the kernel's CSPRNG output, unpredictable before it is used.
inline std::uint64_t random_u64() {
  struct Buffer {
    std::uint64_t values[512];
    std::size_t next = std::size(values);  // all used: refill first
  };
  thread_local Buffer buffer;
  if (buffer.next == std::size(buffer.values)) {
    auto* p = reinterpret_cast<unsigned char*>(buffer.values);
    std::size_t got = 0;
    while (got < sizeof buffer.values) {
      const ssize_t n = getrandom(p + got, sizeof buffer.values - got, 0);
      if (n < 0) {
        RPOOL_ASSERT(errno == EINTR);  // getrandom(2) on Linux >= 3.17 fails only when interrupted
        continue;
      }
      got += static_cast<std::size_t>(n);
    }
    buffer.next = 0;
  }
  const std::uint64_t value = buffer.values[buffer.next];
  buffer.values[buffer.next++] = 0;  // handed out once; not left in memory
  return value;
}

// Unix time in milliseconds: the leader's timestamp in each command (idempotency-key expiry).
inline std::uint64_t wall_clock_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// A member's addresses as kept in raft::Membership::context: {"http":"host:port","raft":"host:port"}.
std::string member_context_json(const Member& m);

inline const char* role_name(raft::Role role) {
  switch (role) {
    case raft::Role::leader: return "leader";
    case raft::Role::candidate: return "candidate";
    case raft::Role::pre_candidate: return "pre_candidate";
    case raft::Role::follower: return "follower";
  }
  return "follower";
}

}  // namespace rpool::node::detail
