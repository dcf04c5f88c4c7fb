// The client's HTTP/2 byte stream seen one frame header ahead of nghttp2, for the two rules
// nghttp2 cannot be asked to follow:
//  - RFC 9113 §5.1.2: streams past SETTINGS_MAX_CONCURRENT_STREAMS are a stream error. nghttp2
//    refuses them (REFUSED_STREAM) only until the client acknowledges the SETTINGS carrying the
//    limit, and answers a connection error (GOAWAY PROTOCOL_ERROR, every stream lost) afterwards.
//    So that acknowledgement is taken out of the byte stream (H2Connection::check_frame).
//  - RFC 9113 §5.1: HEADERS or DATA on a closed stream, and HEADERS on a stream id below one
//    already used, are errors; nghttp2 forgets closed streams and ignores such frames.
//    ClosedStreams remembers enough to tell which error applies.
//
// Pure bookkeeping, no nghttp2 here (unit-tested in tests/unit/proxy/h2_inbound_test.cc).
// Hot path: a few compares per frame header; bytes are never copied (except a frame header cut
// by the end of a read, at most 8 bytes, held until the next read).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace turnpike::proxy::h2 {

struct FrameHead {
  uint32_t length = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  int32_t stream_id = 0;
};

// What to do with a frame the connection looked at before nghttp2 sees it.
enum class FrameVerdict : unsigned char {
  pass,  // give it to nghttp2
  drop,  // take it out of the byte stream (only for a frame without payload)
  stop,  // the connection is being closed: feed nothing more
};
constexpr std::string_view to_string(FrameVerdict v) noexcept {
  switch (v) {
    case FrameVerdict::pass: return "pass";
    case FrameVerdict::drop: return "drop";
    case FrameVerdict::stop: return "stop";
  }
  return "unknown";
}

class InboundFrames {
 public:
  static constexpr size_t kPrefaceSize = 24;  // RFC 9113 §3.4, checked by nghttp2
  static constexpr size_t kHeadSize = 9;      // RFC 9113 §4.1

  // Feeds p[0..n) on to feed(const uint8_t*, size_t) -> bool (false: stop), in order. For each
  // frame header, note(head) -> bool says whether the frame must be checked; if so, the bytes
  // before it are fed first, so check(head) -> FrameVerdict sees nghttp2's state just before the
  // frame. False when feed or check said stop.
  template <class Note, class Check, class Feed>
  bool walk(const uint8_t* p, size_t n, Note&& note, Check&& check, Feed&& feed) {
    size_t i = 0, run = 0;  // run: the first byte of p not yet fed
    if (held_ > 0) {
      // A frame header cut by the end of the previous read: complete it first.
      const size_t k = std::min(kHeadSize - held_, n);
      std::memcpy(head_ + held_, p, k);
      held_ += static_cast<uint8_t>(k);
      i = run = k;
      if (held_ < kHeadSize) return true;
      held_ = 0;
      const FrameHead h = parse(head_);
      skip_ = h.length;
      const FrameVerdict v = note(h) ? check(h) : FrameVerdict::pass;
      if (v == FrameVerdict::stop) return false;
      if (v == FrameVerdict::pass && !feed(head_, kHeadSize)) return false;
    }
    while (i < n) {
      if (skip_ > 0) {  // the preface, or a frame's payload
        const size_t k = std::min<size_t>(skip_, n - i);
        i += k;
        skip_ -= static_cast<uint32_t>(k);
        continue;
      }
      if (n - i < kHeadSize) {
        if (i > run && !feed(p + run, i - run)) return false;
        std::memcpy(head_, p + i, n - i);
        held_ = static_cast<uint8_t>(n - i);
        return true;
      }
      const FrameHead h = parse(p + i);
      skip_ = h.length;
      if (note(h)) {
        if (i > run && !feed(p + run, i - run)) return false;
        run = i;
        const FrameVerdict v = check(h);
        if (v == FrameVerdict::stop) return false;
        if (v == FrameVerdict::drop && h.length == 0) run = i + kHeadSize;
      }
      i += kHeadSize;
    }
    return n > run ? feed(p + run, n - run) : true;
  }

  // Between frames: every byte fed so far ends a whole frame.
  bool at_frame_start() const { return skip_ == 0 && held_ == 0; }

  static FrameHead parse(const uint8_t* h) {
    FrameHead f;
    f.length = (uint32_t{h[0]} << 16) | (uint32_t{h[1]} << 8) | h[2];
    f.type = h[3];
    f.flags = h[4];
    f.stream_id = static_cast<int32_t>(((uint32_t{h[5]} << 24) | (uint32_t{h[6]} << 16) | (uint32_t{h[7]} << 8) | h[8]) &
                                       0x7fffffffu);
    return f;
  }

 private:
  uint32_t skip_ = kPrefaceSize;  // bytes still to pass before the next frame header
  uint8_t head_[kHeadSize] = {};  // a frame header cut by the end of a read
  uint8_t held_ = 0;              // bytes of it in head_
};

// What became of the client's last 64 stream ids (client ids are odd), in three bitmaps: bit i
// is the id highest() - 2i. Older ids are forgotten (their frames are ignored, as nghttp2 does).
class ClosedStreams {
 public:
  // The answer RFC 9113 §5.1 asks for, for HEADERS or DATA on a stream nghttp2 no longer has.
  enum class Fate : unsigned char {
    ignore,        // we reset it (§5.1 "closed": frames may still be in flight), or forgotten
    never_opened,  // an id below one already used: §5.1.1, connection error PROTOCOL_ERROR
    ended,         // both sides sent END_STREAM: §5.1 "closed", connection error STREAM_CLOSED
    client_reset,  // the client reset it: §5.1 "closed", stream error STREAM_CLOSED
  };

  int32_t highest() const { return highest_; }

  // A HEADERS frame opening a new stream (id above highest()).
  void opened(int32_t id) {
    if (id <= highest_ || (id & 1) == 0) return;
    const int64_t shift = (int64_t{id} - highest_) / 2;  // highest_ may be -1
    if (shift >= 64) {
      opened_ = ended_ = client_reset_ = 0;
    } else {
      opened_ <<= shift;
      ended_ <<= shift;
      client_reset_ <<= shift;
    }
    opened_ |= 1;
    highest_ = id;
  }
  void ended(int32_t id) { set(ended_, id); }
  void client_reset(int32_t id) { set(client_reset_, id); }

  Fate fate(int32_t id) const {
    const uint64_t bit = mask(id);
    if (bit == 0) return Fate::ignore;
    if (client_reset_ & bit) return Fate::client_reset;
    if (ended_ & bit) return Fate::ended;
    if (!(opened_ & bit)) return Fate::never_opened;
    return Fate::ignore;
  }

 private:
  // id's bit, or 0 when id is not a remembered client stream id.
  uint64_t mask(int32_t id) const {
    if (id > highest_ || id <= 0 || (id & 1) == 0) return 0;
    const int64_t i = (int64_t{highest_} - id) / 2;
    return i < 64 ? uint64_t{1} << i : 0;
  }
  void set(uint64_t& bits, int32_t id) { bits |= mask(id); }

  int32_t highest_ = -1;  // so that stream 1 is one step above it
  uint64_t opened_ = 0;
  uint64_t ended_ = 0;
  uint64_t client_reset_ = 0;
};
constexpr std::string_view to_string(ClosedStreams::Fate f) noexcept {
  switch (f) {
    case ClosedStreams::Fate::ignore: return "ignore";
    case ClosedStreams::Fate::never_opened: return "never_opened";
    case ClosedStreams::Fate::ended: return "ended";
    case ClosedStreams::Fate::client_reset: return "client_reset";
  }
  return "unknown";
}

}  // namespace turnpike::proxy::h2
