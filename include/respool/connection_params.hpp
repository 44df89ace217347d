// respool/connection_params.hpp — normalised, comparable, hashable broker
// connection parameters, parsed from kombu-style URLs.
//
//   auto p = respool::ConnectionParams::parse("amqp://user:pw@host:5672/vhost?heartbeat=10");
//   p.as_uri();       // "amqp://user:**@host:5672/vhost?heartbeat=10"
//   p.as_uri(true);   // "amqp://user:pw@host:5672/vhost?heartbeat=10"
//
// URL grammar (kombu's, see kombu/utils/url.py and kombu/connection.py):
//
//   scheme://[user[:password]@]host[:port][/virtual_host][?name=value&...]
//
// * scheme (case-insensitive): amqp, pyamqp, librabbitmq -> "amqp"; amqps;
//   redis; rediss; memory. Any other well-formed scheme throws
//   unknown_transport. parse() knows these schemes whether or not their
//   transport is compiled in.
// * user, password, host, virtual host, option names and values are
//   percent-decoded (options also turn '+' into a space, as parse_qsl does).
//   A '/', '?', '#', ';' or '%' inside a field must be percent-encoded (and
//   '@' or ':' where they would be read as separators). An escape decoding
//   to a NUL byte is rejected.
// * The last '@' of the authority ends the user info; its first ':' splits
//   user from password (`user@host` has no password, `:pw@host` no user).
// * host: empty means "localhost"; ASCII-lowercased; an IPv6 literal is
//   written in brackets (`[::1]`) and stored without them (hostname() "::1").
// * port: empty or 0 means the transport's default (kombu: `port or default`):
//   amqp 5672, amqps 5671, redis/rediss 6379, memory 0 (no port).
// * path: one leading '/' is dropped and the rest decoded (kombu
//   url_to_parts), then per transport:
//     amqp/amqps: empty -> "/" (so `amqp://h`, `amqp://h/`, `amqp://h//` and
//                 `amqp://h/%2F` are all vhost "/"); `amqp://h/foo` is "foo".
//     redis/rediss: the database number as canonical decimal text, "0" when
//                 empty or "/"; one more leading '/' is dropped as kombu's
//                 redis transport does (`redis://h//3` is "3"); a
//                 non-numeric database or one above 2147483647 is invalid_url.
//     memory:     as amqp: empty -> "/" (`memory://` == `memory:///`), and
//                 `memory://h/x` is a different key.
// * amqp/amqps default userid and password are "guest" (an empty one counts
//   as absent, as in kombu: `amqp://user@h` has password "guest").
// * query options are kept sorted by name; an option with an empty name or an
//   empty value is dropped (parse_qsl without keep_blank_values); the last of
//   duplicate names wins.
// * failover lists: `amqp://a;amqp://b;redis://c` — the URL is split on ';'
//   (kombu splits on ';' only) and every entry must be a complete URL. The
//   first entry is `*this`; the others are alternates(), in order.
// * Leading and trailing whitespace around each entry is ignored (as urllib
//   does); other control characters, a '#' (fragment), an unbalanced '[' or
//   ']', and URLs longer than max_url_length bytes are rejected.
//
// Errors: respool::invalid_url (with the offending offset into the string
// given to parse) or respool::unknown_transport. No message ever contains
// the password — or any other part of the URL except an unknown scheme.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/errors.hpp"

namespace respool {

namespace detail::url {

inline bool is_unreserved(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-encodes every byte that is not unreserved and not in `safe`
// (Python's quote(text, safe=safe)). Hex digits are uppercase.
inline std::string percent_encode(std::string_view text, std::string_view safe = {}) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (is_unreserved(c) || safe.find(ch) != std::string_view::npos) {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xF];
    }
  }
  return out;
}

// Decodes %XX escapes (and '+' as a space when `plus_is_space`). `offset` is
// the position of `text` in the URL, for error reports; `field` names it.
inline std::string percent_decode(std::string_view text, std::size_t offset, const char* field,
                                  bool plus_is_space = false) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      int hi = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
      int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        throw invalid_url(std::string("bad percent-escape in ") + field + " (expected %XX)", offset + i);
      if (hi == 0 && lo == 0)
        throw invalid_url(std::string(field) + " contains an encoded NUL byte", offset + i);
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

inline void ascii_lower(std::string& text) noexcept {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
}

inline bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline void hash_mix(std::size_t& seed, std::size_t value) noexcept {
  seed ^= value + static_cast<std::size_t>(0x9e3779b97f4a7c15ULL) + (seed << 6) + (seed >> 2);
}

}  // namespace detail::url

// Normalised connection parameters: the key of the pool groups. Immutable
// once built; cheap to hash (the hash is computed once, at construction).
// Thread safety: const members may be called concurrently.
class ConnectionParams {
 public:
  using options_type = std::map<std::string, std::string>;

  // URLs longer than this many bytes are rejected by parse() (64 KiB).
  static constexpr std::size_t max_url_length = 64 * 1024;

  // kombu's Connection() default: amqp://guest:guest@localhost:5672//.
  ConnectionParams() : ConnectionParams(std::string("amqp")) {}

  // Parameters without a URL, normalised exactly as parse() normalises them:
  // `transport` may be an alias ("pyamqp"); empty hostname, port 0, empty
  // userid/password and empty virtual_host mean the transport's defaults; the
  // hostname is lowercased; options with an empty name or value are dropped;
  // alternates that have alternates of their own are flattened.
  // So ConnectionParams("redis") == parse("redis://localhost:6379/0").
  // Throws unknown_transport for an unknown transport name, invalid_url
  // (position 0) for a transport that is not a scheme name (e.g. a URL), a
  // NUL byte in a field, or a bad redis database number.
  explicit ConnectionParams(std::string transport, std::string hostname = {}, std::uint16_t port = 0,
                            std::string userid = {}, std::string password = {}, std::string virtual_host = {},
                            options_type options = {}, std::vector<ConnectionParams> alternates = {})
      : transport_(std::move(transport)),
        hostname_(std::move(hostname)),
        port_(port),
        userid_(std::move(userid)),
        password_(std::move(password)),
        virtual_host_(std::move(virtual_host)),
        options_(std::move(options)) {
    transport_ = resolve_transport(transport_);
    for (const std::string* field : {&hostname_, &userid_, &password_, &virtual_host_})
      if (field->find('\0') != std::string::npos) throw invalid_url("a field contains a NUL byte", 0);
    for (const auto& [name, value] : options_)
      if (name.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
        throw invalid_url("an option contains a NUL byte", 0);
    for (auto it = options_.begin(); it != options_.end();)
      it = it->first.empty() || it->second.empty() ? options_.erase(it) : std::next(it);
    for (auto& alternate : alternates) {
      auto nested = std::move(alternate.alternates_);
      alternate.alternates_.clear();
      alternate.rehash();
      alternates_.push_back(std::move(alternate));
      for (auto& n : nested) alternates_.push_back(std::move(n));
    }
    normalise(0);
  }

  // Parses a kombu broker URL (or a ';'-separated failover list of them).
  // Throws invalid_url (with the offending offset) or unknown_transport; see
  // the grammar at the top of this file.
  static ConnectionParams parse(std::string_view url) {
    if (url.size() > max_url_length)
      throw invalid_url("URL longer than " + std::to_string(max_url_length) + " bytes", max_url_length);
    const bool single = url.find(';') == std::string_view::npos;
    std::size_t end = single ? url.size() : url.find(';');
    ConnectionParams primary = parse_one(url.substr(0, end), 0, single);
    while (end != url.size()) {
      std::size_t start = end + 1;
      end = url.find(';', start);
      if (end == std::string_view::npos) end = url.size();
      primary.alternates_.push_back(parse_one(url.substr(start, end - start), start, false));
    }
    primary.rehash();
    return primary;
  }

  // The transport name, aliases resolved: "amqp", "amqps", "redis", "rediss", "memory".
  const std::string& transport() const noexcept { return transport_; }
  // Host name or address, lowercased, IPv6 without brackets; never empty.
  const std::string& hostname() const noexcept { return hostname_; }
  // Port; the transport's default when the URL had none (0 for memory).
  std::uint16_t port() const noexcept { return port_; }
  // User name (amqp default "guest"; may be empty for redis and memory).
  const std::string& userid() const noexcept { return userid_; }
  // Password (amqp default "guest"; may be empty). Never printed by as_uri() unless asked.
  const std::string& password() const noexcept { return password_; }
  // amqp/memory virtual host ("/" by default), or the redis database number as text ("0" by default).
  const std::string& virtual_host() const noexcept { return virtual_host_; }
  // Query options, sorted by name.
  const options_type& options() const noexcept { return options_; }
  // The value of option `name`, or nullopt.
  std::optional<std::string> option(std::string_view name) const {
    auto it = options_.find(std::string(name));
    if (it == options_.end()) return std::nullopt;
    return it->second;
  }
  // The failover URLs after this one, in order (kombu's Connection.alt minus
  // its first entry, which is *this). Alternates have no alternates of their own.
  const std::vector<ConnectionParams>& alternates() const noexcept { return alternates_; }

  // The URL in kombu's format: scheme://user:**@host:port/vhost?options, the
  // password masked as "**" unless include_password (and no user info at all
  // when both are empty); the port omitted when 0; vhost "/" written "//";
  // IPv6 hosts bracketed; fields percent-encoded so that
  // parse(as_uri(true)) == *this; alternates appended ';'-separated.
  // Examples: "amqp://guest:**@localhost:5672//", "redis://localhost:6379/0",
  // "memory://localhost//".
  std::string as_uri(bool include_password = false) const {
    using detail::url::percent_encode;
    std::string out = transport_ + "://";
    if (!userid_.empty() || !password_.empty()) {
      out += percent_encode(userid_);
      if (!password_.empty()) out += include_password ? ":" + percent_encode(password_) : std::string(":**");
      out += '@';
    }
    if (hostname_.find(':') != std::string::npos)
      out += "[" + percent_encode(hostname_, ":") + "]";
    else
      out += percent_encode(hostname_);
    if (port_ != 0) out += ":" + std::to_string(port_);
    out += '/';
    out += percent_encode(virtual_host_, "/");
    char separator = '?';
    for (const auto& [name, value] : options_) {
      out += separator;
      out += percent_encode(name) + "=" + percent_encode(value);
      separator = '&';
    }
    for (const auto& alternate : alternates_) out += ";" + alternate.as_uri(include_password);
    return out;
  }

  // The hash of the normalised fields (alternates included), computed once. O(1).
  std::size_t hash() const noexcept { return hash_; }

  // Equal when every normalised field, the options and the alternates (in
  // order) are equal. Hashes are compared first, so unequal keys are cheap.
  friend bool operator==(const ConnectionParams& a, const ConnectionParams& b) {
    return a.hash_ == b.hash_ && a.identity_ == b.identity_;
  }
  friend bool operator!=(const ConnectionParams& a, const ConnectionParams& b) { return !(a == b); }

  // Writes as_uri() (password masked).
  friend std::ostream& operator<<(std::ostream& os, const ConnectionParams& params) {
    return os << params.as_uri();
  }

 private:
  struct transport_info {
    const char* scheme;
    const char* name;
  };

  // Whether `name` is a well-formed URL scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
  // Returns the offset of the first bad character, or npos.
  static std::size_t bad_scheme_char(std::string_view name) noexcept {
    for (std::size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!(alpha || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))) return i;
    }
    return std::string_view::npos;
  }

  // Resolves a scheme or transport name (case-insensitive) to its transport
  // name; throws unknown_transport, or invalid_url (position 0) for something
  // that is not a scheme name at all (a URL passed by mistake: never echoed).
  static std::string resolve_transport(std::string scheme) {
    if (scheme.empty() || bad_scheme_char(scheme) != std::string_view::npos)
      throw invalid_url(
          "transport is not a scheme name such as \"amqp\" (parse URLs with ConnectionParams::parse)", 0);
    static constexpr transport_info known[] = {
        {"amqp", "amqp"},   {"pyamqp", "amqp"},   {"librabbitmq", "amqp"}, {"amqps", "amqps"},
        {"redis", "redis"}, {"rediss", "rediss"}, {"memory", "memory"},
    };
    detail::url::ascii_lower(scheme);
    for (const auto& entry : known)
      if (scheme == entry.scheme) return entry.name;
    throw unknown_transport(scheme);
  }

  bool is_amqp() const noexcept { return transport_ == "amqp" || transport_ == "amqps"; }
  bool is_redis() const noexcept { return transport_ == "redis" || transport_ == "rediss"; }

  // Applies the transport's defaults and canonical forms, then hashes.
  // `vhost_position` is where the virtual host starts in the URL (errors).
  void normalise(std::size_t vhost_position) {
    detail::url::ascii_lower(hostname_);
    if (hostname_.empty()) hostname_ = "localhost";
    if (port_ == 0)
      port_ = transport_ == "amqp" ? 5672 : transport_ == "amqps" ? 5671 : is_redis() ? 6379 : 0;
    if (is_amqp()) {
      if (userid_.empty()) userid_ = "guest";
      if (password_.empty()) password_ = "guest";
    }
    if (is_redis()) {
      std::string_view db = virtual_host_;
      if (!db.empty() && db.front() == '/') db.remove_prefix(1);
      std::uint64_t number = 0;
      for (char c : db) {
        if (c < '0' || c > '9')
          throw invalid_url("redis database must be a number (redis://host:port/db)", vhost_position);
        number = number * 10 + static_cast<std::uint64_t>(c - '0');
        if (number > 2147483647u) throw invalid_url("redis database number out of range", vhost_position);
      }
      virtual_host_ = std::to_string(number);
    } else if (virtual_host_.empty()) {
      virtual_host_ = "/";
    }
    rehash();
  }

  // identity_ encodes every normalised field, length-prefixed (so no two
  // different ConnectionParams share it): equality is one string comparison
  // and the hash one std::hash over it.
  void rehash() {
    std::string id;
    auto add = [&id](const std::string& field) {
      id += std::to_string(field.size());
      id += ':';
      id += field;
    };
    add(transport_);
    add(hostname_);
    add(std::to_string(port_));
    add(userid_);
    add(password_);
    add(virtual_host_);
    add(std::to_string(options_.size()));
    for (const auto& [name, value] : options_) {
      add(name);
      add(value);
    }
    add(std::to_string(alternates_.size()));
    for (const auto& alternate : alternates_) add(alternate.identity_);
    identity_ = std::move(id);
    hash_ = std::hash<std::string>{}(identity_);
  }

  // Parses one URL of a failover list; `offset` is its position in the
  // string given to parse().
  static ConnectionParams parse_one(std::string_view url, std::size_t offset, bool single) {
    using detail::url::percent_decode;
    while (!url.empty() && detail::url::is_space(url.front())) url.remove_prefix(1), ++offset;
    while (!url.empty() && detail::url::is_space(url.back())) url.remove_suffix(1);
    if (url.empty()) throw invalid_url(single ? "empty URL" : "empty URL in the failover list", offset);
    for (std::size_t i = 0; i < url.size(); ++i) {
      auto c = static_cast<unsigned char>(url[i]);
      if (c == 0) throw invalid_url("NUL byte in URL", offset + i);
      if (c < 0x20 || c == 0x7f) throw invalid_url("control character in URL", offset + i);
      if (c == '#') throw invalid_url("'#' is not allowed in a URL (percent-encode it as %23)", offset + i);
    }

    // scheme "://"
    std::size_t colon = url.find(':');
    if (colon == std::string_view::npos || url.substr(colon + 1, 2) != "//")
      throw invalid_url("missing '://' after the scheme (URLs look like amqp://host)",
                        offset + (colon == std::string_view::npos ? url.size() : colon));
    std::string_view scheme = url.substr(0, colon);
    if (scheme.empty()) throw invalid_url("empty scheme", offset);
    if (std::size_t bad = bad_scheme_char(scheme); bad != std::string_view::npos)
      throw invalid_url("invalid character in scheme", offset + bad);
    ConnectionParams params(resolve_transport(std::string(scheme)), uninitialised{});

    // authority: [userinfo@]host[:port]
    std::size_t pos = colon + 3;
    std::size_t authority_end = url.find_first_of("/?", pos);
    if (authority_end == std::string_view::npos) authority_end = url.size();
    std::string_view authority = url.substr(pos, authority_end - pos);
    std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      std::size_t split = userinfo.find(':');
      params.userid_ = percent_decode(userinfo.substr(0, split), offset + pos, "user name");
      if (split != std::string_view::npos)
        params.password_ = percent_decode(userinfo.substr(split + 1), offset + pos + split + 1, "password");
      pos += at + 1;
      authority.remove_prefix(at + 1);
    }
    std::string_view port_text;
    std::size_t port_pos = 0;
    if (!authority.empty() && authority.front() == '[') {
      std::size_t close = authority.find(']');
      if (close == std::string_view::npos) throw invalid_url("unterminated '[' in host", offset + pos);
      std::string_view literal = authority.substr(1, close - 1);
      if (literal.empty()) throw invalid_url("empty address in '[]'", offset + pos);
      if (literal.find('[') != std::string_view::npos)
        throw invalid_url("'[' inside an IPv6 address", offset + pos + 1 + literal.find('['));
      params.hostname_ = percent_decode(literal, offset + pos + 1, "host");
      std::string_view rest = authority.substr(close + 1);
      if (!rest.empty() && rest.front() != ':')
        throw invalid_url("unexpected character after ']' (expected ':port')", offset + pos + close + 1);
      if (!rest.empty()) port_text = rest.substr(1), port_pos = pos + close + 2;
    } else {
      std::size_t split = authority.find(':');
      std::string_view host = authority.substr(0, split);
      std::size_t bracket = host.find_first_of("[]");
      if (bracket != std::string_view::npos)
        throw invalid_url("'[' or ']' in host (IPv6 addresses look like [::1])", offset + pos + bracket);
      params.hostname_ = percent_decode(host, offset + pos, "host");
      if (split != std::string_view::npos)
        port_text = authority.substr(split + 1), port_pos = pos + split + 1;
    }
    std::uint32_t port = 0;
    for (char c : port_text) {  // empty: the default port, as in kombu
      if (c < '0' || c > '9') throw invalid_url("port is not a number", offset + port_pos);
      port = port * 10 + static_cast<std::uint32_t>(c - '0');
      if (port > 65535) throw invalid_url("port out of range (0-65535)", offset + port_pos);
    }
    params.port_ = static_cast<std::uint16_t>(port);

    // /path ?query
    pos = authority_end;
    std::size_t query_start = url.find('?', pos);
    std::size_t path_end = query_start == std::string_view::npos ? url.size() : query_start;
    std::size_t vhost_pos = offset + pos;
    if (pos < path_end) {  // url[pos] == '/': drop exactly one leading '/'
      params.virtual_host_ =
          percent_decode(url.substr(pos + 1, path_end - pos - 1), offset + pos + 1, "virtual host");
      vhost_pos = offset + pos + 1;
    }
    if (query_start != std::string_view::npos) {
      std::size_t item = query_start + 1;
      while (item <= url.size()) {
        std::size_t item_end = url.find('&', item);
        if (item_end == std::string_view::npos) item_end = url.size();
        std::string_view pair = url.substr(item, item_end - item);
        std::size_t eq = pair.find('=');
        if (eq != std::string_view::npos) {
          std::string name = percent_decode(pair.substr(0, eq), offset + item, "option name", true);
          std::string value =
              percent_decode(pair.substr(eq + 1), offset + item + eq + 1, "option value", true);
          if (!name.empty() && !value.empty()) params.options_[std::move(name)] = std::move(value);
        } else {
          percent_decode(pair, offset + item, "option name", true);  // validate; blank, dropped
        }
        item = item_end + 1;
      }
    }
    params.normalise(vhost_pos);
    return params;
  }

  struct uninitialised {};
  ConnectionParams(std::string transport, uninitialised) : transport_(std::move(transport)) {}

  std::string transport_;
  std::string hostname_;
  std::uint16_t port_ = 0;
  std::string userid_;
  std::string password_;
  std::string virtual_host_;
  options_type options_;
  std::vector<ConnectionParams> alternates_;
  std::size_t hash_ = 0;
  std::string identity_;
};

}  // namespace respool

namespace std {
// Hashes the normalised fields; O(1) (the value is cached at construction).
template <>
struct hash<respool::ConnectionParams> {
  std::size_t operator()(const respool::ConnectionParams& params) const noexcept { return params.hash(); }
};
}  // namespace std
