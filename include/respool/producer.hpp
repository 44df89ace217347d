// respool/producer.hpp — Producer (kombu Producer), PublishOptions and
// ProducerPool (kombu ProducerPool).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/connection.hpp"
#include "respool/connection_pool.hpp"
#include "respool/detail/codec.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/lease.hpp"
#include "respool/resource.hpp"

namespace respool {

// How to publish one message (kombu Producer.publish keyword arguments).
struct PublishOptions {
  std::string exchange;  // "" = default exchange (queue named by routing_key)
  std::string routing_key;
  std::string serializer = "json";                    // "json" or "raw"
  std::string compression;                            // "" or "zlib"
  nlohmann::json headers = nlohmann::json::object();  // application headers
  std::string content_type;                           // set by the serializer unless given
  std::string content_encoding;                       // likewise
  int delivery_mode = 2;                              // 2 = persistent, 1 = transient
  int priority = 0;
  std::vector<Exchange> declare;  // maybe_declare'd before publishing
};

// Encodes messages as kombu does and publishes them on a connection's
// default channel. Not thread-safe (one thread at a time, like its connection).
class Producer {
 public:
  // A producer with no connection yet (ProducerPool attaches one per lease).
  Producer() = default;
  // A producer owning a pooled connection.
  explicit Producer(Lease<Connection> connection) noexcept
      : lease_(std::move(connection)), connection_(lease_.get()) {}
  // A producer using `connection`, which must outlive it.
  explicit Producer(Connection& connection) noexcept : connection_(&connection) {}

  Producer(Producer&& other) noexcept
      : lease_(std::move(other.lease_)), connection_(std::exchange(other.connection_, nullptr)) {}
  Producer& operator=(Producer&& other) noexcept {
    lease_ = std::move(other.lease_);
    connection_ = std::exchange(other.connection_, nullptr);
    return *this;
  }

  // Serialise `body` ("json": JSON text, content type application/json,
  // encoding utf-8; "raw": `body` must be a string, sent as is), compress it
  // if asked (zlib, with kombu's "compression" header), declare
  // options.declare, and publish. Throws respool::error (connection_lost,
  // channel_error, encoding_error) — a publish either reaches the broker or throws.
  void publish(const nlohmann::json& body, const PublishOptions& options = {}) {
    Envelope message = encode(body, options);
    Channel& ch = channel();
    for (const auto& exchange : options.declare) maybe_declare(exchange, ch);
    ch.publish(message, options.exchange, options.routing_key);
  }

  // Publish every body of `bodies` as publish() would, all with `options`,
  // keeping them in flight together: on amqp:// every message is sent, then
  // the broker's confirms are awaited together (one wait for the batch, not
  // one per message); on redis:// the batch is one pipelined round trip.
  // Returns once the broker has every message (with confirm_publish, once
  // each is confirmed). Throws as publish() if any may be missing: then each
  // message may or may not have been delivered (the error says how many were
  // confirmed), and publishing the batch again gives at-least-once delivery.
  // Nothing is sent if a body cannot be encoded.
  template <class Range = std::vector<nlohmann::json>>
  void publish_many(const Range& bodies, const PublishOptions& options = {}) {
    std::vector<Envelope> messages;
    for (const auto& body : bodies) messages.push_back(encode(body, options));
    if (messages.empty()) return;
    Channel& ch = channel();
    for (const auto& exchange : options.declare) maybe_declare(exchange, ch);
    ch.publish_many(messages, options.exchange, options.routing_key);
  }

  // Publish bytes as they are (content type application/data, encoding
  // binary, unless options say otherwise).
  void publish_raw(std::string_view body, const PublishOptions& options = {}) {
    send(std::string(body), "application/data", "binary", options);
  }

  // The connection's default channel (connecting if needed).
  Channel& channel() { return connection().default_channel(); }

  // The connection. Throws error(connection_failed) if the producer has none.
  Connection& connection() {
    if (connection_ == nullptr) throw error(errc::connection_failed, "producer has no connection");
    return *connection_;
  }

  // True if the producer holds a connection.
  bool has_connection() const noexcept { return connection_ != nullptr; }

  // Internal (ProducerPool): take / hand back a pooled connection.
  void attach(Lease<Connection> connection) noexcept {
    lease_ = std::move(connection);
    connection_ = lease_.get();
  }
  void detach() noexcept {
    lease_.release();
    connection_ = nullptr;
  }

 private:
  // `body` serialised as options.serializer says ("json" or "raw").
  static Envelope encode(const nlohmann::json& body, const PublishOptions& options) {
    if (options.serializer == "json") {
      std::string text;
      try {
        text = body.dump();
      } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not valid UTF-8
        throw error(errc::encoding_error, std::string("cannot serialise the body as JSON: ") + e.what());
      }
      return envelope(std::move(text), "application/json", "utf-8", options);
    }
    if (options.serializer == "raw") {
      if (!body.is_string()) throw error(errc::encoding_error, "the raw serializer needs a string body");
      return envelope(body.get<std::string>(), "application/data", "utf-8", options);
    }
    throw error(errc::encoding_error, "unknown serializer '" + options.serializer + "'");
  }

  static Envelope envelope(std::string body, const char* content_type, const char* content_encoding,
                           const PublishOptions& o) {
    Envelope message;
    message.content_type = o.content_type.empty() ? content_type : o.content_type;
    message.content_encoding = o.content_encoding.empty() ? content_encoding : o.content_encoding;
    if (!o.headers.is_null()) {
      if (!o.headers.is_object()) throw error(errc::encoding_error, "headers must be a JSON object");
      message.headers = o.headers;
    }
    if (!o.compression.empty()) {
      body = detail::compress(body, o.compression);
      message.headers["compression"] = std::string(detail::zlib_content_type);
    }
    message.body = std::move(body);
    message.delivery_mode = o.delivery_mode;
    message.priority = o.priority;
    return message;
  }

  void send(std::string body, const char* content_type, const char* content_encoding,
            const PublishOptions& o) {
    Envelope message = envelope(std::move(body), content_type, content_encoding, o);
    Channel& ch = channel();
    for (const auto& exchange : o.declare) maybe_declare(exchange, ch);
    ch.publish(message, o.exchange, o.routing_key);
  }

  Lease<Connection> lease_;
  Connection* connection_ = nullptr;
};

// A pool of producers (kombu ProducerPool). Producers are created lazily; as
// in kombu's prepare/release, a producer borrows a connection from its
// connection pool when acquired and hands it back when its lease is released,
// so idle producers hold no connection and the connection limit is the real
// cap.
//
// Deadlines: the caller's timeout covers the producer slot and the borrowed
// connection together. acquire(timeout) throws acquire_timeout (the
// producer pool was full) or connection_acquire_timeout (the connection pool
// was); acquire(0s) throws limit_exceeded / connection_limit_exceeded at once
// and try_acquire() returns nothing when either pool is full: neither ever
// waits for the connection pool. async_acquire (respool/async.hpp) chains the
// connection pool's own async acquire: nothing blocks the executor. The
// connection is handed out unconnected if it is new: it connects on first
// use, on the caller's thread (bounded by the transport's connect_timeout).
// Thread safety: as Resource.
namespace detail {
template <class Handler>
class producer_acquire_op;
}

class ProducerPool : public Resource<Producer> {
  template <class Handler>
  friend class detail::producer_acquire_op;

 public:
  // Producers borrow from `connections`, which must outlive this pool.
  ProducerPool(ConnectionPool& connections, std::size_t limit)
      : ProducerPool([&connections]() -> ConnectionPool& { return connections; }, limit) {
    set_name("producers for " + connections.params().as_uri());  // password masked
  }

  // Producers borrow from the pool `connections()` returns at each acquire
  // (pools::Producers uses pools::connections[params], so a reset or a fork
  // of the connection group is followed).
  ProducerPool(std::function<ConnectionPool&()> connections, std::size_t limit)
      : Resource<Producer>(make_options(limit), borrow(connections)), connections_(std::move(connections)) {}

  // Never waits: a producer with its connection, or nothing if the producer
  // pool or the connection pool is at its limit.
  std::optional<Lease<Producer>> try_acquire() {
    try {
      return Resource<Producer>::try_acquire();
    } catch (const connection_limit_exceeded&) {
      return std::nullopt;  // the producer slot was given back
    }
  }

  // Asynchronous acquire (respool/async.hpp): the producer slot, then its
  // connection through the connection pool's async acquire, within one
  // timeout. Completion signature void(boost::system::error_code, Lease<Producer>).
  template <class Token>
  auto async_acquire(Token&& token);
  template <class Rep, class Period, class Token>
  auto async_acquire(std::chrono::duration<Rep, Period> timeout, Token&& token);

 private:
  static Options make_options(std::size_t limit) {
    Options o;
    o.limit = limit;
    o.create = [] { return Producer(); };
    o.on_release = [](Producer& p) { p.detach(); };
    return o;
  }

  // The prepare step: borrow a connection within what is left of the caller's deadline.
  static std::function<void(Producer&, const detail::acquire_deadline&)> borrow(
      std::function<ConnectionPool&()> connections) {
    return [connections = std::move(connections)](Producer& p, const detail::acquire_deadline& d) {
      if (p.has_connection()) return;
      ConnectionPool& pool = connections();
      if (!d.wait) {
        p.attach(pool.acquire(std::chrono::nanoseconds(0)));
      } else if (d.until == std::chrono::steady_clock::time_point::max()) {
        p.attach(pool.acquire());
      } else {
        auto left = d.until - std::chrono::steady_clock::now();
        // An expired deadline still gets one non-waiting try, as a zero timeout would.
        if (left <= left.zero()) left = std::chrono::nanoseconds(1);
        p.attach(pool.acquire(left));
      }
    };
  }

  std::function<ConnectionPool&()> connections_;
};

}  // namespace respool
