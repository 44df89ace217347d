// respool/transport/amqp.hpp — the amqp:// transport: AMQP 0-9-1 on rabbitmq-c,
// wire-compatible with kombu's py-amqp transport.
//
// Including this header (and linking respool::amqp, i.e. -lrabbitmq) registers
// "amqp" (kombu's "pyamqp" alias included, see ConnectionParams) and "amqps"
// (TLS through rabbitmq-c's OpenSSL socket) with transport::register_transport
// at static initialisation.
//
// URL: amqp://USER:PASSWORD@HOST:PORT/VHOST?OPTIONS (kombu's format; defaults
// guest/guest, localhost, 5672 (amqps 5671), vhost "/"). Query options:
//   connect_timeout=S   seconds for the whole connect(): TCP (and TLS)
//                       connect, login handshake, channel set-up; default 5
//                       (kombu's); 0 = no limit
//   heartbeat=S         heartbeat interval negotiated with the broker;
//                       default 0 = off (kombu's default). rabbitmq-c only
//                       services heartbeats inside API calls (publish, get,
//                       declare, alive()...): a connection idle in a pool for
//                       longer than about 2*S is closed by the broker and is
//                       then found dead (and replaced) by alive() on acquire.
//   read_timeout=S      upper bound on every wait for the broker (RPC replies
//                       and the request they answer, publisher confirms, a
//                       message's content); default 10
//                       (amqp_options::default_read_timeout); 0 = no limit.
//                       When it expires the connection is closed and the
//                       operation throws error(connection_lost).
//   write_timeout=S     upper bound on sending a publish (all its frames), an
//                       ack or a reply to the broker, when the broker stops
//                       reading (flow control, a full socket buffer); default
//                       10 (amqp_options::default_write_timeout); 0 = no
//                       limit. On expiry the socket is shut down (shutdown(2)),
//                       the connection closed and the operation throws
//                       error(connection_lost).
//   frame_max=N         largest frame to negotiate (default 131072)
//   channel_max=N       most channels to negotiate (default 0: the broker's)
//   ssl=1               TLS: ConnectionParams reads amqp://...?ssl=1 (or any
//                       ssl_* option) as amqps:// (see connection_params.hpp)
//   confirm_publish=0|1 publisher confirms (default 1): publish() waits for
//                       the broker's ack, so a publish that returns is with
//                       the broker (persistent messages: on its disk). 0 is
//                       kombu's default: publish() returns once the frame is
//                       written, faster, and a broker that dies right then
//                       loses the message without an error.
//   ssl_ca_certs=FILE, ssl_certfile=FILE, ssl_keyfile=FILE,
//   ssl_cert_reqs=CERT_REQUIRED|CERT_OPTIONAL|CERT_NONE (amqps only; kombu's
//                       names). Peer and hostname verification are on unless
//                       ssl_cert_reqs is CERT_NONE.
//
// Semantics (kombu's pyamqp transport):
//   * exchanges: durable/auto_delete as given (kombu defaults true/false),
//     not internal, no arguments; queues: durable, not exclusive, not
//     auto-delete, no arguments (kombu Queue defaults). The default exchange
//     "" is never declared and queues are never bound to it (it routes by
//     queue name already).
//   * publish: basic.publish with mandatory=false (a message no queue
//     receives is dropped, as AMQP says) and properties content_type,
//     content_encoding, headers (always present, possibly empty, as kombu
//     sends them), delivery_mode, priority. The channel is in publisher-confirm
//     mode: publish() returns once the broker has acknowledged the message and
//     throws otherwise, never loses a message silently.
//   * get: basic.get; no_ack=false messages are acknowledged with Message::ack().
//   * errors: the broker closing the channel (PRECONDITION_FAILED, NOT_FOUND,
//     ACCESS_REFUSED...) throws amqp_error with code errc::channel_error, the
//     broker's reply text and code; the channel is reopened, the connection
//     stays usable. A lost connection throws errc::connection_lost and the
//     connection reports connected() == false until connect() is called again.
//
// Thread safety: a connection and its channel are used by one thread at a
// time (the lease holder). Every operation takes the connection's internal
// mutex, so Message::ack() from another thread is safe too. close() from
// another thread first interrupts an operation in progress (shutdown(2) of
// the socket: it throws error(connection_lost)), so it returns promptly.
//
// Deadlines: with the default options no call blocks without bound on a
// broker that stalls, stops reading or vanishes: connect() takes at most
// connect_timeout, an RPC (declare, bind, get, purge...) read_timeout, a
// publish write_timeout (+ read_timeout for its confirm), an ack
// write_timeout, close() min(connect_timeout, 5 s). rabbitmq-c sends a
// publish and an ack with no deadline, so those are bounded by a watchdog
// thread (one per process, started on first use) that shuts the socket down
// when an operation outlives its deadline. With heartbeats on (rabbitmq-c
// may send one, with no deadline, inside any wait) every operation is also
// bounded by read_timeout + write_timeout.
//
// Wire layout, failure table and kombu interop: docs/transports.md (amqp://).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "respool/connection_params.hpp"
#include "respool/detail/amqp_c.hpp"
#include "respool/detail/amqp_table.hpp"
#include "respool/detail/globals.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"
#include "respool/transport.hpp"

namespace respool::transport {

// What the amqp transport throws: a respool::error whose code is
// errc::connection_failed, errc::connection_lost, errc::channel_error or
// errc::encoding_error, plus the AMQP reply code and text when the broker
// sent them (e.g. 406 "PRECONDITION_FAILED - inequivalent arg 'type' ...").
// what() names the sanitised URI (never the password) and the operation.
class amqp_error : public error {
 public:
  amqp_error(errc code, const std::string& what, int reply_code = 0, std::string reply_text = {})
      : error(code, what), reply_code_(reply_code), reply_text_(std::move(reply_text)) {}
  // The AMQP reply code (403, 404, 406, 530, 320...), or 0 if the broker sent none.
  int reply_code() const noexcept { return reply_code_; }
  // The broker's reply text ("NOT_FOUND - no queue 'x' in vhost '/'"), or "".
  const std::string& reply_text() const noexcept { return reply_text_; }

 private:
  int reply_code_;
  std::string reply_text_;
};

// The transport's settings, read from a URL's query options (see the top of
// this file). Throws error(errc::invalid_url) for a malformed value.
struct amqp_options {
  // The defaults (docs/transports.md, "Timeouts"). kombu/py-amqp wait for
  // ever for a reply or a write; a production service wants an error
  // instead. 10 s is far above a healthy broker's answer (a confirm of a
  // persistent message waits for its fsync: milliseconds) and short enough
  // for a caller to fail over or report.
  static constexpr std::chrono::seconds default_connect_timeout{5};  // kombu's
  static constexpr std::chrono::seconds default_read_timeout{10};
  static constexpr std::chrono::seconds default_write_timeout{10};
  // close() waits at most this long (and at most connect_timeout) for the broker's replies.
  static constexpr std::chrono::seconds max_close_timeout{5};

  std::chrono::microseconds connect_timeout = default_connect_timeout;  // zero = no limit
  std::optional<std::chrono::microseconds> read_timeout =
      std::chrono::microseconds(default_read_timeout);  // none = no limit
  std::optional<std::chrono::microseconds> write_timeout =
      std::chrono::microseconds(default_write_timeout);  // none = no limit
  int heartbeat = 0;                                     // seconds; 0 = off
  int frame_max = AMQP_DEFAULT_FRAME_SIZE;
  int channel_max = 0;  // negotiated at login; 0 = the broker's limit
  bool tls = false;     // amqps:// (also amqp://?ssl=1, which ConnectionParams turns into amqps)
  std::string ssl_ca_certs, ssl_certfile, ssl_keyfile;
  bool ssl_verify = true;       // peer and hostname verification
  bool confirm_publish = true;  // wait for the broker's ack of every publish

  static amqp_options from(const ConnectionParams& params) {
    amqp_options o;
    o.tls = params.transport() == "amqps";
    if (auto v = params.option("connect_timeout")) o.connect_timeout = seconds(*v, "connect_timeout");
    if (auto v = params.option("read_timeout")) {
      auto t = seconds(*v, "read_timeout");
      o.read_timeout = t.count() > 0 ? std::optional<std::chrono::microseconds>(t) : std::nullopt;
    }
    if (auto v = params.option("write_timeout")) {
      auto t = seconds(*v, "write_timeout");
      o.write_timeout = t.count() > 0 ? std::optional<std::chrono::microseconds>(t) : std::nullopt;
    }
    if (auto v = params.option("heartbeat")) o.heartbeat = integer(*v, "heartbeat", 0, 65535);
    if (auto v = params.option("frame_max")) o.frame_max = integer(*v, "frame_max", 4096, 0x7fffffff);
    if (auto v = params.option("channel_max")) o.channel_max = integer(*v, "channel_max", 0, 65535);
    if (auto v = params.option("confirm_publish")) {
      if (*v == "1" || *v == "true" || *v == "True" || *v == "yes") {
        o.confirm_publish = true;
      } else if (*v == "0" || *v == "false" || *v == "False" || *v == "no") {
        o.confirm_publish = false;
      } else {
        throw error(errc::invalid_url, "amqp: option confirm_publish must be 1/true/yes or 0/false/no");
      }
    }
    if (auto v = params.option("ssl_ca_certs")) o.ssl_ca_certs = *v;
    if (auto v = params.option("ssl_certfile")) o.ssl_certfile = *v;
    if (auto v = params.option("ssl_keyfile")) o.ssl_keyfile = *v;
    if (auto v = params.option("ssl_cert_reqs")) {
      if (*v == "CERT_NONE" || *v == "none") {
        o.ssl_verify = false;
      } else if (*v != "CERT_REQUIRED" && *v != "required" && *v != "CERT_OPTIONAL" && *v != "optional") {
        throw error(errc::invalid_url,
                    "amqp: option ssl_cert_reqs must be CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE");
      }
    }
    return o;
  }

  // How long close() may take: connect_timeout, at most max_close_timeout.
  std::chrono::microseconds close_timeout() const {
    std::chrono::microseconds limit = connect_timeout;
    if (limit.count() <= 0 || limit > max_close_timeout) limit = max_close_timeout;
    return limit;
  }

 private:
  static std::chrono::microseconds seconds(const std::string& text, const char* name) {
    double value = 0;
    std::size_t used = 0;
    try {
      value = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || !std::isfinite(value) || value < 0 || value > 1e9)
      throw error(errc::invalid_url, std::string("amqp: option ") + name + " must be a number of seconds");
    return std::chrono::microseconds(static_cast<std::int64_t>(value * 1e6));
  }
  static int integer(const std::string& text, const char* name, long low, long high) {
    long value = 0;
    std::size_t used = 0;
    try {
      value = std::stol(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || value < low || value > high)
      throw error(errc::invalid_url, std::string("amqp: option ") + name + " must be an integer from " +
                                         std::to_string(low) + " to " + std::to_string(high));
    return static_cast<int>(value);
  }
};

}  // namespace respool::transport

namespace respool::detail::amqp {

using transport::amqp_error;
using transport::amqp_options;

inline timeval to_timeval(std::chrono::microseconds d) noexcept {
  if (d.count() < 0) d = std::chrono::microseconds(0);
  timeval tv;
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(d.count() % 1000000);
  return tv;
}

inline std::string in_quotes(std::string_view name) { return "'" + std::string(name) + "'"; }

// Why a socket was shut down under an operation (session::interrupt).
enum class interruption : int { none = 0, write_timeout, read_timeout, closed };

// One thread per process that shuts down the socket of an operation that
// outlives its deadline. rabbitmq-c sends a publish's frames and an ack with
// no deadline (amqp_basic_publish, amqp_basic_ack, amqp_send_method poll(2)
// for ever on a full socket buffer) and reads a message's content frames
// likewise, and its exported API offers no way to bound them; shutdown(2)
// from another thread makes the blocked call fail at once. Started on first
// use; a forked child makes its own (the parent's thread does not exist there).
class watchdog {
 public:
  using clock = std::chrono::steady_clock;

  class target {
   public:
    // Called on the watchdog's thread, with its lock held: must be quick and
    // must not arm or disarm.
    virtual void expire(interruption why) noexcept = 0;

   protected:
    ~target() = default;
  };

  using key = std::pair<clock::time_point, std::uint64_t>;

  // The watchdog of this process.
  static watchdog& instance() {
    static std::atomic<watchdog*> current{nullptr};
    respool::detail::ensure_atfork_registered();
    const std::uint32_t generation = respool::detail::fork_generation();
    watchdog* w = current.load(std::memory_order_acquire);
    while (!w || w->generation_ != generation) {
      // A parent's watchdog (its thread is gone, its mutex maybe held) is leaked, never touched.
      auto* fresh = new watchdog(generation);
      if (current.compare_exchange_strong(w, fresh, std::memory_order_acq_rel)) return *fresh;
      delete fresh;  // another thread installed one: check it
    }
    return *w;
  }

  // `t->expire(why)` at `deadline`, unless disarmed first. If no thread can
  // be started the operation is simply not bounded (and `false` returned).
  bool arm(clock::time_point deadline, target* t, interruption why, key& out) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!running_) {
      try {
        std::thread([this] { run(); }).detach();  // never joined: the watchdog lives as long as the process
        running_ = true;
      } catch (...) {
        return false;
      }
    }
    out = key{deadline, ++next_id_};
    try {
      auto it = entries_.emplace(out, entry{t, why}).first;
      if (it == entries_.begin()) wake_.notify_one();
    } catch (...) {
      return false;
    }
    return true;
  }

  // Once disarm() returns, the target's expire() is not running and will not run.
  void disarm(const key& k) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.erase(k);
  }

 private:
  struct entry {
    target* t;
    interruption why;
  };

  explicit watchdog(std::uint32_t generation) : generation_(generation) {}

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (entries_.empty()) {
        wake_.wait(lock);
        continue;
      }
      auto first = entries_.begin();
      // A copy: wait_until reads its deadline again after waking, and the
      // entry may have been disarmed (erased) meanwhile.
      const clock::time_point when = first->first.first;
      if (clock::now() < when) {
        wake_.wait_until(lock, when);
        continue;
      }
      first->second.t->expire(first->second.why);
      entries_.erase(first);
    }
  }

  const std::uint32_t generation_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<key, entry> entries_;
  std::uint64_t next_id_ = 0;
  bool running_ = false;
};

// Arms the watchdog for the scope of one blocking rabbitmq-c call (no-op
// without a limit).
class deadline_scope {
 public:
  deadline_scope(watchdog::target& t, std::optional<std::chrono::microseconds> limit,
                 interruption why) noexcept {
    if (!limit) return;
    watchdog* found = nullptr;
    try {
      found = &watchdog::instance();
    } catch (...) {
      return;  // out of memory: unbounded rather than aborted
    }
    watchdog& w = *found;
    if (w.arm(watchdog::clock::now() + *limit, &t, why, key_)) dog_ = &w;
  }
  deadline_scope(const deadline_scope&) = delete;
  deadline_scope& operator=(const deadline_scope&) = delete;
  ~deadline_scope() {
    if (dog_) dog_->disarm(key_);
  }

 private:
  watchdog* dog_ = nullptr;
  watchdog::key key_{};
};

// One AMQP connection (rabbitmq-c state) with its channel 1 in confirm mode.
// Shared by amqp_connection, its channel and (weakly) by the ack callbacks of
// the messages it delivered. All members but abandon() are called with
// `mutex` held.
class session final : public std::enable_shared_from_this<session>, private watchdog::target {
 public:
  static constexpr amqp_channel_t channel_id = 1;

  session(std::string uri, amqp_options options) : uri_(std::move(uri)), options_(std::move(options)) {}
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session() {
    if (state_ && respool::detail::process_token() != owner_) abandon_unlocked();
    drop();
  }

  std::mutex mutex;

  // From any thread (without `mutex`): make the operation in progress fail
  // now, by shutdown(2) of the socket; it throws error(connection_lost)
  // naming `why`. Never in a forked child for the parent's connection (a
  // shutdown would end the parent's session too).
  void interrupt(interruption why = interruption::closed) noexcept {
    // Checked before the lock: in a forked child a parent thread may have held it.
    if (fd_owner_.load(std::memory_order_acquire) != respool::detail::process_token()) return;
    std::lock_guard<std::mutex> lock(fd_mutex_);
    if (fd_ < 0) return;
    interrupted_.store(static_cast<int>(why), std::memory_order_release);
    ::shutdown(fd_, SHUT_RDWR);
  }

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  // False in a forked child for a connection made by the parent.
  bool owned_by_this_process() const noexcept {
    return owner_ == 0 || owner_ == respool::detail::process_token();
  }
  const std::string& uri() const noexcept { return uri_; }
  int heartbeat() const noexcept { return state_ ? amqp_get_heartbeat(state_) : 0; }

  // Open the socket, log in, open channel 1 and put it in confirm mode.
  // The whole of it (TCP, TLS, login, channel.open, confirm.select) ends
  // within connect_timeout (host name resolution excepted: the resolver's own).
  void connect(const ConnectionParams& params) {
    if (state_) return;
    using clock = std::chrono::steady_clock;
    const bool bounded = options_.connect_timeout.count() > 0;
    const auto deadline = clock::now() + options_.connect_timeout;
    auto left = [&] {
      auto d = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
      return to_timeval(std::max(d, std::chrono::microseconds(1)));
    };
    state_ = amqp_new_connection();
    if (!state_)
      throw amqp_error(errc::connection_failed, "amqp: cannot connect to " + uri_ + ": out of memory");
    owner_ = respool::detail::process_token();
    interrupted_.store(0, std::memory_order_release);
    try {
      amqp_socket_t* socket = options_.tls ? tls_socket() : amqp_tcp_socket_new(state_);
      if (!socket) fail_connect("cannot create a socket");
      timeval connect_tv = to_timeval(options_.connect_timeout);
      timeval* connect_timeout = bounded ? &connect_tv : nullptr;
      errno = 0;
      int status =
          amqp_socket_open_noblock(socket, params.hostname().c_str(), params.port(), connect_timeout);
      if (status != AMQP_STATUS_OK) fail_connect(describe_open_failure(status, errno), 0, {}, status);
      {
        std::lock_guard<std::mutex> lock(fd_mutex_);
        fd_ = amqp_get_sockfd(state_);
        fd_owner_.store(owner_, std::memory_order_release);
      }
      timeval handshake_tv = left();
      amqp_set_handshake_timeout(state_, bounded ? &handshake_tv : nullptr);

      // Client properties, merged by rabbitmq-c into its own (which already
      // announce authentication_failure_close). connection.blocked lets the
      // broker tell us when it blocks publishers (see blocked()).
      amqp_table_entry_t capabilities[1];
      capabilities[0].key = amqp_cstring_bytes("connection.blocked");
      capabilities[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
      capabilities[0].value.value.boolean = 1;
      amqp_table_entry_t entries[3];
      entries[0].key = amqp_cstring_bytes("product");
      entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[0].value.value.bytes = amqp_cstring_bytes("respool");
      entries[1].key = amqp_cstring_bytes("platform");
      entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[1].value.value.bytes = amqp_cstring_bytes("C++ (rabbitmq-c)");
      entries[2].key = amqp_cstring_bytes("capabilities");
      entries[2].value.kind = AMQP_FIELD_KIND_TABLE;
      entries[2].value.value.table = amqp_table_t{1, capabilities};
      amqp_table_t properties{3, entries};
      amqp_rpc_reply_t reply = amqp_login_with_properties(
          state_, params.virtual_host().c_str(), options_.channel_max, options_.frame_max, options_.heartbeat,
          &properties, AMQP_SASL_METHOD_PLAIN, params.userid().c_str(), params.password().c_str());
      if (reply.reply_type != AMQP_RESPONSE_NORMAL) login_failed(reply);

      // channel.open and confirm.select: what is left of connect_timeout.
      timeval rpc_tv = left();
      amqp_set_rpc_timeout(state_, bounded ? &rpc_tv : nullptr);
      rpc_limit_ = "connect_timeout";
      open_channel();
      rpc_limit_ = "read_timeout";
      set_rpc_timeout(options_.read_timeout);
    } catch (const amqp_error& e) {
      rpc_limit_ = "read_timeout";
      drop();
      if (e.code() == errc::connection_failed) throw;
      // what() ends in ": <the code's message>" ("connection lost"): say it once.
      std::string text = e.what();
      const std::string suffix = ": " + e.code().message();
      if (text.size() >= suffix.size() &&
          text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0)
        text.resize(text.size() - suffix.size());
      throw amqp_error(errc::connection_failed, text, e.reply_code(), e.reply_text());
    } catch (...) {
      rpc_limit_ = "read_timeout";
      drop();
      throw;
    }
    open_.store(true, std::memory_order_release);
  }

  // Orderly close: channel.close, connection.close (both within
  // options.close_timeout(): connect_timeout, 5 s at most), then free
  // everything. Never throws. In a forked child it abandons instead.
  void close() noexcept {
    if (!state_) return;
    if (respool::detail::process_token() != owner_) {
      abandon_unlocked();
      return;
    }
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + options_.close_timeout();
    rpc_limit_ = "read_timeout";
    timeval tv = to_timeval(options_.close_timeout());
    amqp_set_rpc_timeout(state_, &tv);
    amqp_rpc_reply_t reply = amqp_channel_close(state_, channel_id, AMQP_REPLY_SUCCESS);
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
    if (left.count() > 0 &&
        (reply.reply_type == AMQP_RESPONSE_NORMAL || (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                                                      reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD))) {
      tv = to_timeval(left);
      amqp_set_rpc_timeout(state_, &tv);
      amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    }
    drop();
  }

  // Forget the connection without writing a byte to its socket: the socket's
  // file descriptor is pointed at /dev/null before rabbitmq-c frees its state
  // (so not even a TLS close_notify reaches the broker), then closed. Used in
  // forked children: the parent's session is untouched. Never throws, and in
  // a forked child never waits for `mutex` (a parent thread may have held it
  // at the fork): if it is held, the rabbitmq-c state is leaked instead of
  // freed.
  void abandon() noexcept {
    if (respool::detail::process_token() != owner_) {
      std::unique_lock<std::mutex> lock(mutex, std::try_to_lock);
      if (!lock.owns_lock()) {
        neutralise_socket();
        state_ = nullptr;  // may be mid-operation in a thread that no longer exists: leak it
        open_.store(false, std::memory_order_release);
        return;
      }
      abandon_unlocked();
      return;
    }
    std::lock_guard<std::mutex> lock(mutex);
    abandon_unlocked();
  }

  // A cheap liveness check: reads whatever the broker sent without waiting
  // (heartbeats, connection.close, an EOF...), sends a heartbeat if one is due.
  bool alive() noexcept {
    if (!state_ || respool::detail::process_token() != owner_) return false;
    try {
      // A due heartbeat is sent with no deadline by rabbitmq-c.
      deadline_scope bound(*this, amqp_get_heartbeat(state_) > 0 ? options_.write_timeout : std::nullopt,
                           interruption::write_timeout);
      for (int i = 0; i < 256 && state_; ++i) {
        amqp_frame_t frame;
        timeval zero{0, 0};
        int status = amqp_simple_wait_frame_noblock(state_, &frame, &zero);
        if (status == AMQP_STATUS_TIMEOUT) break;
        if (status != AMQP_STATUS_OK) {
          drop();
          return false;
        }
        try {
          background_frame(frame, "liveness check");
        } catch (const amqp_error& e) {
          if (e.code() != errc::channel_error) return false;
        }
      }
      release_buffers();
    } catch (...) {
      drop();
      return false;
    }
    return state_ != nullptr;
  }

  void ensure_open() const {
    if (!state_)
      throw amqp_error(
          errc::connection_lost,
          "amqp: " + uri_ + ": not connected (connect() first; the connection may have been lost)");
    if (respool::detail::process_token() != owner_)
      throw amqp_error(errc::connection_lost,
                       "amqp: " + uri_ + ": connection inherited from the parent process");
  }

  // Throw for a failed RPC: channel.close (reopens the channel) ->
  // channel_error; connection.close -> connection_lost (CONNECTION_FORCED,
  // INTERNAL_ERROR) or channel_error (a hard error caused by the command);
  // library errors -> connection_lost. Anything but a channel error drops
  // the connection.
  [[noreturn]] void fail(const amqp_rpc_reply_t& reply, const std::string& what) {
    switch (reply.reply_type) {
      case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
          channel_closed(static_cast<const amqp_channel_close_t*>(reply.reply.decoded), what);
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
          connection_closed(static_cast<const amqp_connection_close_t*>(reply.reply.decoded), what);
        drop();
        throw amqp_error(errc::connection_lost, prefix(what) + "unexpected reply from the broker");
      case AMQP_RESPONSE_LIBRARY_EXCEPTION: {
        std::string text = lost_text(reply.library_error);
        drop();
        throw amqp_error(errc::connection_lost, prefix(what) + text);
      }
      case AMQP_RESPONSE_NONE:
      default:
        drop();
        throw amqp_error(errc::connection_lost, prefix(what) + "connection lost (no reply)");
    }
  }

  void check(const std::string& what) {
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state_);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail(reply, what);
  }

  void release_buffers() noexcept {
    if (state_) amqp_maybe_release_buffers(state_);
  }

  // ---- channel operations (mutex held) ----

  void declare_exchange(const Exchange& e) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    if (e.name.empty()) return;  // the default exchange always exists and cannot be declared
    check_shortstr(e.name, "exchange name");
    check_shortstr(e.type, "exchange type");
    amqp_exchange_declare(state_, channel_id, bytes_of(e.name), bytes_of(e.type), 0, e.durable ? 1 : 0,
                          e.auto_delete ? 1 : 0, 0, amqp_empty_table);
    check("exchange.declare " + in_quotes(e.name) + " (type " + e.type + ")");
    release_buffers();
  }

  void declare_queue(const Queue& q) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    if (q.name.empty())
      throw amqp_error(errc::channel_error, "amqp: " + uri_ + ": queue.declare: a queue needs a name");
    check_shortstr(q.name, "queue name");
    amqp_queue_declare(state_, channel_id, bytes_of(q.name), 0, 1, 0, 0, amqp_empty_table);
    check("queue.declare " + in_quotes(q.name));
    release_buffers();
  }

  void bind_queue(const Queue& q) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    if (q.exchange.name.empty()) return;  // the default exchange binds every queue by its name
    check_shortstr(q.name, "queue name");
    check_shortstr(q.exchange.name, "exchange name");
    check_shortstr(q.routing_key, "routing key");
    amqp_queue_bind(state_, channel_id, bytes_of(q.name), bytes_of(q.exchange.name), bytes_of(q.routing_key),
                    amqp_empty_table);
    check("queue.bind " + in_quotes(q.name) + " to " + in_quotes(q.exchange.name) + " with " +
          in_quotes(q.routing_key));
    release_buffers();
  }

  void publish(const Envelope& m, std::string_view exchange, std::string_view routing_key) {
    publish_many(&m, 1, exchange, routing_key);
  }

  // Sends every message, then waits for their confirms together: many
  // confirms in flight on one connection, one wait for the batch.
  void publish_many(const Envelope* messages, std::size_t count, std::string_view exchange,
                    std::string_view routing_key) {
    if (count == 0) return;
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(exchange, "exchange name");
    check_shortstr(routing_key, "routing key");
    for (std::size_t i = 0; i < count; ++i)
      check_publishable(messages[i], count > 1);  // nothing sent if one is bad
    const std::string what =
        (count == 1 ? std::string("basic.publish") : std::to_string(count) + " basic.publish") +
        " to exchange " + in_quotes(exchange) + " with routing key " + in_quotes(routing_key);
    // Delivery tags: the broker numbers every basic.publish it got, so
    // published_ counts each one sent, even if a later one fails.
    const std::uint64_t first = published_ + 1;
    batch_cork cork(*this, count > 1);
    for (std::size_t i = 0; i < count; ++i) {
      try {
        send_publish(messages[i], exchange, routing_key, what);
      } catch (const amqp_error& e) {
        if (count == 1 || i == 0) throw;
        // The first i messages went out but none is confirmed: say so (the
        // text without system_error's ": <code message>" tail, added again).
        std::string text = e.what();
        const std::string tail = ": " + e.code().message();
        if (text.size() > tail.size() && text.compare(text.size() - tail.size(), tail.size(), tail) == 0)
          text.resize(text.size() - tail.size());
        throw amqp_error(
            static_cast<errc>(e.code().value()),
            text + " (after " + std::to_string(i) + " of the " + std::to_string(count) +
                " messages were sent; none is confirmed, each may or may not have been delivered)");
      }
      if (options_.confirm_publish) ++published_;
    }
    cork.release();  // the last frames go out now, before the wait for their confirms
    if (options_.confirm_publish) wait_for_confirms(first, published_, what);
    release_buffers();
  }

  // The frames of a batch leave in full TCP segments (TCP_CORK while the
  // batch is written): rabbitmq-c sends each basic.publish's frames with
  // MSG_MORE and flushes after each message, so without the cork a batch of
  // n messages is n small segments, each a wake-up and a read for the broker.
  // Released (the rest flushed) before the wait for the confirms, and on any
  // exit; never touches a socket the connection has dropped meanwhile.
  class batch_cork {
   public:
    batch_cork(session& c, bool on) noexcept : c_(c) {
#ifdef TCP_CORK
      if (!on || !c_.state_) return;
      const int fd = amqp_get_sockfd(c_.state_);
      const int one = 1;
      if (fd >= 0 && ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one) == 0) {
        fd_ = fd;
        state_ = c_.state_;
      }
#else
      (void)on;
#endif
    }
    batch_cork(const batch_cork&) = delete;
    batch_cork& operator=(const batch_cork&) = delete;
    ~batch_cork() { release(); }
    void release() noexcept {
#ifdef TCP_CORK
      if (fd_ < 0) return;
      const int fd = std::exchange(fd_, -1);
      if (c_.state_ != state_ || amqp_get_sockfd(c_.state_) != fd) return;  // dropped: not ours any more
      const int zero = 0;
      ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
#endif
    }

   private:
    session& c_;
    int fd_ = -1;
    amqp_connection_state_t state_ = nullptr;
  };

  // What basic.publish would refuse, as encoding_error, before anything is
  // sent (`headers`: the header table too, for a batch).
  void check_publishable(const Envelope& m, bool headers) {
    if (headers) {
      table_builder tables;
      tables.table(m.headers);
    }
    check_shortstr(m.content_type, "content_type");
    check_shortstr(m.content_encoding, "content_encoding");
    if (m.priority < 0 || m.priority > 255)
      throw amqp_error(errc::encoding_error,
                       "amqp: priority must be from 0 to 255, not " + std::to_string(m.priority));
    if (m.delivery_mode < 0 || m.delivery_mode > 2)
      throw amqp_error(errc::encoding_error,
                       "amqp: delivery_mode must be 1 (transient) or 2 (persistent), not " +
                           std::to_string(m.delivery_mode));
  }

  // One basic.publish (its frames), bounded by write_timeout; no confirm wait.
  void send_publish(const Envelope& m, std::string_view exchange, std::string_view routing_key,
                    const std::string& what) {
    amqp_basic_properties_t props;
    std::memset(&props, 0, sizeof props);
    table_builder tables;
    props._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_PRIORITY_FLAG;
    props.headers = tables.table(m.headers);  // throws encoding_error before anything is sent
    props.priority = static_cast<std::uint8_t>(m.priority);
    if (!m.content_type.empty()) {
      props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
      props.content_type = bytes_of(m.content_type);
    }
    if (!m.content_encoding.empty()) {
      props._flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
      props.content_encoding = bytes_of(m.content_encoding);
    }
    if (m.delivery_mode != 0) {
      props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
      props.delivery_mode = static_cast<std::uint8_t>(m.delivery_mode);
    }
    int status;
    {
      deadline_scope bound(*this, options_.write_timeout, interruption::write_timeout);
      status = amqp_basic_publish(state_, channel_id, bytes_of(exchange.data(), exchange.size()),
                                  bytes_of(routing_key.data(), routing_key.size()), 0, 0, &props,
                                  bytes_of(m.body.data(), m.body.size()));
    }
    if (status != AMQP_STATUS_OK) {
      bool encoding = status == AMQP_STATUS_TABLE_TOO_BIG || status == AMQP_STATUS_BAD_AMQP_DATA;
      std::string text = encoding ? std::string("cannot encode the message: ") + amqp_error_string2(status)
                                  : lost_text(status) + "; the message may or may not have been delivered";
      drop();
      throw amqp_error(encoding ? errc::encoding_error : errc::connection_lost, prefix(what) + text);
    }
  }

  std::optional<Message> get(std::string_view queue, bool no_ack) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(queue, "queue name");
    const std::string what = "basic.get from queue " + in_quotes(queue);
    amqp_rpc_reply_t reply =
        amqp_basic_get(state_, channel_id, bytes_of(queue.data(), queue.size()), no_ack ? 1 : 0);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail(reply, what);
    if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
      release_buffers();
      return std::nullopt;
    }
    const auto* ok = static_cast<const amqp_basic_get_ok_t*>(reply.reply.decoded);
    Envelope envelope;
    envelope.exchange = to_string(ok->exchange);
    envelope.routing_key = to_string(ok->routing_key);
    const std::uint64_t tag = ok->delivery_tag;
    envelope.delivery_tag = std::to_string(tag);

    amqp_message_t message;
    std::memset(&message, 0, sizeof message);
    {
      // rabbitmq-c reads the content frames with no deadline.
      deadline_scope bound(*this, options_.read_timeout, interruption::read_timeout);
      reply = amqp_read_message(state_, channel_id, &message, 0);
    }
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail(reply, what);  // message already freed
    try {
      read_properties(message.properties, envelope);
      envelope.body = to_string(message.body);
    } catch (const error& e) {
      amqp_destroy_message(&message);
      release_buffers();
      if (e.code() != errc::encoding_error) throw;
      // Headers beyond the MessageLimits: nobody could ever ack this message,
      // so reject it (dead-lettered if the queue has a dead-letter exchange,
      // else dropped) rather than leave it unacked to come back forever.
      if (!no_ack) {
        int status;
        {
          deadline_scope bound(*this, options_.write_timeout, interruption::write_timeout);
          status = amqp_basic_reject(state_, channel_id, tag, /*requeue=*/0);
        }
        if (status != AMQP_STATUS_OK) {
          std::string text = lost_text(status);
          drop();
          throw amqp_error(errc::connection_lost,
                           prefix(what) + "cannot reject an undecodable message: " + text);
        }
      }
      std::string reason = e.what();
      const std::string suffix = ": " + e.code().message();
      if (reason.size() >= suffix.size() &&
          reason.compare(reason.size() - suffix.size(), suffix.size(), suffix) == 0)
        reason.resize(reason.size() - suffix.size());
      throw amqp_error(errc::encoding_error, prefix(what) + "message " + std::to_string(tag) + " " +
                                                 (no_ack ? "dropped" : "rejected") + ": " + reason);
    } catch (...) {
      amqp_destroy_message(&message);
      throw;
    }
    amqp_destroy_message(&message);
    release_buffers();

    std::function<void()> ack;
    if (!no_ack) {
      std::weak_ptr<session> weak = weak_from_this();
      const std::uint64_t generation = generation_;
      ack = [weak, generation, tag] {
        auto self = weak.lock();
        if (!self)
          throw amqp_error(errc::connection_lost,
                           "amqp: cannot ack message " + std::to_string(tag) +
                               ": its connection is gone (the broker will redeliver it)");
        std::lock_guard<std::mutex> lock(self->mutex);
        self->ack(generation, tag);
      };
    }
    return Message(std::move(envelope), std::move(ack));
  }

  void ack(std::uint64_t generation, std::uint64_t tag) {
    if (!state_ || respool::detail::process_token() != owner_ || generation != generation_)
      throw amqp_error(errc::connection_lost,
                       "amqp: " + uri_ + ": cannot ack message " + std::to_string(tag) +
                           ": the channel it came from is closed (the broker will redeliver it)");
    int status;
    {
      deadline_scope bound(*this, options_.write_timeout, interruption::write_timeout);
      status = amqp_basic_ack(state_, channel_id, tag, 0);
    }
    if (status != AMQP_STATUS_OK) {
      std::string text = lost_text(status);
      drop();
      throw amqp_error(errc::connection_lost, prefix("basic.ack") + text);
    }
  }

  std::size_t queue_size(std::string_view queue) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(queue, "queue name");
    auto* ok = amqp_queue_declare(state_, channel_id, bytes_of(queue.data(), queue.size()), 1, 0, 0, 0,
                                  amqp_empty_table);
    try {
      check("queue.declare(passive) " + in_quotes(queue));
    } catch (const amqp_error& e) {
      if (e.code() == errc::channel_error && e.reply_code() == AMQP_NOT_FOUND) return 0;
      throw;
    }
    std::size_t count = ok ? ok->message_count : 0;
    release_buffers();
    return count;
  }

  std::size_t purge(std::string_view queue) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(queue, "queue name");
    auto* ok = amqp_queue_purge(state_, channel_id, bytes_of(queue.data(), queue.size()));
    check("queue.purge " + in_quotes(queue));
    std::size_t count = ok ? ok->message_count : 0;
    release_buffers();
    return count;
  }

  std::size_t delete_queue(std::string_view queue) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(queue, "queue name");
    auto* ok = amqp_queue_delete(state_, channel_id, bytes_of(queue.data(), queue.size()), 0, 0);
    check("queue.delete " + in_quotes(queue));
    std::size_t count = ok ? ok->message_count : 0;
    release_buffers();
    return count;
  }

  void delete_exchange(std::string_view exchange) {
    ensure_open();
    deadline_scope backstop(*this, heartbeat_backstop(), interruption::write_timeout);
    check_shortstr(exchange, "exchange name");
    amqp_exchange_delete(state_, channel_id, bytes_of(exchange.data(), exchange.size()), 0);
    check("exchange.delete " + in_quotes(exchange));
    release_buffers();
  }

  // True while the broker has told us it blocks publishers (connection.blocked,
  // e.g. a memory alarm); publishes then wait (up to read_timeout).
  bool blocked() const noexcept { return blocked_; }

 private:
  std::string prefix(const std::string& what) const { return "amqp: " + uri_ + ": " + what + ": "; }

  void check_shortstr(std::string_view text, const char* name) const {
    if (text.size() > 255)
      throw amqp_error(errc::encoding_error, std::string("amqp: ") + name + " longer than 255 bytes");
  }

  amqp_socket_t* tls_socket() {
#if !RESPOOL_AMQP_HAS_TLS
    fail_connect("TLS not supported (rabbitmq-c was built without its SSL socket)");
#else
    amqp_socket_t* socket = amqp_ssl_socket_new(state_);
    if (!socket) fail_connect("cannot create a TLS socket");
    amqp_ssl_socket_set_verify_peer(socket, options_.ssl_verify ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(socket, options_.ssl_verify ? 1 : 0);
    if (!options_.ssl_ca_certs.empty()) {
      int status = amqp_ssl_socket_set_cacert(socket, options_.ssl_ca_certs.c_str());
      if (status != AMQP_STATUS_OK)
        fail_connect("cannot load ssl_ca_certs '" + options_.ssl_ca_certs +
                     "': " + amqp_error_string2(status));
    }
    if (!options_.ssl_certfile.empty() || !options_.ssl_keyfile.empty()) {
      const std::string& cert = options_.ssl_certfile.empty() ? options_.ssl_keyfile : options_.ssl_certfile;
      const std::string& key = options_.ssl_keyfile.empty() ? options_.ssl_certfile : options_.ssl_keyfile;
      int status = amqp_ssl_socket_set_key(socket, cert.c_str(), key.c_str());
      if (status != AMQP_STATUS_OK)
        fail_connect("cannot load ssl_certfile/ssl_keyfile: " + std::string(amqp_error_string2(status)));
    }
    return socket;
#endif
  }

  [[noreturn]] void fail_connect(const std::string& reason, int reply_code = 0, std::string reply_text = {},
                                 int status = 0) {
    std::string text = "amqp: cannot connect to " + uri_ + ": " + reason;
    if (status == AMQP_STATUS_SSL_ERROR || status == AMQP_STATUS_SSL_CONNECTION_FAILED ||
        status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED || status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED)
      text += " (TLS; see the ssl_ca_certs and ssl_cert_reqs options)";
    throw amqp_error(errc::connection_failed, text, reply_code, std::move(reply_text));
  }

  // What amqp_socket_open_noblock's failure means. rabbitmq-c reports every
  // socket(), connect() and poll() failure as AMQP_STATUS_SOCKET_ERROR, and
  // errno is only telling when socket() failed (a connect() error is read
  // with SO_ERROR and not kept): a process out of descriptors is not a
  // refused connection, so probe with a socket of our own when errno is lost.
  static std::string describe_open_failure(int status, int saved_errno) {
    std::string text = amqp_error_string2(status);
    if (status == AMQP_STATUS_SOCKET_ERROR) {
      int err = saved_errno;
      if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0)
          ::close(probe);
        else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          err = errno;
      }
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
        return "cannot create a socket: " + std::string(std::strerror(err)) +
               (err == EMFILE   ? " (the process is out of file descriptors)"
                : err == ENFILE ? " (the system is out of file descriptors)"
                                : "");
      return "TCP connection refused or host unreachable (" + text + ")";
    }
    if (status == AMQP_STATUS_TIMEOUT) return "TCP connect timed out (connect_timeout)";
    return text;
  }

  [[noreturn]] void login_failed(const amqp_rpc_reply_t& reply) {
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const auto* close = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
      const int code = close->reply_code;
      std::string text = to_string(close->reply_text);
      amqp_connection_close_ok_t close_ok{};
      amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
      std::string hint;
      if (code == AMQP_ACCESS_REFUSED)
        hint = " (wrong user name or password, or no access to the virtual host)";
      if (code == AMQP_NOT_ALLOWED) hint = " (no such virtual host, or not allowed to use it)";
      fail_connect(text + " (reply code " + std::to_string(code) + ")" + hint, code, text);
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
      std::string reason = amqp_error_string2(reply.library_error);
      if (reply.library_error == AMQP_STATUS_CONNECTION_CLOSED)
        reason += " during login (wrong user name, password or virtual host?)";
      else if (reply.library_error == AMQP_STATUS_TIMEOUT)
        reason = "timed out during the AMQP handshake (is this an AMQP broker?)";
      else if (reply.library_error == AMQP_STATUS_BAD_AMQP_DATA ||
               reply.library_error == AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION)
        reason += " during the AMQP handshake (is this an AMQP 0-9-1 broker?)";
      fail_connect(reason, 0, {}, reply.library_error);
    }
    fail_connect("login failed");
  }

  void open_channel() {
    channel_open_ = false;
    amqp_channel_open(state_, channel_id);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state_);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) fatal(reply, "channel.open");
    channel_open_ = true;
    if (options_.confirm_publish) {
      amqp_confirm_select(state_, channel_id);
      reply = amqp_get_rpc_reply(state_);
      if (reply.reply_type != AMQP_RESPONSE_NORMAL) fatal(reply, "confirm.select");
    }
    ++generation_;
    published_ = 0;
    release_buffers();
  }

  // A failure that leaves no usable channel: drop the connection.
  [[noreturn]] void fatal(const amqp_rpc_reply_t& reply, const std::string& what) {
    std::string text = "connection lost";
    int code = 0;
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD || reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD)) {
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        code = m->reply_code;
        text = to_string(m->reply_text);
      } else {
        const auto* m = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        code = m->reply_code;
        text = to_string(m->reply_text);
      }
    } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
      text = lost_text(reply.library_error);
    }
    drop();
    throw amqp_error(errc::connection_lost, prefix(what) + text, code, code ? text : std::string());
  }

  // The broker closed our channel: confirm, reopen it, throw channel_error.
  [[noreturn]] void channel_closed(const amqp_channel_close_t* m, const std::string& what) {
    const int code = m->reply_code;
    std::string text = to_string(m->reply_text);
    channel_open_ = false;
    amqp_channel_close_ok_t close_ok{};
    if (send_method(channel_id, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) != AMQP_STATUS_OK) {
      drop();
      throw amqp_error(errc::connection_lost, prefix(what) + text + " (and the connection was lost)", code,
                       text);
    }
    open_channel();  // throws connection_lost (and drops) if it cannot
    throw amqp_error(errc::channel_error, prefix(what) + text, code, text);
  }

  // The broker closed the connection: confirm, drop, throw.
  [[noreturn]] void connection_closed(const amqp_connection_close_t* m, const std::string& what) {
    const int code = m->reply_code;
    std::string text = to_string(m->reply_text);
    amqp_connection_close_ok_t close_ok{};
    send_method(0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
    drop();
    const bool lost = code == AMQP_CONNECTION_FORCED || code == AMQP_INTERNAL_ERROR;
    throw amqp_error(lost ? errc::connection_lost : errc::channel_error,
                     prefix(what) + text + " (the broker closed the connection)", code, text);
  }

  // A frame that arrived outside of an RPC: handle the ones that matter.
  void background_frame(const amqp_frame_t& frame, const std::string& what) {
    if (frame.frame_type != AMQP_FRAME_METHOD) return;
    const amqp_method_number_t id = frame.payload.method.id;
    if (frame.channel == 0) {
      if (id == AMQP_CONNECTION_CLOSE_METHOD)
        connection_closed(static_cast<const amqp_connection_close_t*>(frame.payload.method.decoded), what);
      if (id == AMQP_CONNECTION_BLOCKED_METHOD) blocked_ = true;
      if (id == AMQP_CONNECTION_UNBLOCKED_METHOD) blocked_ = false;
      return;
    }
    if (frame.channel != channel_id) return;
    if (id == AMQP_CHANNEL_CLOSE_METHOD)
      channel_closed(static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded), what);
    if (id == AMQP_BASIC_RETURN_METHOD) {  // mandatory is never set, but be safe: skip its content
      amqp_message_t returned;
      std::memset(&returned, 0, sizeof returned);
      amqp_rpc_reply_t reply = amqp_read_message(state_, channel_id, &returned, 0);
      if (reply.reply_type != AMQP_RESPONSE_NORMAL) fail(reply, what);
      amqp_destroy_message(&returned);
    }
  }

  // Waits for the broker's basic.ack / basic.nack of every delivery tag from
  // `first` to `last` (acks may be "multiple" and come in any order).
  // read_timeout bounds the wait for the next confirm: a batch that keeps
  // being confirmed may take longer in all, a broker that stops confirming
  // fails it within read_timeout.
  void wait_for_confirms(std::uint64_t first, std::uint64_t last, const std::string& what) {
    using clock = std::chrono::steady_clock;
    const std::size_t count = static_cast<std::size_t>(last - first + 1);
    enum : char { pending, acked, nacked };
    std::vector<char> state(count, pending);
    std::size_t low = 0;  // every tag below first + low is settled
    std::size_t settled = 0, rejected = 0;
    auto settle = [&](std::uint64_t tag, bool multiple, char how) {
      if (tag < first) return;
      const std::size_t top = static_cast<std::size_t>(std::min(tag, last) - first);
      for (std::size_t i = multiple ? low : top; i <= top; ++i) {
        if (state[i] != pending) continue;
        state[i] = how;
        ++settled;
        if (how == nacked) ++rejected;
      }
      while (low < count && state[low] != pending) ++low;
    };
    auto deadline = options_.read_timeout ? clock::now() + *options_.read_timeout : clock::time_point::max();
    const auto unconfirmed = [&] {
      if (count == 1) return std::string("the message may or may not have been delivered");
      return std::to_string(count - settled) + " of the " + std::to_string(count) +
             " messages are unconfirmed and may or may not have been delivered";
    };
    while (settled < count) {
      amqp_frame_t frame;
      int status;
      if (options_.read_timeout) {
        timeval tv =
            to_timeval(std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now()));
        status = amqp_simple_wait_frame_noblock(state_, &frame, &tv);
      } else {
        status = amqp_simple_wait_frame(state_, &frame);
      }
      if (status == AMQP_STATUS_TIMEOUT && options_.read_timeout) {
        const bool was_blocked = blocked_;
        drop();
        throw amqp_error(errc::connection_lost,
                         prefix(what) + "no publisher confirm within read_timeout" +
                             (was_blocked ? " (the broker is blocking publishers: connection.blocked)" : "") +
                             "; the connection was closed and " + unconfirmed());
      }
      if (status != AMQP_STATUS_OK) {
        std::string text = lost_text(status);
        drop();
        throw amqp_error(errc::connection_lost,
                         prefix(what) + text + " before the broker confirmed " +
                             (count == 1 ? std::string("the message; it may or may not have been delivered")
                                         : "every message: " + unconfirmed()));
      }
      if (frame.frame_type == AMQP_FRAME_METHOD && frame.channel == channel_id) {
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
          const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
          settle(ack->delivery_tag, ack->multiple != 0, acked);
          if (options_.read_timeout) deadline = clock::now() + *options_.read_timeout;  // progress
          continue;
        }
        if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
          const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
          settle(nack->delivery_tag, nack->multiple != 0, nacked);
          if (options_.read_timeout) deadline = clock::now() + *options_.read_timeout;
          continue;
        }
      }
      background_frame(frame, what);
    }
    if (rejected == 0) return;
    if (count == 1)
      throw amqp_error(errc::channel_error, prefix(what) + "the broker rejected the message (basic.nack)");
    throw amqp_error(errc::channel_error, prefix(what) + "the broker rejected " + std::to_string(rejected) +
                                              " of the " + std::to_string(count) +
                                              " messages (basic.nack); the others are confirmed");
  }

  static void read_properties(const amqp_basic_properties_t& p, Envelope& e) {
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) e.content_type = to_string(p.content_type);
    if (p._flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) e.content_encoding = to_string(p.content_encoding);
    e.headers = (p._flags & AMQP_BASIC_HEADERS_FLAG) ? table_to_json(p.headers) : nlohmann::json::object();
    // AMQP: no delivery mode means transient (1).
    e.delivery_mode = (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) ? p.delivery_mode : 1;
    e.priority = (p._flags & AMQP_BASIC_PRIORITY_FLAG) ? p.priority : 0;
  }

  // Point the socket's descriptor at /dev/null, so that nothing written from
  // now on (rabbitmq-c, OpenSSL) can reach the broker.
  void neutralise_socket() noexcept {
    if (!state_) return;
    int fd = amqp_get_sockfd(state_);
    if (fd < 0) return;
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
      state_ = nullptr;  // cannot neutralise: leak the state rather than risk a write
      return;
    }
    ::dup2(null, fd);
    ::close(null);
  }

  void abandon_unlocked() noexcept {
    forget_fd();
    neutralise_socket();
    if (state_) amqp_destroy_connection(state_);  // frees memory, closes the (now /dev/null) fd
    state_ = nullptr;
    channel_open_ = false;
    open_.store(false, std::memory_order_release);
  }

  // Free the rabbitmq-c state without a protocol close (the connection is
  // broken or already closed). amqp_destroy_connection only closes the socket.
  void drop() noexcept {
    forget_fd();
    if (state_ && respool::detail::process_token() != owner_) neutralise_socket();
    if (state_) amqp_destroy_connection(state_);
    state_ = nullptr;
    channel_open_ = false;
    blocked_ = false;
    open_.store(false, std::memory_order_release);
  }

  // The socket is about to be closed: interrupt() must not touch it any more.
  void forget_fd() noexcept {
    if (fd_owner_.load(std::memory_order_acquire) != respool::detail::process_token())
      return;  // a parent's socket (forked child): interrupt() ignores it; its lock may be held for ever
    std::lock_guard<std::mutex> lock(fd_mutex_);
    fd_ = -1;
  }

  // The watchdog's deadline passed (its thread, its lock held).
  void expire(interruption why) noexcept override { interrupt(why); }

  void set_rpc_timeout(std::optional<std::chrono::microseconds> limit) {
    timeval tv{};
    if (limit) tv = to_timeval(*limit);
    amqp_set_rpc_timeout(state_, limit ? &tv : nullptr);
  }

  // With heartbeats on, rabbitmq-c may send one inside any wait, with no
  // deadline: a whole operation then also ends within read_timeout +
  // write_timeout (none if either is off, or without heartbeats).
  std::optional<std::chrono::microseconds> heartbeat_backstop() const {
    if (!state_ || amqp_get_heartbeat(state_) <= 0 || !options_.read_timeout || !options_.write_timeout)
      return std::nullopt;
    return *options_.read_timeout + *options_.write_timeout;
  }

  // amqp_send_method (no deadline in rabbitmq-c) within write_timeout.
  int send_method(amqp_channel_t channel, amqp_method_number_t id, void* decoded) {
    deadline_scope bound(*this, options_.write_timeout, interruption::write_timeout);
    return amqp_send_method(state_, channel, id, decoded);
  }

  // What a failed read or write means: the I/O error, or why interrupt() cut it off.
  std::string lost_text(int status) {
    switch (static_cast<interruption>(interrupted_.exchange(0, std::memory_order_acq_rel))) {
      case interruption::write_timeout:
        return "write_timeout expired: the broker is not reading (flow control, a full socket buffer, "
               "a stalled broker); the connection was closed";
      case interruption::read_timeout:
        return "read_timeout expired: no reply from the broker; the connection was closed";
      case interruption::closed:
        return "interrupted: the connection was closed from another thread";
      case interruption::none:
      default:
        if (status == AMQP_STATUS_TIMEOUT)
          return std::string(rpc_limit_) + " expired: no reply from the broker; the connection was closed";
        return std::string("connection lost: ") + amqp_error_string2(status);
    }
  }

  std::string uri_;
  amqp_options options_;
  amqp_connection_state_t state_ = nullptr;
  std::mutex fd_mutex_;                     // guards fd_ against interrupt() from other threads
  int fd_ = -1;                             // the socket while interrupt() may shut it down
  std::atomic<std::uint64_t> fd_owner_{0};  // process_token() of the process fd_ belongs to
  std::atomic<int> interrupted_{0};         // an interruption: why interrupt() shut the socket down
  const char* rpc_limit_ = "read_timeout";  // what bounds the RPC in progress (for messages)
  std::atomic<std::uint64_t> owner_{0};     // respool::detail::process_token() of the connecting process
  std::atomic<bool> open_{false};
  bool channel_open_ = false;
  bool blocked_ = false;
  std::uint64_t generation_ = 0;  // bumped on every channel open: stale delivery tags are refused
  std::uint64_t published_ = 0;   // publish sequence number on the current channel
};

}  // namespace respool::detail::amqp

namespace respool::transport {

class amqp_connection;

// The channel of an amqp_connection (AMQP channel 1, in confirm mode). The
// channel_impl operations, plus delete_queue() and delete_exchange().
// Throws amqp_error (see above); after a channel error the channel has
// already been reopened and can be used again.
class amqp_channel final : public channel_impl {
 public:
  void declare_exchange(const Exchange& exchange) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.declare_exchange(exchange);
  }
  void declare_queue(const Queue& queue) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.declare_queue(queue);
  }
  void bind_queue(const Queue& queue) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.bind_queue(queue);
  }
  // Publish with publisher confirms: returns once the broker acknowledged the
  // message. mandatory=false: a message no queue receives is dropped.
  void publish(const Envelope& message, std::string_view exchange, std::string_view routing_key) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.publish(message, exchange, routing_key);
  }
  // Sends every message, then waits for all their confirms at once.
  void publish_many(const Envelope* messages, std::size_t count, std::string_view exchange,
                    std::string_view routing_key) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.publish_many(messages, count, exchange, routing_key);
  }
  // basic.get. The message's ack() sends basic.ack; it throws
  // amqp_error(connection_lost) if the channel the message came from is gone
  // (the broker then redelivers the message).
  std::optional<Message> get(std::string_view queue, bool no_ack) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.get(queue, no_ack);
  }
  // Ready messages (passive queue.declare); 0 if the queue does not exist.
  std::size_t queue_size(std::string_view queue) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.queue_size(queue);
  }
  // queue.purge; throws amqp_error(channel_error, 404) if the queue does not exist.
  std::size_t purge(std::string_view queue) override {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.purge(queue);
  }
  // queue.delete (unconditional); returns the number of messages deleted with it.
  std::size_t delete_queue(std::string_view queue) {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.delete_queue(queue);
  }
  // exchange.delete (unconditional).
  void delete_exchange(std::string_view exchange) {
    auto& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.delete_exchange(exchange);
  }

 private:
  friend class amqp_connection;
  explicit amqp_channel(std::shared_ptr<respool::detail::amqp::session> session)
      : session_(std::move(session)) {}
  respool::detail::amqp::session& session() const { return *session_; }

  std::shared_ptr<respool::detail::amqp::session> session_;
};

// One AMQP connection to a broker (transport::connection_impl), created
// unconnected. Movable only through its unique_ptr (as every connection_impl).
class amqp_connection final : public connection_impl {
 public:
  // Reads the options (throws error(invalid_url) for a malformed one); does not connect.
  explicit amqp_connection(const ConnectionParams& params)
      : params_(params),
        session_(
            std::make_shared<respool::detail::amqp::session>(params.as_uri(), amqp_options::from(params))),
        channel_(session_) {
    if (params.transport() != "amqp" && params.transport() != "amqps")
      throw unknown_transport(params.transport());
  }
  amqp_connection(const amqp_connection&) = delete;
  amqp_connection& operator=(const amqp_connection&) = delete;
  // Closes the connection (abandons it in a forked child).
  ~amqp_connection() override { close(); }

  // Connect: TCP (or TLS) with connect_timeout, login (PLAIN) on the URL's
  // virtual host, channel 1 in confirm mode. No-op if connected; reconnects a
  // lost connection. Throws amqp_error(connection_failed) naming the
  // sanitised URI: refused/unreachable, ACCESS_REFUSED (403: wrong
  // credentials), NOT_ALLOWED (530: no such vhost), TLS failures.
  void connect() override {
    std::lock_guard<std::mutex> lock(session_->mutex);
    session_->connect(params_);
  }
  bool connected() const noexcept override { return session_->is_open(); }
  // Non-blocking: processes whatever the broker sent (heartbeats,
  // connection.close, EOF) and sends a heartbeat if one is due; false if the
  // connection is closed, lost, or was inherited from a parent process.
  bool alive() noexcept override {
    std::unique_lock<std::mutex> lock(session_->mutex, std::try_to_lock);
    if (!lock.owns_lock()) return session_->is_open();  // in use by an ack elsewhere
    return session_->alive();
  }
  // channel.close + connection.close (within amqp_options::close_timeout()),
  // then frees everything. From another thread, while an operation runs, it
  // first interrupts it (shutdown(2): the operation throws connection_lost),
  // so it returns within that bound too. Never throws.
  void close() noexcept override {
    if (!session_) return;
    std::unique_lock<std::mutex> lock(session_->mutex, std::defer_lock);
    if (!try_lock_for_close(lock)) {
      session_->abandon();
      return;
    }
    session_->close();
  }
  // Forgets the connection without writing to its socket (fork-safe).
  void abandon() noexcept override { session_->abandon(); }
  amqp_channel& channel() override { return channel_; }

  const ConnectionParams& params() const noexcept { return params_; }
  // The negotiated heartbeat in seconds (0 = off, or not connected).
  int heartbeat() const {
    std::lock_guard<std::mutex> lock(session_->mutex);
    return session_->heartbeat();
  }
  // True while the broker blocks publishers (connection.blocked).
  bool blocked() const {
    std::lock_guard<std::mutex> lock(session_->mutex);
    return session_->blocked();
  }

 private:
  // In a forked child never wait for the mutex (a parent thread may hold it).
  // In this process, interrupt the operation that holds it (it then fails at
  // once and lets go).
  bool try_lock_for_close(std::unique_lock<std::mutex>& lock) noexcept {
    if (lock.try_lock()) return true;
    if (!session_->owned_by_this_process()) return false;
    session_->interrupt(respool::detail::amqp::interruption::closed);
    lock.lock();
    return true;
  }

  ConnectionParams params_;
  std::shared_ptr<respool::detail::amqp::session> session_;
  amqp_channel channel_;
};

namespace amqp {

// Registers amqp:// and amqps:// (idempotent, thread-safe). Called at static
// initialisation by this header; call it yourself from code that runs earlier.
inline bool ensure_registered() {
  static const bool done = [] {
    auto factory = [](const ConnectionParams& params) -> std::unique_ptr<connection_impl> {
      return std::make_unique<amqp_connection>(params);
    };
    register_transport("amqp", factory);
    register_transport("amqps", factory);
    return true;
  }();
  return done;
}

}  // namespace amqp

// Registers amqp:// and amqps:// during static initialisation of any program that includes this header.
inline const bool amqp_registered = amqp::ensure_registered();

}  // namespace respool::transport
