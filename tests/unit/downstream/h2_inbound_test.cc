// The frame walk ahead of nghttp2 (h2_inbound.h): frame boundaries across any split of the
// input, checks seeing exactly the frames noted, a dropped frame never fed; and the record of
// closed client streams that picks the RFC 9113 §5.1 answer.
#include "downstream/h2/h2_inbound.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace turnpike::proxy::h2 {
namespace {

std::string frame(uint8_t type, uint8_t flags, uint32_t sid, std::string payload = {}) {
  std::string f;
  const auto len = static_cast<uint32_t>(payload.size());
  f += static_cast<char>(len >> 16);
  f += static_cast<char>(len >> 8);
  f += static_cast<char>(len);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>(sid >> 24);
  f += static_cast<char>(sid >> 16);
  f += static_cast<char>(sid >> 8);
  f += static_cast<char>(sid);
  return f + payload;
}

constexpr uint8_t kData = 0, kHeaders = 1, kSettings = 4, kAck = 1;
const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Walked {
  std::string fed;
  std::vector<FrameHead> checked;
};

// Walks `input` cut into pieces of `step` bytes; checks SETTINGS ACKs and drops the second.
Walked walk(const std::string& input, size_t step) {
  InboundFrames w;
  Walked r;
  int acks = 0;
  auto note = [](const FrameHead& h) { return h.type == kSettings && (h.flags & kAck); };
  auto check = [&](const FrameHead& h) {
    r.checked.push_back(h);
    return ++acks == 2 ? FrameVerdict::drop : FrameVerdict::pass;
  };
  auto feed = [&](const uint8_t* p, size_t n) {
    r.fed.append(reinterpret_cast<const char*>(p), n);
    return true;
  };
  for (size_t i = 0; i < input.size(); i += step) {
    const std::string piece = input.substr(i, step);
    EXPECT_TRUE(w.walk(reinterpret_cast<const uint8_t*>(piece.data()), piece.size(), note, check, feed));
  }
  return r;
}

TEST(InboundFrames, DropsOnlyTheChosenFrameWhateverTheReadSizes) {
  const std::string before = kPreface + frame(kSettings, 0, 0, std::string(6, '\1')) + frame(kSettings, kAck, 0) +
                             frame(kHeaders, 5, 1, "hpack-block");
  const std::string after = frame(kData, 1, 1, std::string(100, 'x')) + frame(kSettings, kAck, 0);
  const std::string input = before + frame(kSettings, kAck, 0) + after;
  for (size_t step : {1, 2, 7, 9, 10, 24, 33, 1000}) {
    const Walked r = walk(input, step);
    EXPECT_EQ(r.fed, before + after) << "step " << step;
    ASSERT_EQ(r.checked.size(), 3u) << "step " << step;
    EXPECT_EQ(r.checked[1].type, kSettings);
    EXPECT_EQ(r.checked[1].length, 0u);
  }
}

TEST(InboundFrames, PayloadBytesThatLookLikeFrameHeadersAreNotFrames) {
  // An ACK-shaped run of bytes inside a DATA payload must pass untouched.
  const std::string fake = frame(kSettings, kAck, 0);
  const std::string input = kPreface + frame(kData, 0, 1, fake + fake + fake);
  for (size_t step : {1, 5, 64}) {
    const Walked r = walk(input, step);
    EXPECT_EQ(r.fed, input);
    EXPECT_TRUE(r.checked.empty());
  }
}

TEST(InboundFrames, ChecksSeeEverythingBeforeTheFrameAlreadyFed) {
  InboundFrames w;
  const std::string input = kPreface + frame(kHeaders, 5, 1, "abc") + frame(kData, 1, 3, "xyz");
  std::string fed;
  size_t fed_at_check = 0;
  auto note = [](const FrameHead& h) { return h.type == kData; };
  auto check = [&](const FrameHead& h) {
    EXPECT_EQ(h.stream_id, 3);
    fed_at_check = fed.size();
    return FrameVerdict::pass;
  };
  auto feed = [&](const uint8_t* p, size_t n) {
    fed.append(reinterpret_cast<const char*>(p), n);
    return true;
  };
  EXPECT_TRUE(w.walk(reinterpret_cast<const uint8_t*>(input.data()), input.size(), note, check, feed));
  EXPECT_EQ(fed, input);
  EXPECT_EQ(fed_at_check, kPreface.size() + 9 + 3);
}

TEST(InboundFrames, StopFeedsNothingMore) {
  InboundFrames w;
  const std::string input = kPreface + frame(kData, 1, 3, "xyz") + frame(kData, 1, 5, "more");
  std::string fed;
  auto note = [](const FrameHead& h) { return h.type == kData; };
  auto check = [](const FrameHead&) { return FrameVerdict::stop; };
  auto feed = [&](const uint8_t* p, size_t n) {
    fed.append(reinterpret_cast<const char*>(p), n);
    return true;
  };
  EXPECT_FALSE(w.walk(reinterpret_cast<const uint8_t*>(input.data()), input.size(), note, check, feed));
  EXPECT_EQ(fed, kPreface);
}

// A parked connection drops its session only between frames (h2_park.cc).
TEST(InboundFrames, AtFrameStartOnlyBetweenWholeFrames) {
  const std::string input = kPreface + frame(kSettings, 0, 0) + frame(kHeaders, 5, 1, "hpack-block");
  InboundFrames w;
  auto no = [](const FrameHead&) { return false; };
  auto check = [](const FrameHead&) { return FrameVerdict::pass; };
  auto feed = [](const uint8_t*, size_t) { return true; };
  EXPECT_FALSE(w.at_frame_start());  // the preface is still to come
  std::vector<size_t> starts;
  for (size_t i = 0; i < input.size(); ++i) {
    EXPECT_TRUE(w.walk(reinterpret_cast<const uint8_t*>(input.data()) + i, 1, no, check, feed));
    if (w.at_frame_start()) starts.push_back(i + 1);
  }
  const size_t settings_end = kPreface.size() + 9;
  EXPECT_EQ(starts, (std::vector<size_t>{kPreface.size(), settings_end, input.size()}));
}

TEST(ClosedStreams, TellsEachClosedStreamsAnswer) {
  ClosedStreams c;
  c.opened(1);
  c.opened(3);
  c.opened(9);  // 5 and 7 skipped
  c.ended(1);
  c.client_reset(3);
  EXPECT_EQ(c.highest(), 9);
  EXPECT_EQ(c.fate(1), ClosedStreams::Fate::ended);
  EXPECT_EQ(c.fate(3), ClosedStreams::Fate::client_reset);
  EXPECT_EQ(c.fate(5), ClosedStreams::Fate::never_opened);
  EXPECT_EQ(c.fate(7), ClosedStreams::Fate::never_opened);
  EXPECT_EQ(c.fate(9), ClosedStreams::Fate::ignore);   // opened, not known closed: we reset it, or it is open
  EXPECT_EQ(c.fate(11), ClosedStreams::Fate::ignore);  // not used yet: nghttp2's (idle stream)
  EXPECT_EQ(c.fate(2), ClosedStreams::Fate::ignore);   // even: nghttp2's
}

TEST(ClosedStreams, ForgetsIdsOlderThanItsWindow) {
  ClosedStreams c;
  c.opened(1);
  c.ended(1);
  c.opened(127);  // 1 is now 63 steps back: still known
  EXPECT_EQ(c.fate(1), ClosedStreams::Fate::ended);
  c.opened(129);  // 64 steps back: forgotten
  EXPECT_EQ(c.fate(1), ClosedStreams::Fate::ignore);
  c.opened(1001);  // a jump past the whole window
  EXPECT_EQ(c.fate(129), ClosedStreams::Fate::ignore);
  EXPECT_EQ(c.fate(999), ClosedStreams::Fate::never_opened);
  c.opened(999);  // lower than highest: not a new stream
  EXPECT_EQ(c.highest(), 1001);
}

TEST(ClosedStreams, TheHighestStreamIdFirst) {
  ClosedStreams c;
  c.opened(0x7fffffff);
  EXPECT_EQ(c.highest(), 0x7fffffff);
  EXPECT_EQ(c.fate(0x7fffffff - 2), ClosedStreams::Fate::never_opened);
  EXPECT_EQ(c.fate(1), ClosedStreams::Fate::ignore);
}

}  // namespace
}  // namespace turnpike::proxy::h2
