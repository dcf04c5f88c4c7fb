// The PROXY protocol (HAProxy's "proxy-protocol.txt", versions 1 and 2): the header an L4
// balancer (HAProxy in TCP mode, LVS FULLNAT, cloud load balancers) sends first on a connection
// to say which client it carries. Parsing only, over bytes already read: standard library only,
// so the fuzz target (tests/fuzz/fuzz_proxy_protocol.cc) builds it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "turnpike/common/ip_network.h"

namespace turnpike::proxy {

// v1 lines are at most 107 bytes with their CRLF (spec §2.1).
inline constexpr size_t kProxyV1MaxLength = 107;
// v2 allows 16 + 65535 bytes; we take at most this much (addresses and a few TLVs fit many
// times over) and refuse longer headers rather than read without bound.
inline constexpr size_t kProxyMaxLength = 1024;

enum class ProxyParse : uint8_t {
  incomplete,  // a valid prefix of a header: read more
  done,        // a whole header: `length` bytes, fields filled
  invalid,     // not a PROXY header, or a malformed one (`error` says how)
};
std::string_view to_string(ProxyParse p) noexcept;

struct ProxyHeader {
  size_t length = 0;      // bytes the header takes (done)
  uint8_t version = 0;    // 1 or 2
  // v2 LOCAL, v1 UNKNOWN, or a family we do not route (AF_UNIX, UNSPEC): the balancer speaks for
  // itself (health checks); the connection's own address stays the client's.
  bool local = false;
  IpAddress source;
  uint16_t source_port = 0;
  IpAddress destination;
  uint16_t destination_port = 0;
  // v2 TLVs we understand (views into the parsed bytes; empty when absent).
  std::string_view authority;  // PP2_TYPE_AUTHORITY: the server name the client asked for
  std::string_view alpn;       // PP2_TYPE_ALPN
  std::string_view unique_id;  // PP2_TYPE_UNIQUE_ID
  bool ssl = false;            // PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS to the balancer
  std::string_view ssl_version;
  std::string_view ssl_cipher;
  std::string_view error;      // invalid: why (static text)
};

// Parses the header at the start of `in`. Never reads past `in`; `out.length <= in.size()` when
// done. A prefix that already cannot be a PROXY header is `invalid` at once (a client that sends
// HTTP straight away is refused without waiting for the timeout).
ProxyParse parse_proxy_header(std::span<const uint8_t> in, ProxyHeader& out);

}  // namespace turnpike::proxy
