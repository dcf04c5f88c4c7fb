// The PROXY protocol on a listener (`proxy_protocol: true`): the header a balancer sends first
// on each connection is read before anything else, and the client it names becomes the
// connection's client address (logs, X-Forwarded-For, limits, ip-restriction, hashing).
#pragma once

#include <string>

#include "downstream/connections.h"

namespace turnpike::proxy {

// Reads the PROXY v1/v2 header that starts `socket`, then hands the connection to
// serve_client (downstream_h1.h) with the client the header names (LOCAL/UNKNOWN headers keep the socket's
// own address). Closes, and counts, a connection whose source is not in the listener's
// `trusted`, one that starts with anything but a valid header, and one whose header has not
// arrived within proxy_protocol_timeout. Reads exactly the header's bytes (it peeks first), so
// what follows is the client's, for TLS or HTTP alike.
void read_proxy_header(DownstreamWorker& worker, tcp::socket socket, const std::string& listener);

}  // namespace turnpike::proxy
