// turnpike.http.request's Lua side in C++: the request the plugin yielded, read off the Lua
// thread (plugins/lib/turnpike.lua checked the types), and the result pushed back for the
// resumption. Only the raw Lua C API: nothing here can call into Lua code or raise.
#include <lua.hpp>

#include <cmath>

#include "http_client.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/uri.h"

namespace turnpike::lua {

namespace {

std::string_view view_at(lua_State* co, int index) {
  size_t len = 0;
  const char* s = lua_type(co, index) == LUA_TSTRING ? lua_tolstring(co, index, &len) : nullptr;
  return s ? std::string_view(s, len) : std::string_view();
}

// RFC 9110 §5.6.2: token = 1*tchar.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// RFC 9110 §5.5: no CR, LF or NUL in a field value (they would split or end the head).
bool is_field_value(std::string_view s) {
  for (unsigned char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// Visible ASCII only: the request line must stay one line.
bool is_visible(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

std::chrono::nanoseconds seconds_at(lua_State* co, int index, std::chrono::nanoseconds fallback) {
  if (lua_type(co, index) != LUA_TNUMBER) return fallback;
  double s = std::fmin(lua_tonumber(co, index), 86400.0);  // keeps the conversion in range
  if (!(s > 0)) return fallback;
  return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
}

bool read_url(std::string_view url, HttpRequest& out, std::string& error) {
  http::TargetParts parts;
  if (http::split_target(url, parts) != http::TargetForm::absolute || !is_visible(url)) {
    error = "url: expected http[s]://host[:port]/path, got \"" + std::string(url) + "\"";
    return false;
  }
  out.tls = iequals(parts.scheme, "https");
  if (!out.tls && !iequals(parts.scheme, "http")) {
    error = "url: only http:// and https:// are supported, got \"" + std::string(parts.scheme) + "://\"";
    return false;
  }
  std::string_view host, port;
  http::split_authority(parts.authority, host, port);  // split_target validated it
  out.host = to_lower_copy(host);
  out.port = port.empty() ? (out.tls ? "443" : "80") : std::string(port);
  out.target.assign(parts.path);
  if (parts.has_query) out.target.append("?").append(parts.query);
  return true;
}

}  // namespace

HttpRequest read_http_request(lua_State* co, int first, std::string& error) {
  HttpRequest req;
  std::string_view method = view_at(co, first);
  if (!method.empty()) req.method.assign(method);
  if (!is_token(req.method)) {
    error = "method: expected a token such as \"GET\", got \"" + req.method + "\"";
    return req;
  }
  if (!read_url(view_at(co, first + 1), req, error)) return req;
  if (lua_istable(co, first + 2)) {
    for (int i = 1;; i += 2) {
      lua_rawgeti(co, first + 2, i);
      lua_rawgeti(co, first + 2, i + 1);
      std::string_view name = view_at(co, -2), value = view_at(co, -1);
      bool end = lua_isnil(co, -2);
      if (!end && (!is_token(name) || !is_field_value(value))) {
        error = "headers: invalid field \"" + std::string(name) + "\"";
      } else if (!end) {
        req.headers.emplace_back(name, value);
      }
      lua_pop(co, 2);
      if (end || !error.empty()) break;
    }
    if (!error.empty()) return req;
  }
  if (lua_type(co, first + 3) == LUA_TSTRING) {
    req.body.assign(view_at(co, first + 3));
    req.has_body = true;
  }
  req.timeout = seconds_at(co, first + 4, kHttpDefaultTimeout);
  if (lua_type(co, first + 5) == LUA_TNUMBER && lua_tonumber(co, first + 5) >= 0) {
    req.max_body = static_cast<size_t>(std::fmin(lua_tonumber(co, first + 5), 1e15));
  }
  if (lua_type(co, first + 6) == LUA_TBOOLEAN) req.verify = lua_toboolean(co, first + 6) != 0;
  return req;
}

int push_http_result(lua_State* co, const HttpResult& r) {
  if (r.error != HttpError::none) {
    lua_pushnil(co);
    std::string message(to_string(r.error));
    if (r.error == HttpError::bad_request) message = "turnpike.http.request: " + r.detail;
    else if (!r.detail.empty() && r.error != HttpError::body_too_large) message += ": " + r.detail;
    lua_pushlstring(co, message.data(), message.size());
    if (r.error != HttpError::bad_request) return 2;
    lua_pushboolean(co, 1);  // raise it: the plugin's code is wrong, not the service
    return 3;
  }
  lua_createtable(co, 0, 3);
  lua_pushinteger(co, r.status);
  lua_setfield(co, -2, "status");
  lua_createtable(co, 0, static_cast<int>(r.headers.size()));
  int headers = lua_gettop(co);
  for (const auto& [name, value] : r.headers) {
    // RFC 9110 §5.3: repeated fields combine into one list, in order.
    lua_pushlstring(co, name.data(), name.size());
    lua_rawget(co, headers);
    if (lua_isstring(co, -1)) {
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, value.data(), value.size());
      lua_concat(co, 3);
    } else {
      lua_pop(co, 1);
      lua_pushlstring(co, value.data(), value.size());
    }
    lua_pushlstring(co, name.data(), name.size());
    lua_insert(co, -2);
    lua_rawset(co, headers);
  }
  lua_setfield(co, -2, "headers");
  lua_pushlstring(co, r.body.data(), r.body.size());
  lua_setfield(co, -2, "body");
  return 1;
}

}  // namespace turnpike::lua
