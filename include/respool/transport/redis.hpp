// respool/transport/redis.hpp — the redis:// transport (hiredis), storing
// exactly what kombu 5.2.4's Redis transport stores, so that Python kombu
// (and Celery) consumers and producers on the same Redis interoperate.
//
// Including this header registers "redis", "rediss", "redis+socket" and
// "sentinel" with transport::register_transport at static initialisation;
// link hiredis (CMake target respool::redis). See docs/transports.md,
// "redis://", "redis+socket://" and "sentinel://".
//
//   redis+socket:///path/to/redis.sock[?virtual_host=DB]  a unix socket (kombu's spelling)
//   sentinel://[:PASSWORD@]S1[:26379][/DB]?master_name=NAME[&sentinel_password=PW];sentinel://S2...
//       asks the sentinels for the master (SENTINEL get-master-addr-by-name),
//       checks ROLE, and reconnects there after a failover (a READONLY
//       reply closes the connection: connection_lost).
//   wait_replicas=N (any of them): every stored publish waits (WAIT) until N
//       replicas have it, or throws channel_error.
//
// URL: redis://[user[:password]@]host[:port][/db][?connect_timeout=s&socket_timeout=s]
//   * password (and user, Redis 6 ACL) -> AUTH, db -> SELECT; then PING.
//   * Timeouts (seconds, fractions allowed; the table of every timeout is in
//     docs/transports.md):
//       connect_timeout (default 5; 0 = the OS's limit for the TCP connect,
//         the handshake then bounded by socket_timeout or 5 s) bounds
//         connect() as a whole: the TCP connect and the AUTH/SELECT/PING handshake.
//         `socket_connect_timeout` (kombu's transport option name) is an alias.
//       socket_timeout (default 5, redis::options::default_socket_timeout;
//         0 = none) bounds every read and write on the socket (a server that
//         stops answering or stops reading): the operation throws
//         error(connection_lost) and the connection is closed. It also bounds
//         the whole restore of unacked messages in close().
//     close() from another thread interrupts a blocked operation (shutdown(2)).
//   * rediss:// (TLS) is registered but connect() throws
//     error(connection_failed, "... TLS ... not supported"): the hiredis this
//     is built on (0.14) has no TLS.
//
// Layout (kombu 5.2.4, verified against kombu with redis-cli MONITOR):
//   * binding   SADD _kombu.binding.<exchange> "<routing_key>\x06\x16<pattern>\x06\x16<queue>"
//               (pattern: kombu's regex for topic exchanges, empty otherwise)
//   * declare   exchanges and queues store nothing in Redis (exchange types
//               live in the connection, as in kombu's BrokerState)
//   * publish   default exchange "": LPUSH <routing_key>; direct/topic:
//               SMEMBERS the binding set, LPUSH every matching queue (kombu's
//               two steps, done by one server-side script: one round trip,
//               see respool/detail/redis_route.hpp);
//               fanout: PUBLISH /<db>.<exchange>[/<routing_key>] (live
//               subscribers only; no list is written)
//   * priority  0-2 -> <queue>, 3-5 -> <queue>\x06\x163, 6-8 -> \x06\x166,
//               9 -> \x06\x169; get() RPOPs them in that order (0 first, as kombu)
//   * envelope  {"body": base64, "content-encoding", "content-type", "headers",
//               "properties": {"delivery_mode", "delivery_info": {"exchange",
//               "routing_key"}, "priority", "body_encoding": "base64",
//               "delivery_tag": uuid4}} as Python's json.dumps writes it
//   * no_ack=false: ZADD unacked_index <time> <tag> + HSET unacked <tag>
//               [payload, exchange, routing_key] (MULTI/EXEC); ack() removes
//               both; close() puts unacked messages back (RPUSH, redelivered
//               flags set) exactly as kombu's QoS.restore_by_tag does.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/connection_params.hpp"
#include "respool/detail/globals.hpp"
#include "respool/detail/redis_client.hpp"
#include "respool/detail/redis_kombu.hpp"
#include "respool/detail/redis_route.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"
#include "respool/transport.hpp"

namespace respool::transport {

namespace redis {

// kombu's key and channel names (see detail/redis_kombu.hpp).
using respool::detail::redis::binding_key;     // "_kombu.binding.<exchange>"
using respool::detail::redis::binding_member;  // "<routing_key>\x06\x16<pattern>\x06\x16<queue>"
using respool::detail::redis::fanout_channel;  // "/<db>.<exchange>[/<routing_key>]"
using respool::detail::redis::key_to_pattern;  // kombu TopicExchange.key_to_pattern
using respool::detail::redis::priority_queue;  // kombu _q_for_pri: "<queue>[\x06\x16<step>]"
using respool::detail::redis::priority_steps;  // {0, 3, 6, 9}
using respool::detail::redis::sep;             // "\x06\x16"
using respool::detail::redis::unacked_index_key;
using respool::detail::redis::unacked_key;

// What a redis:// URL asks for, with the defaults applied.
struct options {
  std::string host = "localhost";  // IPv6 literals without brackets
  int port = 6379;
  long db = 0;                                  // SELECT (skipped for 0)
  std::string userid;                           // AUTH user password (Redis 6 ACL) if set
  std::string password;                         // AUTH password if set
  std::optional<double> connect_timeout = 5.0;  // seconds; nullopt: the OS default
  // socket_timeout as the URL gives it: nullopt = not given (then
  // default_socket_timeout applies), 0 = explicitly none. io_timeout() is
  // the one in force.
  std::optional<double> socket_timeout;
  bool tls = false;  // rediss:// (not supported: connect() throws)
  std::string uri;   // sanitised (password masked), for messages
  // redis+socket://: the unix socket's path (host and port unused).
  std::string socket_path;
  // sentinel://: the sentinels to ask, in order (the URL's sentinel entries),
  // the master's name, the password of the sentinels (if any).
  std::vector<std::pair<std::string, int>> sentinels;
  std::string master_name;
  std::string sentinel_password;
  // wait_replicas=N: every publish is followed by WAIT N, and fails unless N
  // replicas have it (0: no WAIT, the default).
  int wait_replicas = 0;

  // The socket_timeout used when the URL gives none: a Redis command takes
  // milliseconds, so a server silent for this long is stalled (SIGSTOP, a
  // black-holed peer, a full socket buffer). kombu/redis-py wait forever.
  static constexpr double default_socket_timeout = 5.0;

  // The read/write timeout in force, in seconds (nullopt: none, only when the
  // URL says socket_timeout=0).
  std::optional<double> io_timeout() const {
    if (!socket_timeout) return default_socket_timeout;
    if (*socket_timeout <= 0) return std::nullopt;
    return socket_timeout;
  }

  // The longest close() spends putting unacked messages back (one deadline
  // for all of them): the io timeout, or default_socket_timeout if there is none.
  double close_timeout() const { return io_timeout().value_or(default_socket_timeout); }

  // The longest WAIT for the replicas of a publish: half the io timeout (so
  // the reply comes before the socket times out), or half of
  // default_socket_timeout when there is none.
  double wait_timeout() const { return io_timeout().value_or(default_socket_timeout) / 2; }

  // Reads params (transport "redis", "rediss", "redis+socket" or
  // "sentinel"). Throws error(invalid_url) for a bad timeout value or
  // database number.
  static options from(const ConnectionParams& params) {
    options o;
    o.uri = params.as_uri();
    o.tls = params.transport() == "rediss";
    if (params.transport() == "redis+socket") o.socket_path = params.hostname();
    if (params.transport() == "sentinel") {
      o.sentinels.emplace_back(params.hostname(), params.port());
      for (const auto& alternate : params.alternates())
        if (alternate.transport() == "sentinel")
          o.sentinels.emplace_back(alternate.hostname(), alternate.port());
      o.master_name = params.option("master_name").value_or("");
      o.sentinel_password = params.option("sentinel_password").value_or("");
    }
    if (auto v = params.option("wait_replicas")) o.wait_replicas = std::stoi(*v);
    o.host = params.hostname().empty() ? std::string("localhost") : params.hostname();
    if (o.host.size() >= 2 && o.host.front() == '[' && o.host.back() == ']')
      o.host = o.host.substr(1, o.host.size() - 2);
    o.port = params.port() ? params.port() : 6379;
    o.userid = params.userid();
    o.password = params.password();
    std::string_view db = params.virtual_host();
    if (!db.empty() && db.front() == '/') db.remove_prefix(1);
    if (!db.empty()) {
      std::string text(db);
      char* end = nullptr;
      errno = 0;
      long value = std::strtol(text.c_str(), &end, 10);
      if (errno || end != text.c_str() + text.size() || value < 0)
        throw error(errc::invalid_url,
                    "redis: the database must be a number, not '" + text + "' (" + o.uri + ")");
      o.db = value;
    }
    auto seconds = [&](const char* name) -> std::optional<std::optional<double>> {
      auto text = params.option(name);
      if (!text) return std::nullopt;
      char* end = nullptr;
      errno = 0;
      double value = std::strtod(text->c_str(), &end);
      if (errno || end != text->c_str() + text->size() || text->empty() || !std::isfinite(value) || value < 0)
        throw error(errc::invalid_url, std::string("redis: option ") + name +
                                           " must be a number of seconds, not '" + *text + "' (" + o.uri +
                                           ")");
      return value > 0 ? std::optional<double>(value) : std::nullopt;
    };
    if (auto v = seconds("socket_connect_timeout")) o.connect_timeout = *v;
    if (auto v = seconds("connect_timeout")) o.connect_timeout = *v;
    if (auto v = seconds("socket_timeout")) o.socket_timeout = v->value_or(0.0);  // 0: none
    return o;
  }
};

}  // namespace redis

}  // namespace respool::transport

namespace respool::detail::redis {

// The state a connection shares with the ack() of the messages it handed out.
struct session {
  std::mutex mutex;  // serialises every use of `client`
  redis::client client;
  std::vector<std::string> delivered;                      // kombu QoS._delivered: tags got with no_ack=false
  std::map<std::string, Exchange, std::less<>> exchanges;  // kombu BrokerState.exchanges
  std::string route_script_sha;  // SHA1 of redis_route.hpp's script once loaded here
  std::atomic<bool> abandoned{false};
  // 1 + the fork generation (respool/detail/globals.hpp) that connected; 0
  // before. A generation is an atomic load where getpid() is a system call,
  // and this is asked several times per operation.
  std::atomic<std::uint64_t> owner{0};
  // The fork generation this session was made in: another one means a
  // parent thread may have held `mutex` (and been inside `client`) at a fork.
  const std::uint32_t made_in = respool::detail::fork_generation();

  bool forked_since_made() const noexcept { return made_in != respool::detail::fork_generation(); }

  // True in a forked child for a session its parent opened.
  bool inherited() const noexcept {
    const std::uint64_t g = owner.load(std::memory_order_acquire);
    return g != 0 && g != std::uint64_t{respool::detail::fork_generation()} + 1;
  }
};

}  // namespace respool::detail::redis

namespace respool::transport {

class redis_connection;

// The channel of a redis_connection: kombu's virtual Channel over Redis.
// Used by one thread at a time (as every channel_impl). Operations throw
// error(connection_lost) when the connection is closed or breaks (the
// connection is then closed; the next connect() opens a new one),
// error(channel_error) when Redis refuses a command (e.g. WRONGTYPE), and
// error(encoding_error) for a queue item that is not a kombu message.
class redis_channel final : public channel_impl {
 public:
  explicit redis_channel(redis_connection& connection) noexcept : connection_(connection) {}

  // Remembers the exchange's type on this connection (kombu keeps exchange
  // declarations in the client, not in Redis); nothing is sent. Throws
  // error(channel_error) for a type other than direct/topic/fanout, or when
  // the exchange was declared differently before on this connection (kombu
  // NotEquivalentError).
  void declare_exchange(const Exchange& exchange) override;

  // Nothing to do: kombu's Redis queues are lists that exist once a message
  // is pushed (a declared, empty queue leaves no trace in Redis).
  void declare_queue(const Queue& queue) override;

  // SADD _kombu.binding.<exchange> "<routing_key>\x06\x16<pattern>\x06\x16<queue>";
  // declares queue.exchange first if this connection has not. A queue of the
  // default exchange ("") is not bound (it is routed to by name).
  void bind_queue(const Queue& queue) override;

  // kombu basic_publish. The envelope is written once, with one delivery
  // tag, to every queue the exchange routes it to (LPUSH, pipelined), or
  // PUBLISHed for a fanout exchange. An exchange this connection has not
  // declared routes as "direct" (kombu's default). Unroutable messages are
  // dropped. Throws as described for the class; a publish is never dropped
  // silently because of a connection failure.
  void publish(const Envelope& message, std::string_view exchange, std::string_view routing_key) override;
  // Every message in one pipelined round trip (see redis_connection::publish_batch).
  void publish_many(const Envelope* messages, std::size_t count, std::string_view exchange,
                    std::string_view routing_key) override;

  // kombu basic_get: RPOP <queue>, <queue>\x06\x163, \x06\x166, \x06\x169 in
  // that order. With no_ack=false the message is recorded in unacked /
  // unacked_index until Message::ack(); messages still unacked when the
  // connection is closed are put back in their queues. An item that is not a
  // kombu message is removed and reported as error(encoding_error).
  std::optional<Message> get(std::string_view queue, bool no_ack) override;

  // LLEN of the four priority lists, summed (MULTI/EXEC, as kombu's _size).
  std::size_t queue_size(std::string_view queue) override;

  // LLEN + DEL of the four priority lists (MULTI/EXEC, as kombu's _purge).
  std::size_t purge(std::string_view queue) override;

 private:
  redis_connection& connection_;
};

// A connection to Redis. connect() opens it (AUTH, SELECT, PING);
// close() (also run by the destructor) puts this connection's unacked
// messages back in their queues and closes the socket. Not copyable or
// movable (the channel refers to it).
//
// Thread safety: one thread at a time uses the connection and its channel,
// but close() and connected() may be called from any thread: close()
// interrupts an operation in progress (which then throws
// error(connection_lost)); Message::ack() takes the connection's mutex, so
// it may come from another thread too.
//
// Fork: in a process other than the one that connected (a forked child),
// close(), the destructor and alive() behave as abandon() / false, and
// channel operations abandon the inherited socket and throw
// error(connection_lost); none of them waits for a lock a parent thread may
// have held at the fork, and nothing is ever written to the inherited socket.
class redis_connection final : public connection_impl {
 public:
  // Throws error(invalid_url) for bad options (see redis::options::from).
  explicit redis_connection(const ConnectionParams& params)
      : redis_connection(redis::options::from(params)) {}
  explicit redis_connection(redis::options options)
      : options_(std::move(options)),
        session_(std::make_shared<respool::detail::redis::session>()),
        channel_(*this) {}

  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;

  ~redis_connection() override { close(); }

  // Connect, authenticate, select the database and PING (a no-op when
  // connected). Throws error(connection_failed) naming the sanitised URI
  // (never the password) when Redis is unreachable, refuses AUTH or SELECT,
  // or does not answer within the timeouts.
  void connect() override {
    if (options_.tls)
      throw error(
          errc::connection_failed,
          "cannot connect to " + options_.uri +
              ": TLS (rediss://) is not supported by respool's redis transport (hiredis without TLS)");
    if (session_->inherited()) abandon();
    auto s = session_;
    std::lock_guard<std::mutex> lock(s->mutex);
    if (s->client.is_open()) return;
    auto& c = s->client;
    const auto start = respool::detail::redis::client::clock::now();
    respool::detail::ensure_atfork_registered();
    // Before the socket exists: a child forked from here on sees the session as inherited.
    s->owner.store(std::uint64_t{respool::detail::fork_generation()} + 1, std::memory_order_release);
    if (!options_.socket_path.empty()) {
      c.open_unix(options_.socket_path, options_.connect_timeout, options_.io_timeout(), options_.uri);
    } else if (!options_.sentinels.empty()) {
      const auto master = ask_sentinels(start);
      c.open(master.first, master.second, time_left(start), options_.io_timeout(),
             options_.uri + " (master '" + options_.master_name + "' at " + master.first + ":" +
                 std::to_string(master.second) + ")");
      c.close_on_readonly(true);
    } else {
      c.open(options_.host, options_.port, options_.connect_timeout, options_.io_timeout(), options_.uri);
    }
    try {
      // The handshake ends within connect_timeout of the start (each command
      // also within socket_timeout).
      // connect_timeout=0 leaves the TCP connect to the OS, but the
      // handshake is still bounded (a server that accepts and never answers
      // must not hang connect()): by socket_timeout, or by
      // default_socket_timeout when that is 0 too.
      using duration = respool::detail::redis::client::clock::duration;
      if (options_.connect_timeout)
        c.set_deadline(start + std::chrono::duration_cast<duration>(
                                   std::chrono::duration<double>(*options_.connect_timeout)),
                       "connect_timeout");
      else
        c.set_deadline(respool::detail::redis::client::clock::now() +
                           std::chrono::duration_cast<duration>(std::chrono::duration<double>(
                               options_.io_timeout().value_or(redis::options::default_socket_timeout))),
                       "the handshake's bound with connect_timeout=0: socket_timeout, or 5 s without one");
      handshake(c);
      c.clear_deadline();
    } catch (const error& e) {
      c.close();
      if (e.code() == errc::connection_failed) throw;
      throw error(errc::connection_failed, "cannot connect to " + options_.uri + ": " + e.what());
    }
  }

  // True while the socket is open (no I/O). Thread-safe.
  bool connected() const noexcept override {
    auto s = session_;
    return !s->abandoned.load(std::memory_order_acquire) && s->client.is_open() && !s->inherited();
  }

  // A cheap check, no round trip (a pool calls it on every hand-out): the
  // socket is open and the server has not closed it (no EOF, no error, and
  // nothing unsolicited waiting to be read). A server restart is seen here;
  // a silently vanished peer is seen by the next command (socket_timeout).
  // False (and the connection closed) if dead or not connected.
  bool alive() noexcept override {
    if (session_->inherited()) {
      abandon();
      return false;
    }
    auto s = session_;
    if (s->abandoned.load(std::memory_order_acquire)) return false;
    std::lock_guard<std::mutex> lock(s->mutex);
    if (!s->client.is_open()) return false;
    const int fd = s->client.native_handle() ? s->client.native_handle()->fd : -1;
    if (fd >= 0) {
      pollfd p{fd, POLLIN | POLLRDHUP, 0};
      const int ready = ::poll(&p, 1, 0);
      if (ready == 0) return true;  // quiet: alive
    }
    s->client.close();
    return false;
  }

  // Puts the unacked messages of this connection back in their queues (kombu
  // QoS.restore_unacked: RPUSH with the redelivered flags; messages it cannot
  // restore stay in "unacked" for kombu's visibility-timeout sweep), then
  // closes the socket. No QUIT is sent (kombu/redis-py send none). Called
  // from another thread, it first interrupts the operation in progress.
  // Idempotent; never throws.
  void close() noexcept override {
    if (session_->inherited()) {
      abandon();
      return;
    }
    auto s = session_;
    if (s->abandoned.load(std::memory_order_acquire)) return;
    std::unique_lock<std::mutex> lock(s->mutex, std::try_to_lock);
    if (!lock.owns_lock()) {
      if (s->forked_since_made()) {  // held by a parent thread at the fork, perhaps: never wait
        lock = {};
        abandon();
        return;
      }
      s->client.interrupt();
      lock.lock();
    }
    if (s->client.is_open() && !s->delivered.empty()) {
      try {
        // One deadline for the whole restore: what is not back by then stays
        // in "unacked" (kombu's visibility-timeout sweep restores it).
        s->client.set_deadline(
            respool::detail::redis::client::clock::now() +
                std::chrono::duration_cast<respool::detail::redis::client::clock::duration>(
                    std::chrono::duration<double>(options_.close_timeout())),
            "the close deadline (socket_timeout)");
        restore_unacked(*s);
      } catch (...) {  // the connection broke or the deadline passed: the rest stays in "unacked"
      }
    }
    s->client.close();
  }

  // For a forked child: frees the inherited hiredis context, which closes
  // the inherited descriptor and writes nothing (redisFree() does not write;
  // the parent's connection is unaffected). Unacked messages are left to the
  // parent. Afterwards the connection is closed and connect() opens a new
  // one. Messages got before can no longer be acked.
  //
  // The context is freed only when nobody is using it (as the amqp
  // transport does): in a forked child the mutex is only tried (a parent
  // thread may have held it at the fork, in the middle of hiredis); if it is
  // held, the descriptor is pointed at /dev/null and the context leaked
  // instead. In the process that made the connection, an operation running
  // in another thread is waited for (it ends within socket_timeout); nothing
  // is done to the socket but close(2).
  void abandon() noexcept override {
    auto old = session_;
    const bool forked = old->forked_since_made();
    std::unique_lock<std::mutex> lock(old->mutex, std::try_to_lock);
    if (!lock.owns_lock() && !forked) lock.lock();
    old->abandoned.store(true, std::memory_order_release);
    if (!lock.owns_lock())
      old->client.leak();  // in use by a parent thread at the fork: do not touch the context
    else if (forked)
      old->client.abandon();  // no lock inside: a parent thread may have held close_mutex_
    else
      old->client.close();
    std::shared_ptr<respool::detail::redis::session> fresh;
    try {
      fresh = std::make_shared<respool::detail::redis::session>();
      fresh->exchanges = old->exchanges;  // the lock may be a parent thread's: read as is
    } catch (...) {
      return;  // out of memory: stay abandoned
    }
    if (lock.owns_lock()) lock.unlock();
    session_ = std::move(fresh);
    // In a forked child the old session's mutex may be locked for ever (held
    // by a parent thread at fork time): destroying a locked mutex is
    // undefined, so the old session is deliberately leaked there.
    if (forked) new std::shared_ptr<respool::detail::redis::session>(std::move(old));
  }

  // The connection's channel. Throws error(connection_lost) when not connected.
  channel_impl& channel() override {
    if (!connected()) throw error(errc::connection_lost, "not connected to " + options_.uri);
    return channel_;
  }

  // The parsed URL.
  const redis::options& options() const noexcept { return options_; }
  // The database number (for fanout channel names).
  long db() const noexcept { return options_.db; }
  // The hiredis context (nullptr when not connected). Not thread-safe.
  redisContext* native_handle() const noexcept { return session_->client.native_handle(); }
  // Number of messages got with no_ack=false and not acked yet.
  std::size_t unacked() const {
    if (session_->inherited()) return 0;
    std::lock_guard<std::mutex> lock(session_->mutex);
    return session_->delivered.size();
  }

 private:
  friend class redis_channel;
  using reply_ptr = respool::detail::redis::reply_ptr;
  using command_args = respool::detail::redis::client::command_args;

  void handshake(respool::detail::redis::client& c) {
    using respool::detail::redis::is_error;
    using respool::detail::redis::text_of;
    // redis-py 4.x (kombu's client): AUTH [user] password when either is
    // set; a server older than 6 rejects the two-argument form, then AUTH password.
    if (!options_.userid.empty() || !options_.password.empty()) {
      reply_ptr reply = options_.userid.empty() ? c.command({"AUTH", options_.password})
                                                : c.command({"AUTH", options_.userid, options_.password});
      if (is_error(reply.get()) && !options_.userid.empty() &&
          text_of(reply.get()).find("wrong number of arguments") != std::string::npos)
        reply = c.command({"AUTH", options_.password});
      if (is_error(reply.get()))
        throw error(errc::connection_failed,
                    "cannot connect to " + options_.uri + ": authentication failed: " + text_of(reply.get()));
    }
    if (options_.db != 0) {
      std::string db = std::to_string(options_.db);
      auto reply = c.command({"SELECT", db});
      if (is_error(reply.get()))
        throw error(errc::connection_failed, "cannot connect to " + options_.uri + ": SELECT " + db +
                                                 " failed: " + text_of(reply.get()));
    }
    auto reply = c.command({"PING"});
    if (is_error(reply.get()))
      throw error(errc::connection_failed, "cannot connect to " + options_.uri + ": " + text_of(reply.get()));
    if (!options_.sentinels.empty()) {  // the sentinels' answer may be stale: ask the server itself
      auto role = c.command({"ROLE"});
      const std::string what = role && role->type == REDIS_REPLY_ARRAY && role->elements > 0
                                   ? text_of(role->element[0])
                                   : text_of(role.get());
      if (what != "master")
        throw error(errc::connection_failed, "cannot connect to " + c.uri() +
                                                 ": it is not the master (ROLE: " + what +
                                                 "); the sentinels have not seen the failover yet");
    }
  }

  // What is left of connect_timeout since `start` (nullopt: no limit);
  // throws error(connection_failed) when nothing is left.
  std::optional<double> time_left(respool::detail::redis::client::clock::time_point start) const {
    if (!options_.connect_timeout) return std::nullopt;
    const double left =
        *options_.connect_timeout -
        std::chrono::duration<double>(respool::detail::redis::client::clock::now() - start).count();
    if (left <= 0)
      throw error(errc::connection_failed,
                  "cannot connect to " + options_.uri + ": timed out (connect_timeout expired)");
    return left;
  }

  // Asks the sentinels, in order, for the address of the master (SENTINEL
  // get-master-addr-by-name); the first that answers wins (redis-py's
  // Sentinel.discover_master). Throws error(connection_failed) naming each
  // sentinel's failure.
  std::pair<std::string, int> ask_sentinels(respool::detail::redis::client::clock::time_point start) {
    using respool::detail::redis::is_error;
    using respool::detail::redis::text_of;
    std::string failures;
    for (const auto& [host, port] : options_.sentinels) {
      const std::string name = "sentinel " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                               ":" + std::to_string(port);
      try {
        respool::detail::redis::client sc;
        sc.open(host, port, time_left(start), options_.io_timeout(), name);
        if (options_.connect_timeout)
          sc.set_deadline(start + std::chrono::duration_cast<respool::detail::redis::client::clock::duration>(
                                      std::chrono::duration<double>(*options_.connect_timeout)),
                          "connect_timeout");
        if (!options_.sentinel_password.empty()) {
          auto auth = sc.command({"AUTH", options_.sentinel_password});
          if (is_error(auth.get()))
            throw error(errc::connection_failed, "authentication failed: " + text_of(auth.get()));
        }
        auto reply = sc.command({"SENTINEL", "get-master-addr-by-name", options_.master_name});
        if (is_error(reply.get())) throw error(errc::connection_failed, text_of(reply.get()));
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_STRING && reply->element[1]->type == REDIS_REPLY_STRING) {
          const std::string port_text = text_of(reply->element[1]);
          char* end = nullptr;
          const long master_port = std::strtol(port_text.c_str(), &end, 10);
          if (end != port_text.c_str() + port_text.size() || master_port <= 0 || master_port > 65535)
            throw error(errc::connection_failed, "bad port in its answer");
          return {text_of(reply->element[0]), static_cast<int>(master_port)};
        }
        throw error(errc::connection_failed,
                    "it does not know a master named '" + options_.master_name + "'");
      } catch (const error& e) {
        if (!failures.empty()) failures += "; ";
        failures += name + ": " + e.what();
      }
    }
    throw error(errc::connection_failed, "cannot connect to " + options_.uri +
                                             ": no sentinel gave the address of master '" +
                                             options_.master_name + "': " + failures);
  }

  // The live session, locked, or error(connection_lost).
  std::pair<std::shared_ptr<respool::detail::redis::session>, std::unique_lock<std::mutex>> lock_session() {
    if (session_->inherited()) {
      abandon();
      throw error(errc::connection_lost, "the connection to " + options_.uri +
                                             " was opened by the parent process (forked): reconnect");
    }
    auto s = session_;
    std::unique_lock<std::mutex> lock(s->mutex);
    if (s->abandoned.load(std::memory_order_acquire) || !s->client.is_open())
      throw error(errc::connection_lost, "not connected to " + options_.uri);
    return {std::move(s), std::move(lock)};
  }

  [[noreturn]] static void refused(const std::string& what, const redisReply* reply) {
    throw error(errc::channel_error, "redis: " + what + " failed: " + respool::detail::redis::text_of(reply));
  }

  static void check(const std::string& what, const reply_ptr& reply) {
    if (respool::detail::redis::is_error(reply.get())) refused(what, reply.get());
  }

  // The exchange's type as declared on this connection ("direct" if not).
  static std::string type_of(const respool::detail::redis::session& s, std::string_view exchange) {
    auto it = s.exchanges.find(exchange);
    return it == s.exchanges.end() ? std::string("direct") : it->second.type;
  }

  // kombu's basic_publish of `count` messages, in one round trip (pipelined):
  //   default exchange  LPUSH <queue's priority list>
  //   fanout            PUBLISH /<db>.<exchange>[/<routing_key>]
  //   direct, topic     EVALSHA of detail::redis::route_and_push_script: the
  //                     lookup of the binding set and the LPUSHes, on the server
  // The script is loaded once per session (SCRIPT LOAD); a server that lost
  // it (restarted, SCRIPT FLUSH) is sent it again (EVAL). Unroutable messages
  // are dropped (AMQP semantics). A refused command throws channel_error
  // after every other command ran (a pipeline is not a transaction).
  void publish_batch(respool::detail::redis::session& s, const Envelope* messages, std::size_t count,
                     std::string_view exchange, std::string_view routing_key) {
    namespace kr = respool::detail::redis;
    const std::string type = exchange.empty() ? std::string() : type_of(s, exchange);
    const bool fanout = type == "fanout";
    const bool routed = !exchange.empty() && !fanout;
    std::string what, key, topic;
    if (fanout) {
      topic = kr::fanout_channel(db(), exchange, routing_key);
      what = "PUBLISH " + topic;
    } else if (routed) {
      key = kr::binding_key(exchange);
      what = "publish to exchange '" + std::string(exchange) + "'";
      if (s.route_script_sha.empty()) {
        auto loaded = s.client.command({"SCRIPT", "LOAD", kr::route_and_push_script});
        check("SCRIPT LOAD", loaded);
        if (loaded->type != REDIS_REPLY_STRING) refused("SCRIPT LOAD", loaded.get());
        s.route_script_sha.assign(loaded->str, loaded->len);
      }
    }
    std::vector<std::string> payloads(count), lists(count);
    std::vector<command_args> commands(count);
    for (std::size_t i = 0; i < count; ++i) {
      payloads[i] = kr::encode_envelope(messages[i], exchange, routing_key, kr::uuid4());
      if (fanout) {
        commands[i] = {"PUBLISH", topic, payloads[i]};
      } else if (routed) {
        lists[i] = kr::priority_queue("", messages[i].priority);  // the suffix of each queue's list
        commands[i] = {"EVALSHA", s.route_script_sha, "1", key, type, routing_key, lists[i], payloads[i]};
      } else {
        lists[i] = kr::priority_queue(routing_key, messages[i].priority);
        commands[i] = {"LPUSH", lists[i], payloads[i]};
      }
    }
    // wait_replicas: a WAIT after the batch, in the same round trip (fanout
    // stores nothing to wait for).
    const int replicas = options().wait_replicas;
    const bool wait = replicas > 0 && !fanout;
    const auto wait_ms = wait ? static_cast<long>(std::ceil(options().wait_timeout() * 1000)) : 0L;
    const std::string replicas_text = std::to_string(replicas), wait_ms_text = std::to_string(wait_ms);
    if (wait) commands.push_back({"WAIT", replicas_text, wait_ms_text});
    auto replies = s.client.pipeline(commands);
    bool retried = false;  // a message re-sent after the pipelined WAIT: wait again
    std::size_t failed = 0, first_failed = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (routed && replies[i]->type == REDIS_REPLY_ERROR &&
          std::string_view(replies[i]->str, replies[i]->len).substr(0, 8) == "NOSCRIPT") {
        command_args eval = commands[i];
        eval[0] = "EVAL";
        eval[1] = kr::route_and_push_script;
        replies[i] = s.client.command(eval);
        retried = true;
      }
      if (kr::is_error(replies[i].get()) && failed++ == 0) first_failed = i;
    }
    if (!fanout && !routed) what = "publish to '" + std::string(routing_key) + "'";
    if (failed == 0) {
      if (!wait) return;
      if (retried) replies[count] = s.client.command({"WAIT", replicas_text, wait_ms_text});
      bool stored = !routed;  // LPUSH always stores; the script says how many queues it pushed to
      for (std::size_t i = 0; routed && i < count; ++i)
        stored = stored || (replies[i]->type == REDIS_REPLY_INTEGER && replies[i]->integer > 0);
      const redisReply* acked = replies[count].get();
      check("WAIT", replies[count]);
      if (stored && (acked->type != REDIS_REPLY_INTEGER || acked->integer < replicas))
        throw error(errc::channel_error,
                    "redis: " + what +
                        (count > 1 ? " (" + std::to_string(count) + " messages)" : std::string()) +
                        " not confirmed by " + replicas_text + " replica(s) within " + wait_ms_text +
                        " ms (wait_replicas; WAIT answered " +
                        std::to_string(acked->type == REDIS_REPLY_INTEGER ? acked->integer : -1) +
                        "): the message is on the master, and lost if it fails before a replica has it");
      return;
    }
    if (!fanout && !routed) what = "LPUSH " + lists[first_failed];
    if (count > 1)
      what += " (" + std::to_string(failed) + " of " + std::to_string(count) +
              " messages refused; the others were published)";
    refused(what, replies[first_failed].get());
  }

  // kombu Channel._lookup: the queues `exchange` routes `routing_key` to.
  std::vector<std::string> lookup(respool::detail::redis::session& s, std::string_view exchange,
                                  std::string_view routing_key) {
    namespace kr = respool::detail::redis;
    if (exchange.empty()) return {std::string(routing_key)};
    std::string key = kr::binding_key(exchange);
    auto reply = s.client.command({"SMEMBERS", key});
    check("SMEMBERS " + key, reply);
    std::string type = type_of(s, exchange);
    std::vector<std::string> queues;
    std::map<std::string, kr::topic_matcher> matchers;
    kr::binding b;
    for (std::size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; ++i) {
      const redisReply* item = reply->element[i];
      if (!item || item->type != REDIS_REPLY_STRING ||
          !kr::parse_binding(std::string_view(item->str, item->len), b))
        continue;
      bool match = false;
      if (type == "topic") {
        auto it = matchers.find(b.pattern);
        if (it == matchers.end()) it = matchers.emplace(b.pattern, kr::topic_matcher(b.pattern)).first;
        match = !b.queue.empty() && it->second(routing_key);
      } else if (type == "fanout") {
        match = true;
      } else {
        match = b.routing_key == routing_key;
      }
      if (match && std::find(queues.begin(), queues.end(), b.queue) == queues.end())
        queues.push_back(b.queue);
    }
    return queues;
  }

  // kombu QoS.restore_unacked / restore_by_tag for every delivered tag.
  void restore_unacked(respool::detail::redis::session& s) {
    auto tags = s.delivered;
    for (const auto& tag : tags) {
      if (restore_by_tag(s, tag)) s.delivered.erase(std::find(s.delivered.begin(), s.delivered.end(), tag));
    }
  }

  // WATCH unacked; HGET unacked <tag>; MULTI; ZREM unacked_index <tag>;
  // HDEL unacked <tag>; RPUSH <queue> <payload with redelivered flags>...; EXEC.
  bool restore_by_tag(respool::detail::redis::session& s, const std::string& tag) {
    namespace kr = respool::detail::redis;
    for (int attempt = 0; attempt < 16; ++attempt) {
      auto watched = s.client.pipeline({{"WATCH", kr::unacked_key}, {"HGET", kr::unacked_key, tag}});
      check("WATCH", watched[0]);
      check("HGET", watched[1]);
      std::vector<std::string> pushes;  // queue, payload, queue, payload...
      if (watched[1]->type == REDIS_REPLY_STRING) {
        auto stored =
            nlohmann::ordered_json::parse(watched[1]->str, watched[1]->str + watched[1]->len, nullptr, false);
        if (stored.is_array() && stored.size() == 3 && stored[0].is_object()) {
          auto& payload = stored[0];
          auto headers = payload.find("headers");
          if (headers != payload.end() && headers->is_object()) {
            (*headers)["redelivered"] = true;
            auto props = payload.find("properties");
            if (props != payload.end() && props->is_object()) {
              auto info = props->find("delivery_info");
              if (info != props->end() && info->is_object()) (*info)["redelivered"] = true;
            }
          }
          std::string ex = stored[1].is_string() ? stored[1].get<std::string>() : std::string();
          std::string rk = stored[2].is_string() ? stored[2].get<std::string>() : std::string();
          std::string text = kr::py_dumps(payload);
          for (auto& q : lookup(s, ex, rk)) {
            pushes.push_back(std::move(q));
            pushes.push_back(text);
          }
        }
      }
      std::vector<command_args> tx;
      tx.push_back({"MULTI"});
      tx.push_back({"ZREM", kr::unacked_index_key, tag});
      tx.push_back({"HDEL", kr::unacked_key, tag});
      for (std::size_t i = 0; i < pushes.size(); i += 2) tx.push_back({"RPUSH", pushes[i], pushes[i + 1]});
      tx.push_back({"EXEC"});
      auto replies = s.client.pipeline(tx);
      for (auto& r : replies) check("restoring an unacked message", r);
      if (replies.back()->type == REDIS_REPLY_ARRAY) return true;  // nil: "unacked" changed meanwhile: retry
    }
    return false;
  }

  static void ack(const std::weak_ptr<respool::detail::redis::session>& weak, const std::string& tag,
                  const std::string& uri) {
    namespace kr = respool::detail::redis;
    auto s = weak.lock();
    if (!s || s->abandoned.load(std::memory_order_acquire) || s->inherited())
      throw error(errc::connection_lost,
                  "cannot ack message " + tag + ": its connection to " + uri + " is gone");
    std::lock_guard<std::mutex> lock(s->mutex);
    auto it = std::find(s->delivered.begin(), s->delivered.end(), tag);
    if (it == s->delivered.end())
      throw error(errc::connection_lost, "cannot ack message " + tag + ": its connection to " + uri +
                                             " was closed and the message put back in its queue");
    if (!s->client.is_open())
      throw error(errc::connection_lost, "cannot ack message " + tag + ": not connected to " + uri +
                                             " (the message stays in 'unacked')");
    auto replies = s->client.pipeline(
        {{"MULTI"}, {"ZREM", kr::unacked_index_key, tag}, {"HDEL", kr::unacked_key, tag}, {"EXEC"}});
    for (auto& r : replies) check("ack", r);
    s->delivered.erase(std::find(s->delivered.begin(), s->delivered.end(), tag));
  }

  redis::options options_;
  std::shared_ptr<respool::detail::redis::session> session_;
  redis_channel channel_;
};

// ---------------------------------------------------------------- redis_channel

inline void redis_channel::declare_exchange(const Exchange& exchange) {
  auto [s, lock] = connection_.lock_session();
  if (exchange.name.empty()) return;  // the default exchange always exists
  if (exchange.type != "direct" && exchange.type != "topic" && exchange.type != "fanout")
    throw error(errc::channel_error, "redis: exchange '" + exchange.name + "': unsupported type '" +
                                         exchange.type + "' (direct, topic or fanout)");
  auto it = s->exchanges.find(exchange.name);
  if (it == s->exchanges.end()) {
    s->exchanges.emplace(exchange.name, exchange);
  } else if (it->second != exchange) {
    throw error(errc::channel_error, "redis: cannot redeclare exchange '" + exchange.name +
                                         "' with different type, durable or auto_delete");
  }
}

inline void redis_channel::declare_queue(const Queue&) { connection_.lock_session(); }

inline void redis_channel::bind_queue(const Queue& queue) {
  if (queue.exchange.name.empty()) {
    connection_.lock_session();
    return;
  }
  declare_exchange(queue.exchange);
  auto [s, lock] = connection_.lock_session();
  std::string type = redis_connection::type_of(*s, queue.exchange.name);
  std::string pattern =
      type == "topic" ? respool::detail::redis::key_to_pattern(queue.routing_key) : std::string();
  std::string key = respool::detail::redis::binding_key(queue.exchange.name);
  auto reply = s->client.command(
      {"SADD", key, respool::detail::redis::binding_member(queue.routing_key, pattern, queue.name)});
  redis_connection::check("SADD " + key, reply);
}

inline void redis_channel::publish(const Envelope& message, std::string_view exchange,
                                   std::string_view routing_key) {
  auto [s, lock] = connection_.lock_session();
  connection_.publish_batch(*s, &message, 1, exchange, routing_key);
}

inline void redis_channel::publish_many(const Envelope* messages, std::size_t count,
                                        std::string_view exchange, std::string_view routing_key) {
  if (count == 0) return;
  auto [s, lock] = connection_.lock_session();
  connection_.publish_batch(*s, messages, count, exchange, routing_key);
}

inline std::optional<Message> redis_channel::get(std::string_view queue, bool no_ack) {
  namespace kr = respool::detail::redis;
  auto [s, lock] = connection_.lock_session();
  redis_connection::reply_ptr item;
  for (int step : kr::priority_steps) {
    std::string list = kr::priority_queue(queue, step);
    auto reply = s->client.command({"RPOP", list});
    redis_connection::check("RPOP " + list, reply);
    if (reply->type == REDIS_REPLY_STRING) {
      item = std::move(reply);
      break;
    }
  }
  if (!item) return std::nullopt;
  kr::received got;
  try {
    got = kr::decode_envelope(std::string_view(item->str, item->len));
  } catch (const error& e) {
    throw error(errc::encoding_error,
                "redis: removed an undecodable item from queue '" + std::string(queue) + "': " + e.what());
  }
  if (no_ack) return Message(std::move(got.envelope), nullptr);
  const std::string tag = got.envelope.delivery_tag;
  nlohmann::ordered_json record = nlohmann::ordered_json::array();
  record.push_back(std::move(got.raw));
  record.push_back(got.envelope.exchange);
  record.push_back(got.envelope.routing_key);
  auto replies = s->client.pipeline({{"MULTI"},
                                     {"ZADD", kr::unacked_index_key, kr::unix_time_text(), tag},
                                     {"HSET", kr::unacked_key, tag, kr::py_dumps(record)},
                                     {"EXEC"}});
  for (auto& r : replies) redis_connection::check("recording an unacked message", r);
  s->delivered.push_back(tag);
  std::weak_ptr<respool::detail::redis::session> weak = s;
  std::string uri = connection_.options().uri;
  return Message(std::move(got.envelope), [weak = std::move(weak), tag, uri = std::move(uri)] {
    redis_connection::ack(weak, tag, uri);
  });
}

inline std::size_t redis_channel::queue_size(std::string_view queue) {
  namespace kr = respool::detail::redis;
  auto [s, lock] = connection_.lock_session();
  std::vector<std::string> lists;
  for (int step : kr::priority_steps) lists.push_back(kr::priority_queue(queue, step));
  std::vector<redis_connection::command_args> tx{{"MULTI"}};
  for (const auto& list : lists) tx.push_back({"LLEN", list});
  tx.push_back({"EXEC"});
  auto replies = s->client.pipeline(tx);
  for (auto& r : replies) redis_connection::check("LLEN", r);
  std::size_t total = 0;
  const redisReply* exec = replies.back().get();
  for (std::size_t i = 0; exec->type == REDIS_REPLY_ARRAY && i < exec->elements; ++i)
    if (exec->element[i]->type == REDIS_REPLY_INTEGER)
      total += static_cast<std::size_t>(exec->element[i]->integer);
  return total;
}

inline std::size_t redis_channel::purge(std::string_view queue) {
  namespace kr = respool::detail::redis;
  auto [s, lock] = connection_.lock_session();
  std::vector<std::string> lists;
  for (int step : kr::priority_steps) lists.push_back(kr::priority_queue(queue, step));
  std::vector<redis_connection::command_args> tx{{"MULTI"}};
  for (const auto& list : lists) {
    tx.push_back({"LLEN", list});
    tx.push_back({"DEL", list});
  }
  tx.push_back({"EXEC"});
  auto replies = s->client.pipeline(tx);
  for (auto& r : replies) redis_connection::check("purge", r);
  std::size_t total = 0;
  const redisReply* exec = replies.back().get();
  for (std::size_t i = 0; exec->type == REDIS_REPLY_ARRAY && i < exec->elements; i += 2)
    if (exec->element[i]->type == REDIS_REPLY_INTEGER)
      total += static_cast<std::size_t>(exec->element[i]->integer);
  return total;
}

// ---------------------------------------------------------------- registration

namespace redis {
inline std::unique_ptr<connection_impl> make_connection(const ConnectionParams& params) {
  return std::make_unique<redis_connection>(params);
}
// Registers "redis", "rediss", "redis+socket" and "sentinel" (idempotent).
// Done at static initialisation by including this header; call it to be sure
// from another static constructor.
inline bool ensure_registered() {
  static const bool done =
      (register_transport("redis", &make_connection), register_transport("rediss", &make_connection),
       register_transport("redis+socket", &make_connection), register_transport("sentinel", &make_connection),
       true);
  return done;
}
inline const bool registered = ensure_registered();
}  // namespace redis

}  // namespace respool::transport
