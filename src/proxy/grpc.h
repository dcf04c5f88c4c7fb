// gRPC over the gateway: recognizing gRPC requests, their deadline (grpc-timeout), and the
// "trailers-only" answer the gateway gives a gRPC client instead of an HTML or JSON error page
// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
//
// The pure functions are unit-tested (tests/unit/proxy/grpc_test.cc).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "turnpike/proxy/request_context.h"

namespace turnpike::proxy {

// gRPC status codes the gateway produces.
enum class GrpcStatus : int {
  ok = 0,
  deadline_exceeded = 4,   // the request's grpc-timeout (or the upstream read timeout) passed
  resource_exhausted = 8,  // rate limited (429)
  unimplemented = 12,      // no route (404)
  internal = 13,           // anything else
  unavailable = 14,        // the upstream could not be reached or failed (502, 503)
};

// The gRPC status a gateway error with this HTTP status becomes. One table for every error.
GrpcStatus grpc_status_for_http(int http_status) noexcept;

// A gRPC request: its content-type is application/grpc or application/grpc+<codec>.
bool is_grpc_content_type(std::string_view content_type) noexcept;
bool is_grpc_request(const RequestContext& ctx) noexcept;

// grpc-timeout: 1 to 8 digits and a unit (H, M, S, m, u, n). nullopt when malformed.
std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view value) noexcept;

// grpc-message is percent-encoded: bytes outside 0x20..0x7E, and '%', become %XX.
void grpc_percent_encode(std::string_view message, std::string& out);

}  // namespace turnpike::proxy
