// respool/detail/redis_client.hpp — a minimal blocking Redis client on
// hiredis: RAII context, argv commands, pipelines, SIGPIPE-safe I/O, and
// respool errors. Not API; used by respool/transport/redis.hpp.
//
// Error mapping:
//   * connect failures (refused, unresolvable, timeout)   -> error(connection_failed)
//   * I/O failure or timeout during a command              -> error(connection_lost);
//     the context is freed at once (its protocol state is unknown)
//   * a deadline (set_deadline) that expired before or during a command
//                                                           -> error(connection_lost), same
//   * a Redis error reply is returned to the caller (check with is_error()).
//
// Works with hiredis 0.14 and 1.x (only API present in both is used; writes
// go through send(2) on the context's plain TCP or unix socket: no TLS).
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/errors.hpp"

namespace respool::detail::redis {

struct reply_deleter {
  void operator()(redisReply* reply) const noexcept {
    if (reply) freeReplyObject(reply);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

inline bool is_error(const redisReply* reply) noexcept { return reply && reply->type == REDIS_REPLY_ERROR; }
inline bool is_nil(const redisReply* reply) noexcept { return !reply || reply->type == REDIS_REPLY_NIL; }
inline std::string text_of(const redisReply* reply) {
  if (!reply || !reply->str) return {};
  return std::string(reply->str, reply->len);
}

// hiredis' sds functions with their C names: hiredis 0.14's sds.h declares
// them outside its extern "C" block, so a C++ caller would look for
// C++-mangled symbols the library does not have. (1.x changed sdsrange's
// signature.)
namespace sds_c {
extern "C" {
sds sdsempty(void);
void sdsfree(sds s);
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
int sdsrange(sds s, ssize_t start, ssize_t end);
#else
void sdsrange(sds s, int start, int end);
#endif
}
}  // namespace sds_c

inline struct timeval to_timeval(double seconds) noexcept {
  struct timeval tv {};
  if (seconds > 0) {
    double whole = std::floor(seconds);
    tv.tv_sec = static_cast<time_t>(whole);
    tv.tv_usec = static_cast<suseconds_t>((seconds - whole) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  }
  return tv;
}

// One blocking connection. Not thread-safe, except is_open() and
// interrupt(), which another thread may call. Not copyable or movable.
class client {
 public:
  using command_args = std::vector<std::string_view>;

  client() = default;
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  ~client() { close(); }

  // Opens a TCP connection to host:port. `connect_timeout` bounds the TCP
  // connect (nullopt: the OS default); `io_timeout` bounds every later read
  // and write (nullopt: none). TCP keepalive is enabled. `uri` (sanitised)
  // names the server in error messages. Throws error(connection_failed).
  // A connect that times out says "connect_timeout".
  void open(const std::string& host, int port, std::optional<double> connect_timeout,
            std::optional<double> io_timeout, std::string uri) {
    begin_open(std::move(uri));
    redisContext* ctx = connect_timeout
                            ? redisConnectWithTimeout(host.c_str(), port, to_timeval(*connect_timeout))
                            : redisConnect(host.c_str(), port);
    end_open(ctx, connect_timeout, io_timeout);
    redisEnableKeepAlive(ctx_);
  }

  // Opens a unix-domain socket connection to `path` (redis+socket://), with
  // the same timeouts and errors as open().
  void open_unix(const std::string& path, std::optional<double> connect_timeout,
                 std::optional<double> io_timeout, std::string uri) {
    begin_open(std::move(uri));
    redisContext* ctx = connect_timeout
                            ? redisConnectUnixWithTimeout(path.c_str(), to_timeval(*connect_timeout))
                            : redisConnectUnix(path.c_str());
    end_open(ctx, connect_timeout, io_timeout);
  }

  // With `on`, an error reply "READONLY ..." (the server was a master and is a
  // replica now: a Sentinel failover) closes the connection and throws
  // error(connection_lost), as redis-py's SentinelManagedConnection does, so
  // that the next connect asks the sentinels for the new master.
  void close_on_readonly(bool on) noexcept { close_on_readonly_ = on; }

  // Sets (or, with nullopt, removes) the read/write timeout of the socket:
  // the longest one read(2) or write(2) may wait without progress.
  void set_io_timeout(std::optional<double> seconds) {
    io_timeout_ = seconds;
    if (!ctx_) return;
    apply_timeout(seconds);
  }

  using clock = std::chrono::steady_clock;

  // Until clear_deadline(), every command must end by `deadline`: each read
  // and write waits at most the time left (and at most the io timeout); a
  // command started or still running past it throws error(connection_lost)
  // "<what> expired" and closes the connection. Used for the handshake
  // (connect_timeout) and for the restore of unacked messages in close().
  void set_deadline(clock::time_point deadline, std::string what) {
    deadline_ = deadline;
    deadline_name_ = std::move(what);
  }
  // Back to the io timeout alone.
  void clear_deadline() {
    if (!deadline_) return;
    deadline_.reset();
    deadline_binding_ = false;
    if (ctx_) apply_timeout(io_timeout_);
  }

  // True between open() and close(). Thread-safe.
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  redisContext* native_handle() const noexcept { return ctx_; }
  const std::string& uri() const noexcept { return uri_; }

  // Runs one command and returns its reply (which may be an error reply).
  // Throws error(connection_lost) on an I/O failure or timeout; the
  // connection is closed then.
  reply_ptr command(const command_args& args) {
    auto replies = pipeline({args});
    return std::move(replies.front());
  }
  reply_ptr command(std::initializer_list<std::string_view> args) { return command(command_args(args)); }

  // Sends every command in one write and reads every reply, in order.
  // Throws error(connection_lost) as command() does.
  std::vector<reply_ptr> pipeline(const std::vector<command_args>& commands) {
    if (!ctx_) throw error(errc::connection_lost, "not connected to " + uri_);
    if (deadline_) apply_deadline(commands.empty() ? std::string() : name_of(commands.front()));
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& args : commands) {
      argv.clear();
      lengths.clear();
      for (auto arg : args) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
      }
      if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lengths.data()) !=
          REDIS_OK)
        fail(name_of(args));
    }
    std::vector<reply_ptr> replies;
    replies.reserve(commands.size());
    write_all(commands.empty() ? std::string() : name_of(commands.front()));
    for (const auto& args : commands) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) {
        if (raw) freeReplyObject(raw);
        fail(name_of(args));
      }
      replies.emplace_back(static_cast<redisReply*>(raw));
    }
    if (close_on_readonly_)
      for (const auto& reply : replies)
        if (is_error(reply.get()) && text_of(reply.get()).compare(0, 8, "READONLY") == 0) {
          close();
          throw error(errc::connection_lost, "connection to " + uri_ +
                                                 " closed: the server is a read-only replica now (READONLY: "
                                                 "a failover); reconnect to reach the new master");
        }
    return replies;
  }

  // Frees the context: closes the socket and nothing else (hiredis'
  // redisFree() never writes to it). Idempotent.
  void close() noexcept {
    std::lock_guard<std::mutex> lock(close_mutex_);
    open_.store(false, std::memory_order_release);
    if (ctx_) redisFree(std::exchange(ctx_, nullptr));
  }

  // close() without taking any lock, for a forked child (a parent thread may
  // have held it at fork time). Closes the inherited descriptor only.
  void abandon() noexcept {
    open_.store(false, std::memory_order_release);
    if (ctx_) redisFree(std::exchange(ctx_, nullptr));
  }

  // For a forked child whose parent was using the context at the fork (its
  // buffers may be half-updated): neither free nor read it. The descriptor
  // is pointed at /dev/null, so the parent's socket is released in this
  // process and nothing can reach it; the context is leaked.
  void leak() noexcept {
    open_.store(false, std::memory_order_release);
    redisContext* ctx = std::exchange(ctx_, nullptr);
    if (!ctx || ctx->fd < 0) return;
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return;  // cannot neutralise: leave the descriptor open rather than risk a write
    ::dup2(null, ctx->fd);
    ::close(null);
  }

  // From another thread: make the command running on this connection fail
  // now, by shutdown(2) of its socket (that command then throws
  // error(connection_lost) and frees the context). Thread-safe.
  void interrupt() noexcept {
    std::lock_guard<std::mutex> lock(close_mutex_);
    if (ctx_ && ctx_->fd >= 0) {
      interrupted_.store(true, std::memory_order_release);
      ::shutdown(ctx_->fd, SHUT_RDWR);
    }
  }

 private:
  void begin_open(std::string uri) {
    close();
    uri_ = std::move(uri);
    deadline_.reset();
    interrupted_.store(false, std::memory_order_release);
  }

  void end_open(redisContext* ctx, std::optional<double> connect_timeout, std::optional<double> io_timeout) {
    if (!ctx) throw error(errc::connection_failed, "cannot connect to " + uri_ + ": out of memory");
    if (ctx->err) {
      const int saved_errno = errno;
      std::string reason = ctx->errstr;
      redisFree(ctx);
      if (connect_timeout && (saved_errno == ETIMEDOUT || saved_errno == EINPROGRESS ||
                              saved_errno == EAGAIN || reason.find("timed out") != std::string::npos))
        reason = "timed out (connect_timeout expired): " + reason;
      throw error(errc::connection_failed, "cannot connect to " + uri_ + ": " + reason);
    }
    {
      std::lock_guard<std::mutex> lock(close_mutex_);
      ctx_ = ctx;
      open_.store(true, std::memory_order_release);
    }
    // hiredis 0.14 applies the connect timeout to later I/O as well: replace it.
    set_io_timeout(io_timeout);
  }

  static std::string name_of(const command_args& args) {
    return args.empty() ? std::string() : std::string(args.front());
  }

  void apply_timeout(std::optional<double> seconds) {
    if (redisSetTimeout(ctx_, seconds ? to_timeval(*seconds) : timeval{0, 0}) != REDIS_OK) {
      std::string reason = ctx_->errstr;
      close();
      throw error(errc::connection_failed, "cannot configure the socket to " + uri_ + ": " + reason);
    }
    timeout_ = seconds.value_or(0);
  }

  // One send(2) of what hiredis formatted (`done`: all of it is out). Not
  // with hiredis' redisBufferWrite(): its write(2) raises SIGPIPE on a
  // socket the server has closed, which kills a process that does not
  // ignore it. send(2) with MSG_NOSIGNAL returns EPIPE instead, and costs
  // none of the three signal-mask system calls per command that blocking
  // SIGPIPE around a write(2) took. The buffer handling is hiredis' own
  // (redisBufferWrite in 0.14 and 1.x).
  bool flush_some(int& done) noexcept {
    if (sdslen(ctx_->obuf) > 0) {
      const ssize_t n = ::send(ctx_->fd, ctx_->obuf, sdslen(ctx_->obuf), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EINTR) {
          const int saved = errno;
          ctx_->err = REDIS_ERR_IO;
          std::snprintf(ctx_->errstr, sizeof ctx_->errstr, "%s", std::strerror(saved));
          errno = saved;
          return false;
        }
      } else if (static_cast<std::size_t>(n) == sdslen(ctx_->obuf)) {
        sds_c::sdsfree(ctx_->obuf);
        ctx_->obuf = sds_c::sdsempty();
        if (!ctx_->obuf) {
          ctx_->err = REDIS_ERR_OOM;
          std::snprintf(ctx_->errstr, sizeof ctx_->errstr, "%s", "Out of memory");
          return false;
        }
      } else if (n > 0) {
        sds_c::sdsrange(ctx_->obuf, static_cast<int>(n), -1);
      }
    }
    done = sdslen(ctx_->obuf) == 0;
    return true;
  }

  // Writes the pending commands. The socket's timeout bounds the whole write,
  // not each send(2): one that makes progress (a server that reads slowly)
  // does not restart the clock (Python's sendall() with a timeout, which
  // redis-py uses, does the same).
  void write_all(const std::string& command) {
    int done = 0;
    const auto start = clock::now();
    if (!flush_some(done)) fail(command);
    if (done || timeout_ <= 0) {
      while (!done)
        if (!flush_some(done)) fail(command);
      return;
    }
    const auto deadline =
        start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_));
    const double in_force = timeout_;
    while (!done) {
      const double left = std::chrono::duration<double>(deadline - clock::now()).count();
      if (left <= 0) fail(command, true);
      const timeval tv = to_timeval(left);
      ::setsockopt(ctx_->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (!flush_some(done)) fail(command);
    }
    const timeval tv = to_timeval(in_force);
    ::setsockopt(ctx_->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  // The time left before the deadline becomes the socket's timeout (when
  // shorter than the io timeout); none left: fail now.
  void apply_deadline(const std::string& command) {
    const double left = std::chrono::duration<double>(*deadline_ - clock::now()).count();
    if (left <= 0) {
      close();
      throw error(errc::connection_lost,
                  "connection to " + uri_ + " closed before " + command + ": " + deadline_name_ + " expired");
    }
    deadline_binding_ = !io_timeout_ || left <= *io_timeout_;
    apply_timeout(io_timeout_ ? std::min(*io_timeout_, left) : left);
  }

  [[noreturn]] void fail(const std::string& command, bool timed_out = false) {
    int saved_errno = errno;
    std::string reason = ctx_ && ctx_->errstr[0] ? ctx_->errstr : "I/O error";
#ifdef REDIS_ERR_TIMEOUT
    timed_out = timed_out || (ctx_ && ctx_->err == REDIS_ERR_TIMEOUT);
#endif
    if (ctx_ && ctx_->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK))
      timed_out = true;
    if (ctx_ && ctx_->err == REDIS_ERR_EOF) reason = "server closed the connection";
    const bool interrupted = interrupted_.exchange(false, std::memory_order_acq_rel);
    std::string why = reason;
    if (interrupted)
      why = "interrupted: the connection was closed from another thread";
    else if (timed_out)
      // The limit that was in force names the timeout (a socket timer may
      // fire a little before the deadline it was set from).
      why = deadline_ && (deadline_binding_ || clock::now() >= *deadline_)
                ? "timed out (" + deadline_name_ + " expired)"
                : std::string("timed out (socket_timeout)");
    close();
    throw error(errc::connection_lost, "connection to " + uri_ + " lost during " + command + ": " + why);
  }

  redisContext* ctx_ = nullptr;
  std::string uri_;
  std::optional<double> io_timeout_;           // seconds; nullopt: none
  double timeout_ = 0;                         // the socket's timeout in force (seconds; 0: none)
  std::optional<clock::time_point> deadline_;  // set_deadline()
  std::string deadline_name_;
  bool deadline_binding_ = false;  // the deadline, not io_timeout_, set the socket's timeout in force
  bool close_on_readonly_ = false;
  std::mutex close_mutex_;  // guards ctx_ against interrupt() from another thread
  std::atomic<bool> open_{false};
  std::atomic<bool> interrupted_{false};  // interrupt() shut the socket down
};

}  // namespace respool::detail::redis
