// The request PDK as classic lua_CFunctions, for interpreted (user) plugin code.
//
// Measured (docs/plugins.md, "PDK transport"): from JIT-compiled code an FFI call through pdk.h's
// function pointers costs about half of a lua_CFunction; from interpreted code it costs ten to
// fifteen times more, because every cdata field access and call is boxed and dispatched by the
// interpreter. User plugins run interpreted (so the instruction budget can stop them), hence
// they get these bindings and bundled plugins get the FFI ones (plugins/lib/turnpike.lua).
#include <lua.hpp>

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
  if (!c.request_api->get_header) return push_string_or_nil(L, nullptr, 0);
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
  bool done = c.request_api->set_header &&
              c.request_api->set_header(c.request, name, name_len, value, len) == 0;
  lua_pushboolean(L, done);
  return 1;
}

template <const char* (*tp_request_api::*Field)(tp_request*, size_t*)>
int string_getter(lua_State* L) {
  tp_pdk_current& c = current(L);
  auto fn = c.request_api->*Field;
  if (!fn) return push_string_or_nil(L, nullptr, 0);
  size_t len = 0;
  const char* value = fn(c.request, &len);
  return push_string_or_nil(L, value, len);
}

}  // namespace

void push_classic_request(lua_State* L, tp_pdk_current* cur) {
  static const luaL_Reg functions[] = {
      {"get_header", get_header},
      {"set_header", set_header},
      {"get_method", string_getter<&tp_request_api::method>},
      {"get_path", string_getter<&tp_request_api::path>},
      {"get_client_ip", string_getter<&tp_request_api::client_ip>},
  };
  lua_createtable(L, 0, sizeof functions / sizeof functions[0]);
  for (const luaL_Reg& f : functions) {
    lua_pushlightuserdata(L, cur);
    lua_pushcclosure(L, f.func, 1);
    lua_setfield(L, -2, f.name);
  }
}

}  // namespace turnpike::lua
