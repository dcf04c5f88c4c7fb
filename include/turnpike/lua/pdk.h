// The PDK's C boundary: what Lua plugins reach through LuaJIT's FFI.
//
// Per-request PDK calls (a header by name, the path, a shared-dict counter) are on the hot path,
// so they are plain C function pointers that JIT-compiled Lua calls directly (no Lua C API stack,
// no interning of arguments): bench figures in docs/plugins.md, "PDK transport". The pipeline
// implements tp_request_api against its request; tests implement it against a fake request.
//
// Every declaration here is repeated as an ffi.cdef in plugins/lib/turnpike/cdefs.lua: change
// both together. Strings are (pointer, length), never NUL-terminated; a returned pointer stays
// valid until the next PDK call on the same worker.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

// The request a call runs for; opaque to the runtime.
typedef struct tp_request tp_request;

// Implemented by the pipeline. A NULL function answers "nothing" (nil in Lua).
typedef struct tp_request_api {
  // First value of header `name` (case-insensitive), or NULL when absent.
  const char* (*get_header)(tp_request* r, const char* name, size_t name_len, size_t* value_len);
  // Replaces every value of header `name`; a NULL value removes it. 0 on success, -1 refused.
  int (*set_header)(tp_request* r, const char* name, size_t name_len, const char* value,
                    size_t value_len);
  const char* (*method)(tp_request* r, size_t* len);
  const char* (*path)(tp_request* r, size_t* len);
  const char* (*client_ip)(tp_request* r, size_t* len);
} tp_request_api;

// A node-wide shared dictionary (lua/shared_dict.h), by name.
typedef struct tp_shared_dict tp_shared_dict;
typedef struct tp_shared_dicts tp_shared_dicts;

// A value in or out of a shared dictionary.
typedef struct tp_shared_value {
  int32_t type;     // 0 absent, 1 number, 2 string, 3 boolean (number 0 or 1)
  double number;
  const char* str;  // type 2
  size_t len;
} tp_shared_value;

// Implemented in src/lua/shared_dict_ffi.cc.
typedef struct tp_shared_api {
  tp_shared_dict* (*find)(tp_shared_dicts* set, const char* name, size_t len);
  // Fills `out`; a string is copied to a per-thread buffer valid until the next get.
  void (*get)(tp_shared_dict* d, const char* key, size_t klen, tp_shared_value* out);
  // ttl <= 0: no expiry. 0 stored, -1 the value alone is larger than the dictionary allows.
  int (*set)(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl);
  // As set, but 1 when a live value already exists (nothing stored).
  int (*add)(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl);
  // Adds delta atomically. A missing key starts from `init` when has_init, else -2; a value that
  // is not a number is -3. 0 and *out = the new value on success.
  int (*incr)(tp_shared_dict* d, const char* key, size_t klen, double delta, double init,
              int has_init, double ttl, double* out);
  void (*del)(tp_shared_dict* d, const char* key, size_t klen);
} tp_shared_api;

// What the FFI side reads to know which request is running; the Vm rewrites it before every
// resumption, so PDK functions need no handle argument from the plugin.
typedef struct tp_pdk_current {
  tp_request* request;
  const tp_request_api* request_api;
  tp_shared_dicts* shared;
  const tp_shared_api* shared_api;
} tp_pdk_current;

}  // extern "C"
