// gRPC helpers: status mapping, grpc-timeout parsing, grpc-message encoding. See grpc.h.
#include "grpc.h"

#include "turnpike/common/strings.h"

namespace turnpike::proxy {

GrpcStatus grpc_status_for_http(int http_status) noexcept {
  switch (http_status) {
    case 404: return GrpcStatus::unimplemented;
    case 429: return GrpcStatus::resource_exhausted;
    case 502:
    case 503: return GrpcStatus::unavailable;
    case 504: return GrpcStatus::deadline_exceeded;
    default: return http_status < 400 ? GrpcStatus::ok : GrpcStatus::internal;
  }
}

bool is_grpc_content_type(std::string_view ct) noexcept {
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct.size() < kGrpc.size() || !iequals(ct.substr(0, kGrpc.size()), kGrpc)) return false;
  if (ct.size() == kGrpc.size()) return true;
  const char next = ct[kGrpc.size()];
  return next == '+' || next == ';';
}

bool is_grpc_request(const RequestContext& ctx) noexcept {
  for (const auto& h : ctx.headers) {
    if (iequals(h.name, "content-type")) return is_grpc_content_type(h.value);
  }
  return false;
}

std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view v) noexcept {
  // PROTOCOL-HTTP2.md: Timeout → TimeoutValue TimeoutUnit; TimeoutValue is 1-8 ASCII digits.
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  int64_t unit_ns;
  switch (v.back()) {
    case 'H': unit_ns = 3'600'000'000'000; break;
    case 'M': unit_ns = 60'000'000'000; break;
    case 'S': unit_ns = 1'000'000'000; break;
    case 'm': unit_ns = 1'000'000; break;
    case 'u': unit_ns = 1'000; break;
    case 'n': unit_ns = 1; break;
    default: return std::nullopt;
  }
  // 99999999H does not fit in nanoseconds; a century is "no deadline" for every purpose.
  constexpr int64_t kCentury = int64_t{100} * 365 * 24 * 3'600'000'000'000;
  if (n > kCentury / unit_ns) return std::chrono::nanoseconds(kCentury);
  return std::chrono::nanoseconds(n * unit_ns);
}

void grpc_percent_encode(std::string_view message, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
}

}  // namespace turnpike::proxy
