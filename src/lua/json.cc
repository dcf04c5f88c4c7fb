// The RFC 8259 decoder of turnpike/lua/json.h: checks the whole text and writes the tape that
// plugins/lib/turnpike/json.lua turns into Lua tables. Iterative (an explicit stack of open
// containers), so a hostile nesting depth cannot reach the C stack; the tape and the buffer of
// unescaped strings are per thread and reused, so a parse allocates only when they must grow.
// Each error message names the 1-based byte where the text stops being JSON.
#include "turnpike/lua/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace turnpike::lua {
namespace {

struct Failure {
  const char* what;
  size_t pos;  // 0-based
  std::string detail;  // appended to what (", got '}'")
};

struct OpenContainer {
  bool object;
  int32_t token;  // index of its ARRAY / OBJECT token
  int32_t count;  // elements or members so far
};

struct ThreadTape {
  std::vector<tp_json_token> tokens;
  std::string side;
  std::vector<OpenContainer> open;
};

ThreadTape& tape() {
  thread_local ThreadTape t;
  return t;
}

std::string describe(const char* s, size_t len, size_t pos) {
  if (pos >= len) return "end of text";
  unsigned char b = static_cast<unsigned char>(s[pos]);
  char buf[16];
  if (b < 32 || b > 126) {
    std::snprintf(buf, sizeof buf, "byte 0x%02x", b);
  } else {
    std::snprintf(buf, sizeof buf, "'%c'", b);
  }
  return buf;
}

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Position of the first byte that is not part of valid UTF-8 (RFC 3629 §4: no overlong forms,
// no surrogates, nothing above U+10FFFF), or len.
size_t invalid_utf8(const unsigned char* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char a = s[i];
    if (a < 0x80) {
      ++i;
      continue;
    }
    auto cont = [&](size_t k, unsigned char lo, unsigned char hi) {
      return i + k < len && s[i + k] >= lo && s[i + k] <= hi;
    };
    size_t n = 0;
    if (a >= 0xC2 && a <= 0xDF) {
      n = cont(1, 0x80, 0xBF) ? 2 : 0;
    } else if (a >= 0xE0 && a <= 0xEF) {
      unsigned char lo = a == 0xE0 ? 0xA0 : 0x80, hi = a == 0xED ? 0x9F : 0xBF;
      n = cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 0;
    } else if (a >= 0xF0 && a <= 0xF4) {
      unsigned char lo = a == 0xF0 ? 0x90 : 0x80, hi = a == 0xF4 ? 0x8F : 0xBF;
      n = cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (n == 0) return i;
    i += n;
  }
  return len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  Parser(const char* text, size_t len, int32_t max_depth, ThreadTape& t)
      : s_(text), u_(reinterpret_cast<const unsigned char*>(text)), len_(len),
        max_depth_(max_depth), t_(t) {}

  // Throws nothing: returns false with failure_ set.
  bool run();
  const Failure& failure() const { return failure_; }

 private:
  bool fail(const char* what, size_t pos, std::string detail = {}) {
    failure_ = {what, pos, std::move(detail)};
    return false;
  }
  unsigned char at(size_t pos) const { return pos < len_ ? u_[pos] : 0; }
  bool at_end(size_t pos) const { return pos >= len_; }
  // §2: whitespace is space, tab, line feed, carriage return.
  size_t skip(size_t pos) const {
    while (pos < len_ && (u_[pos] == ' ' || u_[pos] == '\t' || u_[pos] == '\n' || u_[pos] == '\r')) {
      ++pos;
    }
    return pos;
  }
  void push_token(int32_t type, size_t offset = 0, size_t len = 0, double number = 0) {
    t_.tokens.push_back({type, static_cast<int32_t>(offset), static_cast<int32_t>(len), 0, number});
  }
  bool string(size_t& pos, bool key);
  bool unicode_escape(size_t& pos);
  bool hex4(size_t pos, uint32_t& out);
  bool number(size_t& pos);
  bool literal(size_t& pos, const char* word, int32_t type);
  bool value(size_t& pos, bool& opened);

  const char* s_;
  const unsigned char* u_;
  size_t len_;
  int32_t max_depth_;
  ThreadTape& t_;
  Failure failure_{};
};

bool Parser::hex4(size_t pos, uint32_t& out) {
  out = 0;
  for (size_t i = 0; i < 4; ++i) {
    int v = pos + i < len_ ? hex_value(u_[pos + i]) : -1;
    if (v < 0) return fail("invalid \\u escape", pos - 2);
    out = out * 16 + static_cast<uint32_t>(v);
  }
  return true;
}

// A \u escape at pos (the backslash); §7: a character outside the BMP is a surrogate pair.
bool Parser::unicode_escape(size_t& pos) {
  uint32_t cp = 0;
  if (!hex4(pos + 2, cp)) return false;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("lone low surrogate", pos);
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (at(pos + 6) != '\\' || at(pos + 7) != 'u') return fail("lone high surrogate", pos);
    uint32_t low = 0;
    if (!hex4(pos + 8, low)) return false;
    if (low < 0xDC00 || low > 0xDFFF) return fail("lone high surrogate", pos);
    append_utf8(t_.side, 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00));
    pos += 12;
    return true;
  }
  append_utf8(t_.side, cp);
  pos += 6;
  return true;
}

// The string whose opening quote is at pos; pos ends after its closing quote. §7: control
// characters must be escaped; the escapes are \" \\ \/ \b \f \n \r \t and \uXXXX.
bool Parser::string(size_t& pos, bool key) {
  const size_t quote = pos;
  size_t i = pos + 1;
  while (i < len_ && u_[i] != '"' && u_[i] != '\\' && u_[i] >= 0x20) ++i;
  if (at_end(i)) return fail("unterminated string", quote);
  if (u_[i] == '"') {
    push_token(key ? TP_JSON_KEY : TP_JSON_STRING, quote + 1, i - quote - 1);
    pos = i + 1;
    return true;
  }
  const size_t side_start = t_.side.size();
  size_t start = quote + 1;
  for (;;) {
    while (i < len_ && u_[i] != '"' && u_[i] != '\\' && u_[i] >= 0x20) ++i;
    if (at_end(i)) return fail("unterminated string", quote);
    t_.side.append(s_ + start, i - start);
    if (u_[i] == '"') break;
    if (u_[i] < 0x20) return fail("unescaped control character in string", i);
    char plain = 0;
    switch (at(i + 1)) {
      case '"': plain = '"'; break;
      case '\\': plain = '\\'; break;
      case '/': plain = '/'; break;
      case 'b': plain = '\b'; break;
      case 'f': plain = '\f'; break;
      case 'n': plain = '\n'; break;
      case 'r': plain = '\r'; break;
      case 't': plain = '\t'; break;
      case 'u': break;
      default: return fail("invalid escape", i);
    }
    if (plain) {
      t_.side += plain;
      i += 2;
    } else if (!unicode_escape(i)) {
      return false;
    }
    start = i;
  }
  push_token(key ? TP_JSON_KEY_ESC : TP_JSON_STRING_ESC, side_start, t_.side.size() - side_start);
  pos = i + 1;
  return true;
}

// §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
bool Parser::number(size_t& pos) {
  const size_t begin = pos;
  size_t i = pos;
  if (at(i) == '-') ++i;
  const size_t first = i;
  while (i < len_ && is_digit(u_[i])) ++i;
  if (i == first) return fail("invalid number", begin);
  if (u_[first] == '0' && i > first + 1) return fail("leading zero in number", begin);
  if (at(i) == '.') {
    size_t d = ++i;
    while (i < len_ && is_digit(u_[i])) ++i;
    if (i == d) return fail("digits expected after '.'", begin);
  }
  if (at(i) == 'e' || at(i) == 'E') {
    ++i;
    if (at(i) == '+' || at(i) == '-') ++i;
    size_t d = i;
    while (i < len_ && is_digit(u_[i])) ++i;
    if (i == d) return fail("digits expected in exponent", begin);
  }
  // strtod wants a terminated string; numbers are short. The gateway never changes LC_NUMERIC,
  // so '.' is the decimal point.
  char local[64];
  std::string heap;
  const char* digits = local;
  size_t n = i - begin;
  if (n < sizeof local) {
    std::memcpy(local, s_ + begin, n);
    local[n] = '\0';
  } else {
    heap.assign(s_ + begin, n);
    digits = heap.c_str();
  }
  double v = std::strtod(digits, nullptr);
  if (v == HUGE_VAL || v == -HUGE_VAL) return fail("number out of range", begin);
  push_token(TP_JSON_NUMBER, 0, 0, v);
  pos = i;
  return true;
}

bool Parser::literal(size_t& pos, const char* word, int32_t type) {
  size_t n = std::strlen(word);
  if (len_ - pos < n || std::memcmp(s_ + pos, word, n) != 0) return fail("invalid literal", pos);
  push_token(type);
  pos += n;
  return true;
}

// One value at or after pos (whitespace first). An array or object is only opened (`opened`);
// run() reads its contents.
bool Parser::value(size_t& pos, bool& opened) {
  opened = false;
  pos = skip(pos);
  unsigned char b = at(pos);
  if (at_end(pos)) return fail("unexpected ", pos, describe(s_, len_, pos));
  switch (b) {
    case '"': return string(pos, false);
    case '{':
    case '[':
      if (t_.open.size() >= static_cast<size_t>(max_depth_)) {
        return fail("nesting deeper than ", pos, std::to_string(max_depth_));
      }
      t_.open.push_back({b == '{', static_cast<int32_t>(t_.tokens.size()), 0});
      push_token(b == '{' ? TP_JSON_OBJECT : TP_JSON_ARRAY);
      ++pos;
      opened = true;
      return true;
    case 't': return literal(pos, "true", TP_JSON_TRUE);
    case 'f': return literal(pos, "false", TP_JSON_FALSE);
    case 'n': return literal(pos, "null", TP_JSON_NULL);
    default: break;
  }
  if (b == '-' || is_digit(b)) return number(pos);
  return fail("unexpected ", pos, describe(s_, len_, pos));
}

bool Parser::run() {
  size_t bad = invalid_utf8(u_, len_);
  if (bad < len_) return fail("invalid UTF-8", bad);
  size_t pos = 0;
  bool opened = false;
  if (!value(pos, opened)) return false;
  for (;;) {
    if (opened) {
      // Just after '[' or '{': the container may be empty, else its first element or key.
      OpenContainer& c = t_.open.back();
      pos = skip(pos);
      if (at(pos) == (c.object ? '}' : ']') && !at_end(pos)) {
        push_token(TP_JSON_END);
        t_.open.pop_back();
        ++pos;
      } else if (c.object) {
        if (at(pos) != '"' || at_end(pos)) {
          return fail("expected a string key, got ", pos, describe(s_, len_, pos));
        }
        if (!string(pos, true)) return false;
        pos = skip(pos);
        if (at(pos) != ':' || at_end(pos)) {
          return fail("expected ':', got ", pos, describe(s_, len_, pos));
        }
        if (!value(++pos, opened)) return false;
        continue;
      } else {
        if (!value(pos, opened)) return false;
        continue;
      }
    }
    // A value ended: at the top, the text must end; in a container, ',' or its close follows.
    if (t_.open.empty()) break;
    OpenContainer& c = t_.open.back();
    ++c.count;
    pos = skip(pos);
    const char close = c.object ? '}' : ']';
    if (!at_end(pos) && at(pos) == close) {
      t_.tokens[c.token].count = c.count;
      push_token(TP_JSON_END);
      t_.open.pop_back();
      ++pos;
      opened = false;
      continue;
    }
    if (at(pos) != ',' || at_end(pos)) {
      return fail(c.object ? "expected ',' or '}', got " : "expected ',' or ']', got ", pos,
                  describe(s_, len_, pos));
    }
    ++pos;
    if (c.object) {
      pos = skip(pos);
      if (at(pos) != '"' || at_end(pos)) {
        return fail("expected a string key, got ", pos, describe(s_, len_, pos));
      }
      if (!string(pos, true)) return false;
      pos = skip(pos);
      if (at(pos) != ':' || at_end(pos)) {
        return fail("expected ':', got ", pos, describe(s_, len_, pos));
      }
      ++pos;
    }
    if (!value(pos, opened)) return false;
  }
  pos = skip(pos);
  if (!at_end(pos)) {
    return fail("unexpected ", pos, describe(s_, len_, pos) + " after the value");
  }
  return true;
}

}  // namespace
}  // namespace turnpike::lua

extern "C" int32_t tp_json_parse(const char* text, size_t len, int32_t max_depth,
                                 const tp_json_token** tokens, const char** side, char* err,
                                 size_t err_len) {
  using namespace turnpike::lua;
  if (len >= 0x7fffffff) {
    std::snprintf(err, err_len, "text too large (%zu bytes)", len);
    return -1;
  }
  ThreadTape& t = tape();
  t.tokens.clear();
  t.side.clear();
  t.open.clear();
  Parser parser(text, len, max_depth, t);
  if (!parser.run()) {
    const Failure& f = parser.failure();
    std::snprintf(err, err_len, "%s%s at byte %zu", f.what, f.detail.c_str(), f.pos + 1);
    return -1;
  }
  *tokens = t.tokens.data();
  *side = t.side.data();
  return static_cast<int32_t>(t.tokens.size());
}
