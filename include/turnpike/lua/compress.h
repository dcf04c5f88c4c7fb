// Streaming compressors for Lua plugins (`require "turnpike.compress"`): gzip (zlib) and brotli
// (libbrotlienc), one stream per response. Plain C functions that plugins/lib/turnpike/
// compress.lua reaches through LuaJIT's FFI (ffi.C): the linker keeps and exports them (see
// src/lua/CMakeLists.txt), so they must keep these names and signatures; the ffi.cdef in
// compress.lua repeats them (change both together).
//
// Memory is bounded per stream whatever the body's size: the compressor's own state (gzip:
// 256 KiB for a 32 KiB window; brotli: about 1.5 MiB for its 512 KiB window), plus an output
// buffer that holds the output of one write (about the size of the piece written) and is reused
// by the next. Each write returns what the compressor has produced so far, and the stream is
// flushed whenever more than kCompressFlushBytes of input went in without any output coming out,
// so a slow-to-emit compressor cannot hold a large part of the body back.
//
// Threading: a stream belongs to the thread that made it (one worker's Lua VM); nothing here
// takes a lock. Finished gzip streams are kept in a small per-thread cache and reset for the
// next response (a deflateInit allocates 256 KiB).
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef struct tp_compress tp_compress;

// Algorithms of tp_compress_new.
enum {
  TP_COMPRESS_GZIP = 1,    // RFC 1952 gzip (deflate with the gzip header and trailer)
  TP_COMPRESS_BROTLI = 2,  // RFC 7932 brotli
};

// Results of tp_compress_write below zero.
enum {
  TP_COMPRESS_ERROR = -1,     // the compressor failed (out of memory); the stream is unusable
  TP_COMPRESS_FINISHED = -2,  // written to after finish
};

// A stream for `algorithm` at `level` (gzip 1-9, brotli 0-11). NULL with a message in `err`
// (NUL-terminated, truncated to err_len) for an unknown algorithm, a level out of range, or no
// memory.
tp_compress* tp_compress_new(int algorithm, int level, char* err, size_t err_len);

// Compresses `len` bytes of input; `finish` non-zero ends the stream (the trailer is written;
// later writes answer TP_COMPRESS_FINISHED). On success returns 0 with the output produced by
// this call in *out / *out_len (possibly empty), valid until the next call on this stream.
int tp_compress_write(tp_compress* s, const char* data, size_t len, int finish, const char** out,
                      size_t* out_len);

// Frees the stream (NULL is a no-op). Finished or not: a response that ends early frees it too.
void tp_compress_free(tp_compress* s);

// Streams made and not yet freed, in the whole process (tests, metrics).
int64_t tp_compress_live(void);

// zlib's CRC-32 of `len` bytes continued from `crc` (0 to start): turnpike.hash.crc32, a cheap
// digest of a streamed body (proxy-mirror compares the primary's with the mirror's by it).
uint32_t tp_compress_crc32(uint32_t crc, const char* data, size_t len);

}  // extern "C"

namespace turnpike::lua {
// Input taken without any output produced after which a stream is flushed (see above).
inline constexpr size_t kCompressFlushBytes = 256 * 1024;
// brotli's window (lgwin): 2^19 = 512 KiB bounds the encoder's memory per stream.
inline constexpr int kBrotliWindowBits = 19;
}  // namespace turnpike::lua
