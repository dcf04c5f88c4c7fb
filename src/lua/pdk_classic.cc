// The request PDK as classic lua_CFunctions, for interpreted (user) plugin code.
//
// Measured (docs/plugins.md, "PDK transport"): from JIT-compiled code an FFI call through pdk.h's
// function pointers costs about half of a lua_CFunction; from interpreted code it costs ten to
// fifteen times more, because every cdata field access and call is boxed and dispatched by the
// interpreter. User plugins run interpreted (so the instruction budget can stop them), hence
// they get these bindings and bundled plugins get the FFI ones (plugins/lib/turnpike.lua).
#include <lua.hpp>

#include "turnpike/lua/shared_dict.h"
#include "vm_internal.h"

namespace turnpike::lua {

namespace {

tp_pdk_current& current(lua_State* L) {
  return *static_cast<tp_pdk_current*>(lua_touserdata(L, lua_upvalueindex(1)));
}

int push_string_or_nil(lua_State* L, const char* p, size_t len) {
  if (p) lua_pushlstring(L, p, len); else lua_pushnil(L);
  return 1;
}

int get_header(lua_State* L) {
  size_t name_len = 0;
  const char* name = luaL_checklstring(L, 1, &name_len);
  tp_pdk_current& c = current(L);
  // Outside a request (init_worker, a timer) there is no request: answer nil.
  if (!c.request_api->get_header || !c.request) return push_string_or_nil(L, nullptr, 0);
  size_t len = 0;
  const char* value = c.request_api->get_header(c.request, name, name_len, &len);
  return push_string_or_nil(L, value, len);
}

// set_header(name, value): a nil value removes the header. true, or false when refused.
int set_header(lua_State* L) {
  size_t name_len = 0;
  const char* name = luaL_checklstring(L, 1, &name_len);
  size_t len = 0;
  const char* value = lua_isnoneornil(L, 2) ? nullptr : luaL_checklstring(L, 2, &len);
  tp_pdk_current& c = current(L);
  bool done = c.request_api->set_header && c.request &&
              c.request_api->set_header(c.request, name, name_len, value, len) == 0;
  lua_pushboolean(L, done);
  return 1;
}

template <const char* (*tp_request_api::*Field)(tp_request*, size_t*)>
int string_getter(lua_State* L) {
  tp_pdk_current& c = current(L);
  auto fn = c.request_api->*Field;
  if (!fn || !c.request) return push_string_or_nil(L, nullptr, 0);
  size_t len = 0;
  const char* value = fn(c.request, &len);
  return push_string_or_nil(L, value, len);
}

// get(field, arg): tp_request_api.get; arg may be nil.
int generic_get(lua_State* L) {
  int field = static_cast<int>(luaL_checkinteger(L, 1));
  size_t arg_len = 0;
  const char* arg = lua_isnoneornil(L, 2) ? "" : luaL_checklstring(L, 2, &arg_len);
  tp_pdk_current& c = current(L);
  if (!c.request_api->get || !c.request) return push_string_or_nil(L, nullptr, 0);
  size_t len = 0;
  const char* value = c.request_api->get(c.request, field, arg, arg_len, &len);
  return push_string_or_nil(L, value, len);
}

// set(field, arg, value): true when done; a nil value clears where the field allows it.
int generic_set(lua_State* L) {
  int field = static_cast<int>(luaL_checkinteger(L, 1));
  size_t arg_len = 0, len = 0;
  const char* arg = lua_isnoneornil(L, 2) ? "" : luaL_checklstring(L, 2, &arg_len);
  const char* value = lua_isnoneornil(L, 3) ? nullptr : luaL_checklstring(L, 3, &len);
  tp_pdk_current& c = current(L);
  bool done = c.request_api->set && c.request &&
              c.request_api->set(c.request, field, arg, arg_len, value, len) == 0;
  lua_pushboolean(L, done);
  return 1;
}

int generic_get_int(lua_State* L) {
  int field = static_cast<int>(luaL_checkinteger(L, 1));
  tp_pdk_current& c = current(L);
  if (!c.request_api->get_int || !c.request) {
    lua_pushnil(L);
    return 1;
  }
  int64_t v = c.request_api->get_int(c.request, field);
  if (v < 0) lua_pushnil(L); else lua_pushnumber(L, static_cast<lua_Number>(v));
  return 1;
}

int generic_log(lua_State* L) {
  int level = static_cast<int>(luaL_checkinteger(L, 1));
  size_t len = 0;
  const char* msg = luaL_checklstring(L, 2, &len);
  tp_pdk_current& c = current(L);
  if (c.request_api->log) c.request_api->log(c.request, level, msg, len);
  return 0;
}

// ---- Shared dictionaries: each method is a closure over its SharedDict, called as d:get(k) ----

SharedDict& shared(lua_State* L) {
  return *static_cast<SharedDict*>(lua_touserdata(L, lua_upvalueindex(1)));
}

std::string_view key_arg(lua_State* L) {
  size_t len = 0;
  const char* key = luaL_checklstring(L, 2, &len);
  return {key, len};
}

int shared_get(lua_State* L) {
  thread_local SharedValue value;  // reused: a get allocates only for a larger value than before
  shared(L).get(key_arg(L), value);
  switch (value.type) {
    case SharedValue::Type::absent: lua_pushnil(L); break;
    case SharedValue::Type::number: lua_pushnumber(L, value.number); break;
    case SharedValue::Type::string: lua_pushlstring(L, value.text.data(), value.text.size()); break;
    case SharedValue::Type::boolean: lua_pushboolean(L, value.number != 0); break;
  }
  return 1;
}

// set and add: true; false and "exists" / "value too large"; nil and why for a bad value.
template <bool kAdd>
int shared_store(lua_State* L) {
  std::string_view key = key_arg(L);
  SharedValue value;
  switch (lua_type(L, 3)) {
    case LUA_TNUMBER: value.type = SharedValue::Type::number; value.number = lua_tonumber(L, 3); break;
    case LUA_TBOOLEAN: value.type = SharedValue::Type::boolean; value.number = lua_toboolean(L, 3); break;
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, 3, &len);
      value.type = SharedValue::Type::string;
      value.text.assign(s, len);
      break;
    }
    default:
      lua_pushnil(L);
      lua_pushfstring(L, "cannot store a %s", luaL_typename(L, 3));
      return 2;
  }
  double ttl = luaL_optnumber(L, 4, 0);
  SharedDict::Store r = kAdd ? shared(L).add(key, value, ttl) : shared(L).set(key, value, ttl);
  if (r == SharedDict::Store::stored) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, r == SharedDict::Store::exists ? "exists" : "value too large");
  return 2;
}

int shared_incr(lua_State* L) {
  std::string_view key = key_arg(L);
  double delta = luaL_optnumber(L, 3, 1);
  bool has_init = !lua_isnoneornil(L, 4);
  double init = luaL_optnumber(L, 4, 0);
  double ttl = luaL_optnumber(L, 5, 0);
  double result = 0;
  switch (shared(L).incr(key, delta, has_init, init, ttl, result)) {
    case SharedDict::Incr::done: lua_pushnumber(L, result); return 1;
    case SharedDict::Incr::not_found: lua_pushnil(L); lua_pushstring(L, "not found"); return 2;
    case SharedDict::Incr::not_a_number: lua_pushnil(L); lua_pushstring(L, "not a number"); return 2;
  }
  return 0;
}

int shared_delete(lua_State* L) {
  shared(L).remove(key_arg(L));
  return 0;
}

// open(name): the dictionary's method table, or nil when there is none of that name.
int shared_open(lua_State* L) {
  size_t len = 0;
  const char* name = luaL_checklstring(L, 1, &len);
  tp_pdk_current& c = current(L);
  SharedDict* dict = c.shared ? reinterpret_cast<SharedDicts*>(c.shared)->find({name, len}) : nullptr;
  if (!dict) {
    lua_pushnil(L);
    return 1;
  }
  static const luaL_Reg methods[] = {
      {"get", shared_get},
      {"set", shared_store<false>},
      {"add", shared_store<true>},
      {"incr", shared_incr},
      {"delete", shared_delete},
  };
  lua_createtable(L, 0, sizeof methods / sizeof methods[0]);
  for (const luaL_Reg& m : methods) {
    lua_pushlightuserdata(L, dict);
    lua_pushcclosure(L, m.func, 1);
    lua_setfield(L, -2, m.name);
  }
  return 1;
}

}  // namespace

void push_classic_shared_open(lua_State* L, tp_pdk_current* cur) {
  lua_pushlightuserdata(L, cur);
  lua_pushcclosure(L, shared_open, 1);
}

void push_classic_request(lua_State* L, tp_pdk_current* cur) {
  static const luaL_Reg functions[] = {
      {"get_header", get_header},
      {"set_header", set_header},
      {"get_method", string_getter<&tp_request_api::method>},
      {"get_path", string_getter<&tp_request_api::path>},
      {"get_client_ip", string_getter<&tp_request_api::client_ip>},
      // The primitives plugins/lib/turnpike/api.lua builds the rest of the PDK from.
      {"_get", generic_get},
      {"_set", generic_set},
      {"_get_int", generic_get_int},
      {"_log", generic_log},
  };
  lua_createtable(L, 0, sizeof functions / sizeof functions[0]);
  for (const luaL_Reg& f : functions) {
    lua_pushlightuserdata(L, cur);
    lua_pushcclosure(L, f.func, 1);
    lua_setfield(L, -2, f.name);
  }
}

}  // namespace turnpike::lua
