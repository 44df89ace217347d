// respool/message.hpp — a message received from a queue (kombu Message).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "respool/detail/codec.hpp"
#include "respool/errors.hpp"

namespace respool {

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

  // The body as on the wire (compressed if so).
  const std::string& body() const noexcept { return envelope_.body; }
  // The body decompressed (headers["compression"]) but not deserialised.
  std::string decoded_body() const { return detail::decompress(envelope_.body, compression()); }
  // The body decompressed and deserialised: JSON for application/json,
  // otherwise a JSON string holding the bytes. Throws respool::error(encoding_error).
  nlohmann::json payload() const { return detail::deserialize(decoded_body(), envelope_.content_type); }

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
  std::string compression() const {
    auto it = envelope_.headers.find("compression");
    return it != envelope_.headers.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

  Envelope envelope_;
  std::function<void()> ack_;
};

}  // namespace respool
