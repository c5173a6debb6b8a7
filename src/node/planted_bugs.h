// Bugs planted on purpose, so that tests/chaos can show it catches them. They exist only
// in a build configured with `meson -Dplanted_bugs=true`, where rpoold reads the environment
// variable RPOOL_PLANTED_BUG; in every other build planted() is constant false and the code it
// guards is dropped.
//
//   ack_before_quorum   the leader commits (and acknowledges) entries once they are on its own
//                       disk, without waiting for a majority
//   skip_idempotency    writes are proposed without their Idempotency-Key, so a retry applies again
//   local_default_read  a follower answers a default (linearizable) read from its local state
// and, caught by the whole-node simulation (tests/sim/node_sim.cpp):
//   apply_before_durable  a Ready counts as persisted as soon as its write is handed to storage
//                         (acknowledgements and votes go out before the fsync)
//   answer_before_apply   a write is answered when proposed, with its result on a copy of the pool
//   apply_beyond_stable   the entries of a Ready are applied before they are committed
//   reuse_read_id         every read of a process asks the leader with the same read context
#pragma once

#include <string_view>

#ifdef RPOOL_PLANTED_BUGS
#include <cstdlib>
#endif

namespace rpool::node {

#ifdef RPOOL_PLANTED_BUGS
inline bool planted(std::string_view name) {
  static const char* const bug = std::getenv("RPOOL_PLANTED_BUG");
  return bug != nullptr && name == bug;
}
#else
constexpr bool planted(std::string_view) { return false; }
#endif

}  // namespace rpool::node
