// respool/connection.hpp — Connection (a lazily connected broker handle) and
// Channel (its operations), over any registered transport.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "respool/connection_params.hpp"
#include "respool/detail/globals.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"
#include "respool/transport.hpp"
#include "respool/transport/memory.hpp"

namespace respool {

class Connection;

namespace detail {
struct connection_state;

// e.what() without the ": <code message>" std::system_error appends, for
// quoting one error inside another (no "connection failed: connection failed").
inline std::string reason_of(const std::system_error& e) {
  std::string text = e.what();
  const std::string suffix = ": " + e.code().message();
  if (text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0)
    text.resize(text.size() - suffix.size());
  return text;
}
}  // namespace detail

// The operations of a connection's default channel. Obtained from
// Connection::default_channel(); valid as long as the Connection (which may be
// moved) lives. Not thread-safe: one thread at a time, like the connection.
// Every operation throws respool::error: connection_lost if the broker went
// away, channel_error if it refused.
class Channel {
 public:
  // Declare an exchange (kombu's defaults: durable, not auto-delete).
  void declare(const Exchange& exchange);
  // Declare the queue's exchange (if named), the queue, and the binding.
  void declare(const Queue& queue);
  // basic_get: the next message, or nothing if the queue is empty. With
  // no_ack = false, call Message::ack() once it is processed.
  std::optional<Message> get(std::string_view queue, bool no_ack = true);
  // Publish an already encoded envelope (Producer does the encoding).
  void publish(const Envelope& message, std::string_view exchange, std::string_view routing_key);
  // Publish several envelopes to one exchange and routing key, with as many
  // in flight at once as the transport allows (Producer::publish_many).
  void publish_many(const std::vector<Envelope>& messages, std::string_view exchange,
                    std::string_view routing_key);
  // Messages ready in `queue`.
  std::size_t queue_size(std::string_view queue);
  // Remove all ready messages from `queue`; returns how many.
  std::size_t purge(std::string_view queue);
  // The connection this channel belongs to.
  Connection& connection() noexcept;

 private:
  friend struct detail::connection_state;
  friend bool maybe_declare(const Exchange&, Channel&);
  friend bool maybe_declare(const Queue&, Channel&);
  explicit Channel(detail::connection_state* state) noexcept : state_(state) {}
  transport::channel_impl& impl();
  detail::connection_state* state_;
};

namespace detail {
struct connection_state {
  explicit connection_state(ConnectionParams p) : params(std::move(p)), channel(this) {
    transport::memory::ensure_registered();
    impl = make_impl(params);
  }
  static std::unique_ptr<transport::connection_impl> make_impl(const ConnectionParams& p) {
    auto factory = transport::find_transport(p.transport());
    if (!factory) throw unknown_transport(p.transport());
    return factory(p);
  }
  // The broker `index` names: 0 the primary, i the alternate i - 1.
  const ConnectionParams& host(std::size_t index) const {
    return index == 0 ? params : params.alternates()[index - 1];
  }
  std::size_t hosts() const noexcept { return 1 + params.alternates().size(); }

  ConnectionParams params;
  std::unique_ptr<transport::connection_impl> impl;
  std::size_t active = 0;  // which host impl talks to (owner thread)
  // Guards `impl` the pointer (not the object) against close() from another
  // thread while the owner fails over to another host.
  std::mutex impl_mutex;
  Channel channel;
  Connection* owner = nullptr;
  // Owner thread only (the lease holder): close() from another thread
  // (force_close_all, reset) touches none of these but `generation`.
  std::set<std::string> declared;  // maybe_declare's memory, per session (cleared by connect())
  std::atomic<std::uint32_t> generation{fork_generation()};
  std::uint64_t sessions = 0;  // successful connects
};
}  // namespace detail

// A broker connection (kombu Connection): created unconnected, it connects on
// connect(), ensure_connection() or first use of default_channel().
// Movable, not copyable. Not thread-safe: one thread at a time (pools give
// each thread its own). After fork(), a connection inherited from the parent
// is abandoned on close/destruction (nothing is written to its socket).
class Connection {
 public:
  // Throws invalid_url, or unknown_transport if no registered transport serves the scheme.
  explicit Connection(std::string_view url) : Connection(ConnectionParams::parse(url)) {}
  explicit Connection(ConnectionParams params)
      : state_(std::make_unique<detail::connection_state>(std::move(params))) {
    state_->owner = this;
  }

  Connection(Connection&& other) noexcept : state_(std::move(other.state_)) {
    if (state_) state_->owner = this;
  }
  Connection& operator=(Connection&& other) noexcept {
    if (this != &other) {
      close();
      state_ = std::move(other.state_);
      if (state_) state_->owner = this;
    }
    return *this;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Closes the connection (protocol close), or abandons it in a forked child.
  ~Connection() { close(); }

  // The normalised parameters (the pool group key).
  const ConnectionParams& params() const noexcept { return state_->params; }
  // kombu's as_uri(): the password masked as ** unless include_password.
  std::string as_uri(bool include_password = false) const { return state_->params.as_uri(include_password); }

  // Connect now (no-op if connected). Throws error(connection_failed) naming the sanitised URI.
  //
  // Failover (kombu's round-robin strategy): with alternates
  // ("amqp://a;amqp://b"), a failed connect moves on to the next broker, in
  // order and wrapping around, until one answers or each was tried once; the
  // error then names every failure. The connection stays on the broker that
  // answered, and its next connect (after that broker died) starts there.
  void connect() {
    if (connected()) return;
    auto& st = *state_;
    const std::size_t hosts = st.hosts();
    std::string failures;
    for (std::size_t tried = 0;; ++tried) {
      try {
        st.impl->connect();
        break;
      } catch (const error& e) {
        if (hosts == 1) throw;
        if (!failures.empty()) failures += "; ";
        failures += detail::reason_of(e);
        if (tried + 1 == hosts)
          throw error(errc::connection_failed, "cannot connect to any of the " + std::to_string(hosts) +
                                                   " brokers of " + as_uri() + ": " + failures);
      }
      // Next broker: a fresh transport connection for its parameters.
      const std::size_t next = (st.active + 1) % hosts;
      auto impl = detail::connection_state::make_impl(st.host(next));
      {
        std::lock_guard<std::mutex> lock(st.impl_mutex);
        std::swap(st.impl, impl);
        st.active = next;
      }
      impl.reset();  // the one that failed
    }
    st.declared.clear();  // a new session has declared nothing yet
    st.generation.store(detail::fork_generation(), std::memory_order_release);
    ++st.sessions;
  }

  // The parameters of the broker the connection talks to now: params(), or
  // one of its alternates after a failover.
  const ConnectionParams& active_params() const noexcept { return state_->host(state_->active); }

  // True while connected (as far as the transport knows without asking the broker).
  bool connected() const noexcept { return state_ && state_->impl->connected(); }

  // A cheap liveness check of an open connection (false if not connected).
  bool alive() noexcept { return connected() && state_->impl->alive(); }

  // Connect, retrying up to `max_retries` times (negative: forever) with
  // kombu's backoff: wait interval_start, then grow by interval_step up to
  // interval_max between attempts. Each attempt is a connect(), which tries
  // every alternate once, round-robin. Throws error(connection_failed) naming
  // the sanitised URI and the number of attempts.
  void ensure_connection(int max_retries = 3,
                         std::chrono::milliseconds interval_start = std::chrono::seconds(2),
                         std::chrono::milliseconds interval_step = std::chrono::seconds(2),
                         std::chrono::milliseconds interval_max = std::chrono::seconds(30)) {
    auto interval = interval_start;
    for (int attempt = 0;; ++attempt) {
      try {
        connect();
        return;
      } catch (const error& e) {
        if (max_retries >= 0 && attempt >= max_retries)
          throw error(errc::connection_failed, "cannot connect to " + as_uri() + " after " +
                                                   std::to_string(attempt + 1) +
                                                   " attempt(s): " + detail::reason_of(e));
      }
      std::this_thread::sleep_for(interval);  // backoff between attempts (kombu retry_over_time)
      interval = std::min(interval + interval_step, interval_max);
    }
  }

  // Close (protocol close). Idempotent; never throws. The one member another
  // thread may call while the owner uses the connection (a pool's
  // force_close_all(), reset() or forced resize does): the transport's close()
  // is thread-safe and interrupts a blocked call, and nothing else here is
  // written (the next connect() starts a new session and forgets what the
  // old one declared).
  void close() noexcept {
    if (!state_) return;
    if (state_->generation.load(std::memory_order_acquire) != detail::fork_generation()) {
      state_->impl->abandon();  // inherited from the parent: don't write to its socket (nor lock)
      return;
    }
    std::lock_guard<std::mutex> lock(state_->impl_mutex);
    state_->impl->close();
  }

  // The default channel, connecting first if needed.
  Channel& default_channel() {
    connect();
    return state_->channel;
  }

  // Number of successful connects so far (a reconnect makes it grow).
  std::uint64_t sessions() const noexcept { return state_->sessions; }

  // The transport implementation (for transport-specific extras).
  transport::connection_impl& transport_impl() noexcept { return *state_->impl; }

 private:
  friend class Channel;
  friend bool maybe_declare(const Exchange&, Channel&);
  friend bool maybe_declare(const Queue&, Channel&);
  std::unique_ptr<detail::connection_state> state_;
};

inline transport::channel_impl& Channel::impl() {
  if (!state_->impl->connected()) state_->owner->connect();
  return state_->impl->channel();
}
inline void Channel::declare(const Exchange& exchange) { impl().declare_exchange(exchange); }
inline void Channel::declare(const Queue& queue) {
  auto& channel = impl();
  if (!queue.exchange.name.empty()) channel.declare_exchange(queue.exchange);
  channel.declare_queue(queue);
  if (!queue.exchange.name.empty()) channel.bind_queue(queue);
}
inline std::optional<Message> Channel::get(std::string_view queue, bool no_ack) {
  return impl().get(queue, no_ack);
}
inline void Channel::publish(const Envelope& message, std::string_view exchange,
                             std::string_view routing_key) {
  impl().publish(message, exchange, routing_key);
}
inline void Channel::publish_many(const std::vector<Envelope>& messages, std::string_view exchange,
                                  std::string_view routing_key) {
  if (messages.empty()) return;
  impl().publish_many(messages.data(), messages.size(), exchange, routing_key);
}
inline std::size_t Channel::queue_size(std::string_view queue) { return impl().queue_size(queue); }
inline std::size_t Channel::purge(std::string_view queue) { return impl().purge(queue); }
inline Connection& Channel::connection() noexcept { return *state_->owner; }

// Declare `exchange` on the channel's connection unless this session already
// did (kombu maybe_declare). Returns true if it declared now. A reconnected
// connection declares again.
inline bool maybe_declare(const Exchange& exchange, Channel& channel) {
  auto& state = *channel.connection().state_;
  channel.impl();  // connect first: a new session resets the memory
  std::string key = "exchange\x1f" + exchange.name + '\x1f' + exchange.type;
  if (state.declared.count(key)) return false;
  channel.declare(exchange);
  state.declared.insert(std::move(key));
  return true;
}

// Declare `queue` (its exchange, the queue, the binding) unless this session already did.
inline bool maybe_declare(const Queue& queue, Channel& channel) {
  auto& state = *channel.connection().state_;
  channel.impl();
  std::string key = "queue\x1f" + queue.name + '\x1f' + queue.exchange.name + '\x1f' + queue.routing_key;
  if (state.declared.count(key)) return false;
  if (!queue.exchange.name.empty()) maybe_declare(queue.exchange, channel);
  channel.impl().declare_queue(queue);
  if (!queue.exchange.name.empty()) channel.impl().bind_queue(queue);
  state.declared.insert(std::move(key));
  return true;
}

// As above, on a connection's default channel.
inline bool maybe_declare(const Exchange& exchange, Connection& connection) {
  return maybe_declare(exchange, connection.default_channel());
}
inline bool maybe_declare(const Queue& queue, Connection& connection) {
  return maybe_declare(queue, connection.default_channel());
}

}  // namespace respool
