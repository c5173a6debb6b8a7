#include "node/errc.h"

namespace rpool::node {

const std::error_category& node_category() {
  struct Category final : std::error_category {
    const char* name() const noexcept override { return "rpool.node"; }
    std::string message(int value) const override {
      switch (static_cast<errc>(value)) {
        case errc::not_leader: return "this node is not the leader";
        case errc::no_leader: return "no leader is known right now";
        case errc::outcome_unknown: return "the outcome is unknown";
        case errc::storage_full: return "the log cannot be written";
        case errc::stopped: return "this node stopped: its storage failed";
        case errc::shutting_down: return "this node is shutting down";
        case errc::too_large: return "the write is too large for one log entry";
        case errc::overloaded: return "this node is overloaded";
        case errc::change_in_progress:
          return "a membership change or leadership transfer is under way";
        case errc::bad_request: return "the operation is not possible";
        case errc::not_found: return "not found";
      }
      return "unknown node error";
    }
  };
  static const Category category;
  return category;
}

}  // namespace rpool::node
