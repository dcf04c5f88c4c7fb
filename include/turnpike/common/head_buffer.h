// A growable byte buffer for serializing message heads on the hot path.
//
// std::string::append is an out-of-line call with a capacity check per piece; a head is ~30
// pieces. This buffer keeps its storage across requests (it lives in a pooled context), and
// put() is inline: a bounds check and a memcpy the compiler can specialise for literals.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace turnpike {

class HeadBuffer {
 public:
  void clear() noexcept { len_ = 0; }
  bool empty() const noexcept { return len_ == 0; }
  size_t size() const noexcept { return len_; }
  const char* data() const noexcept { return data_.get(); }
  std::string_view view() const noexcept { return {data_.get(), len_}; }

  void put(std::string_view s) {
    if (len_ + s.size() > cap_) grow(len_ + s.size());
    std::memcpy(data_.get() + len_, s.data(), s.size());
    len_ += s.size();
  }
  void put(char c) {
    if (len_ + 1 > cap_) grow(len_ + 1);
    data_[len_++] = c;
  }
  void put_decimal(uint64_t v) {
    char buf[24];
    char* p = buf + sizeof(buf);
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    put(std::string_view(p, static_cast<size_t>(buf + sizeof(buf) - p)));
  }
  // "Name: value\r\n"
  void put_field(std::string_view name, std::string_view value) {
    size_t need = name.size() + value.size() + 4;
    if (len_ + need > cap_) grow(len_ + need);
    char* p = data_.get() + len_;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\r';
    *p++ = '\n';
    len_ += need;
  }

 private:
  void grow(size_t need) {
    size_t cap = cap_ ? cap_ * 2 : 1024;
    while (cap < need) cap *= 2;
    std::unique_ptr<char[]> next(new char[cap]);
    if (len_) std::memcpy(next.get(), data_.get(), len_);
    data_ = std::move(next);
    cap_ = cap;
  }

  std::unique_ptr<char[]> data_;
  size_t cap_ = 0;
  size_t len_ = 0;
};

}  // namespace turnpike
