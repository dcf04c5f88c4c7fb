// The JSON decoder behind `require "turnpike.json"`: C++ checks the text against RFC 8259 and
// turns it into a flat list of tokens (a "tape"); plugins/lib/turnpike/json.lua walks the tape
// and builds the Lua tables. Measured faster than a recursive-descent decoder in Lua, whose
// traces LuaJIT cannot compile (docs/plugins.md, "Library modules").
//
// Reached through LuaJIT's FFI (ffi.C); kept and exported by the linker like regex.h. The
// ffi.cdef in json.lua repeats these declarations: change both together.
//
// Threading: the tape and the buffer of unescaped strings are per thread, valid until the next
// parse on the same thread. Nothing here takes a lock; the parse allocates only while its
// buffers grow beyond any earlier text's.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

// What a token is.
enum {
  TP_JSON_NULL = 0,
  TP_JSON_FALSE = 1,
  TP_JSON_TRUE = 2,
  TP_JSON_NUMBER = 3,        // number
  TP_JSON_STRING = 4,        // text[offset, offset + len): no escapes, copy as is
  TP_JSON_STRING_ESC = 5,    // unescaped bytes at side[offset, offset + len)
  TP_JSON_ARRAY = 6,         // an array of `count` elements starts; its tokens follow
  TP_JSON_OBJECT = 7,        // an object of `count` members starts; key and value tokens follow
  TP_JSON_END = 8,           // the innermost open array or object ends
  TP_JSON_KEY = 9,           // an object member's key, like TP_JSON_STRING
  TP_JSON_KEY_ESC = 10,      // an object member's key, like TP_JSON_STRING_ESC
};

// 24 bytes; int32 and double fields read from Lua as plain numbers (no boxed 64-bit cdata).
typedef struct tp_json_token {
  int32_t type;
  int32_t offset;
  int32_t len;
  int32_t count;
  double number;
} tp_json_token;

// Parses `text` (at most 2 GiB - 1), nesting at most `max_depth` arrays/objects. Returns the
// number of tokens with *tokens and *side set, or -1 with a message (`unexpected ',' at byte
// 12`: 1-based byte position) written to `err` (NUL-terminated, truncated to err_len).
int32_t tp_json_parse(const char* text, size_t len, int32_t max_depth,
                      const tp_json_token** tokens, const char** side, char* err,
                      size_t err_len);

}  // extern "C"
