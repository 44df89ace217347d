// respool/transport.hpp — the interface a broker transport implements, and the
// registry that maps URL schemes to transports.
//
// memory:// is always registered (respool/transport/memory.hpp). Including
// respool/transport/redis.hpp or respool/transport/amqp.hpp registers
// redis:// / rediss:// or amqp:// / amqps:// at static initialisation.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

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
struct registry {
  std::mutex mutex;
  std::map<std::string, connection_factory, std::less<>> factories;
};
inline registry& get_registry() {
  static registry* instance = new registry;  // never destroyed: usable from static destructors
  return *instance;
}
}  // namespace detail

// Register (or replace) the transport serving `scheme` (a normalised scheme, e.g. "redis").
inline void register_transport(std::string scheme, connection_factory factory) {
  auto& r = detail::get_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.factories[std::move(scheme)] = std::move(factory);
}

// The factory for `scheme`, or an empty function if none is registered.
inline connection_factory find_transport(std::string_view scheme) {
  auto& r = detail::get_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.factories.find(scheme);
  return it == r.factories.end() ? connection_factory() : it->second;
}

}  // namespace transport
}  // namespace respool
