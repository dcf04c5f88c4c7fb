// The shared-dictionary functions behind tp_shared_api (pdk.h), called from Lua through FFI:
// thin conversions between tp_shared_value and SharedValue around SharedDict.
#include "turnpike/lua/shared_dict.h"
#include "vm_internal.h"

namespace turnpike::lua {

namespace {

SharedDict& dict(tp_shared_dict* d) { return *reinterpret_cast<SharedDict*>(d); }

// The result of the last get on this thread: the string handed to Lua points into it, and Lua
// copies it (ffi.string) before the next PDK call. Reused, so a get allocates only when a value
// is larger than any before.
thread_local SharedValue last_get;

SharedValue from_ffi(const tp_shared_value* v) {
  SharedValue out;
  switch (v->type) {
    case 1: out.type = SharedValue::Type::number; out.number = v->number; break;
    case 2: out.type = SharedValue::Type::string; out.text.assign(v->str, v->len); break;
    case 3: out.type = SharedValue::Type::boolean; out.number = v->number != 0; break;
    default: break;
  }
  return out;
}

tp_shared_dict* find(tp_shared_dicts* set, const char* name, size_t len) {
  if (!set) return nullptr;
  auto* dicts = reinterpret_cast<SharedDicts*>(set);
  return reinterpret_cast<tp_shared_dict*>(dicts->find(std::string_view(name, len)));
}

void get(tp_shared_dict* d, const char* key, size_t klen, tp_shared_value* out) {
  dict(d).get(std::string_view(key, klen), last_get);
  out->type = static_cast<int32_t>(last_get.type);
  out->number = last_get.number;
  out->str = last_get.text.data();
  out->len = last_get.text.size();
}

int store_result(SharedDict::Store r) {
  switch (r) {
    case SharedDict::Store::stored: return 0;
    case SharedDict::Store::exists: return 1;
    case SharedDict::Store::too_large: return -1;
  }
  return -1;
}

int set(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl) {
  return store_result(dict(d).set(std::string_view(key, klen), from_ffi(v), ttl));
}

int add(tp_shared_dict* d, const char* key, size_t klen, const tp_shared_value* v, double ttl) {
  return store_result(dict(d).add(std::string_view(key, klen), from_ffi(v), ttl));
}

int incr(tp_shared_dict* d, const char* key, size_t klen, double delta, double init, int has_init,
         double ttl, double* out) {
  switch (dict(d).incr(std::string_view(key, klen), delta, has_init != 0, init, ttl, *out)) {
    case SharedDict::Incr::done: return 0;
    case SharedDict::Incr::not_found: return -2;
    case SharedDict::Incr::not_a_number: return -3;
  }
  return -2;
}

void del(tp_shared_dict* d, const char* key, size_t klen) {
  dict(d).remove(std::string_view(key, klen));
}

}  // namespace

const tp_shared_api& shared_api() {
  // The enum values of SharedValue::Type are the tp_shared_value type codes.
  static_assert(static_cast<int>(SharedValue::Type::number) == 1 &&
                static_cast<int>(SharedValue::Type::string) == 2 &&
                static_cast<int>(SharedValue::Type::boolean) == 3);
  static const tp_shared_api api{find, get, set, add, incr, del};
  return api;
}

}  // namespace turnpike::lua
