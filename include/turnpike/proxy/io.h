// Scatter-list helpers for the hot path's writes (both sides): sizes, dropping what was written,
// and body framing. The writes themselves go through tls::Transport (write_some first, a wait
// only for what the socket did not take).
#pragma once

#include <boost/asio/buffer.hpp>
#include <array>
#include <span>
#include <string_view>

#include "turnpike/http/chunked.h"

namespace turnpike::proxy {

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
