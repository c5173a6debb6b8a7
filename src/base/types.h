// The vocabulary shared by the log, the consensus core and the node: indexes, terms, node ids.
#pragma once

#include <cstdint>

#include "base/strong_int.h"

namespace rpool {

using LogIndex = StrongInt<struct LogIndexTag>;  // 0 means "none"; the first entry is 1
using Term = StrongInt<struct TermTag>;          // 0 means "none"; the first term is 1
using NodeId = StrongInt<struct NodeIdTag>;      // 0 means "none"; members are 1, 2, ...

// (term, index) names one log entry.
struct EntryId {
  Term term;
  LogIndex index;
  friend constexpr bool operator==(EntryId, EntryId) = default;
};

}  // namespace rpool
