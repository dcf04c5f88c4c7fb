// The reopenable file sink: logrotate renames the file, SIGUSR1 → reopen(), new lines go to a
// fresh file under the old name.
#include "file_sink.h"

#include <gtest/gtest.h>
#include <spdlog/logger.h>

#include <cstdio>

#include "log_test_util.h"
#include "turnpike/log/log.h"

namespace turnpike::log {
namespace {

using testing::TempDir;
using testing::read_file;

TEST(ReopenableFileSink, AppendsToAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("a.log");
  { std::ofstream(path) << "old\n"; }
  std::string error;
  auto sink = detail::ReopenableFileSink::open(path, error);
  ASSERT_TRUE(sink) << error;
  spdlog::logger logger("t", sink);
  logger.set_pattern("%v");
  logger.info("new");
  EXPECT_EQ(read_file(path), "old\nnew\n");
}

TEST(ReopenableFileSink, ReopenAfterRenameWritesToANewFile) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  const std::string rotated = dir.file("access.log.1");
  std::string error;
  auto sink = detail::ReopenableFileSink::open(path, error);
  ASSERT_TRUE(sink) << error;
  spdlog::logger logger("t", sink);
  logger.set_pattern("%v");

  logger.info("before rotation");
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  logger.info("after rename, before reopen");  // still the renamed file: it is open
  reopen();
  logger.info("after reopen");

  EXPECT_EQ(read_file(rotated), "before rotation\nafter rename, before reopen\n");
  EXPECT_EQ(read_file(path), "after reopen\n");
}

TEST(ReopenableFileSink, ReopenWithoutRenameKeepsAppending) {
  TempDir dir;
  const std::string path = dir.file("a.log");
  std::string error;
  auto sink = detail::ReopenableFileSink::open(path, error);
  ASSERT_TRUE(sink) << error;
  spdlog::logger logger("t", sink);
  logger.set_pattern("%v");
  logger.info("one");
  reopen();
  logger.info("two");
  EXPECT_EQ(read_file(path), "one\ntwo\n");
}

TEST(ReopenableFileSink, OpenFailureSaysWhy) {
  std::string error;
  auto sink = detail::ReopenableFileSink::open("/nonexistent-dir/x.log", error);
  EXPECT_FALSE(sink);
  EXPECT_EQ(error, "cannot open /nonexistent-dir/x.log: No such file or directory");
}

}  // namespace
}  // namespace turnpike::log
