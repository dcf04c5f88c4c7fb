// gzip (zlib) and brotli streams behind the extern "C" functions of turnpike/lua/compress.h, for
// plugins/lib/turnpike/compress.lua. A write compresses on the request path: it allocates only
// when a stream's output buffer must grow (it is reused by the stream's next write, and by the
// next response's stream when a gzip stream is recycled from the per-thread cache).
#include "turnpike/lua/compress.h"

#include <brotli/encode.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <vector>

namespace {

std::atomic<int64_t> live_streams{0};  // made and freed only, never per write

// Output buffer: grown geometrically to hold one write's output, kept for the next.
struct OutBuffer {
  std::unique_ptr<uint8_t[]> data;
  size_t capacity = 0;
  size_t used = 0;

  static constexpr size_t kMinFree = 16 * 1024;
  static constexpr size_t kKeep = 256 * 1024;  // a recycled stream keeps at most this much

  // At least kMinFree bytes after `used`.
  void reserve_free() {
    if (capacity - used >= kMinFree) return;
    size_t grown = std::max(capacity * 2, used + kMinFree);
    auto bigger = std::make_unique<uint8_t[]>(grown);
    if (used) std::copy(data.get(), data.get() + used, bigger.get());
    data = std::move(bigger);
    capacity = grown;
  }
  void trim() {
    if (capacity <= kKeep) return;
    data.reset();
    capacity = 0;
  }
};

}  // namespace

struct tp_compress {
  int algorithm = 0;
  int level = 0;
  z_stream z{};
  BrotliEncoderState* br = nullptr;
  OutBuffer out;
  size_t held = 0;  // input taken since the compressor last produced output
  bool finished = false;
  bool failed = false;

  ~tp_compress() {
    if (algorithm == TP_COMPRESS_GZIP) deflateEnd(&z);
    if (br) BrotliEncoderDestroyInstance(br);
  }
};

namespace {

// Finished gzip streams of this thread, reset and ready for the next response: a deflateInit
// allocates its window and hash tables (256 KiB), a deflateReset only clears a few fields.
struct GzipCache {
  static constexpr size_t kMax = 16;
  std::vector<tp_compress*> idle;
  ~GzipCache() {
    for (tp_compress* s : idle) delete s;
  }
};

GzipCache& gzip_cache() {
  thread_local GzipCache cache;
  return cache;
}

void set_error(char* err, size_t err_len, const char* message, int value) {
  if (err && err_len) std::snprintf(err, err_len, message, value);
}

tp_compress* new_gzip(int level) {
  auto& idle = gzip_cache().idle;
  auto same = std::find_if(idle.begin(), idle.end(), [level](const tp_compress* s) { return s->level == level; });
  if (same != idle.end()) {
    tp_compress* s = *same;
    *same = idle.back();
    idle.pop_back();
    return s;
  }
  auto s = std::make_unique<tp_compress>();
  // windowBits 15 + 16: a gzip wrapper (RFC 1952) around a 32 KiB-window deflate stream.
  if (deflateInit2(&s->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return nullptr;
  s->algorithm = TP_COMPRESS_GZIP;
  s->level = level;
  return s.release();
}

tp_compress* new_brotli(int level) {
  auto s = std::make_unique<tp_compress>();
  s->br = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
  if (!s->br) return nullptr;
  BrotliEncoderSetParameter(s->br, BROTLI_PARAM_QUALITY, static_cast<uint32_t>(level));
  BrotliEncoderSetParameter(s->br, BROTLI_PARAM_LGWIN, turnpike::lua::kBrotliWindowBits);
  s->algorithm = TP_COMPRESS_BROTLI;
  s->level = level;
  return s.release();
}

// Runs deflate over the input until it is taken and deflate has nothing more to give for
// `flush` (or, for Z_FINISH, until the stream ended).
bool run_gzip(tp_compress* s, const uint8_t* data, size_t len, int flush) {
  s->z.next_in = const_cast<Bytef*>(data);
  s->z.avail_in = static_cast<uInt>(len);
  for (;;) {
    s->out.reserve_free();
    size_t room = s->out.capacity - s->out.used;
    s->z.next_out = s->out.data.get() + s->out.used;
    s->z.avail_out = static_cast<uInt>(std::min<size_t>(room, UINT32_MAX));
    const uInt given = s->z.avail_out;
    int rc = deflate(&s->z, flush);
    s->out.used += given - s->z.avail_out;
    if (rc == Z_STREAM_END) return true;
    if (rc == Z_STREAM_ERROR) return false;
    // Z_BUF_ERROR only says no progress was possible: everything was taken and given already.
    if (flush != Z_FINISH && s->z.avail_in == 0 && s->z.avail_out != 0) return true;
  }
}

bool run_brotli(tp_compress* s, const uint8_t* data, size_t len, BrotliEncoderOperation op) {
  size_t avail_in = len;
  const uint8_t* next_in = data;
  for (;;) {
    s->out.reserve_free();
    size_t avail_out = s->out.capacity - s->out.used;
    uint8_t* next_out = s->out.data.get() + s->out.used;
    const size_t given = avail_out;
    if (!BrotliEncoderCompressStream(s->br, op, &avail_in, &next_in, &avail_out, &next_out, nullptr)) return false;
    s->out.used += given - avail_out;
    if (op == BROTLI_OPERATION_FINISH) {
      if (BrotliEncoderIsFinished(s->br)) return true;
    } else if (avail_in == 0 && !BrotliEncoderHasMoreOutput(s->br)) {
      return true;
    }
  }
}

bool run(tp_compress* s, const uint8_t* data, size_t len, bool finish) {
  if (s->algorithm == TP_COMPRESS_GZIP) return run_gzip(s, data, len, finish ? Z_FINISH : Z_NO_FLUSH);
  return run_brotli(s, data, len, finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS);
}

bool flush(tp_compress* s) {
  if (s->algorithm == TP_COMPRESS_GZIP) return run_gzip(s, nullptr, 0, Z_SYNC_FLUSH);
  return run_brotli(s, nullptr, 0, BROTLI_OPERATION_FLUSH);
}

}  // namespace

extern "C" {

tp_compress* tp_compress_new(int algorithm, int level, char* err, size_t err_len) {
  tp_compress* s = nullptr;
  if (algorithm == TP_COMPRESS_GZIP) {
    if (level < 1 || level > 9) {
      set_error(err, err_len, "gzip level must be 1-9, got %d", level);
      return nullptr;
    }
    s = new_gzip(level);
  } else if (algorithm == TP_COMPRESS_BROTLI) {
    if (level < 0 || level > 11) {
      set_error(err, err_len, "brotli level must be 0-11, got %d", level);
      return nullptr;
    }
    s = new_brotli(level);
  } else {
    set_error(err, err_len, "unknown algorithm %d", algorithm);
    return nullptr;
  }
  if (!s) {
    set_error(err, err_len, "out of memory (algorithm %d)", algorithm);
    return nullptr;
  }
  live_streams.fetch_add(1, std::memory_order_relaxed);
  return s;
}

int tp_compress_write(tp_compress* s, const char* data, size_t len, int finish, const char** out,
                      size_t* out_len) {
  *out = nullptr;
  *out_len = 0;
  if (s->failed) return TP_COMPRESS_ERROR;
  if (s->finished) return TP_COMPRESS_FINISHED;
  s->out.used = 0;
  const auto* in = reinterpret_cast<const uint8_t*>(data);
  bool ok = run(s, in, len, finish != 0);
  // The flush policy: a compressor that keeps taking input without giving output (a long,
  // highly repetitive stretch) is flushed, so the client keeps receiving the body.
  if (ok && !finish) {
    s->held = s->out.used ? 0 : s->held + len;
    if (s->held >= turnpike::lua::kCompressFlushBytes) {
      ok = flush(s);
      s->held = 0;
    }
  }
  if (!ok) {
    s->failed = true;
    return TP_COMPRESS_ERROR;
  }
  if (finish) s->finished = true;
  *out = reinterpret_cast<const char*>(s->out.data.get());
  *out_len = s->out.used;
  return 0;
}

void tp_compress_free(tp_compress* s) {
  if (!s) return;
  live_streams.fetch_sub(1, std::memory_order_relaxed);
  auto& idle = gzip_cache().idle;
  if (s->algorithm == TP_COMPRESS_GZIP && !s->failed && idle.size() < GzipCache::kMax &&
      deflateReset(&s->z) == Z_OK) {
    s->out.used = 0;
    s->out.trim();
    s->held = 0;
    s->finished = false;
    idle.push_back(s);
    return;
  }
  delete s;
}

int64_t tp_compress_live(void) { return live_streams.load(std::memory_order_relaxed); }

uint32_t tp_compress_crc32(uint32_t crc, const char* data, size_t len) {
  return static_cast<uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(data), len));
}

}  // extern "C"
