// Socket write helpers for the hot path: try the write right away (a non-blocking writev that
// usually takes everything), and only fall back to an asynchronous write for what the kernel
// did not take. A complete small write then costs one syscall and no reactor operation.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <array>
#include <span>
#include <string_view>

#include "turnpike/http/chunked.h"

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

using Iov = std::array<boost::asio::const_buffer, 40>;

// Appends pieces[first..] to iov after its first n entries — framed as one chunk ("<size>\r\n"
// data "\r\n") when `chunked` — as many as fit, leaving room for a last-chunk marker. Advances
// `first`; returns the new entry count. Both directions frame bodies with this.
inline size_t frame_pieces(Iov& iov, size_t n, std::span<const std::string_view> pieces, size_t& first, bool chunked,
                           char* chunk_header) {
  size_t total = 0;
  const size_t start = first;
  const size_t end = std::min(pieces.size(), start + (iov.size() - n - 3));
  for (size_t k = start; k < end; ++k) total += pieces[k].size();
  if (chunked && total > 0) iov[n++] = boost::asio::buffer(chunk_header, http::write_chunk_header(chunk_header, total));
  for (size_t k = start; k < end; ++k) {
    if (!pieces[k].empty()) iov[n++] = boost::asio::buffer(pieces[k].data(), pieces[k].size());
  }
  if (chunked && total > 0) iov[n++] = boost::asio::buffer(http::kChunkTrailer.data(), http::kChunkTrailer.size());
  first = end;
  return n;
}

}  // namespace turnpike::proxy
