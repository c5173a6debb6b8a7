// The idempotency keys in the order they were remembered (oldest first), kept so that a snapshot
// of them costs the state machine's thread almost nothing.
//
// Records live in fixed-size blocks that never move. A record is written once, when it is
// appended, and never changed after; evicting one only moves the front past it, and its block is
// freed when neither the log nor any View holds it. A View (freeze()) shares the blocks instead
// of copying the records: it costs O(blocks), a few thousand pointers at a million keys, and stays
// valid and unchanged while the log goes on appending at the back and evicting at the front, on
// the same thread or not. That is what lets the node encode a snapshot on another thread
// (StateMachine::begin_snapshot()): the only memory both threads touch is records the reader got
// before the freeze, which the writer never writes again, and slots after them, which the reader
// never reads.
//
// Copying a KeyLog copies the records into blocks of its own: two logs never append into one block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/bytes.h"
#include "pool/command.h"

namespace rpool::pool {

struct KeyRecord {
  std::string scoped;  // scoped_key(pool_id, key)
  Sha256 body_hash{};
  std::uint64_t timestamp_ms = 0;
  Bytes result;  // encode_result()
};

class KeyLog {
 public:
  // 512 records of ~100 bytes: a 50 KB block, and 2,000 blocks at a million keys. Tests use
  // smaller ones, to cross blocks often.
  static constexpr std::size_t default_block_records = 512;

 private:
  struct Block {
    explicit Block(std::size_t n) : records(std::make_unique<KeyRecord[]>(n)) {}
    std::unique_ptr<KeyRecord[]> records;  // never reallocated: records stay where they are
  };
  using Blocks = std::deque<std::shared_ptr<Block>>;

 public:
  // The records of a log as they were at freeze(), oldest first.
  class View {
   public:
    View() = default;
    std::size_t size() const { return size_; }
    template <typename F>
    void for_each(F&& f) const {
      walk(blocks_, block_records_, front_, size_, f);
    }

   private:
    friend class KeyLog;
    std::vector<std::shared_ptr<const Block>> blocks_;
    std::size_t block_records_ = default_block_records;
    std::size_t front_ = 0;  // the first record's slot in blocks_.front()
    std::size_t size_ = 0;
  };

  explicit KeyLog(std::size_t block_records = default_block_records)
      : block_records_(block_records) {
    RPOOL_ASSERT_OP(block_records, >, 0u);
  }
  KeyLog(const KeyLog& other) : block_records_(other.block_records_) {
    other.for_each([this](const KeyRecord& r) { push_back(KeyRecord(r)); });
  }
  KeyLog& operator=(const KeyLog& other) {
    if (this != &other) *this = KeyLog(other);
    return *this;
  }
  KeyLog(KeyLog&& other) noexcept
      : block_records_(other.block_records_),
        blocks_(std::exchange(other.blocks_, {})),
        front_(std::exchange(other.front_, 0)),
        size_(std::exchange(other.size_, 0)) {}
  KeyLog& operator=(KeyLog&& other) noexcept {
    block_records_ = other.block_records_;
    blocks_ = std::exchange(other.blocks_, {});
    front_ = std::exchange(other.front_, 0);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const KeyRecord& front() const {
    RPOOL_ASSERT(size_ > 0);
    return blocks_.front()->records[front_];
  }
  const KeyRecord& back() const {
    RPOOL_ASSERT(size_ > 0);
    const std::size_t at = front_ + size_ - 1;
    return blocks_[at / block_records_]->records[at % block_records_];
  }

  // The record stays where it is (its address, and its strings' data) until its block is freed.
  const KeyRecord& push_back(KeyRecord record) {
    const std::size_t at = front_ + size_;
    if (at == blocks_.size() * block_records_) {
      blocks_.push_back(std::make_shared<Block>(block_records_));
    }
    KeyRecord& slot = blocks_[at / block_records_]->records[at % block_records_];
    slot = std::move(record);
    ++size_;
    return slot;
  }

  void pop_front() {
    RPOOL_ASSERT(size_ > 0);
    --size_;
    if (size_ == 0) {
      // Free the block now (unless a View holds it); the next record starts a new one.
      blocks_.clear();
      front_ = 0;
    } else if (++front_ == block_records_) {
      blocks_.pop_front();
      front_ = 0;
    }
  }

  template <typename F>
  void for_each(F&& f) const {
    walk(blocks_, block_records_, front_, size_, f);
  }

  View freeze() const {
    View v;
    v.blocks_.assign(blocks_.begin(), blocks_.end());
    v.block_records_ = block_records_;
    v.front_ = front_;
    v.size_ = size_;
    return v;
  }

  std::size_t blocks() const { return blocks_.size(); }

 private:
  // Calls f on `size` records from slot `front` of the first of `blocks`.
  template <typename Range, typename F>
  static void walk(const Range& blocks, std::size_t block_records, std::size_t front,
                   std::size_t size, F& f) {
    std::size_t left = size;
    for (const auto& block : blocks) {
      for (; front < block_records && left > 0; ++front, --left) f(block->records[front]);
      front = 0;
    }
    RPOOL_ASSERT_OP(left, ==, 0u);
  }

  std::size_t block_records_;
  Blocks blocks_;
  std::size_t front_ = 0;  // the oldest record's slot in blocks_.front()
  std::size_t size_ = 0;
};

}  // namespace rpool::pool
