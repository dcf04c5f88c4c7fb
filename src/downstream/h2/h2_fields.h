// Constants shared by the HTTP/2 request decoding (h2_session.cc) and assembly (h2_request.cc).
#pragma once

#include <cstdint>

namespace turnpike::proxy::h2 {

// H2Stream::pseudo_seen_ bits.
enum : uint8_t { kMethod = 1, kScheme = 2, kAuthority = 4, kPath = 8, kHost = 16 };

// A header block far beyond the advertised limit is an HPACK bomb (a few bytes on the wire that
// decode to megabytes): the connection is cut off instead of answering 431.
constexpr uint64_t kBombFactor = 4;
constexpr int kMalformed = -1;  // fill_context: reset the stream with PROTOCOL_ERROR
constexpr int kRefused = -2;    // fill_context: reset with REFUSED_STREAM (listener gone)

}  // namespace turnpike::proxy::h2
