// real_ip (real_ip.h), once per request on listeners that set it: parses at most the
// X-Forwarded-For hops it walks; no allocation (the result is a view into the request's fields).
#include "real_ip.h"

#include "turnpike/common/ip_network.h"
#include "turnpike/common/strings.h"
#include "turnpike/config/config.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

void resolve_real_ip(RequestContext& ctx) {
  const auto& trusted = ctx.listener->config->trusted;
  const std::optional<IpAddress> peer = parse_ip(ctx.client_ip);
  if (!peer || !contains_any(trusted, *peer)) return;
  std::string_view client;
  bool stop = false;
  // The last field line holds the hops added last; within a line, the rightmost hop is the last.
  for (auto it = ctx.headers.rbegin(); it != ctx.headers.rend() && !stop; ++it) {
    if (!iequals(it->name, "x-forwarded-for")) continue;
    std::string_view rest = it->value;
    while (!rest.empty() && !stop) {
      const size_t comma = rest.rfind(',');
      const std::string_view hop = trim_ows(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(0, comma);
      if (hop.empty()) continue;
      const std::optional<IpAddress> ip = parse_ip(hop);
      if (!ip) {
        stop = true;  // not an address: believe nothing to its left
        break;
      }
      client = hop;
      stop = !contains_any(trusted, *ip);
    }
  }
  if (client.empty()) return;
  if (client.front() == '[') client = client.substr(1, client.size() - 2);
  ctx.peer_ip = ctx.client_ip;
  ctx.client_ip = client;
  ctx.remote_addr = client;
}

}  // namespace turnpike::proxy
