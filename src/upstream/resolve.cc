// Resolving upstream nodes when a snapshot is built (never on the data path).
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

bool resolve_upstream(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                      std::vector<config::ConfigError>& errors) {
  out.config = &cfg;
  out.nodes.clear();
  bool ok = true;
  if (cfg.tls.enabled) {
    out.tls = tls::ClientContext::build(cfg, errors);
    if (!out.tls) ok = false;
  }
  for (const auto& node : cfg.nodes) {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(node.host, ec);
    if (ec) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      int rc = ::getaddrinfo(node.host.c_str(), nullptr, &hints, &res);
      if (rc != 0 || res == nullptr) {
        errors.push_back({node.source.file, node.source.line,
                          "upstream \"" + cfg.name + "\": cannot resolve host \"" + node.host +
                              "\": " + ::gai_strerror(rc)});
        ok = false;
        continue;
      }
      if (res->ai_family == AF_INET6) {
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, 16);
        ip = asio::ip::address_v6(b);
      } else {
        ip = asio::ip::address_v4(ntohl(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr));
      }
      ::freeaddrinfo(res);
    }
    ResolvedNode rn;
    rn.endpoint = tcp::endpoint(ip, node.port);
    rn.weight = node.weight == 0 ? 1 : node.weight;
    rn.address = ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(node.port)
                            : ip.to_string() + ":" + std::to_string(node.port);
    out.nodes.push_back(std::move(rn));
  }
  return ok;
}

}  // namespace turnpike::upstream
