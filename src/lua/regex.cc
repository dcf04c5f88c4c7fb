// PCRE2 behind the extern "C" functions of turnpike/lua/regex.h, for plugins/lib/turnpike/
// regex.lua. A pattern is compiled (and JIT-compiled) once; matching is on the request path, so
// it allocates nothing: the match data, match context and JIT stack are made once per thread
// and reused, the captures are copied into a buffer the Lua side owns.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "turnpike/lua/regex.h"

#include <pcre2.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {
std::atomic<int64_t> live_regexes{0};  // compile and free only, never per match
}  // namespace

struct tp_regex {
  pcre2_code* code = nullptr;
  int captures = 0;
  std::vector<std::pair<std::string, int>> names;  // named groups: name, group number

  tp_regex() { live_regexes.fetch_add(1, std::memory_order_relaxed); }
  ~tp_regex() {
    pcre2_code_free(code);
    live_regexes.fetch_sub(1, std::memory_order_relaxed);
  }
};

namespace turnpike::lua {
namespace {

// What every match on this thread reuses. The match data grows to the largest capture count
// seen; the JIT stack lets deeply nested patterns run (PCRE2's default is 32 KiB on the machine
// stack) while still bounding them.
struct ThreadMatchState {
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  pcre2_match_data* data = nullptr;
  uint32_t data_pairs = 0;
  std::string gsub_out;
  char last_error[256] = "";

  ThreadMatchState() {
    context = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(context, kRegexMatchLimit);
    pcre2_set_depth_limit(context, kRegexDepthLimit);
    pcre2_set_heap_limit(context, 16 * 1024);  // KiB of backtracking frames (interpreter)
    jit_stack = pcre2_jit_stack_create(32 * 1024, 512 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(data);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
  }

  pcre2_match_data* data_for(const tp_regex* re) {
    uint32_t need = static_cast<uint32_t>(re->captures) + 1;
    if (data_pairs < need) {
      pcre2_match_data_free(data);
      data_pairs = std::max<uint32_t>(need, 16);
      data = pcre2_match_data_create(data_pairs, nullptr);
    }
    return data;
  }
};

ThreadMatchState& state() {
  thread_local ThreadMatchState s;
  return s;
}

uint32_t compile_options(const char* flags, char* err, size_t err_len, bool& ok) {
  uint32_t options = 0;
  ok = true;
  for (const char* f = flags ? flags : ""; *f; ++f) {
    switch (*f) {
      case 'i': options |= PCRE2_CASELESS; break;
      case 'm': options |= PCRE2_MULTILINE; break;
      case 's': options |= PCRE2_DOTALL; break;
      case 'x': options |= PCRE2_EXTENDED; break;
      // Invalid UTF-8 in a subject then simply does not match, rather than failing the match.
      case 'u': options |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF; break;
      case 'U': options |= PCRE2_UNGREEDY; break;
      case 'D': options |= PCRE2_DOLLAR_ENDONLY; break;
      case 'J': options |= PCRE2_DUPNAMES; break;
      default:
        std::snprintf(err, err_len, "unknown flag '%c' (expected i, m, s, x, u, U, D or J)", *f);
        ok = false;
        return 0;
    }
  }
  return options;
}

void read_names(tp_regex& re) {
  uint32_t count = 0, entry_size = 0;
  PCRE2_SPTR table = nullptr;
  pcre2_pattern_info(re.code, PCRE2_INFO_NAMECOUNT, &count);
  if (count == 0) return;
  pcre2_pattern_info(re.code, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
  pcre2_pattern_info(re.code, PCRE2_INFO_NAMETABLE, &table);
  for (uint32_t i = 0; i < count; ++i) {
    PCRE2_SPTR entry = table + i * entry_size;
    int group = (entry[0] << 8) | entry[1];  // the table's first two bytes, most significant first
    re.names.emplace_back(reinterpret_cast<const char*>(entry + 2), group);
  }
}

// A PCRE2 result below zero as a TP_REGEX_* code, keeping the message of unexpected errors.
int failure(int rc) {
  switch (rc) {
    case PCRE2_ERROR_NOMATCH: return TP_REGEX_NOMATCH;
    case PCRE2_ERROR_MATCHLIMIT:
    case PCRE2_ERROR_DEPTHLIMIT:
    case PCRE2_ERROR_HEAPLIMIT:
    case PCRE2_ERROR_JIT_STACKLIMIT: return TP_REGEX_LIMIT;
    default: break;
  }
  auto& s = state();
  pcre2_get_error_message(rc, reinterpret_cast<PCRE2_UCHAR*>(s.last_error), sizeof s.last_error);
  return TP_REGEX_ERROR;
}

}  // namespace
}  // namespace turnpike::lua

using namespace turnpike::lua;

extern "C" {

tp_regex* tp_regex_compile(const char* pattern, size_t len, const char* flags, char* err,
                           size_t err_len) {
  bool ok = false;
  uint32_t options = compile_options(flags, err, err_len, ok);
  if (!ok) return nullptr;
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), len, options, &code,
                                       &offset, nullptr);
  if (!compiled) {
    PCRE2_UCHAR message[200];
    pcre2_get_error_message(code, message, sizeof message);
    std::snprintf(err, err_len, "%s at offset %zu", reinterpret_cast<char*>(message), offset);
    return nullptr;
  }
  // Without the JIT (an unsupported CPU) PCRE2's interpreter matches the same, only slower.
  pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE);
  auto* re = new tp_regex;
  re->code = compiled;
  uint32_t captures = 0;
  pcre2_pattern_info(compiled, PCRE2_INFO_CAPTURECOUNT, &captures);
  re->captures = static_cast<int>(captures);
  read_names(*re);
  return re;
}

void tp_regex_free(tp_regex* re) { delete re; }

int64_t tp_regex_live(void) { return live_regexes.load(std::memory_order_relaxed); }

int tp_regex_capture_count(const tp_regex* re) { return re->captures; }

int tp_regex_name_count(const tp_regex* re) { return static_cast<int>(re->names.size()); }

const char* tp_regex_name(const tp_regex* re, int i, int* group) {
  *group = re->names[i].second;
  return re->names[i].first.c_str();
}

int tp_regex_match(const tp_regex* re, const char* subject, size_t len, size_t offset,
                   size_t* ovector, int max_pairs) {
  if (offset > len) return TP_REGEX_NOMATCH;
  auto& s = state();
  pcre2_match_data* data = s.data_for(re);
  int rc = pcre2_match(re->code, reinterpret_cast<PCRE2_SPTR>(subject), len, offset, 0, data,
                       s.context);
  if (rc < 0) return failure(rc);
  // rc counts up to the highest group that matched; later groups are unset, which the caller's
  // buffer says with SIZE_MAX pairs too.
  int pairs = std::min(re->captures + 1, max_pairs);
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
  for (int i = 0; i < pairs; ++i) {
    bool set = i < rc && ov[2 * i] != PCRE2_UNSET;
    ovector[2 * i] = set ? ov[2 * i] : SIZE_MAX;
    ovector[2 * i + 1] = set ? ov[2 * i + 1] : SIZE_MAX;
  }
  return pairs;
}

int tp_regex_gsub(const tp_regex* re, const char* subject, size_t len, const char* replacement,
                  size_t rlen, const char** out, size_t* out_len) {
  auto& s = state();
  pcre2_match_data* data = s.data_for(re);
  const uint32_t options = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
                           PCRE2_SUBSTITUTE_UNSET_EMPTY;
  if (s.gsub_out.size() < len + 64) s.gsub_out.resize(len + 64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    PCRE2_SIZE size = s.gsub_out.size();
    int rc = pcre2_substitute(re->code, reinterpret_cast<PCRE2_SPTR>(subject), len, 0, options,
                              data, s.context, reinterpret_cast<PCRE2_SPTR>(replacement), rlen,
                              reinterpret_cast<PCRE2_UCHAR*>(s.gsub_out.data()), &size);
    if (rc >= 0) {
      *out = s.gsub_out.data();
      *out_len = size;
      return rc;
    }
    // With OVERFLOW_LENGTH, `size` is now the length needed: grow once and substitute again.
    if (rc != PCRE2_ERROR_NOMEMORY || attempt == 1) return failure(rc);
    s.gsub_out.resize(size);
  }
  return TP_REGEX_ERROR;
}

const char* tp_regex_last_error(void) { return state().last_error; }

}  // extern "C"
