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
//   redis; rediss; redis+socket; sentinel; memory. Any other well-formed
//   scheme throws unknown_transport. parse() knows these schemes whether or
//   not their transport is compiled in.
// * user, password, host, virtual host, option names and values are
//   percent-decoded (options also turn '+' into a space, as parse_qsl does).
//   A '/', '?', '#', ';', '@' or '%' inside a field must be percent-encoded
//   (and ':' where it would be read as a separator). An escape decoding to a
//   NUL byte is rejected.
// * The last '@' of the authority ends the user info; its first ':' splits
//   user from password (`user@host` has no password, `:pw@host` no user).
//   '[' and ']' are not allowed in the user info.
// * host: empty means "localhost"; ASCII-lowercased; an IPv6 literal is
//   written in brackets (`[::1]`, `[fe80::1%25eth0]`) and stored without them
//   (hostname() "::1"); what is in brackets must be an IPv6 address, and a
//   host without brackets must not contain ':' once decoded.
// * port: empty or 0 means the transport's default (kombu: `port or default`):
//   amqp 5672, amqps 5671, redis/rediss 6379, sentinel 26379, memory and
//   redis+socket 0 (no port).
// * path: one leading '/' is dropped and the rest decoded (kombu
//   url_to_parts), then per transport:
//     amqp/amqps: empty -> "/" (so `amqp://h`, `amqp://h/`, `amqp://h//` and
//                 `amqp://h/%2F` are all vhost "/"); `amqp://h/foo` is "foo".
//     redis/rediss/sentinel: the database number as canonical decimal text,
//                 "0" when empty or "/"; one more leading '/' is dropped as
//                 kombu's redis transport does (`redis://h//3` is "3"); a
//                 non-numeric database or one above 2147483647 is invalid_url.
//     redis+socket: the whole path is the socket's path (hostname()), as in
//                 kombu: `redis+socket:///run/redis.sock`; no host or port;
//                 the database comes from `?virtual_host=N` (kombu's only
//                 spelling there) and is virtual_host().
//     memory:     as amqp: empty -> "/" (`memory://` == `memory:///`), and
//                 `memory://h/x` is a different key.
// * amqp/amqps default userid and password are "guest" (an empty one counts
//   as absent, as in kombu: `amqp://user@h` has password "guest").
// * query options: each scheme knows a fixed set (docs/connections.md lists
//   them). An unknown or misspelled name, a name given twice, an option that
//   repeats a part of the URL (?password=, ?port=, ?db=...), an item without
//   '=', an empty name or value, and a malformed value are invalid_url,
//   naming the option (never its value) and the options the scheme knows.
//   Values are checked and canonicalised (booleans "1"/"0", ssl_cert_reqs
//   CERT_*, integers in decimal); the RabbitMQ URI spec's names are read as
//   respool's (connection_timeout in ms -> connect_timeout, cacertfile ->
//   ssl_ca_certs, certfile, keyfile, verify -> ssl_cert_reqs, auth_mechanism
//   -> login_method). Options are kept sorted by name.
// * TLS: `?ssl=1` (true/yes/on) or any ssl_* option turns amqp:// into
//   amqps:// (default port 5671) and redis:// into rediss://, as kombu does.
//   `?ssl=0` is refused: kombu turns TLS *on* for any value of ssl, so a URL
//   with ssl=0 would mean different things to kombu and to respool.
// * failover lists: `amqp://a;amqp://b;redis://c` — the URL is split on ';'
//   (kombu splits on ';' only). The first entry is `*this`; the others are
//   alternates(), in order. An entry without "scheme://" (`amqp://a;b:5673`)
//   takes the primary's transport, as kombu's Connection.switch() does. An
//   alternate whose transport is the primary's inherits what it leaves out,
//   as switch() does: the virtual host / database (no path) and each option
//   it does not give; when written without a scheme also the user and
//   password (no '@') and the port; sentinel:// alternates (more sentinels
//   of the same master) also the user and password.
// * Leading and trailing whitespace around each entry is ignored (as urllib
//   does); other control characters, a '#' (fragment), an unbalanced '[' or
//   ']', and URLs longer than max_url_length bytes are rejected.
//
// Errors: respool::invalid_url (with the offending offset into the string
// given to parse) or respool::unknown_transport. No message ever contains
// the password, an option value, or any other part of the URL except an
// unknown scheme and the name of a refused option (when it is a plain
// identifier).
#pragma once

#include <arpa/inet.h>

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

// Whether `text` is an IPv6 address, optionally followed by "%zone" (RFC 6874).
inline bool is_ipv6_literal(const std::string& text) {
  const std::size_t percent = text.find('%');
  const std::string address = text.substr(0, percent);
  if (percent != std::string::npos && percent + 1 == text.size()) return false;  // empty zone
  if (address.find(':') == std::string::npos) return false;
  unsigned char buffer[16];
  return ::inet_pton(AF_INET6, address.c_str(), buffer) == 1;
}

// ------------------------------------------------------------------ options

// Transports as bits, for the option table.
enum transport_bit : unsigned {
  t_amqp = 1,
  t_amqps = 2,
  t_redis = 4,
  t_rediss = 8,
  t_memory = 16,
  t_socket = 32,  // redis+socket
  t_sentinel = 64,
};
constexpr unsigned t_amqp_family = t_amqp | t_amqps;
constexpr unsigned t_redis_tcp = t_redis | t_rediss;
constexpr unsigned t_redis_all = t_redis | t_rediss | t_socket | t_sentinel;
constexpr unsigned t_all = 127;

inline unsigned bit_of(std::string_view transport) noexcept {
  if (transport == "amqp") return t_amqp;
  if (transport == "amqps") return t_amqps;
  if (transport == "redis") return t_redis;
  if (transport == "rediss") return t_rediss;
  if (transport == "memory") return t_memory;
  if (transport == "redis+socket") return t_socket;
  if (transport == "sentinel") return t_sentinel;
  return 0;
}

enum class option_kind {
  seconds,     // a non-negative decimal number of seconds ("5", "0.25"); 0 = no limit
  integer,     // a decimal integer in [low, high]
  boolean,     // 1/true/yes/on or 0/false/no/off (any case) -> "1" / "0"
  choice,      // one of `choices` ('|'-separated); lowercase aliases of ssl_cert_reqs accepted
  text,        // any non-empty text
  tls_switch,  // ssl: a true value turns TLS on and is not kept
};

struct option_spec {
  const char* name;
  unsigned transports;
  option_kind kind;
  long low = 0, high = 0;         // integer
  const char* choices = nullptr;  // choice
  bool secret = false;            // masked by as_uri()
};

// Every option respool reads (docs/connections.md explains each).
inline constexpr option_spec option_specs[] = {
    {"channel_max", t_amqp_family, option_kind::integer, 0, 65535},
    {"confirm_publish", t_amqp_family, option_kind::boolean},
    {"connect_timeout", t_amqp_family | t_redis_all, option_kind::seconds},
    {"frame_max", t_amqp_family, option_kind::integer, 4096, 2147483647},
    {"heartbeat", t_amqp_family, option_kind::integer, 0, 65535},
    {"login_method", t_amqp_family, option_kind::choice, 0, 0, "PLAIN"},
    {"master_name", t_sentinel, option_kind::text},
    {"read_timeout", t_amqp_family, option_kind::seconds},
    {"sentinel_password", t_sentinel, option_kind::text, 0, 0, nullptr, true},
    {"socket_timeout", t_redis_all, option_kind::seconds},
    {"ssl", t_amqp_family | t_redis_tcp, option_kind::tls_switch},
    {"ssl_ca_certs", t_amqp_family | t_redis_tcp, option_kind::text},
    {"ssl_cert_reqs", t_amqp_family | t_redis_tcp, option_kind::choice, 0, 0,
     "CERT_REQUIRED|CERT_OPTIONAL|CERT_NONE"},
    {"ssl_certfile", t_amqp_family | t_redis_tcp, option_kind::text},
    {"ssl_check_hostname", t_redis_tcp, option_kind::boolean},
    {"ssl_keyfile", t_amqp_family | t_redis_tcp, option_kind::text},
    {"virtual_host", t_socket, option_kind::text},  // redis+socket's database (kombu's spelling)
    {"wait_replicas", t_redis_all, option_kind::integer, 0, 1000},
    {"write_timeout", t_amqp_family, option_kind::seconds},
};

// Other names for options (read as the option they name).
enum class alias_conversion { none, milliseconds, verify };
struct option_alias {
  const char* alias;
  const char* name;
  unsigned transports;
  alias_conversion conversion;
};
inline constexpr option_alias option_aliases[] = {
    {"socket_connect_timeout", "connect_timeout", t_redis_all, alias_conversion::none},  // kombu/redis-py
    {"connection_timeout", "connect_timeout", t_amqp_family,
     alias_conversion::milliseconds},  // RabbitMQ URI spec
    {"cacertfile", "ssl_ca_certs", t_amqp_family, alias_conversion::none},
    {"certfile", "ssl_certfile", t_amqp_family, alias_conversion::none},
    {"keyfile", "ssl_keyfile", t_amqp_family, alias_conversion::none},
    {"verify", "ssl_cert_reqs", t_amqp_family, alias_conversion::verify},
    {"auth_mechanism", "login_method", t_amqp_family, alias_conversion::none},
};

// Names refused with a reason of their own.
struct refused_option {
  const char* name;
  unsigned transports;
  const char* reason;
};
inline constexpr refused_option refused_options[] = {
    {"password", t_all, "repeats the URL's password (scheme://user:password@host)"},
    {"userid", t_all, "repeats the URL's user (scheme://user:password@host)"},
    {"user", t_all, "repeats the URL's user (scheme://user:password@host)"},
    {"username", t_all, "repeats the URL's user (scheme://user:password@host)"},
    {"hostname", t_all, "repeats the URL's host (scheme://host:port)"},
    {"host", t_all, "repeats the URL's host (scheme://host:port)"},
    {"port", t_all, "repeats the URL's port (scheme://host:port)"},
    {"transport", t_all, "repeats the URL's scheme"},
    {"virtual_host", t_all & ~t_socket, "repeats the URL's path (scheme://host/virtual_host)"},
    {"db", t_redis | t_rediss | t_sentinel, "repeats the URL's path, the database (redis://host/3)"},
    {"db", t_socket, "is not read by kombu here: write the database as ?virtual_host=N"},
    {"fail_if_no_peer_cert", t_amqp_family, "is a RabbitMQ server setting, not a client one"},
    {"server_name_indication", t_amqp_family,
     "is not supported (rabbitmq-c cannot send another TLS server name than the host)"},
};

// An option name as an error message may show it: plain identifiers only
// (anything else could be a mis-encoded secret).
inline std::string shown_name(const std::string& name) {
  bool plain = !name.empty() && name.size() <= 40;
  for (char c : name)
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.');
  return plain ? "'" + name + "'" : std::string("(name not shown)");
}

inline const option_spec* find_option(std::string_view name, unsigned bit) noexcept {
  for (const auto& spec : option_specs)
    if ((spec.transports & bit) && name == spec.name) return &spec;
  return nullptr;
}

// Whether option `name` of `transport` is masked by as_uri().
inline bool is_secret_option(std::string_view transport, std::string_view name) noexcept {
  const option_spec* spec = find_option(name, bit_of(transport));
  return spec && spec->secret;
}

// The names `transport` knows, comma-separated (for error messages).
inline std::string known_options(unsigned bit) {
  std::string out;
  for (const auto& spec : option_specs) {
    if (!(spec.transports & bit)) continue;
    if (!out.empty()) out += ", ";
    out += spec.name;
  }
  return out.empty() ? std::string("none") : out;
}

inline bool is_decimal(std::string_view text) noexcept {
  if (text.empty()) return false;
  std::size_t digits = 0, dots = 0;
  for (char c : text) {
    if (c >= '0' && c <= '9')
      ++digits;
    else if (c == '.')
      ++dots;
    else
      return false;
  }
  return digits > 0 && dots <= 1;
}

inline std::optional<std::string> lowered_boolean(std::string text) {
  ascii_lower(text);
  if (text == "1" || text == "true" || text == "yes" || text == "on") return std::string("1");
  if (text == "0" || text == "false" || text == "no" || text == "off") return std::string("0");
  return std::nullopt;
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
  // hostname is lowercased (an IPv6 address may be given with or without
  // brackets); options with an empty name or value are dropped, the others
  // are checked and canonicalised as parse() does (an "ssl" option turns
  // amqp into amqps); alternates that have alternates of their own are
  // flattened, and an alternate of the same transport inherits the options it
  // does not have. For redis+socket, `hostname` is the socket's path and
  // `virtual_host` the database.
  // So ConnectionParams("redis") == parse("redis://localhost:6379/0").
  // Throws unknown_transport for an unknown transport name, invalid_url
  // (position 0) for a transport that is not a scheme name (e.g. a URL), a
  // NUL byte in a field, a bad option, a bad host or redis database.
  explicit ConnectionParams(std::string transport, std::string hostname = {}, std::uint16_t port = 0,
                            std::string userid = {}, std::string password = {}, std::string virtual_host = {},
                            options_type options = {}, std::vector<ConnectionParams> alternates = {})
      : transport_(std::move(transport)),
        hostname_(std::move(hostname)),
        port_(port),
        userid_(std::move(userid)),
        password_(std::move(password)),
        virtual_host_(std::move(virtual_host)) {
    transport_ = resolve_transport(transport_);
    for (const std::string* field : {&hostname_, &userid_, &password_, &virtual_host_})
      if (field->find('\0') != std::string::npos) throw invalid_url("a field contains a NUL byte", 0);
    std::vector<raw_option> raw;
    for (auto& [name, value] : options) {
      if (name.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
        throw invalid_url("an option contains a NUL byte", 0);
      if (!name.empty() && !value.empty()) raw.push_back({name, value, 0});
    }
    if (transport_ != "redis+socket" && hostname_.size() >= 2 && hostname_.front() == '[' &&
        hostname_.back() == ']')
      hostname_ = hostname_.substr(1, hostname_.size() - 2);
    std::optional<std::string> socket_db;
    read_options(raw, socket_db);
    if (socket_db) virtual_host_ = *socket_db;
    check_host(0);
    normalise(0);
    for (auto& alternate : alternates) {
      auto nested = std::move(alternate.alternates_);
      alternate.alternates_.clear();
      alternates_.push_back(std::move(alternate));
      for (auto& n : nested) alternates_.push_back(std::move(n));
    }
    for (auto& alternate : alternates_) {
      if (alternate.transport_ == transport_)
        for (const auto& [name, value] : options_) alternate.options_.emplace(name, value);
      alternate.rehash();
    }
    rehash();
  }

  // Parses a kombu broker URL (or a ';'-separated failover list of them).
  // Throws invalid_url (with the offending offset) or unknown_transport; see
  // the grammar at the top of this file.
  static ConnectionParams parse(std::string_view url) {
    if (url.size() > max_url_length)
      throw invalid_url("URL longer than " + std::to_string(max_url_length) + " bytes", max_url_length);
    const bool single = url.find(';') == std::string_view::npos;
    std::size_t end = single ? url.size() : url.find(';');
    ConnectionParams primary = parse_one(url.substr(0, end), 0, single, nullptr);
    while (end != url.size()) {
      std::size_t start = end + 1;
      end = url.find(';', start);
      if (end == std::string_view::npos) end = url.size();
      primary.alternates_.push_back(parse_one(url.substr(start, end - start), start, false, &primary));
    }
    primary.rehash();
    return primary;
  }

  // The transport name, aliases resolved: "amqp", "amqps", "redis", "rediss",
  // "redis+socket", "sentinel", "memory".
  const std::string& transport() const noexcept { return transport_; }
  // Host name or address, lowercased, IPv6 without brackets; never empty.
  // For redis+socket, the socket's path (as given).
  const std::string& hostname() const noexcept { return hostname_; }
  // Port; the transport's default when the URL had none (0 for memory and redis+socket).
  std::uint16_t port() const noexcept { return port_; }
  // User name (amqp default "guest"; may be empty for the others).
  const std::string& userid() const noexcept { return userid_; }
  // Password (amqp default "guest"; may be empty). Never printed by as_uri() unless asked.
  const std::string& password() const noexcept { return password_; }
  // amqp/memory virtual host ("/" by default), or the redis database number as text ("0" by default).
  const std::string& virtual_host() const noexcept { return virtual_host_; }
  // Query options, canonical names and values, sorted by name.
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
  // password and secret options (sentinel_password) masked as "**" unless
  // include_password (and no user info at all when both user and password
  // are empty); the port omitted when 0; vhost "/" written "//"; IPv6 hosts
  // bracketed; redis+socket as redis+socket:///path?virtual_host=N; fields
  // percent-encoded so that parse(as_uri(true)) == *this; alternates
  // appended ';'-separated, each written in full.
  // Examples: "amqp://guest:**@localhost:5672//", "redis://localhost:6379/0",
  // "memory://localhost//".
  std::string as_uri(bool include_password = false) const {
    std::string out = entry_uri(include_password, nullptr);
    for (const auto& alternate : alternates_) {
      out += ';';  // (not ";" + entry_uri(): GCC 12 warns -Wrestrict on it at -O2, a false positive)
      out += alternate.entry_uri(include_password, this);
    }
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
  struct raw_option {
    std::string name, value;
    std::size_t position;  // in the URL (0 for the constructor)
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
        {"amqp", "amqp"},
        {"pyamqp", "amqp"},
        {"librabbitmq", "amqp"},
        {"amqps", "amqps"},
        {"redis", "redis"},
        {"rediss", "rediss"},
        {"redis+socket", "redis+socket"},
        {"sentinel", "sentinel"},
        {"memory", "memory"},
    };
    detail::url::ascii_lower(scheme);
    for (const auto& entry : known)
      if (scheme == entry.scheme) return entry.name;
    throw unknown_transport(scheme);
  }

  bool is_amqp() const noexcept { return transport_ == "amqp" || transport_ == "amqps"; }
  bool is_socket() const noexcept { return transport_ == "redis+socket"; }
  // Transports whose virtual host is a redis database number.
  bool has_db() const noexcept {
    return transport_ == "redis" || transport_ == "rediss" || transport_ == "sentinel" || is_socket();
  }

  // Checks and canonicalises `raw` for transport_ into options_ (replacing
  // them); a TLS request (ssl=1, any ssl_* option) upgrades amqp -> amqps and
  // redis -> rediss. redis+socket's ?virtual_host= goes to `socket_db`.
  void read_options(const std::vector<raw_option>& raw, std::optional<std::string>& socket_db) {
    using namespace detail::url;
    const unsigned bit = bit_of(transport_);
    const std::string scheme = transport_ + "://";
    options_type out;
    bool tls = false;
    for (const auto& item : raw) {
      const std::size_t at = item.position;
      if (item.name.empty()) throw invalid_url("option with an empty name (expected name=value)", at);
      const std::string shown = shown_name(item.name);
      if (item.value.empty())
        throw invalid_url("option " + shown + " has an empty value (expected name=value)", at);
      for (const auto& refused : refused_options)
        if ((refused.transports & bit) && item.name == refused.name)
          throw invalid_url(
              "option " + shown + " is not allowed in " + scheme + " URLs: it " + refused.reason, at);
      std::string name = item.name;
      std::string value = item.value;
      for (const auto& alias : option_aliases) {
        if (!(alias.transports & bit) || name != alias.alias) continue;
        name = alias.name;
        if (alias.conversion == alias_conversion::milliseconds) {
          if (!is_decimal(value) || value.find('.') != std::string::npos || value.size() > 12)
            throw invalid_url("option " + shown + " must be a whole number of milliseconds", at);
          const std::uint64_t ms = std::stoull(value);
          std::string seconds = std::to_string(ms / 1000);
          if (ms % 1000) {
            std::string fraction = std::to_string(1000 + ms % 1000).substr(1);
            while (fraction.back() == '0') fraction.pop_back();
            seconds += "." + fraction;
          }
          value = seconds;
        } else if (alias.conversion == alias_conversion::verify) {
          if (value == "verify_peer")
            value = "CERT_REQUIRED";
          else if (value == "verify_none")
            value = "CERT_NONE";
          else
            throw invalid_url("option " + shown + " must be verify_peer or verify_none", at);
        }
        break;
      }
      const option_spec* spec = find_option(name, bit);
      if (spec == nullptr)
        throw invalid_url(
            "unknown option " + shown + " for " + scheme + " URLs (known: " + known_options(bit) + ")", at);
      const std::string what = "option " + shown + (name != item.name ? " (" + name + ")" : std::string());
      switch (spec->kind) {
        case option_kind::seconds:
          if (!is_decimal(value) || value.size() > 20 || std::stod(value) > 1e9)
            throw invalid_url(what + " must be a number of seconds (e.g. 5 or 0.25)", at);
          break;
        case option_kind::integer: {
          bool ok = is_decimal(value) && value.find('.') == std::string::npos;
          std::size_t first = 0;
          while (ok && first + 1 < value.size() && value[first] == '0') ++first;
          ok = ok && value.size() - first <= 10;
          long number = ok ? std::stol(value.substr(first)) : 0;
          if (!ok || number < spec->low || number > spec->high)
            throw invalid_url(what + " must be an integer from " + std::to_string(spec->low) + " to " +
                                  std::to_string(spec->high),
                              at);
          value = std::to_string(number);
          break;
        }
        case option_kind::boolean: {
          auto b = lowered_boolean(value);
          if (!b) throw invalid_url(what + " must be 1/true/yes/on or 0/false/no/off", at);
          value = *b;
          break;
        }
        case option_kind::choice: {
          std::string canonical = value;
          if (name == std::string_view("ssl_cert_reqs")) {
            if (value == "required") canonical = "CERT_REQUIRED";
            if (value == "optional") canonical = "CERT_OPTIONAL";
            if (value == "none") canonical = "CERT_NONE";
          }
          std::string_view choices = spec->choices;
          bool found = false;
          for (std::size_t start = 0; start <= choices.size();) {
            std::size_t bar = choices.find('|', start);
            if (bar == std::string_view::npos) bar = choices.size();
            found = found || choices.substr(start, bar - start) == canonical;
            start = bar + 1;
          }
          if (!found) {
            std::string list(choices);
            for (char& c : list)
              if (c == '|') c = ',';
            throw invalid_url(what + " must be one of " + list, at);
          }
          value = canonical;
          break;
        }
        case option_kind::text:
          break;
        case option_kind::tls_switch: {
          auto b = lowered_boolean(value);
          if (!b) throw invalid_url(what + " must be 1/true/yes/on", at);
          if (*b == "0")
            throw invalid_url(
                what +
                    " must not be false: kombu turns TLS on for any value of ssl, so respool refuses "
                    "ssl=0 (leave the option out for plain text)",
                at);
          tls = true;
          continue;  // not kept: the transport says it
        }
      }
      if (name.compare(0, 4, "ssl_") == 0) tls = true;
      if (out.count(name) || (name == "virtual_host" && socket_db))
        throw invalid_url(what + " is given twice", at);
      if (name == "virtual_host") {
        socket_db = value;
        continue;
      }
      out.emplace(std::move(name), std::move(value));
    }
    if (tls && transport_ == "amqp") transport_ = "amqps";
    if (tls && transport_ == "redis") transport_ = "rediss";
    options_ = std::move(out);
  }

  // Validates the host (and, for redis+socket, the socket path and port).
  void check_host(std::size_t position) const {
    if (is_socket()) {
      if (hostname_.empty() || hostname_ == "/")
        throw invalid_url("redis+socket:// needs the socket's path (redis+socket:///path/to/redis.sock)",
                          position);
      if (hostname_.front() != '/')
        throw invalid_url("redis+socket:// needs an absolute socket path", position);
      if (port_ != 0) throw invalid_url("redis+socket:// takes no port", position);
      return;
    }
    if (hostname_.find(':') != std::string::npos && !detail::url::is_ipv6_literal(hostname_))
      throw invalid_url("':' in host: an IPv6 address is written in brackets ([::1]), a port after the host",
                        position);
  }

  // Applies the transport's defaults and canonical forms, then hashes.
  // `vhost_position` is where the virtual host starts in the URL (errors).
  void normalise(std::size_t vhost_position) {
    if (!is_socket()) detail::url::ascii_lower(hostname_);
    if (hostname_.empty()) hostname_ = "localhost";
    if (port_ == 0)
      port_ = transport_ == "amqp"                              ? 5672
              : transport_ == "amqps"                           ? 5671
              : transport_ == "sentinel"                        ? 26379
              : transport_ == "redis" || transport_ == "rediss" ? 6379
                                                                : 0;
    if (is_amqp()) {
      if (userid_.empty()) userid_ = "guest";
      if (password_.empty()) password_ = "guest";
    }
    if (has_db()) {
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
    if (transport_ == "sentinel" && !options_.count("master_name"))
      throw invalid_url("sentinel:// needs the name of the master: ?master_name=NAME", vhost_position);
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

  // This entry as a URL; `primary` is the entry this one is an alternate of
  // (what it would inherit when parsed back is written out).
  std::string entry_uri(bool include_password, const ConnectionParams* primary) const {
    using detail::url::percent_encode;
    const bool same = primary != nullptr && primary->transport_ == transport_;
    std::string out = transport_ + "://";
    if (!userid_.empty() || !password_.empty()) {
      out += percent_encode(userid_);
      if (!password_.empty()) out += include_password ? ":" + percent_encode(password_) : std::string(":**");
      out += '@';
    } else if (same && transport_ == "sentinel" &&
               (!primary->userid_.empty() || !primary->password_.empty())) {
      out += '@';  // none, rather than the primary's (which a sentinel alternate would inherit)
    }
    options_type shown = options_;
    if (is_socket()) {
      out += percent_encode(hostname_, "/");
      if (virtual_host_ != "0" || (same && primary->virtual_host_ != "0"))
        shown["virtual_host"] = virtual_host_;
    } else {
      if (hostname_.find(':') != std::string::npos)
        out += "[" + percent_encode(hostname_, ":") + "]";
      else
        out += percent_encode(hostname_);
      if (port_ != 0) out += ":" + std::to_string(port_);
      out += '/';
      out += percent_encode(virtual_host_, "/");
    }
    char separator = '?';
    for (const auto& [name, value] : shown) {
      out += separator;
      const bool secret = detail::url::is_secret_option(transport_, name);
      out += percent_encode(name) + "=" +
             (secret && !include_password ? std::string("**") : percent_encode(value));
      separator = '&';
    }
    return out;
  }

  // Parses one URL of a failover list; `offset` is its position in the
  // string given to parse(); `primary` is the first entry (nullptr for it).
  static ConnectionParams parse_one(std::string_view url, std::size_t offset, bool single,
                                    const ConnectionParams* primary) {
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

    // scheme "://" — or, for an alternate, nothing: the primary's transport.
    std::size_t colon = url.find(':');
    const bool has_scheme = colon != std::string_view::npos && url.substr(colon + 1, 2) == "//";
    const bool schemeless = !has_scheme && primary != nullptr && url.find("://") == std::string_view::npos &&
                            url.find(":/") == std::string_view::npos;
    if (!has_scheme && !schemeless)
      throw invalid_url("missing '://' after the scheme (URLs look like amqp://host)",
                        offset + (colon == std::string_view::npos ? url.size() : colon));
    std::string transport;
    std::size_t pos = 0;
    if (has_scheme) {
      std::string_view scheme = url.substr(0, colon);
      if (scheme.empty()) throw invalid_url("empty scheme", offset);
      if (std::size_t bad = bad_scheme_char(scheme); bad != std::string_view::npos)
        throw invalid_url("invalid character in scheme", offset + bad);
      transport = resolve_transport(std::string(scheme));
      pos = colon + 3;
    } else {
      transport = primary->transport_;
    }
    ConnectionParams params(std::move(transport), uninitialised{});
    const std::size_t entry_start = offset;

    // authority: [userinfo@]host[:port]
    std::size_t authority_end = url.find_first_of("/?", pos);
    if (authority_end == std::string_view::npos) authority_end = url.size();
    std::string_view authority = url.substr(pos, authority_end - pos);
    std::size_t at = authority.rfind('@');
    const bool has_userinfo = at != std::string_view::npos;
    if (has_userinfo) {
      std::string_view userinfo = authority.substr(0, at);
      if (std::size_t bracket = userinfo.find_first_of("[]"); bracket != std::string_view::npos)
        throw invalid_url("'[' or ']' in the user info (percent-encode them as %5B and %5D)",
                          offset + pos + bracket);
      std::size_t split = userinfo.find(':');
      params.userid_ = percent_decode(userinfo.substr(0, split), offset + pos, "user name");
      if (split != std::string_view::npos)
        params.password_ = percent_decode(userinfo.substr(split + 1), offset + pos + split + 1, "password");
      pos += at + 1;
      authority.remove_prefix(at + 1);
    }
    std::string_view port_text;
    std::size_t port_pos = 0;
    const std::size_t host_pos = offset + pos;
    if (!authority.empty() && authority.front() == '[') {
      std::size_t close = authority.find(']');
      if (close == std::string_view::npos) throw invalid_url("unterminated '[' in host", offset + pos);
      std::string_view literal = authority.substr(1, close - 1);
      if (literal.empty()) throw invalid_url("empty address in '[]'", offset + pos);
      if (literal.find('[') != std::string_view::npos)
        throw invalid_url("'[' inside an IPv6 address", offset + pos + 1 + literal.find('['));
      params.hostname_ = percent_decode(literal, offset + pos + 1, "host");
      if (!detail::url::is_ipv6_literal(params.hostname_))
        throw invalid_url("not an IPv6 address in '[]' (host names and IPv4 addresses take no brackets)",
                          offset + pos + 1);
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
      if (split != std::string_view::npos) {
        port_text = authority.substr(split + 1), port_pos = pos + split + 1;
        if (std::size_t bracket2 = port_text.find_first_of("[]"); bracket2 != std::string_view::npos)
          throw invalid_url("'[' or ']' after the host", offset + port_pos + bracket2);
      }
    }
    std::uint32_t port = 0;
    for (char c : port_text) {  // empty: the default port, as in kombu
      if (c < '0' || c > '9') throw invalid_url("port is not a number", offset + port_pos);
      port = port * 10 + static_cast<std::uint32_t>(c - '0');
      if (port > 65535) throw invalid_url("port out of range (0-65535)", offset + port_pos);
    }
    params.port_ = static_cast<std::uint16_t>(port);
    const bool has_port = !port_text.empty();

    // /path ?query
    pos = authority_end;
    std::size_t query_start = url.find('?', pos);
    std::size_t path_end = query_start == std::string_view::npos ? url.size() : query_start;
    std::size_t vhost_pos = offset + pos;
    bool has_path = false;
    if (params.is_socket()) {
      if (!params.hostname_.empty() || has_port)
        throw invalid_url("redis+socket:// takes no host or port (redis+socket:///path/to/redis.sock)",
                          host_pos);
      params.hostname_ = percent_decode(url.substr(pos, path_end - pos), offset + pos, "socket path");
    } else if (pos < path_end) {  // url[pos] == '/': drop exactly one leading '/'
      params.virtual_host_ =
          percent_decode(url.substr(pos + 1, path_end - pos - 1), offset + pos + 1, "virtual host");
      vhost_pos = offset + pos + 1;
      has_path = true;
    }
    std::vector<raw_option> raw;
    if (query_start != std::string_view::npos) {
      std::size_t item = query_start + 1;
      if (std::size_t bad = url.find_first_of("?@", item); bad != std::string_view::npos)
        throw invalid_url(url[bad] == '?' ? "second '?' in the URL (percent-encode it as %3F)"
                                          : "'@' in the query (percent-encode it as %40; a password with '?' "
                                            "must be percent-encoded too)",
                          offset + bad);
      while (item <= url.size()) {
        std::size_t item_end = url.find('&', item);
        if (item_end == std::string_view::npos) item_end = url.size();
        std::string_view pair = url.substr(item, item_end - item);
        std::size_t eq = pair.find('=');
        if (eq != std::string_view::npos) {
          std::string name = percent_decode(pair.substr(0, eq), offset + item, "option name", true);
          std::string value =
              percent_decode(pair.substr(eq + 1), offset + item + eq + 1, "option value", true);
          raw.push_back({std::move(name), std::move(value), offset + item});
        } else if (!pair.empty()) {
          std::string name = percent_decode(pair, offset + item, "option name", true);
          throw invalid_url("option " + detail::url::shown_name(name) + " has no value (expected name=value)",
                            offset + item);
        }
        item = item_end + 1;
      }
    }
    std::optional<std::string> socket_db;
    params.read_options(raw, socket_db);
    if (socket_db) {
      params.virtual_host_ = *socket_db;
      has_path = true;
      for (const auto& option : raw)
        if (option.name == "virtual_host") vhost_pos = option.position;
    }

    // kombu's switch(): an alternate of the primary's transport inherits what
    // it leaves out; the user and password only when written without a
    // scheme (a URL's missing user info means the default, as in kombu) or
    // for sentinel:// (more sentinels of the same master).
    if (primary != nullptr && primary->transport_ == params.transport_) {
      if (!has_userinfo && (schemeless || params.transport_ == "sentinel"))
        params.userid_ = primary->userid_, params.password_ = primary->password_;
      if (!has_path) params.virtual_host_ = primary->virtual_host_;
      if (schemeless && !has_port) params.port_ = primary->port_;
      for (const auto& [name, value] : primary->options_) params.options_.emplace(name, value);
    }
    params.check_host(host_pos);
    params.normalise(has_path ? vhost_pos : entry_start);
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
