// respool/transport/memory.hpp — the built-in memory:// transport: a real,
// thread-safe, in-process broker (kombu's memory transport).
//
// One broker per (hostname, virtual_host) of the connection parameters,
// shared by every connection to it in the process: `memory://` and
// `memory://localhost` meet, `memory://localhost/a` and `memory://localhost/b`
// are separate brokers. Brokers live as long as the process.
//
// Semantics follow AMQP 0-9-1 as kombu's virtual transport models it:
//   * exchanges "direct", "fanout" and "topic" (kombu's `*`/`#` patterns);
//     redeclaring one with another type, durability or auto_delete throws
//     error(channel_error); so does publishing to an undeclared exchange;
//   * the default exchange "" routes to the queue named by the routing key;
//   * a message no queue is bound to receive is dropped, silently;
//   * get() is basic_get: with no_ack=false the message is outstanding until
//     Message::ack(); when its connection closes first it goes back to the
//     front of its queue. get() on an undeclared queue throws error(channel_error).
//
// Registration: this header registers "memory" with transport::register_transport
// at static initialisation; respool::Connection also calls
// transport::memory::ensure_registered(), so memory:// works even from the
// constructors of other static objects.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "respool/connection_params.hpp"
#include "respool/detail/memory_broker.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"
#include "respool/transport.hpp"

namespace respool::transport {

namespace memory {

// One virtual host of the in-process broker: declare, bind, publish, get,
// ack, queue_size, purge, stats(). Thread-safe. See detail/memory_broker.hpp.
using broker = respool::detail::memory::broker;

// Counters of a broker (connects, live_connections, published, routed,
// dropped, delivered, acked, redelivered, unacked, exchanges, queues).
using broker_stats = respool::detail::memory::broker_stats;

// A kombu-style topic binding pattern ("stock.#", "*.orange.*").
using topic_pattern = respool::detail::memory::topic_pattern;

// The process-wide broker for a host and virtual host, created on first use.
// Thread-safe; the same pair always gives the same broker.
inline std::shared_ptr<broker> broker_for(std::string_view hostname, std::string_view virtual_host) {
  return respool::detail::memory::shared_broker(hostname, virtual_host);
}

// The process-wide broker that connections with these parameters attach to.
inline std::shared_ptr<broker> broker_for(const ConnectionParams& params) {
  return broker_for(params.hostname(), params.virtual_host());
}

// The broker that connections to `url` (a memory:// URL) attach to. Throws
// what ConnectionParams::parse throws.
inline std::shared_ptr<broker> broker_for(std::string_view url) {
  return broker_for(ConnectionParams::parse(url));
}

}  // namespace memory

class memory_connection;

// The channel of a memory_connection. Used by one thread at a time (as every
// channel_impl). Every operation throws error(connection_lost) once its
// connection is closed or abandoned, and error(channel_error) where AMQP
// would close the channel (see the broker's members); the channel stays usable.
class memory_channel final : public channel_impl {
 public:
  explicit memory_channel(memory_connection& connection) noexcept : connection_(connection) {}

  // Declare an exchange; error(channel_error) if it exists and differs, or its type is unknown.
  void declare_exchange(const Exchange& exchange) override;
  // Declare queue.name (only the queue; bind_queue binds it).
  void declare_queue(const Queue& queue) override;
  // Bind queue.name to queue.exchange.name with queue.routing_key; error(channel_error) if either is missing.
  void bind_queue(const Queue& queue) override;
  // Route through `exchange`; unroutable messages are dropped; error(channel_error) if the exchange is
  // missing.
  void publish(const Envelope& message, std::string_view exchange, std::string_view routing_key) override;
  // basic_get; error(channel_error) if the queue is missing.
  std::optional<Message> get(std::string_view queue, bool no_ack) override;
  // Ready messages in `queue` (0 if it is missing).
  std::size_t queue_size(std::string_view queue) override;
  // Drop the ready messages of `queue`; error(channel_error) if it is missing.
  std::size_t purge(std::string_view queue) override;

 private:
  memory_connection& connection_;
};

// A connection to the in-process broker. connect() attaches to the shared
// broker of its (hostname, virtual_host) and always succeeds; alive() is true
// while connected. close() (also run by the destructor) detaches, putting the
// connection's unacked messages back in their queues; it may be called from
// another thread while the channel is in use (later channel operations throw
// error(connection_lost)). Not copyable or movable (the channel refers to it).
class memory_connection final : public connection_impl {
 public:
  // A connection to the broker of params.hostname() and params.virtual_host().
  explicit memory_connection(const ConnectionParams& params)
      : hostname_(params.hostname()), virtual_host_(params.virtual_host()), uri_(params.as_uri()) {}
  // A connection to the broker of `hostname` and `virtual_host`.
  memory_connection(std::string hostname, std::string virtual_host)
      : hostname_(std::move(hostname)),
        virtual_host_(std::move(virtual_host)),
        uri_("memory://" + hostname_ + "/" + virtual_host_) {}

  memory_connection(const memory_connection&) = delete;
  memory_connection& operator=(const memory_connection&) = delete;

  // Closes the connection (unless abandoned).
  ~memory_connection() override { close(); }

  // Attach to the broker (a no-op when already connected). Never fails.
  void connect() override {
    auto target = memory::broker_for(hostname_, virtual_host_);
    std::lock_guard<std::mutex> lock(mutex_);
    if (broker_ && !abandoned_.load(std::memory_order_acquire)) return;
    broker_ = std::move(target);
    id_ = broker_->attach();
    abandoned_.store(false, std::memory_order_release);
  }

  // True between connect() and close()/abandon(). Thread-safe.
  bool connected() const noexcept override {
    if (abandoned_.load(std::memory_order_acquire)) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    return broker_ != nullptr;
  }

  // Same as connected(): an attached in-process connection cannot die.
  bool alive() noexcept override { return connected(); }

  // Detach from the broker; unacked messages go back to the front of their
  // queues. Idempotent, thread-safe, never throws.
  void close() noexcept override {
    if (abandoned_.load(std::memory_order_acquire)) return;
    std::shared_ptr<memory::broker> target;
    std::uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      target = std::move(broker_);
      broker_.reset();
      id = std::exchange(id_, 0);
    }
    if (target) {
      try {
        target->detach(id);
      } catch (...) {  // only allocation failure; nothing sensible to do in close()
      }
    }
  }

  // Forget the connection without taking any lock (for a forked child, where
  // a lock may have been held by a parent thread): the broker is not told, so
  // its counters and this connection's unacked messages stay as they were.
  // Afterwards the connection counts as closed; connect() attaches anew.
  void abandon() noexcept override { abandoned_.store(true, std::memory_order_release); }

  // The connection's channel. Throws error(connection_lost) when not connected.
  channel_impl& channel() override {
    if (!connected()) throw not_connected();
    return channel_;
  }

  // The broker this connection attaches to (connected or not). Thread-safe.
  std::shared_ptr<memory::broker> broker() const { return memory::broker_for(hostname_, virtual_host_); }

  // The connection's id in its broker; 0 when not connected. Thread-safe.
  std::uint64_t id() const noexcept {
    if (abandoned_.load(std::memory_order_acquire)) return 0;
    std::lock_guard<std::mutex> lock(mutex_);
    return id_;
  }

  // "memory://host/vhost", for messages.
  const std::string& uri() const noexcept { return uri_; }

 private:
  friend class memory_channel;

  // The broker and our id, or error(connection_lost) when not connected.
  std::pair<std::shared_ptr<memory::broker>, std::uint64_t> session() const {
    if (!abandoned_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (broker_) return {broker_, id_};
    }
    throw not_connected();
  }

  error not_connected() const { return error(errc::connection_lost, uri_ + ": connection is not open"); }

  const std::string hostname_;
  const std::string virtual_host_;
  const std::string uri_;
  mutable std::mutex mutex_;
  std::shared_ptr<memory::broker> broker_;  // null when not connected
  std::uint64_t id_ = 0;
  std::atomic<bool> abandoned_{false};
  memory_channel channel_{*this};
};

inline void memory_channel::declare_exchange(const Exchange& exchange) {
  connection_.session().first->declare_exchange(exchange);
}

inline void memory_channel::declare_queue(const Queue& queue) {
  connection_.session().first->declare_queue(queue.name);
}

inline void memory_channel::bind_queue(const Queue& queue) {
  connection_.session().first->bind(queue.exchange.name, queue.name, queue.routing_key);
}

inline void memory_channel::publish(const Envelope& message, std::string_view exchange,
                                    std::string_view routing_key) {
  connection_.session().first->publish(message, exchange, routing_key);
}

inline std::optional<Message> memory_channel::get(std::string_view queue, bool no_ack) {
  auto [target, id] = connection_.session();
  return target->get(queue, no_ack, id);
}

inline std::size_t memory_channel::queue_size(std::string_view queue) {
  return connection_.session().first->queue_size(queue);
}

inline std::size_t memory_channel::purge(std::string_view queue) {
  return connection_.session().first->purge(queue);
}

namespace memory {

// Register memory:// with the transport registry (once per process; later
// calls do nothing and return true). Thread-safe; callable at any time,
// including during static initialisation.
inline bool ensure_registered() {
  static const bool done = [] {
    register_transport("memory", [](const ConnectionParams& params) -> std::unique_ptr<connection_impl> {
      return std::make_unique<memory_connection>(params);
    });
    return true;
  }();
  return done;
}

// Registers memory:// during static initialisation of any program that includes this header.
inline const bool registered = ensure_registered();

}  // namespace memory
}  // namespace respool::transport
