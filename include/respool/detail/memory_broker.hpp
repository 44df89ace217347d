// respool/detail/memory_broker.hpp — the in-process broker behind memory://.
//
// Machinery for respool/transport/memory.hpp: exchanges (direct, fanout,
// topic), FIFO queues, bindings, routing, basic_get with acknowledgements and
// redelivery, modelled on kombu's virtual transport
// (kombu/transport/virtual/exchange.py) and AMQP 0-9-1's observable rules.
// Users reach it through respool::transport::memory::broker_for().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"

namespace respool::detail::memory {

// A topic binding key compiled the way kombu's TopicExchange compiles it
// (key_to_pattern): the key is split into dot-separated words; a word that is
// exactly "#" becomes the regex `.*?` (any text, dots included, possibly
// empty) and a word that is exactly "*" becomes `.*?[^.]` (any non-empty text
// not ending in a dot); every other word is literal, and the words are joined
// by literal dots and anchored at both ends. So "stock.#" matches
// "stock.us.nasdaq" and "stock." but not "stock", and "#" matches everything.
// Differences from kombu: '*' or '#' inside a longer word are plain
// characters here (kombu passes them to the regex unescaped), and newlines
// are ordinary characters (Python's `.` excludes them).
// Immutable once built: safe to use from several threads.
class topic_pattern {
 public:
  explicit topic_pattern(std::string_view key) {
    std::size_t start = 0;
    for (bool first = true;; first = false) {
      std::size_t dot = key.find('.', start);
      std::string_view word =
          key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
      if (!first) append_literal(".");
      if (word == "#") {
        tokens_.push_back({kind::hash, {}});
      } else if (word == "*") {
        tokens_.push_back({kind::star, {}});
      } else {
        append_literal(word);
      }
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }

  // True if `routing_key` matches the whole pattern.
  bool matches(std::string_view routing_key) const {
    if (tokens_.empty()) return routing_key.empty();
    if (tokens_.size() == 1) {
      const token& only = tokens_.front();
      if (only.what == kind::literal) return routing_key == only.text;
      if (only.what == kind::hash) return true;
    }
    // reach[p]: the tokens so far can consume exactly routing_key[0, p).
    const std::size_t size = routing_key.size();
    std::vector<char> reach(size + 1, 0), next(size + 1, 0);
    reach[0] = 1;
    for (const token& t : tokens_) {
      std::fill(next.begin(), next.end(), 0);
      std::size_t first = 0;
      while (first <= size && !reach[first]) ++first;
      if (first > size) return false;
      switch (t.what) {
        case kind::literal:
          for (std::size_t p = first; p + t.text.size() <= size; ++p) {
            if (reach[p] && routing_key.compare(p, t.text.size(), t.text) == 0) next[p + t.text.size()] = 1;
          }
          break;
        case kind::hash:  // .*? — anything from the earliest reachable position on
          for (std::size_t q = first; q <= size; ++q) next[q] = 1;
          break;
        case kind::star:  // .*?[^.] — at least one character, the last not a dot
          for (std::size_t q = first + 1; q <= size; ++q) next[q] = routing_key[q - 1] != '.';
          break;
      }
      reach.swap(next);
    }
    return reach[size] != 0;
  }

 private:
  enum class kind { literal, hash, star };
  struct token {
    kind what;
    std::string text;  // for literals
  };

  void append_literal(std::string_view text) {
    if (text.empty()) return;
    if (!tokens_.empty() && tokens_.back().what == kind::literal) {
      tokens_.back().text.append(text);
    } else {
      tokens_.push_back({kind::literal, std::string(text)});
    }
  }

  std::vector<token> tokens_;
};

// fork() waits for every broker operation in flight: each holds this gate
// shared (then its broker's mutex); the fork handlers take it exclusively
// (brokers() below). One lock, however many brokers there are.
inline std::shared_mutex& fork_gate() {
  static std::shared_mutex* gate = new std::shared_mutex;  // never destroyed
  return *gate;
}

class broker_lock {
 public:
  explicit broker_lock(std::mutex& m) : gate_(fork_gate()), lock_(m) {}

 private:
  std::shared_lock<std::shared_mutex> gate_;
  std::lock_guard<std::mutex> lock_;
};

// Counters of one broker, a consistent snapshot taken under its lock.
struct broker_stats {
  std::size_t connects = 0;          // connections attached over the broker's life
  std::size_t live_connections = 0;  // connections attached now
  std::size_t exchanges = 0;         // declared exchanges (the default exchange not counted)
  std::size_t queues = 0;            // declared queues
  std::size_t published = 0;         // publishes accepted (their exchange existed)
  std::size_t routed = 0;            // message copies put into queues (fanout counts each queue)
  std::size_t dropped = 0;           // accepted publishes no queue received
  std::size_t delivered = 0;         // messages handed out by get()
  std::size_t acked = 0;             // acknowledgements of outstanding messages
  std::size_t redelivered = 0;       // unacked messages put back in their queue by a closing connection
  std::size_t unacked = 0;           // messages delivered with no_ack=false and not yet acked (now)
};

// One virtual host of the in-process broker. Every member is thread-safe (one
// mutex per broker); none calls user code with the lock held. Always owned by
// a std::shared_ptr (create()): the ack callbacks of the messages it hands out
// hold a weak_ptr to it, so they are safe to call after every connection (or
// the broker itself) is gone.
class broker : public std::enable_shared_from_this<broker> {
 public:
  // A new, empty broker (not registered anywhere; broker_for() gives the
  // process-wide shared one).
  static std::shared_ptr<broker> create(std::string hostname, std::string virtual_host) {
    return std::shared_ptr<broker>(new broker(std::move(hostname), std::move(virtual_host)));
  }

  broker(const broker&) = delete;
  broker& operator=(const broker&) = delete;

  const std::string& hostname() const noexcept { return hostname_; }
  const std::string& virtual_host() const noexcept { return virtual_host_; }

  // For the fork handlers of the process-wide brokers (brokers()) only.
  void fork_recreate() noexcept { ::new (static_cast<void*>(&mutex_)) std::mutex; }

  // Attach a connection; returns its id (never 0). Counts in stats().
  std::uint64_t attach() {
    broker_lock lock(mutex_);
    std::uint64_t id = ++next_connection_;
    attached_.push_back(id);
    ++stats_.connects;
    return id;
  }

  // Detach connection `id`: its unacked messages go back to the front of
  // their queues, in their original order (AMQP redelivery). Unknown ids are ignored.
  void detach(std::uint64_t id) {
    broker_lock lock(mutex_);
    auto it = std::find(attached_.begin(), attached_.end(), id);
    if (it == attached_.end()) return;
    attached_.erase(it);
    // Newest first, each to the front: the oldest ends up at the very front.
    for (auto u = unacked_.rbegin(); u != unacked_.rend();) {
      if (u->second.connection != id) {
        ++u;
        continue;
      }
      auto q = queues_.find(u->second.queue);
      if (q != queues_.end()) {
        u->second.envelope.delivery_tag.clear();
        q->second.push_front(std::move(u->second.envelope));
        ++stats_.redelivered;
      }
      u = std::make_reverse_iterator(unacked_.erase(std::next(u).base()));
    }
  }

  // True while connection `id` is attached.
  bool attached(std::uint64_t id) const {
    broker_lock lock(mutex_);
    return std::find(attached_.begin(), attached_.end(), id) != attached_.end();
  }

  // Declare an exchange (idempotent). Throws error(channel_error) for an
  // unknown type ("direct", "fanout", "topic" are known) and when the
  // exchange exists with a different type, durability or auto_delete
  // (AMQP's PRECONDITION_FAILED, kombu's NotEquivalentError). The default
  // exchange "" may be "declared" as direct, which does nothing.
  void declare_exchange(const Exchange& exchange) {
    auto type = parse_type(exchange.type);
    if (!type) {
      throw error(errc::channel_error, "COMMAND_INVALID - unknown exchange type '" + exchange.type + "'");
    }
    if (exchange.name.empty()) {
      if (*type != exchange_type::direct) {
        throw error(errc::channel_error, "ACCESS_REFUSED - the default exchange is a direct exchange");
      }
      return;
    }
    broker_lock lock(mutex_);
    auto it = exchanges_.find(exchange.name);
    if (it == exchanges_.end()) {
      exchanges_.emplace(exchange.name, exchange_state{exchange, *type, {}});
      return;
    }
    const Exchange& existing = it->second.declaration;
    if (existing.type != exchange.type || existing.durable != exchange.durable ||
        existing.auto_delete != exchange.auto_delete) {
      throw error(errc::channel_error, "PRECONDITION_FAILED - inequivalent arguments for exchange '" +
                                           exchange.name + "' in vhost '" + virtual_host_ +
                                           "' (declared as " + describe(existing) + ", redeclared as " +
                                           describe(exchange) + ")");
    }
  }

  // True if the exchange exists ("" always does).
  bool has_exchange(std::string_view name) const {
    if (name.empty()) return true;
    broker_lock lock(mutex_);
    return exchanges_.find(name) != exchanges_.end();
  }

  // Declare a queue (idempotent). Throws error(channel_error) for an empty name.
  void declare_queue(std::string_view name) {
    if (name.empty()) throw error(errc::channel_error, "memory transport: a queue needs a name");
    broker_lock lock(mutex_);
    if (queues_.find(name) == queues_.end()) queues_.emplace(std::string(name), std::deque<Envelope>());
  }

  // True if the queue exists.
  bool has_queue(std::string_view name) const {
    broker_lock lock(mutex_);
    return queues_.find(name) != queues_.end();
  }

  // Bind `queue` to `exchange` with `routing_key` (a pattern for topic
  // exchanges; ignored by fanout ones). Idempotent. Binding to the default
  // exchange "" does nothing (it routes by queue name). Throws
  // error(channel_error) if the queue or the exchange does not exist (AMQP 404).
  void bind(std::string_view exchange, std::string_view queue, std::string_view routing_key) {
    broker_lock lock(mutex_);
    if (queues_.find(queue) == queues_.end()) throw not_found("queue", queue);
    if (exchange.empty()) return;
    auto it = exchanges_.find(exchange);
    if (it == exchanges_.end()) throw not_found("exchange", exchange);
    auto& bindings = it->second.bindings;
    for (const binding& b : bindings) {
      if (b.queue == queue && b.routing_key == routing_key) return;
    }
    binding b{std::string(routing_key), std::string(queue), std::nullopt};
    if (it->second.type == exchange_type::topic) b.pattern.emplace(routing_key);
    bindings.push_back(std::move(b));
  }

  // Route `message` through `exchange` with `routing_key`; every matching
  // queue gets one copy (once even if several of its bindings match), stamped
  // with the exchange and routing key. The default exchange "" routes to the
  // queue named `routing_key`. Returns the number of queues that got it; 0
  // means it was dropped, which is not an error (AMQP without mandatory).
  // Throws error(channel_error) if the exchange does not exist (AMQP 404).
  std::size_t publish(const Envelope& message, std::string_view exchange, std::string_view routing_key) {
    broker_lock lock(mutex_);
    std::vector<std::deque<Envelope>*> targets;
    if (exchange.empty()) {
      auto q = queues_.find(routing_key);
      if (q != queues_.end()) targets.push_back(&q->second);
    } else {
      auto it = exchanges_.find(exchange);
      if (it == exchanges_.end()) throw not_found("exchange", exchange);
      for (const binding& b : it->second.bindings) {
        if (!routes(it->second.type, b, routing_key)) continue;
        auto q = queues_.find(b.queue);
        if (q != queues_.end()) targets.push_back(&q->second);
      }
      std::sort(targets.begin(), targets.end());
      targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
    }
    ++stats_.published;
    if (targets.empty()) {
      ++stats_.dropped;
      return 0;
    }
    Envelope stamped = message;
    stamped.exchange = std::string(exchange);
    stamped.routing_key = std::string(routing_key);
    stamped.delivery_tag.clear();
    for (std::size_t i = 0; i + 1 < targets.size(); ++i) targets[i]->push_back(stamped);
    targets.back()->push_back(std::move(stamped));
    stats_.routed += targets.size();
    return targets.size();
  }

  // basic_get: the message at the front of `queue`, or nothing if it is
  // empty. Its delivery tag is the broker's next tag, as text. With
  // no_ack=false the message stays outstanding until Message::ack(); if
  // `connection` (an attach() id) is detached first, it goes back to the front
  // of its queue. connection 0 means no owner: it stays outstanding until
  // acked. Throws error(channel_error) if the queue does not exist (AMQP 404)
  // and error(connection_lost) if `connection` is not 0 and not attached.
  std::optional<Message> get(std::string_view queue, bool no_ack, std::uint64_t connection = 0) {
    broker_lock lock(mutex_);
    if (connection != 0 && std::find(attached_.begin(), attached_.end(), connection) == attached_.end()) {
      throw error(errc::connection_lost, "memory transport: connection is closed");
    }
    auto q = queues_.find(queue);
    if (q == queues_.end()) throw not_found("queue", queue);
    if (q->second.empty()) return std::nullopt;
    Envelope envelope = std::move(q->second.front());
    q->second.pop_front();
    ++stats_.delivered;
    const std::uint64_t tag = ++next_tag_;
    envelope.delivery_tag = std::to_string(tag);
    if (no_ack) return Message(std::move(envelope), nullptr);
    unacked_.emplace(tag, outstanding{q->first, envelope, connection});
    std::weak_ptr<broker> self = weak_from_this();
    return Message(std::move(envelope), [self, tag] {
      if (auto b = self.lock()) b->ack(tag);
    });
  }

  // Acknowledge an outstanding delivery; false if it is not outstanding
  // (already acked, fetched with no_ack, or redelivered after its connection closed).
  bool ack(std::uint64_t delivery_tag) noexcept {
    broker_lock lock(mutex_);
    if (unacked_.erase(delivery_tag) == 0) return false;
    ++stats_.acked;
    return true;
  }

  // Messages ready in `queue`; 0 if it does not exist. Outstanding ones are not counted.
  std::size_t queue_size(std::string_view queue) const {
    broker_lock lock(mutex_);
    auto q = queues_.find(queue);
    return q == queues_.end() ? 0 : q->second.size();
  }

  // Remove every ready message of `queue`; returns how many. Throws
  // error(channel_error) if the queue does not exist (AMQP 404).
  std::size_t purge(std::string_view queue) {
    broker_lock lock(mutex_);
    auto q = queues_.find(queue);
    if (q == queues_.end()) throw not_found("queue", queue);
    std::size_t n = q->second.size();
    q->second.clear();
    return n;
  }

  // A snapshot of the counters.
  broker_stats stats() const {
    broker_lock lock(mutex_);
    broker_stats s = stats_;
    s.live_connections = attached_.size();
    s.exchanges = exchanges_.size();
    s.queues = queues_.size();
    s.unacked = unacked_.size();
    return s;
  }

 private:
  enum class exchange_type { direct, fanout, topic };

  struct binding {
    std::string routing_key;
    std::string queue;
    std::optional<topic_pattern> pattern;  // topic exchanges only
  };

  struct exchange_state {
    Exchange declaration;
    exchange_type type;
    std::vector<binding> bindings;
  };

  struct outstanding {
    std::string queue;
    Envelope envelope;
    std::uint64_t connection;
  };

  broker(std::string hostname, std::string virtual_host)
      : hostname_(std::move(hostname)), virtual_host_(std::move(virtual_host)) {}

  static std::optional<exchange_type> parse_type(std::string_view type) {
    if (type == "direct") return exchange_type::direct;
    if (type == "fanout") return exchange_type::fanout;
    if (type == "topic") return exchange_type::topic;
    return std::nullopt;
  }

  static bool routes(exchange_type type, const binding& b, std::string_view routing_key) {
    switch (type) {
      case exchange_type::direct:
        return b.routing_key == routing_key;
      case exchange_type::fanout:
        return true;
      case exchange_type::topic:
        return b.pattern->matches(routing_key);
    }
    return false;
  }

  static std::string describe(const Exchange& e) {
    return e.type + (e.durable ? ", durable" : ", transient") + (e.auto_delete ? ", auto-delete" : "");
  }

  error not_found(const char* what, std::string_view name) const {
    return error(errc::channel_error, std::string("NOT_FOUND - no ") + what + " '" + std::string(name) +
                                          "' in vhost '" + virtual_host_ + "'");
  }

  const std::string hostname_;
  const std::string virtual_host_;

  mutable std::mutex mutex_;
  std::map<std::string, exchange_state, std::less<>> exchanges_;
  std::map<std::string, std::deque<Envelope>, std::less<>> queues_;
  std::map<std::uint64_t, outstanding> unacked_;  // by delivery tag, i.e. in delivery order
  std::vector<std::uint64_t> attached_;           // connection ids
  std::uint64_t next_connection_ = 0;
  std::uint64_t next_tag_ = 0;
  broker_stats stats_;
};

// The process-wide brokers. Their registry mutex and the fork gate are
// process-wide locks under the fork rule (respool/detail/globals.hpp): fork()
// takes them, so a child finds every broker consistent and unlocked,
// whatever other threads were doing.
struct broker_registry {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<broker>> brokers;
};

inline broker_registry& brokers() {
  static broker_registry* instance = [] {
    auto* r = new broker_registry;  // never destroyed (nor are the brokers): usable from static destructors
    static constexpr fork_lock_hooks hooks{
        []() noexcept {
          brokers().mutex.lock();
          fork_gate().lock();  // no broker operation is in flight from here on
        },
        []() noexcept {
          fork_gate().unlock();
          brokers().mutex.unlock();
        },
        []() noexcept {
          auto& reg = brokers();
          for (auto& entry : reg.brokers) entry.second->fork_recreate();
          ::new (static_cast<void*>(&fork_gate())) std::shared_mutex;
          ::new (static_cast<void*>(&reg.mutex)) std::mutex;
        },
    };
    register_fork_lock(fork_lock_rank::memory_brokers, &hooks);
    return r;
  }();
  return *instance;
}

// The process-wide broker for (hostname, virtual_host), created on first use.
// Thread-safe.
inline std::shared_ptr<broker> shared_broker(std::string_view hostname, std::string_view virtual_host) {
  auto& r = brokers();
  std::pair<std::string, std::string> key(hostname, virtual_host);
  std::lock_guard<std::mutex> lock(r.mutex);
  auto& slot = r.brokers[key];
  if (!slot) slot = broker::create(std::move(key.first), std::move(key.second));
  return slot;
}

}  // namespace respool::detail::memory
