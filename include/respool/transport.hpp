// respool/transport.hpp — the interface a broker transport implements, and the
// registry that maps URL schemes to transports.
//
// memory:// is always registered (respool/transport/memory.hpp). Including
// respool/transport/redis.hpp or respool/transport/amqp.hpp registers
// redis:// / rediss:// or amqp:// / amqps:// at static initialisation.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/entity.hpp"
#include "respool/message.hpp"

namespace respool {

class ConnectionParams;

namespace transport {

// One channel of a broker connection. Not thread-safe: a channel is used by
// one thread at a time (the holder of the connection's lease).
class channel_impl {
 public:
  virtual ~channel_impl() = default;
  // Declare an exchange (kombu's defaults: durable, not auto-delete).
  virtual void declare_exchange(const Exchange& exchange) = 0;
  // Declare the queue itself (durable, not exclusive, not auto-delete).
  virtual void declare_queue(const Queue& queue) = 0;
  // Bind queue.name to queue.exchange with queue.routing_key.
  virtual void bind_queue(const Queue& queue) = 0;
  // Publish an envelope. Returns once the broker has the message (as far as
  // the transport can tell); throws respool::error on failure, never drops silently.
  virtual void publish(const Envelope& message, std::string_view exchange, std::string_view routing_key) = 0;
  // Publish `count` envelopes, in order, to one exchange and routing key.
  // Returns once the broker has every one (as publish); throws if any may be
  // missing. Transports that can keep many messages in flight (AMQP confirms,
  // Redis pipelining) override it; this default publishes one at a time.
  virtual void publish_many(const Envelope* messages, std::size_t count, std::string_view exchange,
                            std::string_view routing_key) {
    for (std::size_t i = 0; i < count; ++i) publish(messages[i], exchange, routing_key);
  }
  // basic_get: the next message of `queue`, or nothing if it is empty.
  virtual std::optional<Message> get(std::string_view queue, bool no_ack) = 0;
  // Number of messages ready in `queue` (0 if it does not exist).
  virtual std::size_t queue_size(std::string_view queue) = 0;
  // Remove every ready message from `queue`; returns how many were removed.
  virtual std::size_t purge(std::string_view queue) = 0;
};

// One broker connection. Created unconnected; connect() opens it.
class connection_impl {
 public:
  virtual ~connection_impl() = default;
  // Open the connection; throws respool::error(connection_failed) with a
  // message naming the sanitised URI.
  virtual void connect() = 0;
  virtual bool connected() const noexcept = 0;
  // A cheap liveness check used when a pool hands the connection out
  // (e.g. a PING); false means the connection is dead and must be replaced.
  virtual bool alive() noexcept = 0;
  // Orderly close (protocol close where there is one). Never throws.
  virtual void close() noexcept = 0;
  // Forget the connection without touching the socket: used in a forked
  // child for connections inherited from the parent. Never throws.
  virtual void abandon() noexcept = 0;
  // The connection's default channel; connect() first.
  virtual channel_impl& channel() = 0;
};

using connection_factory = std::function<std::unique_ptr<connection_impl>(const ConnectionParams&)>;

namespace detail {
// Copy-on-write: lookups (one per new Connection) read an immutable snapshot
// through an atomic pointer, with no lock; registering (at static
// initialisation, rarely later) copies it under `mutex` and publishes the
// copy. Old snapshots are kept (a reader may still be in one); there is one
// per registration, a handful per process.
struct registry {
  using map = std::map<std::string, connection_factory, std::less<>>;
  std::mutex mutex;  // writers only; a process-wide lock under the fork rule (globals.hpp)
  std::atomic<const map*> current{nullptr};
  std::vector<std::unique_ptr<const map>> snapshots;  // every one published (mutex)
};
inline registry& get_registry() {
  static registry* instance = [] {
    auto* r = new registry;  // never destroyed: usable from static destructors
    static constexpr respool::detail::fork_lock_hooks hooks{
        []() noexcept { get_registry().mutex.lock(); },
        []() noexcept { get_registry().mutex.unlock(); },
        []() noexcept { ::new (static_cast<void*>(&get_registry().mutex)) std::mutex; },
    };
    respool::detail::register_fork_lock(respool::detail::fork_lock_rank::transports, &hooks);
    return r;
  }();
  return *instance;
}
}  // namespace detail

// Register (or replace) the transport serving `scheme` (a normalised scheme, e.g. "redis").
inline void register_transport(std::string scheme, connection_factory factory) {
  auto& r = detail::get_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const detail::registry::map* old = r.current.load(std::memory_order_relaxed);
  auto next = old ? std::make_unique<detail::registry::map>(*old) : std::make_unique<detail::registry::map>();
  (*next)[std::move(scheme)] = std::move(factory);
  r.current.store(next.get(), std::memory_order_release);
  r.snapshots.push_back(std::move(next));
}

// The factory for `scheme`, or an empty function if none is registered. Takes no lock.
inline connection_factory find_transport(std::string_view scheme) {
  const detail::registry::map* m = detail::get_registry().current.load(std::memory_order_acquire);
  if (m == nullptr) return connection_factory();
  auto it = m->find(scheme);
  return it == m->end() ? connection_factory() : it->second;
}

}  // namespace transport
}  // namespace respool
