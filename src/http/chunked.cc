// The chunked transfer coding (RFC 9112 §7.1): a byte-at-a-time state machine for the framing,
// with chunk data handed out in bulk as views into the caller's input.
//
// Hot path: no allocation (beyond `data` growing before warm-up), no exceptions.
#include "turnpike/http/chunked.h"

#include "char_class.h"

namespace turnpike::http {

namespace {

constexpr size_t kMaxSizeDigits = 16;  // 16 hex digits fill a uint64_t: no overflow possible

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

}  // namespace

std::string_view to_string(ChunkedDecoder::State s) noexcept {
  using State = ChunkedDecoder::State;
  switch (s) {
    case State::size: return "size";
    case State::extension: return "extension";
    case State::size_lf: return "size_lf";
    case State::data: return "data";
    case State::data_cr: return "data_cr";
    case State::data_lf: return "data_lf";
    case State::trailer_start: return "trailer_start";
    case State::trailer_line: return "trailer_line";
    case State::trailer_value: return "trailer_value";
    case State::trailer_lf: return "trailer_lf";
    case State::final_lf: return "final_lf";
    case State::done: return "done";
    case State::failed: return "failed";
  }
  return "unknown";
}

void ChunkedDecoder::fail(std::string_view why) noexcept {
  state_ = State::failed;
  error_ = why;
}

size_t ChunkedDecoder::feed(std::string_view in, std::vector<std::string_view>& data) noexcept {
  size_t i = 0;
  while (i < in.size()) {
    if (state_ == State::data) {
      const uint64_t left = in.size() - i;
      const size_t take = static_cast<size_t>(remaining_ < left ? remaining_ : left);
      data.emplace_back(in.data() + i, take);
      i += take;
      remaining_ -= take;
      body_bytes_ += take;
      if (remaining_ == 0) state_ = State::data_cr;
      continue;
    }
    if (state_ == State::done || state_ == State::failed) return i;

    const char c = in[i];
    auto stop = [this, i](std::string_view why) {
      fail(why);
      return i;  // the offending byte is not consumed
    };
    switch (state_) {
      case State::size:
        if (const int v = detail::hex_value(c); v >= 0) {
          if (size_digits_ == kMaxSizeDigits) return stop("chunk size too long");
          remaining_ = (remaining_ << 4) | static_cast<uint64_t>(v);
          ++size_digits_;
        } else if (size_digits_ == 0) {
          // Catches an empty size, leading whitespace, signs; "0x" fails on the 'x' below.
          return stop("chunk size missing");
        } else if (c == ';') {
          ext_bytes_ = 1;
          state_ = State::extension;
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else {
          // No BWS before ';' either: "5 ;x" and "5 " are refused rather than guessed at.
          return stop("bad byte after chunk size");
        }
        break;

      case State::extension:
        if (c == '\r') {
          state_ = State::size_lf;
        } else if (c == '\n') {
          return stop("bare LF in chunk extension");
        } else if (!detail::has_class(c, detail::kFieldByte)) {
          return stop("bad byte in chunk extension");
        } else if (++ext_bytes_ > limits_.max_extension_bytes) {
          return stop("chunk extension too long");
        }
        break;

      case State::size_lf:
        if (c != '\n') return stop("bare CR after chunk size");
        state_ = remaining_ == 0 ? State::trailer_start : State::data;
        break;

      case State::data_cr:
        if (c != '\r') return stop("chunk data not followed by CRLF");
        state_ = State::data_lf;
        break;

      case State::data_lf:
        if (c != '\n') return stop("chunk data not followed by CRLF");
        state_ = State::size;
        size_digits_ = 0;
        ext_bytes_ = 0;
        break;

      default:  // the trailer section (RFC 9112 §7.1.2), bounded as a whole
        if (++trailer_bytes_ > limits_.max_trailer_bytes) {
          return stop("trailer section too large");
        }
        switch (state_) {
          case State::trailer_start:
            if (c == '\r') state_ = State::final_lf;
            else if (detail::is_tchar(c)) state_ = State::trailer_line;
            else if (is_ows(c)) return stop("obs-fold in trailer");  // RFC 9112 §5.2
            else if (c == '\n') return stop("bare LF in trailer");
            else return stop("bad trailer field name");
            break;
          case State::trailer_line:
            if (c == ':') state_ = State::trailer_value;
            else if (is_ows(c)) return stop("space before colon in trailer");  // §5.1
            else if (!detail::is_tchar(c)) return stop("bad trailer field name");
            break;
          case State::trailer_value:
            if (c == '\r') state_ = State::trailer_lf;
            else if (!detail::has_class(c, detail::kFieldByte)) {
              return stop(c == '\n' ? "bare LF in trailer" : "bad byte in trailer value");
            }
            break;
          case State::trailer_lf:
            if (c != '\n') return stop("bare CR in trailer");
            state_ = State::trailer_start;
            break;
          case State::final_lf:
            if (c != '\n') return stop("bare CR after trailer section");
            state_ = State::done;
            return i + 1;
          default:
            return stop("internal: unexpected state");
        }
        break;
    }
    ++i;
  }
  return i;
}

size_t write_chunk_header(char* out, uint64_t size) noexcept {
  constexpr char kHex[] = "0123456789abcdef";
  size_t digits = 1;
  while (digits < kMaxSizeDigits && (size >> (4 * digits)) != 0) ++digits;
  for (size_t d = 0; d < digits; ++d) out[digits - 1 - d] = kHex[(size >> (4 * d)) & 0xf];
  out[digits] = '\r';
  out[digits + 1] = '\n';
  return digits + 2;
}

}  // namespace turnpike::http
