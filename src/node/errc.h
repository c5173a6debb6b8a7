// The expected failures of the replica's operations, as std::error_code. The HTTP layer maps each
// to its status and error code in one place (http_api.cpp, error_of).
#pragma once

#include <string>
#include <system_error>

namespace rpool::node {

enum class errc {
  not_leader = 1,      // this node does not lead: the caller forwards to the leader
  no_leader,           // no leader is known right now, or leadership is moving: retry shortly
  outcome_unknown,     // the write may or may not apply: retry it with its Idempotency-Key
  storage_full,        // the log cannot be written (the disk is full); nothing was applied
  stopped,             // this node's storage failed for good; it is stopping
  shutting_down,       // this node is shutting down
  too_large,           // the write does not fit in one log entry
  overloaded,          // too much is waiting already: retry shortly
  change_in_progress,  // a membership change or leadership transfer is under way
  bad_request,         // the operation is not possible as asked
  not_found,           // no such member
};

const std::error_category& node_category();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), node_category()}; }

// A failed operation's code and its one human sentence for the answer (empty: the code's own).
struct Outcome {
  std::error_code ec;
  std::string message;
};

}  // namespace rpool::node

template <>
struct std::is_error_code_enum<rpool::node::errc> : std::true_type {};
