// libFuzzer target: the JSON decoder behind turnpike.json (src/lua/json.cc) on raw input. The
// text comes from clients (JWT claims, request bodies), so the decoder must refuse anything that
// is not JSON without crashing, and on success its tape must be well formed, for json.lua walks
// it without checking: containers balanced, each container's count equal to its children,
// strings inside the text or the unescaped-string buffer, keys exactly where an object has them.
//
// Input: byte 0 picks the depth limit (small, so depth errors are reached with short inputs);
// the rest is the text.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"
#include "turnpike/lua/json.h"

namespace {

struct Open {
  bool object;
  int32_t token;
  int32_t children;  // values (array) or key + value tokens (object) seen directly inside
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size == 0) return 0;
  const int32_t depth = 1 + raw[0] % 40;
  const char* text = reinterpret_cast<const char*>(raw + 1);
  const size_t len = size - 1;
  const tp_json_token* tokens = nullptr;
  const char* side = nullptr;
  char err[256];
  const int32_t n = tp_json_parse(text, len, depth, &tokens, &side, err, sizeof err);
  if (n < 0) {
    FUZZ_CHECK(err[0] != '\0');
    return 0;
  }
  FUZZ_CHECK(n > 0);
  // Unescaping only shrinks a string (\uXXXX: 6 bytes to at most 3), so the buffer of unescaped
  // strings is never longer than the text; ASan checks the reads themselves.
  std::vector<Open> open;
  bool top_done = false;
  for (int32_t i = 0; i < n; ++i) {
    const tp_json_token& t = tokens[i];
    FUZZ_CHECK(!top_done);
    if (t.type == TP_JSON_END) {
      FUZZ_CHECK(!open.empty());
      const Open& o = open.back();
      FUZZ_CHECK(!o.object || o.children % 2 == 0);  // no key without its value
      FUZZ_CHECK(tokens[o.token].count == (o.object ? o.children / 2 : o.children));
      open.pop_back();
      if (open.empty()) top_done = true;
      continue;
    }
    const bool in_object = !open.empty() && open.back().object;
    const bool key_expected = in_object && open.back().children % 2 == 0;
    const bool is_key = t.type == TP_JSON_KEY || t.type == TP_JSON_KEY_ESC;
    FUZZ_CHECK(is_key == key_expected);
    if (t.type == TP_JSON_STRING || t.type == TP_JSON_KEY) {
      FUZZ_CHECK(t.offset >= 0 && t.len >= 0 && static_cast<size_t>(t.offset) + t.len <= len);
    }
    if (t.type == TP_JSON_STRING_ESC || t.type == TP_JSON_KEY_ESC) {
      FUZZ_CHECK(t.offset >= 0 && t.len >= 0 && static_cast<size_t>(t.offset) + t.len <= len);
      volatile char last = t.len > 0 ? side[t.offset + t.len - 1] : 0;  // ASan: in bounds
      (void)last;
    }
    FUZZ_CHECK(t.type >= TP_JSON_NULL && t.type <= TP_JSON_KEY_ESC);
    if (!open.empty()) ++open.back().children;
    if (t.type == TP_JSON_ARRAY || t.type == TP_JSON_OBJECT) {
      open.push_back({t.type == TP_JSON_OBJECT, i, 0});
      FUZZ_CHECK(static_cast<int32_t>(open.size()) <= depth);
    } else if (open.empty()) {
      top_done = true;
    }
  }
  FUZZ_CHECK(open.empty() && top_done);
  return 0;
}
