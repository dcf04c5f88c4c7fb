// gRPC helpers: the one table that turns gateway errors into gRPC statuses, grpc-timeout
// parsing (PROTOCOL-HTTP2.md), grpc-message encoding and gRPC request detection.
#include "grpc.h"

#include <gtest/gtest.h>

namespace turnpike::proxy {
namespace {

using namespace std::chrono_literals;

TEST(GrpcStatusForHttp, MapsEveryGatewayErrorToItsStatus) {
  struct Row {
    int http;
    GrpcStatus grpc;
  };
  const Row table[] = {
      {404, GrpcStatus::unimplemented},       // no route
      {429, GrpcStatus::resource_exhausted},  // rate limited
      {502, GrpcStatus::unavailable},         // connect failure, bad upstream response
      {503, GrpcStatus::unavailable},
      {504, GrpcStatus::deadline_exceeded},   // timeouts, grpc-timeout
      {400, GrpcStatus::internal},
      {401, GrpcStatus::internal},
      {413, GrpcStatus::internal},
      {500, GrpcStatus::internal},
      {200, GrpcStatus::ok},
  };
  for (const auto& row : table) {
    EXPECT_EQ(grpc_status_for_http(row.http), row.grpc) << "HTTP " << row.http;
  }
}

TEST(ParseGrpcTimeout, AcceptsEveryUnit) {
  EXPECT_EQ(parse_grpc_timeout("1H"), std::chrono::nanoseconds(1h));
  EXPECT_EQ(parse_grpc_timeout("2M"), std::chrono::nanoseconds(2min));
  EXPECT_EQ(parse_grpc_timeout("3S"), std::chrono::nanoseconds(3s));
  EXPECT_EQ(parse_grpc_timeout("500m"), std::chrono::nanoseconds(500ms));
  EXPECT_EQ(parse_grpc_timeout("250u"), std::chrono::nanoseconds(250us));
  EXPECT_EQ(parse_grpc_timeout("99999999n"), std::chrono::nanoseconds(99999999));
  EXPECT_EQ(parse_grpc_timeout("99999999S"), std::chrono::nanoseconds(std::chrono::seconds(99999999)));
  // Too long for nanoseconds: clamped to a century instead of overflowing.
  EXPECT_EQ(parse_grpc_timeout("99999999H"), std::chrono::nanoseconds(std::chrono::hours(24 * 365 * 100)));
}

TEST(ParseGrpcTimeout, RejectsMalformedValues) {
  for (const char* bad : {"", "S", "10", "10s", "10x", "-1S", "1.5S", "123456789S", " 1S", "1S "}) {
    EXPECT_FALSE(parse_grpc_timeout(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(GrpcPercentEncode, EncodesOnlyWhatTheSpecRequires) {
  std::string out;
  grpc_percent_encode("could not connect: 100% down\n\xc3\xa9", out);
  EXPECT_EQ(out, "could not connect: 100%25 down%0A%C3%A9");
}

TEST(IsGrpcContentType, MatchesGrpcAndItsCodecs) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+proto"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC; charset=utf-8"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));  // a different protocol
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type("application/grp"));
}

}  // namespace
}  // namespace turnpike::proxy
