-- The PDK's C boundary as LuaJIT FFI declarations: a copy of include/turnpike/lua/pdk.h (keep
-- the two identical). Loaded once per VM; ffi.cdef may not declare a type twice.
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_request tp_request;
typedef struct tp_request_api {
  const char* (*get_header)(tp_request* r, const char* name, size_t name_len, size_t* value_len);
  int (*set_header)(tp_request* r, const char* name, size_t name_len, const char* value,
                    size_t value_len);
  const char* (*method)(tp_request* r, size_t* len);
  const char* (*path)(tp_request* r, size_t* len);
  const char* (*client_ip)(tp_request* r, size_t* len);
  const char* (*get)(tp_request* r, int field, const char* arg, size_t arg_len, size_t* len);
  int (*set)(tp_request* r, int field, const char* arg, size_t arg_len, const char* value,
             size_t value_len);
  int64_t (*get_int)(tp_request* r, int field);
  void (*log)(tp_request* r, int level, const char* msg, size_t len);
} tp_request_api;

typedef struct tp_shared_dict tp_shared_dict;
typedef struct tp_shared_dicts tp_shared_dicts;
typedef struct tp_shared_value {
  int32_t type;
  double number;
  const char* str;
  size_t len;
} tp_shared_value;
typedef struct tp_shared_api {
  tp_shared_dict* (*find)(tp_shared_dicts* set, const char* name, size_t len);
  void (*get)(tp_shared_dict* d, const char* key, size_t klen, tp_shared_value* out);
  int (*set)(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl);
  int (*add)(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl);
  int (*incr)(tp_shared_dict* d, const char* key, size_t klen, double delta, double init,
              int has_init, double ttl, double* out);
  void (*del)(tp_shared_dict* d, const char* key, size_t klen);
} tp_shared_api;

typedef struct tp_pdk_current {
  tp_request* request;
  const tp_request_api* request_api;
  tp_shared_dicts* shared;
  const tp_shared_api* shared_api;
} tp_pdk_current;
]]

return true
