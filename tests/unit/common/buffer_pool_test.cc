// The buffer pool's free list: reuse, the cap, and trim() giving back what a spike left behind
// while a steady load keeps the blocks it uses; blocks come from mmap.
#include "turnpike/common/buffer_pool.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace turnpike {
namespace {

// Takes `n` blocks and gives them back: the free list holds at least `n` afterwards.
void use_blocks(BufferPool& pool, size_t n) {
  std::vector<char*> blocks;
  for (size_t i = 0; i < n; ++i) blocks.push_back(pool.acquire());
  for (char* b : blocks) pool.release(b);
}

TEST(BufferPoolTest, ReleasedBlockIsReusedLastInFirstOut) {
  BufferPool pool;
  char* a = pool.acquire();
  char* b = pool.acquire();
  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.free_blocks(), 2u);
  EXPECT_EQ(pool.acquire(), b);
  EXPECT_EQ(pool.acquire(), a);
  pool.release(a);
  pool.release(b);
}

TEST(BufferPoolTest, FreeListIsCapped) {
  BufferPool pool(8);
  use_blocks(pool, 20);
  EXPECT_EQ(pool.free_blocks(), 8u);
}

TEST(BufferPoolTest, TrimKeepsBlocksUsedSinceTheLastTrim) {
  BufferPool pool;
  use_blocks(pool, 200);
  // The spike just ended: every block was in use during this interval.
  EXPECT_EQ(pool.trim(), 0u);
  EXPECT_EQ(pool.free_blocks(), 200u);
}

TEST(BufferPoolTest, TrimGivesBackHalfOfTheUnusedBlocksAtATime) {
  BufferPool pool;
  use_blocks(pool, 200);
  pool.trim();
  // A whole interval without an acquire: (200 - floor) unused, half of them go.
  const size_t unused = 200 - BufferPool::kTrimFloor;
  EXPECT_EQ(pool.trim(), (unused + 1) / 2);
  EXPECT_EQ(pool.free_blocks(), 200 - (unused + 1) / 2);
}

TEST(BufferPoolTest, SteadyLoadKeepsTheBlocksItUses) {
  BufferPool pool;
  use_blocks(pool, 100);
  pool.trim();
  for (int interval = 0; interval < 20; ++interval) {
    use_blocks(pool, 100);  // the load needs all of them in every interval
    EXPECT_EQ(pool.trim(), 0u) << "interval " << interval;
  }
  EXPECT_EQ(pool.free_blocks(), 100u);
}

TEST(BufferPoolTest, TrimSparesWhatTheLoadStillTakes) {
  BufferPool pool;
  use_blocks(pool, 300);
  pool.trim();
  use_blocks(pool, 250);  // only 50 stayed unused this interval
  EXPECT_EQ(pool.trim(), (300 - 250 - BufferPool::kTrimFloor + 1) / 2);
}

TEST(BufferPoolTest, IdlePoolShrinksToTheFloorAndStays) {
  BufferPool pool;
  use_blocks(pool, 1024);
  for (int i = 0; i < 20; ++i) pool.trim();
  EXPECT_EQ(pool.free_blocks(), BufferPool::kTrimFloor);
  EXPECT_EQ(pool.trim(), 0u);
  // And it still serves: the floor first, then new blocks.
  use_blocks(pool, 40);
  EXPECT_EQ(pool.free_blocks(), 40u);
}

TEST(BufferPoolTest, TrimFreesTheBlocksReturnedLongestAgo) {
  BufferPool pool;
  std::vector<char*> blocks;
  for (int i = 0; i < 40; ++i) blocks.push_back(pool.acquire());
  for (char* b : blocks) pool.release(b);
  pool.trim();
  pool.trim();  // frees the first-returned (coldest) ones
  // The most recently returned blocks are still there, in LIFO order.
  EXPECT_EQ(pool.acquire(), blocks.back());
  pool.release(blocks.back());
}

// Whether the kernel has anything mapped at `p` (mincore fails with ENOMEM on an unmapped page).
bool mapped(const char* p) {
  unsigned char resident = 0;
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t(::sysconf(_SC_PAGESIZE)) - 1));
  if (::mincore(page, 1, &resident) == 0) return true;
  EXPECT_EQ(errno, ENOMEM);
  return false;
}

// A trimmed block goes back to the kernel, not to malloc's heap, where the small objects that
// outlive a spike would keep its pages resident.
TEST(BufferPoolTest, TrimmedBlocksAreUnmapped) {
  BufferPool pool;
  std::vector<char*> blocks;
  for (size_t i = 0; i < BufferPool::kTrimFloor + 20; ++i) blocks.push_back(pool.acquire());
  for (char* b : blocks) {
    std::memset(b, 'x', BufferPool::kBlockSize);  // resident
    pool.release(b);
  }
  pool.trim();
  ASSERT_EQ(pool.trim(), 10u);  // half of the 20 unused, the first returned
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_FALSE(mapped(blocks[i])) << "block " << i;
    EXPECT_FALSE(mapped(blocks[i] + BufferPool::kBlockSize - 1)) << "block " << i;
  }
  EXPECT_TRUE(mapped(blocks.back()));
}

TEST(BufferPoolTest, BlocksOverTheCapAreUnmapped) {
  BufferPool pool(1);
  char* a = pool.acquire();
  char* b = pool.acquire();
  pool.release(a);
  pool.release(b);  // over the cap
  EXPECT_TRUE(mapped(a));
  EXPECT_FALSE(mapped(b));
}

TEST(BufferPoolTest, IoBufferGivesItsBlockBackWithoutAPool) {
  char* block = nullptr;
  {
    BufferPool pool(0);  // keeps nothing
    IoBuffer buffer;
    buffer.ensure(pool);
    block = buffer.tail();
    buffer.commit(1);
    EXPECT_TRUE(mapped(block));
  }  // destroyed before the pool, with no pool to return it to: it unmaps the block itself
  EXPECT_FALSE(mapped(block));
}

}  // namespace
}  // namespace turnpike
