// The byte stream under a connection: a TCP socket, or TLS over one.
//
// TLS runs OpenSSL straight on the socket's descriptor in non-blocking mode, the way the plain
// socket is used: read_some/write_some try the operation now and report "would block", and the
// caller waits for readiness. So the HTTP/1.1 and HTTP/2 connection code is the same for both, a
// complete small write is still one syscall, and no second copy of the bytes is made through a
// BIO pair (what asio::ssl::stream does). OpenSSL's own records are buffered only while a
// connection is busy (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection stays small.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <span>
#include <string_view>
#include <utility>

#include "turnpike/common/long_lived.h"
#include "turnpike/tls/edge_wait.h"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace turnpike::tls {

class Transport : public LongLived {
 public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;

  // Cleartext. Puts the socket in non-blocking mode.
  explicit Transport(tcp::socket socket);
  // TLS over `socket`; takes ownership of `ssl` (accept or connect state already set).
  Transport(tcp::socket socket, SSL* ssl);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Switches a connected plain transport to TLS (client side: after connect, before handshake).
  void start_tls(SSL* ssl);

  tcp::socket& socket() { return socket_; }
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  // Non-blocking read into [data, data+size). Returns the bytes read. Nothing available now:
  // returns 0 with ec = would_block (then wait_readable). End of stream: ec = eof.
  size_t read_some(void* data, size_t size, error_code& ec);
  // Non-blocking write of as much of `bufs` as goes now; 0 with no error when nothing went.
  // TLS: after a partial or zero write, the next call must start with the same bytes (callers
  // that retry with the unwritten rest of the same buffers satisfy this).
  size_t write_some(std::span<const boost::asio::const_buffer> bufs, error_code& ec);
  // Writes all of `bufs` (edits the span's entries while it goes): write_some first, then waits.
  boost::asio::awaitable<error_code> write_all(std::span<boost::asio::const_buffer> bufs);
  boost::asio::awaitable<error_code> write_all(std::string_view bytes);

  // Readiness. read_some can make progress without touching the socket when TLS holds decrypted
  // bytes already (read_buffered); wait_readable then completes at once. Hot paths call
  // `if (!read_buffered()) co_await async_wait_readable(token)` themselves: one coroutine frame
  // fewer per wait than wait_readable().
  bool read_buffered() const;
  boost::asio::awaitable<error_code> wait_readable();
  // The same wait for a parked connection, with an operation the connection holds (edge_wait.h).
  template <class Owner>
  void park_wait(ParkedWait<Owner>& wait) {
    using Mode = typename ParkedWait<Owner>::Mode;
    const Mode mode = read_buffered()      ? Mode::now
                      : read_wants_write_ ? Mode::writable
                      : socket_empty_     ? Mode::edge
                                          : Mode::readable;
    wait.start(socket_, reactor_, mode, &socket_empty_);
  }
  // Completion: void(error_code). When the last read found the socket empty, the wait costs no
  // system call (edge_wait.h); otherwise it asks the kernel for the current state (epoll_ctl).
  // One read wait per transport at a time, apart from the upstream pool's idle watch.
  template <class Token>
  auto async_wait_readable(Token&& token) {
    return boost::asio::async_initiate<Token, void(error_code)>(
        [this](auto handler) {
          if (read_buffered()) {
            boost::asio::post(socket_.get_executor(), boost::asio::append(std::move(handler), error_code{}));
          } else if (read_wants_write_) {
            socket_.async_wait(tcp::socket::wait_write, std::move(handler));
          } else if (socket_empty_) {
            async_wait_read_edge(socket_, reactor_, &socket_empty_, std::move(handler));
          } else {
            socket_.async_wait(tcp::socket::wait_read, std::move(handler));
          }
        },
        token);
  }
  boost::asio::awaitable<error_code> wait_writable();
  // For an idle connection: whether a read would see anything now (bytes, end of stream, an
  // error). Looks without consuming.
  bool has_input();
  // For a connection we are not reading from: whether the peer has closed it (end of stream, a
  // TLS close_notify, an error). Bytes waiting (a pipelined request) do not count; they stay
  // readable.
  bool peer_gone();

  // TLS: runs the handshake (server or client, as `ssl` was set up). Plain: no-op. A timeout is
  // the caller's: cancel() makes the pending wait fail.
  boost::asio::awaitable<error_code> handshake();
  // The protocol ALPN picked ("h2", "http/1.1"), or empty.
  std::string_view alpn() const;
  // TLS: whether this connection resumed a session.
  bool resumed() const;

  // Makes the pending wait (if any) complete with operation_aborted.
  void cancel();
  // Ends our sending side: TLS close_notify (best effort, never waits), then a TCP half-close.
  void shutdown_send();
  void close();

 private:
  size_t tls_read(void* data, size_t size, error_code& ec);
  // A one-byte MSG_PEEK at the socket itself (below TLS). `nothing` records the socket as empty.
  enum class SocketPeek : unsigned char { nothing, bytes, closed };
  SocketPeek peek_socket();
  void attach_ssl();
  struct SocketBio;  // the BIO OpenSSL reads and writes the socket through (transport.cc)
  size_t tls_write(std::span<const boost::asio::const_buffer> bufs, error_code& ec);

  tcp::socket socket_;
  EdgeReactor* reactor_;  // for edge waits (null where they are not available)
  SSL* ssl_ = nullptr;
  bool read_wants_write_ = false;  // TLS: the last SSL_read needs the socket writable
  bool socket_empty_ = false;      // the last read found the socket empty; no wait used an edge since
  bool tls_socket_empty_ = false;  // TLS: OpenSSL's last socket read came back short or would block
  bool read_starved_ = false;      // TLS: the last SSL_read needed more bytes from the socket
  bool write_wants_read_ = false;  // TLS: the last SSL_write needs the socket readable
  size_t retry_len_ = 0;           // TLS: length of a write OpenSSL must be given again
};

// Maps an OpenSSL failure (after SSL_get_error) to an error_code in a category that prints the
// library's reason.
boost::system::error_code tls_error(int ssl_error);

}  // namespace turnpike::tls
