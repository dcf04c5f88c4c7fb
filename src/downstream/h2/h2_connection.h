// A client connection speaking HTTP/2 (RFC 9113): one nghttp2 server session driven by one
// coroutine that owns the socket, and a pipeline coroutine per stream object that runs the
// requests the object carries one after another (the object and its coroutine are recycled).
//
// The loop (h2_connection.cc) reads, feeds nghttp2, and writes what it produces, one batched
// write per turn; while the socket does not take our output it stops reading, so a client that
// does not read cannot make us buffer without bound. The nghttp2 callbacks (h2_session.cc) turn
// complete header blocks into RequestContexts, enforce RFC 9113 §8 and the attack limits, and
// wake the stream pipelines (h2_stream.cc), which never touch the socket themselves.
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "h2_inbound.h"
#include "h2_stream.h"
#include "turnpike/common/long_lived.h"
#include "turnpike/tls/transport.h"
#include "downstream/connections.h"

namespace turnpike::proxy {

using tls::Transport;

// How far the connection is in shutting down.
enum class H2Goaway : unsigned char {
  none,    // serving
  notice,  // graceful: shutdown notice sent (GOAWAY with 2^31-1), final GOAWAY after a grace period
  final,   // GOAWAY with the last stream id sent: open streams finish, no new ones
  calm,    // abuse or protocol error: error GOAWAY sent, closing as soon as it is written
};
std::string_view to_string(H2Goaway g) noexcept;

class H2Connection final : public ClientConnection, public LongLived {
 public:
  // `remote`: the client's address, "ip:port" (`ip_len` its ip part).
  H2Connection(DownstreamWorker& worker, std::unique_ptr<Transport> transport, std::string listener, std::string remote,
               size_t ip_len);
  ~H2Connection() override;
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Sets up the session and feeds it the bytes already read (the preface, for h2c); false when
  // that fails (listener gone, out of memory).
  bool start(std::string_view already_read);
  // Runs the connection; `resumed` when it comes back from park() (the wait's result).
  static boost::asio::awaitable<void> serve(std::unique_ptr<H2Connection> self,
                                           std::optional<boost::system::error_code> resumed = {});

  // ClientConnection
  void expire() override;
  void close_if_idle() override;
  void snapshot_changed() override;

  // ---- For streams ----
  DownstreamWorker& worker() { return worker_; }
  nghttp2_session* session() { return dead_ ? nullptr : session_; }
  const config::ClientLimits& limits() const { return worker_.snapshot()->config->limits; }
  // Something was submitted to nghttp2: make the loop call mem_send.
  void wake();
  void note_deadline(Clock::time_point d) {
    if (d < deadline_) deadline_ = d;
  }
  // Bytes of owned response bodies (H2Stream::owned_) nghttp2 has not taken yet: together they
  // must fit the connection's send window.
  size_t owned_bytes() const { return a().owned_bytes; }
  void add_owned(size_t n) { a().owned_bytes += n; }
  void remove_owned(size_t n) { a().owned_bytes -= n; }
  // Builds nghttp2_nv entries for response fields in scratch storage (valid until the next call).
  std::span<nghttp2_nv> response_nv(RequestContext& ctx, const ResponseOut& head, const char* status);
  std::span<nghttp2_nv> trailer_nv(std::span<const http::Header> trailers);

 private:
  friend struct H2Callbacks;

  // The loop. True: the connection is idle and should park (its coroutine ends).
  boost::asio::awaitable<bool> run(std::optional<boost::system::error_code> resumed);
  // After a read wait: false when the connection is over.
  bool on_readable(boost::system::error_code ec);

  // ---- Parking (h2_park.cc) ----
  // The state only a connection that is not parked holds (see Awake).
  struct Awake;
  Awake& a() {
    if (!awake_) [[unlikely]] awake_ = std::make_unique<Awake>();
    return *awake_;
  }
  const Awake& a() const { return *awake_; }  // only where the connection cannot be parked
  // No stream open and no pipeline running (true of a parked connection).
  bool no_streams() const;
  // Idle for a while (or the worker has many connections): drop the warm stream objects and the
  // scratch buffers, and let the loop park once the last stream loop has ended.
  void prepare_park();
  bool can_park() const;
  // Waits for the client with a plain readiness callback holding only the connection: no
  // coroutine frame, no stream object, no buffer while parked.
  static void park(std::unique_ptr<H2Connection> self);
  // The parked wait's ends (tls::ParkedWait): it completed, or the io_context went with it.
  friend class tls::ParkedWait<H2Connection>;
  static void parked_ready(H2Connection* owner, boost::system::error_code ec);
  static void parked_gone(H2Connection* owner);
  // A parked connection gives up its nghttp2 session when a fresh one can be brought back to the
  // same state (see h2_park.cc), and gets the fresh one when it acts again.
  bool can_drop_session() const;
  // False when the session could not be given up cleanly (its HPACK table could not be read
  // out whole): the connection must then be closed, its session having been fed frames of ours.
  bool drop_session();
  // A session again, if it was dropped; false when that failed (the connection is then closed).
  bool ensure_session();
  bool rebuild_session();
  struct DroppedSession : LongLived {
    int32_t last_stream = 0;     // its last stream id
    int32_t window = 0;          // the client's connection window for us
    uint32_t settings[10] = {};  // the client's SETTINGS values, by id (1..9)
    // The HPACK decoder's dynamic table (RFC 7541 §2.3.2), the fields the client's encoder
    // indexed: its size, and a header block that adds them to an empty table in the same order
    // (literals with incremental indexing, oldest first); none when the table is empty. (Every
    // parked connection holds this struct: what only the read-out needs is not in it.)
    uint32_t table_size = 0;
    std::unique_ptr<std::string> table_block;
  };
  // The table's fields as the old session decodes them, newest first (h2_park.cc).
  struct TableReadOut {
    std::vector<std::string> entries;  // each as its literal
    size_t bytes = 0;                  // the sum of their sizes as HPACK counts them
    void take(std::string_view name, std::string_view value);
  };
  // Set while a table is read out on this thread: the header callbacks add to it.
  static thread_local TableReadOut* table_read_out_;
  bool harvest_decoder_table(DroppedSession& d, size_t table_size);
  bool replay_into_session(const DroppedSession& d);
  bool replay_decoder_table(const DroppedSession& d);
  // The session setup shared by start() and rebuild_session().
  bool new_session(bool after_preface);
  // The connection's receive window: bounds request-body bytes buffered for all streams together
  // (each stream's is initial_window_size).
  int32_t receive_window() const;
  // A stream object's coroutine: runs the pipeline of each request the object carries (see
  // H2Stream::has_loop_), and deletes the object when it is retired.
  boost::asio::awaitable<void> stream_loop(H2Stream* s);
  // Starts the pipeline for the request on `s` (status != 0: answer with that error instead).
  void start_pipeline(H2Stream* s, int status, std::string_view code, std::string_view message);
  // After a pipeline: reset the stream if its response is incomplete, release the context.
  void finish_pipeline(H2Stream* s);
  // A stream object no longer wanted: deleted now, or by its loop.
  void retire(H2Stream* s);
  // One read turn: read what is there (bounded), feed nghttp2. False: the connection is over.
  bool read_and_process();
  // Bytes from the client to nghttp2, through inbound_ (h2_session.cc). False: feed no more
  // (nghttp2 or a check ended the connection).
  bool receive(const char* data, size_t n);
  bool note_frame(const h2::FrameHead& h);
  h2::FrameVerdict check_frame(const h2::FrameHead& h);
  // After an error GOAWAY: half-close and drain the client's input for a moment before closing.
  boost::asio::awaitable<void> linger();
  // Fills out_ from nghttp2 (when it is empty) and writes what the socket takes. False on error.
  bool produce_and_write();
  void on_recv_error(ssize_t rv);
  // The end of the connection: fail every stream, close the socket.
  void shut();

  // ---- Streams ----
  H2Stream* new_stream(int32_t id);
  void stream_closed(H2Stream* s, uint32_t error_code);
  void maybe_release(H2Stream* s);
  const Snapshot* acquire_snapshot();
  void release_snapshot(const Snapshot* snapshot);
  // A complete request header block: checks it (RFC 9113 §8) and starts its pipeline.
  void begin_request(H2Stream* s, bool end_stream);
  bool fill_context(H2Stream* s, RequestContext& ctx, int& status, std::string_view& code, std::string_view& message);
  void reset_stream(H2Stream* s, uint32_t error_code);

  // ---- Limits ----
  // Abuse detected: GOAWAY with `code`, then close. `why` is for the debug log.
  void calm_down(uint32_t code, Counter WorkerCounters::*counter, std::string_view why);
  bool count_control_frame();
  void start_graceful(std::string_view why);
  void send_final_goaway();
  void update_idle();
  void recompute_deadline();

  DownstreamWorker& worker_;
  std::unique_ptr<Transport> transport_;
  std::string listener_;
  std::shared_ptr<const Snapshot> snapshot_;   // the one the connection started with
  const config::Http2Config* cfg_ = nullptr;   // its listener's http2 section
  nghttp2_session* session_ = nullptr;
  std::string remote_;                         // "ip:port"
  size_t ip_len_ = 0;

  // ---- I/O ----
  bool waiting_read_ = false;     // the loop waits for readability (wake() cancels that wait)
  bool wake_ = false;
  bool dead_ = false;             // the socket is closed: no more I/O, streams fail

  // ---- What only a connection that is not parked holds: park() frees it (h2_park.cc). A parked
  // connection has no stream, no output and no stream loop, which is what a fresh Awake holds,
  // so a() makes one whenever it is missing. ----
  struct SnapshotUse {
    std::shared_ptr<const Snapshot> snapshot;
    uint32_t streams = 0;
  };
  struct Awake {
    std::string out;                // bytes from nghttp2 not yet written
    size_t out_pos = 0;             // out: first byte not yet written
    WakeEvent all_done;             // the loop waiting for the last stream loop after shut()
    boost::intrusive::list<H2Stream, boost::intrusive::base_hook<StreamHook>,
                           boost::intrusive::constant_time_size<false>> live;
    std::vector<H2Stream*> free_streams;  // recycled objects, their loops waiting (owned here)
    // The snapshots streams started with (usually one), counted here so that starting a stream
    // copies no shared_ptr: its atomic count is shared by every worker.
    std::vector<SnapshotUse> snapshots;
    uint32_t live_count = 0;
    uint32_t pipelines = 0;         // pipelines running (their streams may be closed)
    uint32_t loops = 0;             // stream_loop coroutines alive (running a pipeline or waiting)
    size_t owned_bytes = 0;         // see owned_bytes()
    Clock::time_point now;          // cached per read turn for the rate windows
    Clock::time_point linger_deadline = Clock::time_point::max();  // draining input after GOAWAY
    Clock::time_point header_deadline = Clock::time_point::max();  // a header block in progress
    Clock::time_point write_deadline = Clock::time_point::max();   // the socket not taking output
    Clock::time_point goaway_deadline = Clock::time_point::max();  // notice → final GOAWAY
    Clock::time_point trim_deadline = Clock::time_point::max();    // idle: prepare_park()
  };
  std::unique_ptr<Awake> awake_ = std::make_unique<Awake>();

  // ---- Limits ----
  uint32_t requests_ = 0;
  Clock::time_point rate_window_start_;
  uint32_t resets_in_window_ = 0;
  uint32_t control_in_window_ = 0;
  uint32_t refused_in_window_ = 0;  // streams nghttp2 refused past max_concurrent_streams
  uint32_t continuations_ = 0;    // CONTINUATION frames in the header block being received
  int32_t header_stream_ = 0;     // the stream whose header block header_deadline_ bounds
  Clock::time_point idle_deadline_ = Clock::time_point::max();  // no stream open (the others: Awake)
  H2Goaway goaway_ = H2Goaway::none;
  uint32_t calm_code_ = 0;        // set by a callback that aborted mem_recv for abuse
  uint8_t settings_acks_ = 0;     // the client's SETTINGS ACKs seen, up to the one taken out
  h2::InboundFrames inbound_;     // the frame headers walked ahead of nghttp2
  h2::ClosedStreams closed_streams_;  // the fate of the client's recent stream ids (RFC 9113 §5.1)
  bool on_idle_list_ = false;
  bool park_wanted_ = false;      // prepare_park() ran and the connection is still idle
  bool parked_ = false;           // waiting in park()'s callback, no coroutine
  bool rebuilding_ = false;       // the callbacks ignore what rebuild_session() feeds nghttp2
  std::unique_ptr<DroppedSession> dropped_;  // while parked without a session: what to restore
  tls::ParkedWait<H2Connection> parked_wait_{this};  // park()'s wait for the client

  // ---- Scratch for building header lists: the worker thread's, not each connection's (every
  // list is submitted, and nghttp2 copies it, before the next is built) ----
  static thread_local std::vector<nghttp2_nv> nv_;
  static thread_local std::string nv_names_;
};

}  // namespace turnpike::proxy
