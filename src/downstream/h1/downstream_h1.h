// A client connection speaking HTTP/1.1 (or 1.0): reads request heads, feeds the pipeline,
// frames responses. One coroutine per connection runs its whole life (run()).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "turnpike/proxy/io.h"
#include "turnpike/common/buffer_pool.h"
#include "turnpike/tls/transport.h"
#include "turnpike/proxy/downstream.h"
#include "downstream/connections.h"

namespace turnpike::proxy {

// What the connection is waiting for; picks the timeout that applies and the counter it bumps.
enum class DownstreamWait : unsigned char {
  none,      // working on the request (upstream timeouts apply, not ours)
  handshake, // TLS handshake (tls.handshake_timeout)
  tunnel,    // an upgraded connection (WebSocket) with nothing moving (the upstream's read timeout)
  idle,      // keepalive: between requests, holding no buffer (keepalive_timeout)
  head,      // reading a request head (header_timeout: slowloris)
  body,      // reading the request body (body_timeout)
  send,      // writing the response (send_timeout)
  upstream,  // the upstream is working on the request: the sweep checks that the client is still there
};
std::string_view to_string(DownstreamWait w) noexcept;

using tls::Transport;

class DownstreamConnection : public ClientConnection, public Downstream {
 public:
  // `client`: the address a PROXY protocol header gave (see serve_client), or empty.
  DownstreamConnection(DownstreamWorker& worker, std::unique_ptr<Transport> transport, std::string listener,
                       std::string client = {}, size_t client_ip_len = 0);
  ~DownstreamConnection() override;

  // Waits (callback only, no coroutine, no buffer) for the client to send bytes, then serves.
  static void park(std::unique_ptr<DownstreamConnection> self);
  // TLS: the handshake first (then HTTP/2 when ALPN picked it); then as serve().
  static boost::asio::awaitable<void> start_tls(std::unique_ptr<DownstreamConnection> self,
                                                std::chrono::milliseconds handshake_timeout);
  // Serves requests while the client keeps bytes coming; parks the connection when it goes idle.
  static boost::asio::awaitable<void> serve(std::unique_ptr<DownstreamConnection> self);

  // ClientConnection
  void expire() override;
  void close_if_idle() override;
  void request_park() override;
  void close_slow() override;
  DownstreamWait waiting_for() const { return wait_; }

  // Downstream
  boost::asio::awaitable<boost::system::error_code> read_body(RequestContext& ctx) override;
  void preread_body(RequestContext& ctx) override;
  bool start_head(RequestContext& ctx, const ResponseOut& head, std::span<const std::string_view> body, bool end,
                  boost::system::error_code& ec) override;
  boost::asio::awaitable<boost::system::error_code> finish_send(RequestContext& ctx) override;
  boost::asio::awaitable<boost::system::error_code> send_body(RequestContext& ctx,
                                                              std::span<const std::string_view> body, bool end) override;
  boost::asio::awaitable<boost::system::error_code> send_trailers(RequestContext& ctx,
                                                                  std::span<const http::Header> trailers) override;
  void upstream_wait_begin(RequestContext& ctx) override;
  void upstream_wait_end() override;
  bool can_tunnel() const override { return true; }
  boost::asio::awaitable<boost::system::error_code> tunnel(RequestContext& ctx, Transport& upstream,
                                                           std::string_view upstream_early,
                                                           std::chrono::milliseconds idle_timeout) override;

 private:
  // The request loop; true when the connection should be parked idle, false when it closed.
  boost::asio::awaitable<bool> run();
  void close();
  Clock::duration limits_keepalive() const;  // the idle timeout that applies now
  void arm(DownstreamWait w, Clock::duration timeout);
  void disarm() { wait_ = DownstreamWait::none; deadline_ = Clock::time_point::max(); }
  boost::asio::awaitable<boost::system::error_code> fill(IoBuffer& buffer, size_t limit);
  // After a wait while idle: reads what arrived into in_. False when nothing had (readiness waits
  // may wake without data, see tls/edge_wait.h): in_ holds no buffer again and the connection
  // stays idle. A read error is left in `ec` (true is returned).
  bool take_arrival(boost::system::error_code& ec);
  // The idle wait ended by its deadline: while draining (not stopping), a request that arrived
  // meanwhile is taken (true) rather than reset by the close.
  bool arrived_before_close(boost::system::error_code& ec);
  // park()'s wait, repeated while wakeups bring nothing; its ends (tls::ParkedWait): it
  // completed, or the io_context went with it.
  static void wait_parked(std::unique_ptr<DownstreamConnection> self);
  friend class tls::ParkedWait<DownstreamConnection>;
  static void parked_ready(DownstreamConnection* owner, boost::system::error_code ec);
  static void parked_gone(DownstreamConnection* owner);
  // Writes ctx.out_head (when not empty) and the body pieces, framed. try_write_pieces writes the
  // first batch straight into the socket and returns true when that was all (result in `ec`);
  // otherwise finish_send() writes the rest, waiting for the socket.
  bool try_write_pieces(RequestContext& ctx, std::span<const std::string_view> body, bool end,
                        boost::system::error_code& ec);
  // The next batch of pieces from body[next] framed into iov after its first n entries (chunk
  // headers, and the last chunk when `end` and the pieces run out): the new entry count.
  size_t frame_batch(Iov& iov, size_t n, std::span<const std::string_view> body, size_t& next, bool end);
  boost::asio::awaitable<boost::system::error_code> write_pieces(RequestContext& ctx, std::span<const std::string_view> body,
                                                                 bool end);
  // One direction of a tunnel: bytes from `from` to `to` until `from` ends (then half-closes `to`).
  boost::asio::awaitable<boost::system::error_code> pump(Transport& from, Transport& to);
  // Cleartext listener with HTTP/2: the client's first bytes are (a prefix of) the h2 preface.
  bool h2_preface_pending() const;
  // Parse errors and early refusals: a complete response, then the connection closes.
  boost::asio::awaitable<void> refuse(int status, std::string_view code, std::string_view message);
  // Lingering close: half-close, then read and drop what the client still sends, for a while.
  boost::asio::awaitable<void> linger();
  bool prepare_request(RequestContext& ctx, int& status, std::string_view& code, std::string_view& message);
  void take_body_from(RequestContext& ctx, IoBuffer& buffer, size_t& offset);

  DownstreamWorker& worker_;
  std::unique_ptr<Transport> transport_;
  std::string listener_;
  IoBuffer in_;           // request heads (and the body bytes that follow them)
  IoBuffer aux_;          // body bytes read while in_ holds a head
  size_t cursor_ = 0;     // in_: first byte not yet consumed by the current request
  size_t aux_cursor_ = 0; // aux_: the same
  std::shared_ptr<const Snapshot> snapshot_;
  std::string remote_;    // "ip:port"
  size_t ip_len_ = 0;
  DownstreamWait wait_ = DownstreamWait::none;
  uint32_t requests_ = 0;
  bool timed_out_ = false;
  bool closed_slow_ = false;     // closed for the connection limit while reading a head: no answer
  Clock::time_point body_deadline_ = Clock::time_point::max();  // limits.body_deadline for this request
  RequestContext* upstream_ctx_ = nullptr;  // between upstream_wait_begin and _end
  bool parked_ = false;          // waiting in park()'s callback, no coroutine
  tls::ParkedWait<DownstreamConnection> parked_wait_{this};
  bool park_requested_ = false;  // the sweep asked a coroutine-waiting connection to park
  bool http10_ = false;
  bool close_after_ = false;
  bool chunked_out_ = false;
  bool sent_continue_ = false;
  bool until_close_out_ = false;
  bool tunnel_failed_ = false;   // one direction of the tunnel failed: the other stops too
  std::chrono::milliseconds tunnel_idle_{0};
  char chunk_header_[24];
  // What try_write_pieces left to finish_send: the first batch's scatter list in ctx.iov
  // (pending_iov_ entries, pending_done_ bytes of them written) and the pieces after it.
  std::span<const std::string_view> pending_body_;
  size_t pending_next_ = 0;
  size_t pending_iov_ = 0;
  size_t pending_done_ = 0;
  bool pending_end_ = false;
};

// Serves a connection just accepted on `listener`: HTTP/1.1 (or HTTP/2 by prior knowledge) in
// the clear, or a TLS handshake first when the listener has TLS (then HTTP/2 by ALPN). `client`:
// the address a PROXY protocol header gave ("ip:port", `client_ip_len` its ip part), or empty.
void serve_client(DownstreamWorker& worker, tcp::socket socket, const std::string& listener,
                  std::string client = {}, size_t client_ip_len = 0);

}  // namespace turnpike::proxy
