// Durations, sizes and ConfigError formatting.
#include <gtest/gtest.h>

#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, AcceptsEveryUnit) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("10s"), milliseconds(10'000));
  EXPECT_EQ(parse_duration("2m"), milliseconds(120'000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
}

TEST(ParseDuration, BareNumberIsSeconds) { EXPECT_EQ(parse_duration("30"), milliseconds(30'000)); }

TEST(ParseDuration, RejectsMalformedText) {
  for (const char* bad : {"", "s", "10x", "1.5s", "-1s", " 10s", "10s ", "10S", "10 s", "ms",
                          "99999999999999999999s", "9223372036854775807h"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(ParseSize, AcceptsPowersOf1024) {
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("8k"), 8192u);
  EXPECT_EQ(parse_size("32K"), 32768u);
  EXPECT_EQ(parse_size("1m"), 1048576u);
  EXPECT_EQ(parse_size("2g"), 2147483648u);
  EXPECT_EQ(parse_size("0"), 0u);
}

TEST(ParseSize, RejectsMalformedTextAndOverflow) {
  for (const char* bad : {"", "k", "8kb", "8 k", "-1", "1.5m", "8t", "18446744073709551616",
                          "17179869184g"}) {
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  }
}

TEST(ConfigError, ToStringIsFileLineMessage) {
  ConfigError e{"conf/x.yaml", 14, "route \"api\": upstream \"nope\" is not defined"};
  EXPECT_EQ(e.to_string(), "conf/x.yaml:14: route \"api\": upstream \"nope\" is not defined");
}

}  // namespace
}  // namespace turnpike::config
