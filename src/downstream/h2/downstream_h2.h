// The entry point for HTTP/2 client connections (RFC 9113): ALPN "h2" after a TLS handshake, or
// the h2c prior-knowledge preface on a cleartext listener with http2.enabled.
// The connection itself is H2Connection (h2_connection.h).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "turnpike/tls/transport.h"

namespace turnpike::proxy {

class DownstreamWorker;

// Serves an HTTP/2 connection on `transport` until it ends. `remote`: the client's address as the
// HTTP/1.1 connection that found the protocol knew it ("ip:port", `ip_len` its ip part; a PROXY
// protocol header's, or the socket's peer). `already_read` holds bytes the caller read before it
// knew the protocol (the client preface, for h2c); they are fed to the session before anything
// else is read. Returns at once; the connection runs on the worker's io_context.
void serve_h2(DownstreamWorker& worker, std::unique_ptr<tls::Transport> transport, std::string listener,
              std::string remote, size_t ip_len, std::string_view already_read);

}  // namespace turnpike::proxy
