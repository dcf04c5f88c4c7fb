// The buffer pool's free list: reuse, the cap, and trim() giving back what a spike left behind
// while a steady load keeps the blocks it uses.
#include "turnpike/common/buffer_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
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

TEST(BufferPoolTest, TrimKeepsTheLowestAddressedBlocks) {
  BufferPool pool;
  std::vector<char*> blocks;
  for (int i = 0; i < 40; ++i) blocks.push_back(pool.acquire());
  for (char* b : blocks) pool.release(b);
  pool.trim();
  const size_t freed = pool.trim();
  ASSERT_GT(freed, 0u);
  // What is left is the lowest-addressed blocks of the 40, whatever order they were returned in.
  std::sort(blocks.begin(), blocks.end());
  std::vector<char*> kept;
  while (pool.free_blocks() > 0) kept.push_back(pool.acquire());
  std::sort(kept.begin(), kept.end());
  ASSERT_EQ(kept.size(), 40 - freed);
  EXPECT_TRUE(std::equal(kept.begin(), kept.end(), blocks.begin()));
  for (char* b : kept) pool.release(b);
}

}  // namespace
}  // namespace turnpike
