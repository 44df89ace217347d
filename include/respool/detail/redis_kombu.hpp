// respool/detail/redis_kombu.hpp — the pieces of kombu 5.2.4's Redis
// transport layout that are pure data: key names, priority lists, the JSON
// envelope (Python json.dumps formatting), base64, delivery tags (uuid4) and
// kombu's topic-binding regular expressions. No I/O; not API.
//
// References (kombu 5.2.4): kombu/transport/redis.py (Channel.keyprefix_queue,
// sep, _q_for_pri, priority, _get_publish_topic, QoS), kombu/transport/virtual/
// base.py (Channel.prepare_message, _inplace_augment_message, Message) and
// kombu/transport/virtual/exchange.py (TopicExchange.key_to_pattern).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/detail/codec.hpp"
#include "respool/detail/globals.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"

namespace respool::detail::redis {

// kombu Channel.sep: separates the fields of a binding and a queue from its priority.
inline constexpr std::string_view sep = "\x06\x16";
// kombu PRIORITY_STEPS: one Redis list per step; 0 is consumed first.
inline constexpr std::array<int, 4> priority_steps = {0, 3, 6, 9};
// kombu Channel.unacked_key / unacked_index_key.
inline constexpr std::string_view unacked_key = "unacked";
inline constexpr std::string_view unacked_index_key = "unacked_index";

// "_kombu.binding.<exchange>" (Channel.keyprefix_queue).
inline std::string binding_key(std::string_view exchange) {
  std::string key = "_kombu.binding.";
  key.append(exchange);
  return key;
}

// kombu's priority(): the step a message priority falls into, after clamping
// to 0..9 (virtual Channel._get_message_priority).
inline int priority_step(int priority) noexcept {
  priority = std::clamp(priority, 0, 9);
  int step = priority_steps[0];
  for (int s : priority_steps)
    if (s <= priority) step = s;
  return step;
}

// `text` for an error message: printable ASCII as is, other bytes as \xNN.
inline std::string printable(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (char ch : text.substr(0, 200)) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (text.size() > 200) out += "...";
  return out;
}

// Throws encoding_error if `name` (a routing key or queue name: `what`)
// contains kombu's separator, which its Redis layout cannot represent: a
// binding member would split into more than three fields (kombu fails on
// it, respool ignores it, and messages are silently dropped), and a queue
// "<q>\x06\x16<n>" is queue <q>'s priority list.
inline void check_name(std::string_view name, const char* what) {
  if (name.find(sep) != std::string_view::npos)
    throw error(errc::encoding_error, std::string("redis: ") + what + " '" + printable(name) +
                                          "' contains \\x06\\x16, the separator of kombu's Redis "
                                          "layout, which it cannot represent");
}

// kombu _q_for_pri(): the list holding `queue`'s messages of `priority`:
// the queue name itself for step 0, "<queue>\x06\x16<step>" otherwise.
// Throws encoding_error for a queue name containing the separator.
inline std::string priority_queue(std::string_view queue, int priority) {
  check_name(queue, "queue name");
  std::string name(queue);
  int step = priority_step(priority);
  if (step != 0) {
    name.append(sep);
    name += std::to_string(step);
  }
  return name;
}

// The binding member "<routing_key>\x06\x16<pattern>\x06\x16<queue>".
// Throws encoding_error if the routing key or queue contains the separator.
inline std::string binding_member(std::string_view routing_key, std::string_view pattern,
                                  std::string_view queue) {
  check_name(routing_key, "routing key");
  check_name(queue, "queue name");
  std::string member;
  member.reserve(routing_key.size() + pattern.size() + queue.size() + 2 * sep.size());
  member.append(routing_key).append(sep).append(pattern).append(sep).append(queue);
  return member;
}

struct binding {
  std::string routing_key, pattern, queue;
};

// Splits a binding member as kombu's get_table does (split on sep); members
// that do not have exactly three fields are ignored (kombu would fail on them).
inline bool parse_binding(std::string_view member, binding& out) {
  auto first = member.find(sep);
  if (first == std::string_view::npos) return false;
  auto second = member.find(sep, first + sep.size());
  if (second == std::string_view::npos) return false;
  if (member.find(sep, second + sep.size()) != std::string_view::npos) return false;
  out.routing_key = std::string(member.substr(0, first));
  out.pattern = std::string(member.substr(first + sep.size(), second - first - sep.size()));
  out.queue = std::string(member.substr(second + sep.size()));
  return true;
}

// The PUBLISH channel of a fanout exchange (Channel._get_publish_topic with
// kombu's defaults fanout_prefix=True, fanout_patterns=True):
// "/<db>.<exchange>" or, with a routing key, "/<db>.<exchange>/<routing_key>".
inline std::string fanout_channel(long db, std::string_view exchange, std::string_view routing_key) {
  std::string topic = "/" + std::to_string(db) + ".";
  topic.append(exchange);
  if (!routing_key.empty()) topic.append("/").append(routing_key);
  return topic;
}

// ---------------------------------------------------------------- base64

inline std::string base64_encode(std::string_view data) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = (std::uint32_t(std::uint8_t(data[i])) << 16) |
                      (std::uint32_t(std::uint8_t(data[i + 1])) << 8) |
                      std::uint32_t(std::uint8_t(data[i + 2]));
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (i < data.size()) {
    std::uint32_t v = std::uint32_t(std::uint8_t(data[i])) << 16;
    if (i + 1 < data.size()) v |= std::uint32_t(std::uint8_t(data[i + 1])) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < data.size() ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Python's base64.b64decode(s) (validate=False): characters outside the
// alphabet are skipped; decoding stops at padding. Throws encoding_error for
// a truncated quantum.
inline std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0, count = 0;
  for (char c : text) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    ++count;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  if (count % 4 == 1) throw error(errc::encoding_error, "message body is not valid base64 (truncated)");
  return out;
}

// ---------------------------------------------------------------- JSON, as Python writes it

// Appends `text` as a JSON string the way Python's json.dumps does by default
// (ensure_ascii=True): non-ASCII as \uXXXX (surrogate pairs above U+FFFF),
// lowercase hex. Throws encoding_error for invalid UTF-8.
inline void py_dump_string(std::string_view text, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  auto u4 = [&](unsigned cp) {
    out += "\\u";
    out += hex[(cp >> 12) & 15];
    out += hex[(cp >> 8) & 15];
    out += hex[(cp >> 4) & 15];
    out += hex[cp & 15];
  };
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20 || c == 0x7f)
            u4(c);
          else
            out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
    if (extra < 0 || c > 0xF4 || i + static_cast<std::size_t>(extra) >= text.size())
      throw error(errc::encoding_error, "string is not valid UTF-8");
    unsigned cp = c & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((cc & 0xC0) != 0x80) throw error(errc::encoding_error, "string is not valid UTF-8");
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr unsigned minimum[] = {0, 0x80, 0x800, 0x10000};
    if (cp < minimum[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      throw error(errc::encoding_error, "string is not valid UTF-8");
    if (cp >= 0x10000) {
      cp -= 0x10000;
      u4(0xD800 + (cp >> 10));
      u4(0xDC00 + (cp & 0x3FF));
    } else {
      u4(cp);
    }
    i += static_cast<std::size_t>(extra) + 1;
  }
  out += '"';
}

// Appends `value` as Python's json.dumps(value) would write it: separators
// ", " and ": ", ensure_ascii, keys in the object's iteration order.
template <class BasicJson>
void py_dump(const BasicJson& value, std::string& out) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = value.begin(); it != value.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        py_dump_string(it.key(), out);
        out += ": ";
        py_dump(it.value(), out);
      }
      out += '}';
      break;
    }
    case nlohmann::json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& item : value) {
        if (!first) out += ", ";
        first = false;
        py_dump(item, out);
      }
      out += ']';
      break;
    }
    case nlohmann::json::value_t::string:
      py_dump_string(value.template get_ref<const std::string&>(), out);
      break;
    case nlohmann::json::value_t::binary:
      throw error(errc::encoding_error, "binary values cannot be written as JSON");
    default:
      out += value.dump();  // numbers, booleans, null: the same text as Python's
  }
}

template <class BasicJson>
std::string py_dumps(const BasicJson& value) {
  std::string out;
  py_dump(value, out);
  return out;
}

// ---------------------------------------------------------------- delivery tags, timestamps

// A random (version 4) UUID in its canonical text form, as kombu's uuid().
// The generator is reseeded after fork() so parent and child never share tags.
inline std::string uuid4() {
  struct generator {
    std::mt19937_64 engine;
    std::uint64_t generation = 0;  // 1 + the fork generation it was seeded in (0: never)
  };
  thread_local generator gen;
  respool::detail::ensure_atfork_registered();
  const std::uint64_t now =
      std::uint64_t{respool::detail::fork_generation()} + 1;  // no getpid() syscall per tag
  if (gen.generation != now) {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device(), device(), device()};
    gen.engine.seed(seed);
    gen.generation = now;
  }
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    std::uint64_t r = gen.engine();
    for (std::size_t k = 0; k < 8; ++k) bytes[i + k] = static_cast<std::uint8_t>(r >> (8 * k));
  }
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 15];
  }
  return out;
}

// time.time() as text (the unacked_index score).
inline std::string unix_time_text() {
  using namespace std::chrono;
  double now = duration<double>(system_clock::now().time_since_epoch()).count();
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.7f", now);
  return buffer;
}

// ---------------------------------------------------------------- the envelope

// kombu's message dict as stored in a queue list or PUBLISHed (virtual
// Channel.prepare_message + _inplace_augment_message, body_encoding base64):
//   {"body": <base64>, "content-encoding": ..., "content-type": ...,
//    "headers": {...}, "properties": {"delivery_mode": n, "delivery_info":
//    {"exchange": ..., "routing_key": ...}, "priority": n,
//    "body_encoding": "base64", "delivery_tag": "<uuid4>"}}
// Keys in kombu's order, formatted as Python's json.dumps. An empty content
// type or encoding is written as null (kombu's None).
// Throws encoding_error (before anything is sent) for a routing key that
// contains the separator.
inline std::string encode_envelope(const Envelope& message, std::string_view exchange,
                                   std::string_view routing_key, const std::string& delivery_tag) {
  check_name(routing_key, "routing key");
  std::string out;
  out.reserve(message.body.size() * 4 / 3 + 320);
  out += "{\"body\": ";
  py_dump_string(base64_encode(message.body), out);
  out += ", \"content-encoding\": ";
  if (message.content_encoding.empty())
    out += "null";
  else
    py_dump_string(message.content_encoding, out);
  out += ", \"content-type\": ";
  if (message.content_type.empty())
    out += "null";
  else
    py_dump_string(message.content_type, out);
  out += ", \"headers\": ";
  if (message.headers.is_null())
    out += "{}";
  else if (!message.headers.is_object())
    throw error(errc::encoding_error, "message headers must be a JSON object");
  else
    py_dump(message.headers, out);
  out += ", \"properties\": {\"delivery_mode\": " + std::to_string(message.delivery_mode);
  out += ", \"delivery_info\": {\"exchange\": ";
  py_dump_string(exchange, out);
  out += ", \"routing_key\": ";
  py_dump_string(routing_key, out);
  out += "}, \"priority\": " + std::to_string(message.priority);
  out += ", \"body_encoding\": \"base64\", \"delivery_tag\": ";
  py_dump_string(delivery_tag, out);
  out += "}}";
  return out;
}

// A message read from a list, kept as kombu keeps it: the parsed payload in
// its original key order (for the unacked hash and restores) and the decoded Envelope.
struct received {
  nlohmann::ordered_json raw;
  Envelope envelope;
};

// Decodes a stored message as kombu's virtual Message does, within
// `limits`: the item at most 2 * max_body_size + max_header_size bytes and
// max_depth + 1 levels deep (the headers object at most max_depth), the
// headers at most max_header_size bytes of JSON text. The depth is checked
// before any tree is built. Throws error(encoding_error) if it is not a
// kombu envelope or exceeds a limit (the message names the limit).
inline received decode_envelope(std::string_view text, const MessageLimits& limits = message_limits()) {
  received out;
  const std::size_t max_item = limits.max_body_size > (SIZE_MAX - limits.max_header_size) / 2
                                   ? SIZE_MAX
                                   : 2 * limits.max_body_size + limits.max_header_size;
  if (text.size() > max_item)
    throw error(errc::encoding_error, "redis: queue item of " + std::to_string(text.size()) +
                                          " bytes exceeds 2 * max_body_size + max_header_size (" +
                                          std::to_string(max_item) + " bytes)");
  out.raw = parse_json<nlohmann::ordered_json>(text, SIZE_MAX, std::max<std::size_t>(limits.max_depth, 2) + 1,
                                               "redis: queue item (kombu envelope)");
  const auto& raw = out.raw;
  if (!raw.is_object())
    throw error(errc::encoding_error, "redis: queue item is not a kombu message (not a JSON object)");
  auto it = raw.find("properties");
  if (it == raw.end() || !it->is_object())
    throw error(errc::encoding_error, "redis: queue item is not a kombu message (no properties)");
  const auto& props = *it;
  auto text_of = [](const nlohmann::ordered_json& object, const char* key) -> std::string {
    auto found = object.find(key);
    return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
  };
  // kombu's int(): numbers only, clamped to int (a float out of range would
  // be undefined behaviour to convert).
  auto int_of = [](const nlohmann::ordered_json& object, const char* key, int fallback) -> int {
    auto found = object.find(key);
    if (found == object.end()) return fallback;
    constexpr double lo = std::numeric_limits<int>::min(), hi = std::numeric_limits<int>::max();
    if (found->is_number_unsigned())
      return found->get<std::uint64_t>() > static_cast<std::uint64_t>(hi) ? static_cast<int>(hi)
                                                                          : found->get<int>();
    if (found->is_number_integer()) {
      auto v = found->get<std::int64_t>();
      return v < lo ? static_cast<int>(lo) : v > hi ? static_cast<int>(hi) : static_cast<int>(v);
    }
    if (found->is_number_float()) {
      double v = found->get<double>();
      if (!(v == v)) return fallback;  // NaN
      return v <= lo ? static_cast<int>(lo) : v >= hi ? static_cast<int>(hi) : static_cast<int>(v);
    }
    return fallback;
  };
  Envelope& env = out.envelope;
  std::string body = text_of(raw, "body");
  std::string body_encoding = text_of(props, "body_encoding");
  if (body_encoding == "base64") {
    env.body = base64_decode(body);
  } else if (body_encoding.empty()) {
    env.body = std::move(body);
  } else {
    throw error(errc::encoding_error, "redis: unsupported body_encoding '" + printable(body_encoding) + "'");
  }
  env.content_type = text_of(raw, "content-type");
  env.content_encoding = text_of(raw, "content-encoding");
  auto headers = raw.find("headers");
  if (headers != raw.end() && headers->is_object()) {
    std::string headers_text = headers->dump();
    if (headers_text.size() > limits.max_header_size)
      throw error(errc::encoding_error, "redis: message headers of " + std::to_string(headers_text.size()) +
                                            " bytes exceed max_header_size (" +
                                            std::to_string(limits.max_header_size) + " bytes)");
    env.headers = nlohmann::json::parse(headers_text);
  } else {
    env.headers = nlohmann::json::object();
  }
  env.delivery_mode = int_of(props, "delivery_mode", 2);
  env.priority = int_of(props, "priority", 0);
  auto info = props.find("delivery_info");
  if (info != props.end() && info->is_object()) {
    env.exchange = text_of(*info, "exchange");
    env.routing_key = text_of(*info, "routing_key");
  }
  env.delivery_tag = text_of(props, "delivery_tag");
  return out;
}

// ---------------------------------------------------------------- topic exchange patterns

// kombu escape_regex(rkey, '.#*'): every character that is not alphanumeric
// and not one of ".#*" gets a backslash (NUL becomes "\000"). Non-ASCII
// characters count as alphanumeric (Python's str.isalnum() is true for
// letters and digits of every script; non-ASCII punctuation is the only case
// where the stored text differs from kombu's, never the matching).
inline std::string escape_regex(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
    if (alnum || c == '.' || c == '#' || c == '*')
      out += ch;
    else if (c == 0)
      out += "\\000";
    else
      (out += '\\') += ch;
  }
  return out;
}

// kombu TopicExchange.key_to_pattern: "^" + words joined by "\." + "$", where
// a word "*" is ".*?[^\.]" and "#" is ".*?".
inline std::string key_to_pattern(std::string_view routing_key) {
  std::string escaped = escape_regex(routing_key);
  std::string out = "^";
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = escaped.find('.', start);
    std::string_view word =
        std::string_view(escaped).substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (word == "*")
      out += ".*?[^\\.]";
    else if (word == "#")
      out += ".*?";
    else
      out.append(word);
    if (dot == std::string::npos) break;
    out += "\\.";
    start = dot + 1;
  }
  out += '$';
  return out;
}

// Python's re.match(pattern, text) for the regular expressions kombu's topic
// exchange stores: anchors ^ and $, literals (plain or backslash-escaped,
// "\000" for NUL), ".", "[^\.]" and the quantifiers "*" / "*?". Matching is
// by dynamic programming (no backtracking blow-up). A pattern outside that
// subset, or one Python itself rejects (e.g. a leading "*"), never matches
// (kombu would raise re.error and fail the publish).
class topic_matcher {
 public:
  explicit topic_matcher(std::string_view pattern) { valid_ = compile(pattern); }
  bool valid() const noexcept { return valid_; }

  bool operator()(std::string_view text) const {
    if (!valid_) return false;
    const std::size_t n = text.size(), m = atoms_.size();
    // ok[j][i]: atoms j.. match text i.. (to the end, or to a prefix when not anchored).
    std::vector<char> next(n + 1, 0), cur(n + 1, 0);
    for (std::size_t i = 0; i <= n; ++i) {
      if (!end_anchor_)
        next[i] = 1;
      else
        next[i] =
            i == n || (i + 1 == n && text[i] == '\n');  // Python's $ also matches before a final newline
    }
    for (std::size_t j = m; j-- > 0;) {
      const atom& a = atoms_[j];
      for (std::size_t i = n + 1; i-- > 0;) {
        bool ok = false;
        if (a.star)
          ok = next[i] || (i < n && a.matches(text[i]) && cur[i + 1]);
        else
          ok = i < n && a.matches(text[i]) && next[i + 1];
        cur[i] = ok;
      }
      std::swap(next, cur);
    }
    return next[0] != 0;
  }

 private:
  struct atom {
    enum kind_t { literal, any, not_dot } kind = literal;
    char ch = 0;
    bool star = false;
    bool matches(char c) const noexcept {
      switch (kind) {
        case literal:
          return c == ch;
        case any:
          return c != '\n';
        case not_dot:
          return c != '.';
      }
      return false;
    }
  };

  bool compile(std::string_view p) {
    std::size_t i = 0;
    if (i < p.size() && p[i] == '^') ++i;
    while (i < p.size()) {
      char c = p[i];
      if (c == '$' && i + 1 == p.size()) {
        end_anchor_ = true;
        return true;
      }
      if (c == '*') {
        if (atoms_.empty() || atoms_.back().star || last_was_quantified_)
          return false;  // "nothing to repeat" / "multiple repeat"
        atoms_.back().star = true;
        ++i;
        if (i < p.size() && p[i] == '?') ++i;  // lazy: same answer for a full match
        last_was_quantified_ = true;
        continue;
      }
      last_was_quantified_ = false;
      atom a;
      if (c == '\\') {
        if (i + 1 >= p.size()) return false;
        char e = p[i + 1];
        if (e == '0') {  // octal escape: \0, \00, \000
          std::size_t k = i + 2;
          while (k < p.size() && k < i + 4 && p[k] >= '0' && p[k] <= '7') {
            if (p[k] != '0') return false;
            ++k;
          }
          a.ch = '\0';
          i = k;
        } else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '1' && e <= '9')) {
          return false;  // \d, \w, \b, back-references...: not something kombu writes
        } else {
          a.ch = e;
          i += 2;
        }
      } else if (c == '.') {
        a.kind = atom::any;
        ++i;
      } else if (p.substr(i, 5) == "[^\\.]") {
        a.kind = atom::not_dot;
        i += 5;
      } else if (c == '^' || c == '$' || c == '[' || c == ']' || c == '(' || c == ')' || c == '|' ||
                 c == '+' || c == '?' || c == '{' || c == '}') {
        return false;
      } else {
        a.ch = c;
        ++i;
      }
      atoms_.push_back(a);
    }
    return true;
  }

  std::vector<atom> atoms_;
  bool end_anchor_ = false;
  bool last_was_quantified_ = false;
  bool valid_ = false;
};

}  // namespace respool::detail::redis
