// Small helpers shared by node_host.cpp and node_http.cpp (not part of any interface).
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "net/config.h"
#include "raft/core.h"

namespace rpool::net::detail {

// The header a follower adds when it forwards a request to the leader; a node that receives a
// forwarded request while not leading answers 503 instead of forwarding again.
inline constexpr std::string_view forwarded_header = "Rpool-Forwarded-By";

// Eight bytes from the kernel's CSPRNG (getrandom(2)): draw seeds and election-timeout seeds.
inline std::uint64_t random_u64() {
  std::uint64_t value = 0;
  auto* p = reinterpret_cast<unsigned char*>(&value);
  std::size_t got = 0;
  while (got < sizeof value) {
    const ssize_t n = getrandom(p + got, sizeof value - got, 0);
    if (n < 0) {
      RPOOL_ASSERT(errno == EINTR);  // getrandom(2) on Linux >= 3.17 fails only when interrupted
      continue;
    }
    got += static_cast<std::size_t>(n);
  }
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

}  // namespace rpool::net::detail
