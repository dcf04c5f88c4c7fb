// Mirror queues for Lua plugins (`require "turnpike.mirror"`, used by plugins/proxy-mirror.lua):
// copies of requests sent to a mirror target in the background, so the client's request never
// waits for the mirror. Plain C functions that plugins/lib/turnpike/mirror.lua reaches through
// LuaJIT's FFI (ffi.C): the linker keeps and exports them (see src/lua/CMakeLists.txt), so they
// must keep these names and signatures; the ffi.cdef in mirror.lua repeats them.
//
// Threading: queues are per worker thread (an io_context service of the worker's io_context,
// found through a thread-local the worker sets when its thread starts); a tp_mirror is used only
// on the thread that got it. Nothing here takes a lock.
//
// Bounds: a queue holds at most `queue_size` waiting copies and sends at most `concurrency` at a
// time, each ended by its own timeout. A copy offered to a full queue is dropped and counted,
// never waited for. Memory is bounded by (queue_size + concurrency) x (head + body) per queue:
// the target's response bodies are never kept (read and dropped, or only digested).
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef struct tp_mirror tp_mirror;

// A queue's counters, since the worker started. `waiting` and `in_flight` are gauges.
typedef struct tp_mirror_stats {
  uint64_t queued;     // copies accepted into the queue
  uint64_t sent;       // copies the target answered (any status)
  uint64_t failed;     // copies that got no answer (connect failure, timeout, bad response)
  uint64_t dropped;    // copies refused because the queue was full (or the worker is stopping)
  uint64_t skipped;    // copies a plugin chose not to send (tp_mirror_skip: body too large)
  uint64_t compared;   // answered copies that carried the primary's status
  uint64_t differed;   // ...of which the mirror's status differed from the primary's
  uint64_t waiting;    // copies in the queue now
  uint64_t in_flight;  // copies being sent now
  uint64_t body_compared;  // answered copies whose whole body was digested against the primary's
  uint64_t body_differed;  // ...of which the bodies' CRC-32 differed
} tp_mirror_stats;

// The worker's queue named `name`, created on first use. Each call (a plugin's conf being
// prepared) sets its target (`host`, `port`), bounds and per-copy timeout; copies already waiting
// go to the newest target. NULL when the thread is no worker (`turnpike -t`) or the arguments
// are invalid (empty host or port, queue_size or concurrency < 1, timeout_ms < 1).
tp_mirror* tp_mirror_queue(const char* name, size_t name_len, const char* host, size_t host_len,
                           const char* port, size_t port_len, int32_t queue_size,
                           int32_t concurrency, int32_t timeout_ms);

// The worker's queue named `name` when one was made, else NULL (reading another's counters).
tp_mirror* tp_mirror_find(const char* name, size_t name_len);

// Offers one copy: `method`, origin-form `target`, `headers` as "name: value\n" lines (Host
// included when the target should see the client's; the client adds one otherwise) and
// `body` (has_body: sent with a Content-Length, even when empty). `primary_status` > 0 turns on
// the comparison counters for this copy; `has_body_crc` also compares the target's response body
// with the primary's, by CRC-32 (`body_crc`, zlib's, as turnpike.hash.crc32 computes it).
// Everything is copied once. 0 queued, -1 dropped.
int tp_mirror_send(tp_mirror* q, const char* method, size_t method_len, const char* target,
                   size_t target_len, const char* headers, size_t headers_len, const char* body,
                   size_t body_len, int has_body, int32_t primary_status, int has_body_crc,
                   uint32_t body_crc);

// Counts a copy the plugin decided not to send.
void tp_mirror_skip(tp_mirror* q);

// Fills `out` with the queue's counters.
void tp_mirror_get_stats(const tp_mirror* q, tp_mirror_stats* out);

}  // extern "C"

namespace boost::asio {
class io_context;
}

namespace turnpike::lua {

// Called by the worker on its thread before anything runs: the io_context mirror queues of this
// thread send on. nullptr unbinds.
void bind_mirror_io_context(boost::asio::io_context* io) noexcept;

// The worker is stopping: every queue of `io` drops its waiting copies (counted as dropped) and
// accepts no more, so pending mirrors do not hold the worker's shutdown past the copies already
// in flight (each ended by its timeout).
void stop_mirrors(boost::asio::io_context& io) noexcept;

// Visits the queues of `io` (on its thread): name and counters, for metrics.
template <typename F>
void for_each_mirror(boost::asio::io_context& io, F&& f);

struct MirrorQueueView {
  const char* name;
  size_t name_len;
  tp_mirror_stats stats;
};
size_t mirror_queue_count(boost::asio::io_context& io) noexcept;
MirrorQueueView mirror_queue_at(boost::asio::io_context& io, size_t i) noexcept;

template <typename F>
void for_each_mirror(boost::asio::io_context& io, F&& f) {
  for (size_t i = 0, n = mirror_queue_count(io); i < n; ++i) f(mirror_queue_at(io, i));
}

}  // namespace turnpike::lua
