// HTTP/2 client connections at rest: what an idle connection gives up, and the callback it waits
// in. (HTTP/1.1 connections park the same way: downstream_h1.cc park().)
//
// A connection with no stream open for a second (at once when the worker has many connections)
// retires its warm stream objects (each with its waiting loop), frees its output buffer and header
// scratch, and, once the last stream loop has ended, its own coroutine ends too: a readiness
// callback holding only the connection waits for the client. The next frame from the client, a
// timer (idle timeout, drain) or wake() starts a fresh coroutine, which reads first.
//
// A parked connection also deletes its nghttp2 session (~12.7 KiB of the ~14 KiB an idle h2c
// connection costs, bench/RESULTS.md) when a fresh session can be brought back to the same state,
// and builds that fresh one only when the connection acts again (a frame from the client, a
// GOAWAY to send). nghttp2 has no API to save a session, so the fresh one is fed frames that lead
// it there, and what it answers is discarded:
//   - the client's SETTINGS, as the old session last knew them;
//   - the ACK of our first SETTINGS (the second's is never shown to nghttp2: h2_inbound.h);
//   - a connection WINDOW_UPDATE raising the client's window for us from 65,535 to what it was;
//   - the last stream's HEADERS (END_STREAM), so that the fresh session's last stream id is the
//     old one's: frames on an older stream are then ignored exactly as the old session ignored
//     them (it had forgotten closed streams too: no_closed_streams), GOAWAY names the right last
//     stream, and h2::ClosedStreams, which is the connection's, answers HEADERS and DATA on them
//     as before (RFC 9113 §5.1, §5.1.1);
//   - our response on that stream, with a body of as many bytes as the client's window for us is
//     below 65,535 (a window can only be raised by a frame, never lowered): sent into the void,
//     it brings the fresh session's window down to the real one.
//   - the HPACK decoder's dynamic table, which mirrors the client's encoder's (browsers, curl and
//     nghttp2-based clients index most request fields): nghttp2 has no API to read it, so before
//     the old session is deleted it is fed one header block per entry, each a single indexed
//     field (62, 63, ... up to the table's size) on a stream id past the last, and the callbacks
//     collect what it decodes. The fresh session is fed those fields back, oldest first, as
//     literals with incremental indexing in a HEADERS frame on the (closed, forgotten) last
//     stream, which nghttp2 decodes into its table without a callback. A client's later size
//     update is not seen: the fresh table's maximum is our SETTINGS value, never below the
//     client's, so it keeps at most some old entries longer, which the client never refers to.
//     The read-out opens streams in the old session, so once it has begun the session cannot be
//     kept: when a field is not delivered (one that nghttp2's HTTP checks refuse outright, which
//     no working client indexes) the connection is closed, as an idle timeout would.
// What cannot be rebuilt keeps the session: a frame cut in the middle, a stream still known to
// nghttp2. What a rebuilt session forgets and may: nghttp2's own flood and rate counters (ours,
// the connection's, fire first), and a PRIORITY_UPDATE for a stream not yet opened (a scheduling
// hint, RFC 9218 §7.1; nghttp2 cannot tell us it holds one).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include <cstring>

#include "h2_connection.h"

namespace turnpike::proxy {

namespace {

constexpr int32_t kInitialWindow = 65535;  // RFC 9113 §6.9.2, a fresh session's connection windows

uint8_t* put32(uint8_t* p, uint32_t v) {
  *p++ = uint8_t(v >> 24);
  *p++ = uint8_t(v >> 16);
  *p++ = uint8_t(v >> 8);
  *p++ = uint8_t(v);
  return p;
}
// A frame header (RFC 9113 §4.1).
uint8_t* put_head(uint8_t* p, uint32_t length, uint8_t type, uint8_t flags, int32_t stream_id) {
  *p++ = uint8_t(length >> 16);
  *p++ = uint8_t(length >> 8);
  *p++ = uint8_t(length);
  *p++ = type;
  *p++ = flags;
  return put32(p, static_cast<uint32_t>(stream_id));
}

// The rebuild's request: :method GET, :scheme http, :path / from HPACK's static table (RFC 7541
// Appendix A, indexes 2, 6, 4) and :authority x as a literal without indexing (name index 1):
// the decoder's dynamic table is not touched.
constexpr uint8_t kRebuildRequest[] = {0x82, 0x86, 0x84, 0x01, 0x01, 'x'};

// HPACK integer with an n-bit prefix (RFC 7541 §5.1), the first byte's other bits in `first`.
void put_int(std::string& out, uint8_t first, unsigned prefix_bits, size_t v) {
  const size_t max = (size_t{1} << prefix_bits) - 1;
  if (v < max) {
    out.push_back(static_cast<char>(first | v));
    return;
  }
  out.push_back(static_cast<char>(first | max));
  for (v -= max; v >= 128; v >>= 7) out.push_back(static_cast<char>(0x80 | (v & 0x7f)));
  out.push_back(static_cast<char>(v));
}

// The index of the dynamic table's newest entry (RFC 7541 §2.3.3: the static table has 61).
constexpr size_t kFirstDynamicIndex = 62;
// A decoder table is rebuilt in one HEADERS frame, which nghttp2 takes up to 16,384 bytes long
// (the smallest SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2): a larger table keeps its session.
constexpr size_t kMaxRebuiltTable = 16384;

// The body of the rebuild's response: `*source->ptr` bytes, whatever they hold (never sent).
ssize_t void_body(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags, nghttp2_data_source* source,
                  void*) {
  int32_t& left = *static_cast<int32_t*>(source->ptr);
  const int32_t n = std::min<int32_t>(left, static_cast<int32_t>(length));
  left -= n;
  if (left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return n;
}

}  // namespace

void H2Connection::prepare_park() {
  if (dead_ || park_wanted_) return;
  park_wanted_ = true;
  for (H2Stream* s : a().free_streams) retire(s);  // their loops end (posted), then wake() us
  std::vector<H2Stream*>().swap(a().free_streams);
  if (a().out_pos == a().out.size()) {
    std::string().swap(a().out);
    a().out_pos = 0;
  }
  if (a().snapshots.size() == 1 && a().snapshots.front().streams == 0) {
    // The connection's own snapshot_ keeps the current one alive; no stream holds this.
    std::vector<SnapshotUse>().swap(a().snapshots);
  }
  // Request-body bytes the streams took and nghttp2 has not given back yet (it waits until half
  // the window is used): given back now, so the session can be dropped with its window whole.
  const int32_t unreturned = receive_window() - nghttp2_session_get_local_window_size(session_);
  if (unreturned > 0) nghttp2_submit_window_update(session_, NGHTTP2_FLAG_NONE, 0, unreturned);
  wake();
}

bool H2Connection::no_streams() const { return !awake_ || (awake_->live_count == 0 && awake_->pipelines == 0); }

bool H2Connection::can_park() const {
  return !dead_ && a().live_count == 0 && a().pipelines == 0 && a().loops == 0 && goaway_ == H2Goaway::none && !wake_ &&
         a().out_pos == a().out.size() && !nghttp2_session_want_write(session_) && !transport_->read_buffered();
}

// Only what rebuild_session() can bring a fresh session back to (see the top of the file).
bool H2Connection::can_drop_session() const {
  if (!session_) return false;
  const int32_t last = nghttp2_session_get_last_proc_stream_id(session_);
  const size_t table = nghttp2_session_get_hd_inflate_dynamic_table_size(session_);
  return inbound_.at_frame_start() &&
         // A stream was served (so the client's SETTINGS came first, RFC 9113 §3.4), nghttp2
         // refused none after it, and none is left in nghttp2.
         last > 0 && last == closed_streams_.highest() && nghttp2_session_find_stream(session_, last) == nullptr &&
         // A smaller table would make the fresh decoder wait for the client's size update again.
         cfg_->header_table_size >= 4096 &&
         // A table the rebuild takes in one frame, and room for the read-out's stream ids (an
         // entry is at least 32 bytes).
         table <= kMaxRebuiltTable && last <= INT32_MAX - 2 * int32_t(table / 32 + 1) &&
         // Every request-body byte given back (the client's view of our window is whole).
         nghttp2_session_get_local_window_size(session_) == receive_window() &&
         nghttp2_session_get_remote_window_size(session_) >= 0;
}

bool H2Connection::drop_session() {
  dropped_ = std::make_unique<DroppedSession>();
  DroppedSession& d = *dropped_;
  for (int32_t id = 1; id < int32_t(std::size(d.settings)); ++id) {
    // No setting has id 7 (RFC 9113 §6.5.2, RFC 8441, RFC 9218): nghttp2 has no value for it.
    if (id != 7) d.settings[id] = nghttp2_session_get_remote_settings(session_, nghttp2_settings_id(id));
  }
  d.window = nghttp2_session_get_remote_window_size(session_);
  d.last_stream = nghttp2_session_get_last_proc_stream_id(session_);
  const size_t table = nghttp2_session_get_hd_inflate_dynamic_table_size(session_);
  bool ok = true;
  if (table > 0) {
    rebuilding_ = true;  // the callbacks only collect the fields
    ok = harvest_decoder_table(d, table);
    rebuilding_ = false;
  }
  nghttp2_session_del(session_);
  session_ = nullptr;
  if (!ok) {
    dropped_.reset();
    return false;
  }
  spdlog::debug("h2 client {}: parked without its session (last stream {}, window {}, HPACK table {} bytes)", remote_,
                d.last_stream, d.window, table);
  return true;
}

thread_local H2Connection::TableReadOut* H2Connection::table_read_out_ = nullptr;

void H2Connection::TableReadOut::take(std::string_view name, std::string_view value) {
  // A literal field with incremental indexing, new name (RFC 7541 §6.2.1), no Huffman coding.
  std::string f;
  f.reserve(name.size() + value.size() + 6);
  f.push_back(0x40);
  put_int(f, 0, 7, name.size());
  f.append(name);
  put_int(f, 0, 7, value.size());
  f.append(value);
  entries.push_back(std::move(f));
  bytes += name.size() + value.size() + 32;  // RFC 7541 §4.1
}

bool H2Connection::harvest_decoder_table(DroppedSession& d, size_t table_size) {
  TableReadOut r;
  table_read_out_ = &r;
  int32_t id = d.last_stream;
  std::string frame;
  for (size_t index = kFirstDynamicIndex; r.bytes < table_size; ++index) {
    id += 2;
    frame.assign(9, '\0');
    put_int(frame, 0x80, 7, index);  // an indexed field (RFC 7541 §6.1)
    put_head(reinterpret_cast<uint8_t*>(frame.data()), static_cast<uint32_t>(frame.size() - 9), NGHTTP2_HEADERS,
             NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, id);
    const size_t before = r.entries.size();
    const auto n = static_cast<ssize_t>(frame.size());
    if (nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(frame.data()), frame.size()) != n ||
        r.entries.size() != before + 1) {
      break;
    }
    // The request is refused (no pseudo-header fields): sending the reset closes its stream.
    const uint8_t* out = nullptr;
    while (nghttp2_session_mem_send(session_, &out) > 0) {
    }
  }
  table_read_out_ = nullptr;
  if (r.bytes != table_size) {
    spdlog::debug("h2 client {}: HPACK table could not be read out ({} of {} bytes): closing", remote_, r.bytes,
                  table_size);
    return false;
  }
  d.table_block = std::make_unique<std::string>();
  for (auto it = r.entries.rbegin(); it != r.entries.rend(); ++it) *d.table_block += *it;
  d.table_size = static_cast<uint32_t>(table_size);
  return true;
}

bool H2Connection::replay_decoder_table(const DroppedSession& d) {
  if (!d.table_block) return true;
  // HEADERS on a closed stream the session has forgotten: nghttp2 decodes the block, so that the
  // table stays in step with the client's (RFC 9113 §4.3), and ignores the fields. The block is
  // smaller than the table (a literal's overhead is below an entry's 32 bytes), so one frame.
  std::string frame(9, '\0');
  frame += *d.table_block;
  put_head(reinterpret_cast<uint8_t*>(frame.data()), static_cast<uint32_t>(d.table_block->size()), NGHTTP2_HEADERS,
           NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS, d.last_stream);
  const auto n = static_cast<ssize_t>(frame.size());
  return nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(frame.data()), frame.size()) == n &&
         nghttp2_session_get_hd_inflate_dynamic_table_size(session_) == d.table_size &&
         !nghttp2_session_want_write(session_);
}

bool H2Connection::rebuild_session() {
  if (!new_session(true)) return false;
  rebuilding_ = true;
  const bool ok = replay_into_session(*dropped_);
  rebuilding_ = false;
  dropped_.reset();
  if (!ok) spdlog::warn("h2 client {}: session could not be rebuilt", remote_);
  return ok;
}

bool H2Connection::replay_into_session(const DroppedSession& d) {
  auto discard_output = [this] {
    const uint8_t* data = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &data)) > 0) {
    }
    return n == 0;
  };
  // Our SETTINGS and connection WINDOW_UPDATE: the client has them.
  if (!discard_output()) return false;

  uint8_t frames[9 + 8 * 6 + 9 + 9 + 4 + 9 + sizeof kRebuildRequest + 9 + 4];
  uint8_t* p = frames + 9;
  for (uint16_t id = 1; id < std::size(d.settings); ++id) {
    const uint32_t v = d.settings[id];
    // ENABLE_CONNECT_PROTOCOL means nothing from a client; NO_RFC7540_PRIORITIES is 0 or 1 once
    // the client's first SETTINGS came, and UINT32_MAX in a nghttp2 that has not seen it.
    if (id == 7 || (id == NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL && v != 1) ||
        (id == NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES && v > 1))
      continue;
    *p++ = uint8_t(id >> 8);
    *p++ = uint8_t(id);
    p = put32(p, v);
  }
  put_head(frames, static_cast<uint32_t>(p - frames - 9), NGHTTP2_SETTINGS, NGHTTP2_FLAG_NONE, 0);
  if (settings_acks_ > 0) p = put_head(p, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0);
  if (d.window > kInitialWindow) {
    p = put_head(p, 4, NGHTTP2_WINDOW_UPDATE, NGHTTP2_FLAG_NONE, 0);
    p = put32(p, static_cast<uint32_t>(d.window - kInitialWindow));
  }
  p = put_head(p, sizeof kRebuildRequest, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS,
               d.last_stream);
  std::memcpy(p, kRebuildRequest, sizeof kRebuildRequest);
  p += sizeof kRebuildRequest;
  // The body that brings the window down must fit the stream's window too.
  int32_t debt = std::max(0, kInitialWindow - d.window);
  const int32_t stream_window = static_cast<int32_t>(d.settings[NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE]);
  if (debt > stream_window) {
    p = put_head(p, 4, NGHTTP2_WINDOW_UPDATE, NGHTTP2_FLAG_NONE, d.last_stream);
    p = put32(p, static_cast<uint32_t>(debt - stream_window));
  }
  const ssize_t n = p - frames;
  if (nghttp2_session_mem_recv(session_, frames, static_cast<size_t>(n)) != n) return false;

  const nghttp2_nv status[] = {{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(":status")),
                                const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>("200")), 7, 3,
                                NGHTTP2_NV_FLAG_NONE}};
  nghttp2_data_provider body;
  body.source.ptr = &debt;
  body.read_callback = void_body;
  if (nghttp2_submit_response(session_, d.last_stream, status, std::size(status), debt > 0 ? &body : nullptr) != 0)
    return false;
  // The SETTINGS ACK, the response (its stream then closes and is forgotten).
  if (!discard_output()) return false;
  return debt == 0 && nghttp2_session_get_remote_window_size(session_) == d.window &&
         nghttp2_session_get_last_proc_stream_id(session_) == d.last_stream &&
         nghttp2_session_find_stream(session_, d.last_stream) == nullptr && replay_decoder_table(d);
}

bool H2Connection::ensure_session() {
  if (session_ || dead_) return true;
  if (rebuild_session()) {
    spdlog::debug("h2 client {}: session rebuilt", remote_);
    return true;
  }
  dead_ = true;
  transport_->cancel();
  transport_->close();
  return false;
}

void H2Connection::park(std::unique_ptr<H2Connection> self) {
  H2Connection& c = *self;
  c.parked_ = true;
  c.waiting_read_ = true;  // wake() cancels this wait, as it does the loop's
  c.awake_.reset();        // can_park(): nothing in it but empty buffers and unused snapshots
  if (c.can_drop_session() && !c.drop_session()) {
    c.dead_ = true;  // the wait below then ends at once, and serve() with it
    c.transport_->cancel();
    c.transport_->close();
  }
  c.transport_->park_wait(c.parked_wait_);
  self.release();  // the wait owns the connection now: parked_ready() or parked_gone()
}

void H2Connection::parked_ready(H2Connection* owner, boost::system::error_code ec) {
  std::unique_ptr<H2Connection> self(owner);
  self->parked_ = false;
  self->waiting_read_ = false;
  self->ensure_session();  // on failure the connection is dead: serve() ends it
  H2Connection& c = *self;
  boost::asio::co_spawn(c.worker_.io(), serve(std::move(self), ec), boost::asio::detached);
}

void H2Connection::parked_gone(H2Connection* owner) { delete owner; }

}  // namespace turnpike::proxy
