// configure(): the error log and access log as a whole, including reconfiguration on reload.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "log_test_util.h"
#include "turnpike/log/log.h"

namespace turnpike::log {
namespace {

using testing::TempDir;
using testing::read_file;
using testing::wait_for_text;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class Configure : public ::testing::Test {
 protected:
  void TearDown() override { shutdown(); }

  config::LogConfig files(const std::string& error_log, const std::string& access_log = "off") {
    config::LogConfig c;
    c.error_log = error_log;
    c.access_log = access_log;
    return c;
  }

  TempDir dir_;
  std::string error_;
};

TEST_F(Configure, ErrorLogLinesHaveUtcTimeAndLevel) {
  const std::string path = dir_.file("error.log");
  ASSERT_TRUE(configure(files(path), error_)) << error_;
  spdlog::info("hello {}", 42);
  ASSERT_TRUE(wait_for_text(path, "hello 42"));
  EXPECT_THAT(read_file(path),
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                           "\\[info\\] hello 42\n"));
}

TEST_F(Configure, LevelFiltersLines) {
  const std::string path = dir_.file("error.log");
  config::LogConfig c = files(path);
  c.level = "warn";
  ASSERT_TRUE(configure(c, error_)) << error_;
  spdlog::info("quiet");
  spdlog::warn("loud");
  ASSERT_TRUE(wait_for_text(path, "loud"));
  EXPECT_THAT(read_file(path), ::testing::Not(HasSubstr("quiet")));
}

TEST_F(Configure, FailureOnUnopenableErrorLogKeepsTheOldLogger) {
  const std::string good = dir_.file("error.log");
  ASSERT_TRUE(configure(files(good), error_)) << error_;

  EXPECT_FALSE(configure(files("/nonexistent-dir/error.log"), error_));
  EXPECT_EQ(error_, "cannot open /nonexistent-dir/error.log: No such file or directory");

  spdlog::error("still logging");
  EXPECT_TRUE(wait_for_text(good, "[error] still logging"));
}

TEST_F(Configure, FailureOnUnopenableAccessLogKeepsEverything) {
  const std::string err = dir_.file("error.log");
  const std::string acc = dir_.file("access.log");
  ASSERT_TRUE(configure(files(err, acc), error_)) << error_;

  EXPECT_FALSE(configure(files(dir_.file("new-error.log"), "/nonexistent-dir/access.log"), error_));
  EXPECT_THAT(error_, HasSubstr("/nonexistent-dir/access.log"));

  EXPECT_TRUE(access_enabled());
  AccessRecord r;
  r.method = "GET";
  r.target = "/kept";
  r.protocol = "HTTP/1.1";
  write_access(r);
  spdlog::warn("kept");
  EXPECT_TRUE(wait_for_text(acc, "\"GET /kept HTTP/1.1\""));
  EXPECT_TRUE(wait_for_text(err, "[warning] kept"));
}

TEST_F(Configure, AccessLogTextJsonAndOff) {
  const std::string text_log = dir_.file("access.log");
  const std::string json_log = dir_.file("access.json");
  AccessRecord r;
  r.method = "GET";
  r.target = "/a";
  r.protocol = "HTTP/1.1";
  r.status = 204;

  EXPECT_FALSE(access_enabled());
  ASSERT_TRUE(configure(files("stderr", text_log), error_)) << error_;
  EXPECT_TRUE(access_enabled());
  write_access(r);
  EXPECT_TRUE(wait_for_text(text_log, "\"GET /a HTTP/1.1\" 204 0"));

  config::LogConfig c = files("stderr", json_log);
  c.access_format = "json";
  ASSERT_TRUE(configure(c, error_)) << error_;
  write_access(r);
  EXPECT_TRUE(wait_for_text(json_log, "\"target\":\"/a\",\"protocol\":\"HTTP/1.1\""));

  ASSERT_TRUE(configure(files("stderr", "off"), error_)) << error_;
  EXPECT_FALSE(access_enabled());
  write_access(r);  // a no-op
}

TEST_F(Configure, ReopenMovesBothLogsToFreshFiles) {
  const std::string err = dir_.file("error.log");
  const std::string acc = dir_.file("access.log");
  ASSERT_TRUE(configure(files(err, acc), error_)) << error_;
  spdlog::info("first");
  ASSERT_TRUE(wait_for_text(err, "first"));
  ASSERT_EQ(std::rename(err.c_str(), (err + ".1").c_str()), 0);
  ASSERT_EQ(std::rename(acc.c_str(), (acc + ".1").c_str()), 0);
  reopen();
  spdlog::info("second");
  AccessRecord r;
  r.target = "/after-rotation";
  write_access(r);
  EXPECT_TRUE(wait_for_text(err, "second"));
  EXPECT_TRUE(wait_for_text(acc, "/after-rotation"));
  EXPECT_THAT(read_file(err + ".1"), ::testing::Not(HasSubstr("second")));
}

TEST_F(Configure, ShutdownWritesWhatIsQueuedAndLaterLinesStillArrive) {
  const std::string path = dir_.file("error.log");
  ASSERT_TRUE(configure(files(path), error_)) << error_;
  const uint64_t dropped_before = dropped_lines();  // the count is process-wide
  for (int i = 0; i < 100; ++i) spdlog::info("queued {}", i);
  shutdown();
  EXPECT_THAT(read_file(path), HasSubstr("queued 99"));
  spdlog::info("after shutdown");  // synchronous now
  EXPECT_THAT(read_file(path), HasSubstr("after shutdown"));
  EXPECT_EQ(dropped_lines(), dropped_before);
}

TEST_F(Configure, EveryLineIsEitherWrittenOrCountedAsDropped) {
  const std::string acc = dir_.file("access.log");
  ASSERT_TRUE(configure(files("stderr", acc), error_)) << error_;
  const uint64_t dropped_before = dropped_lines();  // the count is process-wide
  constexpr int kLines = 50'000;  // several times the queue: some are likely to be dropped
  AccessRecord r;
  r.target = "/x";
  for (int i = 0; i < kLines; ++i) write_access(r);
  shutdown();
  std::string text = read_file(acc);
  auto written = static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
  EXPECT_EQ(written + (dropped_lines() - dropped_before), static_cast<uint64_t>(kLines));
}

TEST_F(Configure, ReconfiguringWhileWorkersLogIsSafe) {
  ASSERT_TRUE(configure(files(dir_.file("e0.log"), dir_.file("a0.log")), error_)) << error_;
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&] {
      AccessRecord r;
      r.target = "/concurrent";
      while (!stop.load()) {
        if (access_enabled()) write_access(r);
        spdlog::info("worker line");
      }
    });
  }
  for (int i = 1; i <= 20; ++i) {
    std::string n = std::to_string(i);
    std::string access = i % 3 == 0 ? "off" : dir_.file("a" + n + ".log");
    ASSERT_TRUE(configure(files(dir_.file("e" + n + ".log"), access), error_)) << error_;
    if (i % 5 == 0) reopen();
  }
  stop = true;
  for (std::thread& w : workers) w.join();
  spdlog::info("final line");
  EXPECT_TRUE(wait_for_text(dir_.file("e20.log"), "final line"));
}

}  // namespace
}  // namespace turnpike::log
