// Socket write helpers for the hot path: try the write right away (a non-blocking writev that
// usually takes everything), and only fall back to an asynchronous write for what the kernel
// did not take. A complete small write then costs one syscall and no reactor operation.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <span>

namespace turnpike::proxy {

// Writes what the socket takes now; `ec` is set only for real errors (not for would_block).
inline size_t write_now(boost::asio::ip::tcp::socket& socket, std::span<const boost::asio::const_buffer> bufs,
                        boost::system::error_code& ec) {
  size_t n = socket.write_some(bufs, ec);
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
    ec = {};
    n = 0;
  }
  return n;
}

inline size_t total_size(std::span<const boost::asio::const_buffer> bufs) {
  size_t total = 0;
  for (const auto& b : bufs) total += b.size();
  return total;
}

// Drops the first n bytes from the buffer sequence (editing it in place); returns what is left.
inline std::span<boost::asio::const_buffer> consume_front(std::span<boost::asio::const_buffer> bufs, size_t n) {
  size_t i = 0;
  while (i < bufs.size() && n >= bufs[i].size()) {
    n -= bufs[i].size();
    ++i;
  }
  if (i < bufs.size() && n > 0) bufs[i] += n;
  return bufs.subspan(i);
}

}  // namespace turnpike::proxy
