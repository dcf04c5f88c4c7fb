// `real_ip` on a listener: the client behind trusted proxies, from X-Forwarded-For.
#pragma once

#include "turnpike/proxy/request_context.h"

namespace turnpike::proxy {

// When the connection's client (the socket's peer, or the PROXY header's source) is in the
// listener's `trusted`, walks the X-Forwarded-For hops from the right, past trusted ones, and
// makes the first untrusted hop the request's client_ip and remote_addr (no port is known);
// the connection's client stays in peer_ip for the X-Forwarded-For the gateway sends on. A hop
// that is not an IP literal ends the walk at the hop before it. Changes nothing otherwise.
void resolve_real_ip(RequestContext& ctx);

}  // namespace turnpike::proxy
