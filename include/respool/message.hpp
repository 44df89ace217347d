// respool/message.hpp — a message received from a queue (kombu Message).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>

#include "respool/detail/codec.hpp"
#include "respool/errors.hpp"

namespace respool {

// Limits on what respool decodes from a broker: anyone who can write to a
// queue can send any bytes, and no message may crash the process or exhaust
// its memory. A message beyond a limit gets an error(encoding_error) naming
// the limit (from Channel::get() for the Redis envelope and AMQP headers,
// from Message::payload() / decoded_body() for the body); the messages
// after it are delivered as usual. Every field has a default; see
// docs/transports.md, "Limits on received messages".
struct MessageLimits {
  // Nesting of JSON arrays/objects (bodies, Redis envelopes and their
  // headers) and of AMQP header tables/arrays. No decoder recurses deeper.
  std::size_t max_depth = 128;
  // Bytes of a body after decompression (Message::payload() and
  // decoded_body(); decompression stops there). A Redis queue item (the
  // kombu JSON envelope with the base64 body) may be at most
  // 2 * max_body_size + max_header_size bytes.
  std::size_t max_body_size = std::size_t{64} << 20;  // 64 MiB
  // Bytes of a message's application headers as decoded (the Redis
  // envelope's "headers" as JSON text; an AMQP header table: its keys and
  // string values plus 8 bytes per other value).
  std::size_t max_header_size = std::size_t{1} << 20;  // 1 MiB
};

namespace detail {
struct message_limits_storage {
  std::atomic<std::size_t> max_depth{MessageLimits{}.max_depth};
  std::atomic<std::size_t> max_body_size{MessageLimits{}.max_body_size};
  std::atomic<std::size_t> max_header_size{MessageLimits{}.max_header_size};
};
inline message_limits_storage& message_limits_state() noexcept {
  static message_limits_storage state;
  return state;
}
}  // namespace detail

// The process-wide limits every transport decodes with, and that
// Message::payload() uses. Thread-safe.
inline MessageLimits message_limits() noexcept {
  auto& s = detail::message_limits_state();
  MessageLimits limits;
  limits.max_depth = s.max_depth.load(std::memory_order_relaxed);
  limits.max_body_size = s.max_body_size.load(std::memory_order_relaxed);
  limits.max_header_size = s.max_header_size.load(std::memory_order_relaxed);
  return limits;
}

// Replaces the process-wide limits (for messages decoded from now on).
// Thread-safe; a decode running meanwhile may see old and new fields mixed.
inline void set_message_limits(const MessageLimits& limits) noexcept {
  auto& s = detail::message_limits_state();
  s.max_depth.store(limits.max_depth, std::memory_order_relaxed);
  s.max_body_size.store(limits.max_body_size, std::memory_order_relaxed);
  s.max_header_size.store(limits.max_header_size, std::memory_order_relaxed);
}

// What a transport hands to the broker and gets back from it: the body as on
// the wire plus kombu's message properties.
struct Envelope {
  std::string body;                                   // serialised and, if so, compressed
  std::string content_type;                           // "application/json", "application/data", ...
  std::string content_encoding;                       // "utf-8", "binary"
  nlohmann::json headers = nlohmann::json::object();  // application headers ("compression", user headers)
  int delivery_mode = 2;
  int priority = 0;
  std::string exchange;  // delivery_info, set by the transport on receipt
  std::string routing_key;
  std::string delivery_tag;
};

// A received message. Not thread-safe; ack() at most once (later calls do nothing).
class Message {
 public:
  Message() = default;
  Message(Envelope envelope, std::function<void()> ack)
      : envelope_(std::move(envelope)), ack_(std::move(ack)) {}

  // The body as on the wire (compressed if so), whatever its bytes.
  const std::string& body() const noexcept { return envelope_.body; }
  // The body decompressed (headers["compression"]) but not deserialised, at
  // most limits.max_body_size bytes. Throws respool::error(encoding_error).
  std::string decoded_body(const MessageLimits& limits = message_limits()) const {
    return guarded([&] { return detail::decompress(envelope_.body, compression(), limits.max_body_size); });
  }
  // The body decompressed and deserialised, as kombu's Message.decode():
  //  * application/json: parsed (from content_encoding; UTF-8 when that is
  //    binary or unknown, as kombu), at most limits.max_depth levels deep;
  //  * kombu's pickle / msgpack / yaml / bson, or a body whose content
  //    encoding is "binary" (e.g. publish_raw): error — use body();
  //  * any other content type (text/plain, application/data...): the text,
  //    decoded from content_encoding (utf-8 when empty; utf-16, utf-32,
  //    latin-1, ascii), as a JSON string.
  // For any bytes, throws nothing but respool::error (encoding_error); the
  // value returned can be dumped (valid UTF-8, bounded depth).
  nlohmann::json payload(const MessageLimits& limits = message_limits()) const {
    return guarded([&] {
      return detail::deserialize(decoded_body(limits), envelope_.content_type, envelope_.content_encoding,
                                 limits.max_body_size, limits.max_depth);
    });
  }

  const std::string& content_type() const noexcept { return envelope_.content_type; }
  const std::string& content_encoding() const noexcept { return envelope_.content_encoding; }
  const nlohmann::json& headers() const noexcept { return envelope_.headers; }
  int delivery_mode() const noexcept { return envelope_.delivery_mode; }
  int priority() const noexcept { return envelope_.priority; }
  std::string exchange() const { return envelope_.exchange; }
  std::string routing_key() const { return envelope_.routing_key; }
  const std::string& delivery_tag() const noexcept { return envelope_.delivery_tag; }
  const Envelope& envelope() const noexcept { return envelope_; }

  // Acknowledge the message (no-op for messages fetched with no_ack, or
  // already acknowledged). If the ack fails (throws), the message stays
  // unacknowledged: acknowledged() is false and ack() may be called again.
  void ack() {
    if (!ack_) return;
    ack_();
    ack_ = nullptr;
  }
  bool acknowledged() const noexcept { return !ack_; }

 private:
  // Runs f, turning what a decoder may throw besides respool::error into one.
  template <class F>
  static auto guarded(F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const error&) {
      throw;
    } catch (const nlohmann::json::exception& e) {
      throw error(errc::encoding_error, std::string("cannot decode the message body: ") + e.what());
    } catch (const std::bad_alloc&) {
      throw error(errc::encoding_error, "cannot decode the message body: out of memory");
    } catch (const std::length_error& e) {
      throw error(errc::encoding_error, std::string("cannot decode the message body: ") + e.what());
    }
  }

  std::string compression() const {
    auto it = envelope_.headers.find("compression");
    return it != envelope_.headers.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

  Envelope envelope_;
  std::function<void()> ack_;
};

}  // namespace respool
