// Helpers for stall_test.cpp: real faults on loopback.
//   * paused_process — SIGSTOP a server (Redis), SIGCONT it again whatever
//     happens: on destruction, and, through a helper child process, even if
//     the test process dies.
//   * stall_server — a TCP server on 127.0.0.1 that either swallows
//     connections (accepts, never reads, never answers: a black hole), or
//     forwards them to a real broker until freeze() (then it neither reads
//     nor writes: the broker seems to stall mid-session) and again after thaw().
// No sleeps: everything that waits polls a condition (with a deadline) or
// waits on a condition variable.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace respool_test {

using steady = std::chrono::steady_clock;

// Seconds since construction.
struct stopwatch {
  steady::time_point start = steady::now();
  double seconds() const { return std::chrono::duration<double>(steady::now() - start).count(); }
};

// Polls `done()` (yielding in between) until it is true or `limit` passed.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = steady::now() + limit;
  while (!done()) {
    if (steady::now() >= deadline) return done();
    std::this_thread::yield();
  }
  return true;
}

// The process state letter of /proc/<pid>/stat ('T' = stopped), or 0.
inline char process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return 0;
  return text[paren + 2];
}

// The pid in a pid file, or 0.
inline pid_t pid_from_file(const char* path) {
  std::ifstream in(path);
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid > 0 ? pid : 0);
}

// SIGSTOP `pid` now, SIGCONT it on resume() or destruction. A helper child
// process holds the read end of a pipe whose write end only this object
// holds: when the pipe closes — resume(), destruction, or the death of the
// test process (a failed REQUIRE, a crash) — the helper sends SIGCONT.
class paused_process {
 public:
  explicit paused_process(pid_t pid) : pid_(pid) {
    REQUIRE(pid_ > 0);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    helper_ = ::fork();
    REQUIRE(helper_ >= 0);
    if (helper_ == 0) {  // only async-signal-safe calls from here
      ::close(fds[1]);
      char c;
      while (::read(fds[0], &c, 1) < 0 && errno == EINTR) {
      }
      ::kill(pid_, SIGCONT);
      ::_exit(0);
    }
    ::close(fds[0]);
    write_end_ = fds[1];
    ::fcntl(write_end_, F_SETFD, FD_CLOEXEC);
    REQUIRE(::kill(pid_, SIGSTOP) == 0);
    REQUIRE(eventually([&] { return process_state(pid_) == 'T'; }));
  }
  paused_process(const paused_process&) = delete;
  paused_process& operator=(const paused_process&) = delete;
  ~paused_process() { resume(); }

  void resume() noexcept {
    if (write_end_ < 0) return;
    ::kill(pid_, SIGCONT);
    ::close(write_end_);  // the helper sends SIGCONT too, and exits
    write_end_ = -1;
    int status = 0;
    while (::waitpid(helper_, &status, 0) < 0 && errno == EINTR) {
    }
  }

 private:
  pid_t pid_;
  pid_t helper_ = -1;
  int write_end_ = -1;
};

// A TCP server on 127.0.0.1 (see the top of this file).
class stall_server {
 public:
  // upstream_port == 0: a black hole. Otherwise a proxy to 127.0.0.1:upstream_port.
  explicit stall_server(std::uint16_t upstream_port = 0) : upstream_(upstream_port) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_ >= 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // A small receive buffer (inherited by accepted sockets): a client
    // writing to a server that does not read blocks sooner.
    int small = 64 * 1024;
    ::setsockopt(listen_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_, 64) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    REQUIRE(::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) == 0);
    thread_ = std::thread([this] { run(); });
  }
  stall_server(const stall_server&) = delete;
  stall_server& operator=(const stall_server&) = delete;
  ~stall_server() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    poke();
    thread_.join();
    for (auto& p : pairs_) close_pair(p);
    ::close(listen_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  std::uint16_t port() const { return port_; }

  // Stop forwarding (proxy) in both directions; returns once the server's
  // thread has stopped reading.
  void freeze() { set_frozen(true); }
  // Forward again.
  void thaw() { set_frozen(false); }

  // Bytes clients sent that the server has not read (FIONREAD, summed over
  // the accepted connections): > 0 once a client's request sits unanswered.
  std::size_t pending() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t total = 0;
    for (auto& p : pairs_) {
      int n = 0;
      if (p.client >= 0 && ::ioctl(p.client, FIONREAD, &n) == 0 && n > 0)
        total += static_cast<std::size_t>(n);
    }
    return total;
  }

  // Connections accepted so far.
  std::size_t accepted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return accepted_;
  }

 private:
  struct pair {
    int client = -1;
    int upstream = -1;
  };

  void poke() {
    char c = 1;
    (void)!::write(wake_[1], &c, 1);
  }

  void set_frozen(bool frozen) {
    std::unique_lock<std::mutex> lock(mutex_);
    frozen_ = frozen;
    ++requested_;
    poke();
    seen_cv_.wait(lock, [&] { return seen_ == requested_; });
  }

  static void close_pair(pair& p) {
    if (p.client >= 0) ::close(p.client);
    if (p.upstream >= 0) ::close(p.upstream);
    p.client = p.upstream = -1;
  }

  static bool send_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
      ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  int connect_upstream() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(upstream_);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }

  void run() {
    std::vector<char> buffer(64 * 1024);
    for (;;) {
      std::vector<pollfd> fds;
      bool frozen;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
        frozen = frozen_;
        if (seen_ != requested_) {
          seen_ = requested_;
          seen_cv_.notify_all();
        }
        fds.push_back({wake_[0], POLLIN, 0});
        fds.push_back({listen_, POLLIN, 0});
        if (upstream_ != 0 && !frozen) {
          for (auto& p : pairs_) {
            fds.push_back({p.client, POLLIN, 0});
            fds.push_back({p.upstream, POLLIN, 0});
          }
        }
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents) {
        char drain[64];
        while (::read(wake_[0], drain, sizeof drain) > 0) {
        }
        continue;  // rebuild the set (frozen, stop)
      }
      if (fds[1].revents & POLLIN) {
        int c = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          pair p;
          p.client = c;
          if (upstream_ != 0) {
            p.upstream = connect_upstream();
            if (p.upstream < 0) {
              ::close(c);
              continue;
            }
            int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          }
          std::lock_guard<std::mutex> lock(mutex_);
          pairs_.push_back(p);
          ++accepted_;
        }
        continue;
      }
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        // Only this thread closes the sockets: the I/O runs without the lock
        // (a blocking send must not hold up freeze() or pending()).
        pair found;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          for (auto& p : pairs_)
            if (p.client == fds[i].fd || p.upstream == fds[i].fd) found = p;
        }
        if (found.client < 0) break;
        const bool from_client = found.client == fds[i].fd;
        ssize_t n = ::recv(fds[i].fd, buffer.data(), buffer.size(), 0);
        const int to = from_client ? found.upstream : found.client;
        if (n <= 0 || !send_all(to, buffer.data(), static_cast<std::size_t>(n))) {
          std::lock_guard<std::mutex> lock(mutex_);
          for (auto it = pairs_.begin(); it != pairs_.end(); ++it) {
            if (it->client != found.client) continue;
            close_pair(*it);
            pairs_.erase(it);
            break;
          }
        }
        break;  // rebuild the set (it may have changed)
      }
    }
  }

  std::uint16_t upstream_;
  std::uint16_t port_ = 0;
  int listen_ = -1;
  int wake_[2] = {-1, -1};
  std::mutex mutex_;
  std::condition_variable seen_cv_;
  std::vector<pair> pairs_;
  std::size_t accepted_ = 0;
  bool frozen_ = false;
  bool stop_ = false;
  std::uint64_t requested_ = 0, seen_ = 0;
  std::thread thread_;
};

}  // namespace respool_test
