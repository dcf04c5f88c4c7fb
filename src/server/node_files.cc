// NodeFileWatcher (node_files.h): inotify on the node files' directories, and a poll.
#include "node_files.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

namespace turnpike::proxy {

namespace asio = boost::asio;

namespace {

constexpr auto kPollEvery = std::chrono::seconds(2);

}  // namespace

NodeFileWatcher::NodeFileWatcher(asio::io_context& ioc, OnChange on_change)
    : ioc_(ioc), on_change_(std::move(on_change)), events_(ioc), poll_timer_(ioc) {}

NodeFileWatcher::~NodeFileWatcher() { stop(); }

void NodeFileWatcher::stop() {
  stopped_ = true;
  poll_timer_.cancel();
  boost::system::error_code ec;
  if (events_.is_open()) events_.close(ec);  // (closes the inotify descriptor)
  inotify_ = -1;
  watches_.clear();
}

void NodeFileWatcher::watch(std::vector<std::pair<std::string, std::string>> files) {
  if (stopped_) return;
  std::vector<File> next;
  std::set<std::string> dirs;
  for (auto& [upstream, path] : files) {
    File f;
    f.upstream = std::move(upstream);
    f.path = std::move(path);
    const size_t slash = f.path.rfind('/');
    f.dir = slash == std::string::npos ? "." : slash == 0 ? "/" : f.path.substr(0, slash);
    f.name = slash == std::string::npos ? f.path : f.path.substr(slash + 1);
    dirs.insert(f.dir);
    next.push_back(std::move(f));
  }
  files_ = std::move(next);
  if (files_.empty()) return;

  if (inotify_ < 0) {
    inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_ < 0) {
      spdlog::warn("node files: inotify unavailable ({}): changes are seen by a poll every {} s",
                   std::strerror(errno), kPollEvery.count());
    } else {
      events_.assign(inotify_);
    }
  }
  if (inotify_ >= 0) {
    // Directories no longer needed lose their watch; new ones get one.
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (dirs.count(it->second)) {
        dirs.erase(it->second);
        ++it;
      } else {
        ::inotify_rm_watch(inotify_, it->first);
        it = watches_.erase(it);
      }
    }
    for (const std::string& dir : dirs) add_watch(dir);
    if (!reading_) read_events();
  }
  if (!polling_) poll();
  for (File& f : files_) check(f);
}

void NodeFileWatcher::add_watch(const std::string& dir) {
  const int wd = ::inotify_add_watch(inotify_, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR);
  if (wd < 0) {
    spdlog::warn("node files: cannot watch {} ({}): its changes are seen by a poll every {} s", dir,
                 std::strerror(errno), kPollEvery.count());
    return;
  }
  watches_[wd] = dir;
}

void NodeFileWatcher::read_events() {
  reading_ = true;
  events_.async_read_some(asio::buffer(buffer_), [this](const boost::system::error_code& ec, size_t n) {
    reading_ = false;
    if (ec || stopped_) return;  // (closed by stop)
    bool everything = false;
    std::set<std::string> dirs_swapped;                        // something renamed into them
    std::set<std::pair<std::string, std::string>> written;     // (dir, name) closed after writing
    for (size_t at = 0; at + sizeof(inotify_event) <= n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buffer_ + at);
      at += sizeof(inotify_event) + e->len;
      if (e->mask & IN_Q_OVERFLOW) {
        everything = true;
        continue;
      }
      auto w = watches_.find(e->wd);
      if (w == watches_.end()) continue;
      const std::string name = e->len ? std::string(e->name) : std::string();
      if (e->mask & IN_MOVED_TO) dirs_swapped.insert(w->second);
      if (e->mask & IN_CLOSE_WRITE) written.emplace(w->second, name);
    }
    for (File& f : files_) {
      if (everything || dirs_swapped.count(f.dir) || written.count({f.dir, f.name})) check(f);
    }
    read_events();
  });
}

void NodeFileWatcher::poll() {
  polling_ = true;
  poll_timer_.expires_after(kPollEvery);
  poll_timer_.async_wait([this](const boost::system::error_code& ec) {
    polling_ = false;
    if (ec || stopped_) return;
    for (File& f : files_) {
      const Identity now = identity_of(f.path);
      // Changed, and the same as a poll ago: no longer being written.
      if (now != f.read && now == f.polled) check(f);
      f.polled = now;
    }
    if (!files_.empty()) poll();
  });
}

NodeFileWatcher::Identity NodeFileWatcher::identity_of(const std::string& path) {
  struct stat st;
  Identity id;
  if (::stat(path.c_str(), &st) != 0) {
    id.error = errno;
    return id;
  }
  auto ns = [](const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; };
  return {st.st_dev, st.st_ino, st.st_size, ns(st.st_mtim), ns(st.st_ctim), 0};
}

void NodeFileWatcher::check(File& f) {
  const Identity now = identity_of(f.path);
  if (now == f.read) return;
  f.read = now;
  f.polled = now;
  on_change_(f.upstream, f.path);
}

}  // namespace turnpike::proxy
