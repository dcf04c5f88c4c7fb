// Chunked transfer coding (RFC 9112 §7.1): an incremental decoder that reports the data bytes as
// views into its input (never copying them), and the encoder's framing helpers.
//
// Hot path: no allocation after warm-up, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace turnpike::http {

class ChunkedDecoder {
 public:
  enum class State : uint8_t {
    size,           // reading chunk-size hex digits
    extension,      // inside chunk-ext, until CRLF
    size_lf,        // saw CR after size/extension, expecting LF
    data,           // inside chunk data
    data_cr,        // expecting CR after chunk data
    data_lf,        // expecting LF after chunk data
    trailer_start,  // at the start of a trailer line (or the final CRLF)
    trailer_line,   // inside a trailer field line's name
    trailer_value,  // inside a trailer field line's value, after the colon
    trailer_lf,     // expecting LF ending a trailer line
    final_lf,       // expecting the LF of the final CRLF
    done,           // the message body is complete
    failed,         // malformed; see error()
  };

  // Strictness (RFC 9112 §7.1): chunk-size is 1 to 16 HEXDIG, nothing before it and nothing but
  // ';' or CR after it (no BWS, signs or "0x"); a chunk-ext may hold any field-value byte and is
  // not interpreted; every line ends in CRLF exactly (bare CR or LF fails); trailer fields are
  // validated like header fields (token name, no space before ':', no obs-fold, field-value
  // bytes) and dropped: the decoder does not report them.
  struct Limits {
    size_t max_extension_bytes = 4096;  // per chunk
    size_t max_trailer_bytes = 16384;   // whole trailer section
  };

  ChunkedDecoder() = default;
  explicit ChunkedDecoder(Limits limits) : limits_(limits) {}

  // Consumes bytes from `in` and appends each run of body data, as a view into `in`, to `data`.
  // Returns how many bytes of `in` were consumed: all of them unless the body ended (done()) —
  // then the rest belongs to the next message — or the input is malformed (failed()); on failure
  // the count stops before the offending byte. Once done or failed, feed consumes nothing.
  // Pass only the bytes after the previous call's consumed count.
  size_t feed(std::string_view in, std::vector<std::string_view>& data) noexcept;

  bool done() const noexcept { return state_ == State::done; }
  bool failed() const noexcept { return state_ == State::failed; }
  // Why decoding failed (static text), empty when it did not.
  std::string_view error() const noexcept { return error_; }
  // Total body bytes decoded so far.
  uint64_t body_bytes() const noexcept { return body_bytes_; }
  void reset() noexcept { *this = ChunkedDecoder(limits_); }

 private:
  Limits limits_{};
  State state_ = State::size;
  uint64_t remaining_ = 0;     // data bytes left in the current chunk
  uint64_t body_bytes_ = 0;
  size_t size_digits_ = 0;
  size_t ext_bytes_ = 0;
  size_t trailer_bytes_ = 0;    // bytes of the trailer section so far, including its CRLFs
  std::string_view error_;

  void fail(std::string_view why) noexcept;
};

std::string_view to_string(ChunkedDecoder::State s) noexcept;

// Writes "<hex size>\r\n" (lower-case hex, no leading zeros) into out (at least 18 bytes) and
// returns its length.
size_t write_chunk_header(char* out, uint64_t size) noexcept;
inline constexpr std::string_view kChunkTrailer = "\r\n";            // after each chunk's data
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";          // ends a chunked body

}  // namespace turnpike::http
