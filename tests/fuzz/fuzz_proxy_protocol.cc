// libFuzzer target: the PROXY protocol v1/v2 parser (src/proxy/proxy_protocol.cc) on raw bytes.
// The bytes come from whoever connects to a proxy_protocol listener (from a trusted address, but
// a balancer can be misconfigured or compromised), so the parser must never read past its input,
// and what it reports must hold together: a done header lies inside the input, the same bytes
// parse the same way again, any prefix of a done header is incomplete (never invalid), and the
// TLV views point inside the header.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_check.h"
#include "turnpike/proxy/proxy_protocol.h"

namespace {

using turnpike::proxy::ProxyHeader;
using turnpike::proxy::ProxyParse;

bool inside(std::string_view v, const uint8_t* data, size_t len) {
  if (v.empty()) return true;
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  return p >= data && p + v.size() <= data + len;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so ASan sees any read past the input.
  std::vector<uint8_t> in(data, data + size);
  ProxyHeader h;
  const ProxyParse st = turnpike::proxy::parse_proxy_header({in.data(), in.size()}, h);
  if (st == ProxyParse::invalid) {
    FUZZ_CHECK(!h.error.empty());
    return 0;
  }
  if (st == ProxyParse::incomplete) {
    FUZZ_CHECK(in.size() < turnpike::proxy::kProxyMaxLength);
    return 0;
  }
  FUZZ_CHECK(h.length > 0 && h.length <= in.size() && h.length <= turnpike::proxy::kProxyMaxLength);
  FUZZ_CHECK(h.version == 1 || h.version == 2);
  FUZZ_CHECK(h.local || h.source.family == 4 || h.source.family == 6);
  FUZZ_CHECK(h.local || h.source.family == h.destination.family);
  for (std::string_view v : {h.authority, h.alpn, h.unique_id, h.ssl_version, h.ssl_cipher}) {
    FUZZ_CHECK(inside(v, in.data(), h.length));
  }
  // The header alone parses the same; every shorter prefix asks for more.
  ProxyHeader again;
  FUZZ_CHECK(turnpike::proxy::parse_proxy_header({in.data(), h.length}, again) == ProxyParse::done);
  FUZZ_CHECK(again.length == h.length && again.source == h.source && again.source_port == h.source_port);
  for (size_t n = 0; n < h.length; n += 1 + n / 8) {
    ProxyHeader part;
    FUZZ_CHECK(turnpike::proxy::parse_proxy_header({in.data(), n}, part) == ProxyParse::incomplete);
  }
  return 0;
}
