// The narrow interfaces through which a Replica reaches the world: time and timers, randomness,
// the Raft message transport, and durable storage. rpoold implements them on Asio, sockets and
// files (server.h, storage.h); tests/sim implements them on a simulated clock, network and disk,
// so that whole nodes run deterministically from one seed.
//
// Threading contract: the replica runs on one thread (in rpoold, the io_context thread). Every
// callback an implementation is handed runs later on that same thread, never inside the call
// that handed it over (post() and after() included), so the replica is never re-entered.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "base/types.h"
#include "node/config.h"
#include "raft/types.h"

namespace rpool::node {

using Clock = std::chrono::steady_clock;

class Env {
 public:
  virtual ~Env() = default;
  // Monotonic time: request deadlines, timeouts.
  virtual Clock::time_point now() = 0;
  // Unix time in milliseconds: the leader's timestamp in each command (idempotency-key expiry).
  virtual std::uint64_t wall_clock_ms() = 0;
  // Unpredictable 64-bit values: draw seeds and the core's election-timeout seed. rpoold's come
  // from the kernel's CSPRNG; a simulation's from its seed.
  virtual std::uint64_t random_u64() = 0;
  // Runs `fn` on the node's thread after the current event.
  virtual void post(std::function<void()> fn) = 0;
  // Runs `fn` on the node's thread once `delay` has passed. Not cancellable: `fn` checks state.
  virtual void after(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // Runs `work` off the node's thread, then `done` on it: CPU work that must not hold up the
  // node's events (encoding a snapshot). `work` touches only what it was handed.
  virtual void background(std::function<void()> work, std::function<void()> done) = 0;
};

// Carries raft::Messages to other nodes. Best effort: a message may be lost, which Raft tolerates.
class MessageTransport {
 public:
  virtual ~MessageTransport() = default;
  virtual void send(raft::Message&& m) = 0;
  // The transport's peers follow the membership (and the leader, while it is not a member).
  virtual void set_peer(NodeId id, const Endpoint& raft) = 0;
  virtual void remove_peer(NodeId id) = 0;
};

}  // namespace rpool::node
