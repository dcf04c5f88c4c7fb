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

// What get / set / get_int act on. Values are stable: plugins/lib/turnpike.lua names them.
enum tp_field {
  TP_HOST = 1,             // get: Host / :authority as sent; set: the Host the upstream gets
  TP_SCHEME = 2,           // get: "http" or "https"
  TP_QUERY = 3,            // get: the raw query string (without "?"); set: replace it
  TP_URI = 4,              // get: the request target as sent
  TP_ROUTE = 5,            // get: the matched route's name
  TP_ROUTE_PARAM = 6,      // get: the value of route parameter `arg` ({id} in the path)
  TP_REQUEST_ID = 7,       // get / set: the request's id (access log, error bodies)
  TP_CONSUMER = 8,         // get: the consumer's name; set: attach consumer number `arg` (decimal)
  TP_RESPONSE_HEADER = 9,  // get: a response field (header_filter on); set: replace it (NULL removes)
  TP_UPSTREAM = 10,        // set: proxy to the upstream named by the value
  TP_PATH = 11,            // set: the path the upstream gets (rewrite, access)
  TP_PROTOCOL = 12,        // get: "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0"
  TP_LISTENER = 13,        // get: the listener's name
  TP_RESPONSE_ADD_HEADER = 14,  // set: add one more response field line
  TP_REMOTE_ADDR = 15,     // get: the client's "ip:port"
  TP_RESPONSE_STATUS = 17,  // set: the status the client gets (decimal; header_filter or earlier)
  TP_BODY_CHUNK = 18,      // body_filter: get the current piece of the response body; set: replace it
  TP_HEADERS = 16,         // get: every request field as "name: value\n" lines, in order
  TP_REQUEST_BODY = 19,    // get: the body read ahead (read_body), NULL before; set: replace it
  TP_METHOD = 20,          // set: the method the upstream gets (a token; not to or from HEAD/CONNECT)
  TP_SKIP_BODY_FILTER = 50,  // set (header_filter): the running plugin leaves this response's body alone
  TP_UPSTREAM_NAME = 30,   // get: the upstream the request goes (or went) to; NULL for none
  TP_OUTCOME = 31,         // get: how the gateway ended the request ("upstream_timeout", ...), NULL for none
  TP_UPSTREAM_TAG = 32,    // get / set: the node tag the request prefers ("" / NULL: untagged nodes)
  TP_UPSTREAM_NODES = 60,  // get: the plain-HTTP/1.1 upstream `arg`'s node addresses, "ip:port\n" each;
                           // NULL when there is no such upstream or it speaks TLS or HTTP/2
};

// What get_int reads.
enum tp_int_field {
  TP_STATUS = 1,           // the response status (header_filter on), 0 before
  TP_UPSTREAM_STATUS = 2,  // the last upstream's status, 0 if none answered
  TP_CONTENT_LENGTH = 3,   // the request's declared body length, -1 when unknown (chunked / none)
  TP_BODY_BYTES = 4,       // response body bytes sent so far
  TP_SERVER_PORT = 5,      // the listener's port
  TP_BODY_LAST = 6,        // body_filter: 1 when the current piece is the body's last, else 0
  TP_HAS_BODY = 19,        // 1 when the request has a body (declared length > 0, or chunked /
                           // HTTP/2 DATA of unknown length), else 0
};

// What a PDK wait asks the pipeline for (Vm::set_request_wait); the result goes back to Lua.
enum tp_wait {
  TP_WAIT_BODY = 1,  // read the request body ahead, up to `arg` bytes: 1 whole, 0 partial, -1 failed
};

// Log levels of tp_request_api.log, as spdlog counts them.
enum tp_log_level { TP_LOG_DEBUG = 1, TP_LOG_INFO = 2, TP_LOG_WARN = 3, TP_LOG_ERROR = 4 };

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
  // A value by tp_field (`arg` names it for the fields that take a name), or NULL when absent.
  const char* (*get)(tp_request* r, int field, const char* arg, size_t arg_len, size_t* len);
  // Changes a value by tp_field. 0 done; -1 refused (not in this phase, invalid, unknown name).
  int (*set)(tp_request* r, int field, const char* arg, size_t arg_len, const char* value,
             size_t value_len);
  // A number by tp_int_field; -1 when unknown.
  int64_t (*get_int)(tp_request* r, int field);
  // Writes a line to the error log with the request's id, route and plugin. `r` may be NULL
  // (init_worker, timers); it is then logged without a request.
  void (*log)(tp_request* r, int level, const char* msg, size_t len);
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
