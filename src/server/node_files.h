// Node files (upstream `nodes_file`): the main thread learns when one changes, so that the
// upstream's new nodes are swapped in as a reload of that upstream alone (Server::apply_node_file,
// proxy::Snapshot::with_node_file) without parsing the whole config again.
//
// How a change is seen:
//  * inotify on each file's directory: the file closed after writing (IN_CLOSE_WRITE), or any
//    name renamed into the directory (IN_MOVED_TO: `mv new nodes.txt`, and Kubernetes' ConfigMap
//    volumes, which swap a `..data` symlink). A file being written in place is not read before
//    its writer closes it, so a half-written list never becomes the nodes.
//  * a poll every two seconds, for file systems that send no events (NFS) and for events lost to
//    a queue overflow: a file whose identity (device, inode, size, times) differs from the one
//    last read, and has stayed the same for one poll, is read.
// Either way the callback is told at most once per change; reading and judging the file is its
// part. It runs on the io_context's thread.
#pragma once

#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace turnpike::proxy {

class NodeFileWatcher {
 public:
  using OnChange = std::function<void(const std::string& upstream, const std::string& path)>;
  NodeFileWatcher(boost::asio::io_context& ioc, OnChange on_change);
  ~NodeFileWatcher();
  NodeFileWatcher(const NodeFileWatcher&) = delete;
  NodeFileWatcher& operator=(const NodeFileWatcher&) = delete;

  // The files to watch from now on, as (upstream name, path) pairs; after a start or a reload.
  // Each file is then checked once against what it is now (the config was read a moment ago, and
  // a change in between would otherwise wait for the next one).
  void watch(std::vector<std::pair<std::string, std::string>> files);
  void stop();

 private:
  // What stat() says of a file: a change of content shows in one of these (a missing file is
  // all zero with `error` set).
  struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    int error = -1;  // -1: not looked at yet; else errno of stat (0: fine)
    bool operator==(const Identity&) const = default;
  };
  struct File {
    std::string upstream, path, dir, name;  // dir and name: the path's directory and last part
    Identity read;    // as it was when last reported
    Identity polled;  // as the last poll saw it
  };

  void read_events();
  void poll();
  static Identity identity_of(const std::string& path);  // stat() follows symlinks
  // Reports `f` when it is no longer the file last reported.
  void check(File& f);
  void add_watch(const std::string& dir);

  boost::asio::io_context& ioc_;
  OnChange on_change_;
  int inotify_ = -1;
  boost::asio::posix::stream_descriptor events_;
  boost::asio::steady_timer poll_timer_;
  std::vector<File> files_;
  std::map<int, std::string> watches_;  // inotify watch descriptor -> directory
  alignas(8) char buffer_[16384];
  bool reading_ = false, polling_ = false, stopped_ = false;
};

}  // namespace turnpike::proxy
