// respool/errors.hpp — the exceptions and error codes respool reports.
//
// Every exception is a respool::error, a std::system_error whose code is a
// respool::errc in the "respool" category. The same errc values compare equal
// to a boost::system::error_code carrying them, which is what async
// operations complete with.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <system_error>

namespace respool {

// Error codes of the respool category.
enum class errc {
  limit_exceeded = 1,         // pool at its limit and the caller would not wait
  acquire_timeout,            // a wait with a timeout expired
  connection_limit_exceeded,  // a connection pool's limit_exceeded
  pool_closed,                // the pool was closed or reset
  pool_in_use,                // shrinking below the number in use without force
  invalid_url,                // a URL that cannot be parsed
  unknown_transport,          // no transport serves the URL's scheme
  connection_failed,          // the broker could not be reached or refused us
  connection_lost,            // the broker went away during an operation
  channel_error,              // the broker refused an operation (declare, publish...)
  resource_creation_failed,   // a factory threw something that is not a std::system_error
  encoding_error,             // a message body could not be encoded or decoded
};

namespace detail {
class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "respool"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::limit_exceeded:
        return "pool limit exceeded";
      case errc::acquire_timeout:
        return "timed out waiting for a pooled resource";
      case errc::connection_limit_exceeded:
        return "connection pool limit exceeded";
      case errc::pool_closed:
        return "pool closed";
      case errc::pool_in_use:
        return "cannot shrink a pool below the number of resources in use";
      case errc::invalid_url:
        return "invalid URL";
      case errc::unknown_transport:
        return "unknown transport";
      case errc::connection_failed:
        return "connection failed";
      case errc::connection_lost:
        return "connection lost";
      case errc::channel_error:
        return "channel error";
      case errc::resource_creation_failed:
        return "resource creation failed";
      case errc::encoding_error:
        return "message encoding error";
    }
    return "unknown respool error";
  }
  // errc::acquire_timeout and errc::connection_limit_exceeded are kinds of
  // limit_exceeded: `code == errc::limit_exceeded` holds for all three.
  bool equivalent(const std::error_code& code, int condition) const noexcept override {
    if (code.category() != *this) return false;
    if (code.value() == condition) return true;
    return condition == static_cast<int>(errc::limit_exceeded) &&
           (code.value() == static_cast<int>(errc::acquire_timeout) ||
            code.value() == static_cast<int>(errc::connection_limit_exceeded));
  }
};
}  // namespace detail

// The respool error category (a singleton).
inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl instance;
  return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }
inline std::error_condition make_error_condition(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace respool

template <>
struct std::is_error_code_enum<respool::errc> : std::true_type {};

namespace respool {

// Base of every exception respool throws.
class error : public std::system_error {
 public:
  error(errc code, const std::string& what) : std::system_error(make_error_code(code), what) {}
  error(std::error_code code, const std::string& what) : std::system_error(code, what) {}
};

// No resource could be had: the pool is at its limit and the caller would not
// wait (zero timeout) or its wait expired. kombu: LimitExceeded.
//
// The hierarchy uses virtual inheritance so that a connection pool's expired
// wait (connection_acquire_timeout) is catchable both as
// connection_limit_exceeded and as acquire_timeout, and still as one
// limit_exceeded and one respool::error.
// What an exhausted pool knew when it refused (limit_exceeded and its kin).
// Default-constructed: nothing known beyond limit and waited.
struct limit_details {
  std::string pool;         // the pool's name (a connection pool: its URL, password masked); may be empty
  std::size_t in_use = 0;   // resources leased out (or being created) at that moment
  std::size_t waiting = 0;  // other acquirers queued at that moment
  bool known = false;       // true when in_use / waiting were filled in by the pool
  // The group's cap (PoolGroup::set_max_total, pools::set_max_total) was
  // what was reached, not the pool's own limit: `limit` is max_total,
  // in_use / waiting count the whole group, pool_in_use / pool_waiting this pool.
  bool group = false;
  std::size_t pool_in_use = 0;
  std::size_t pool_waiting = 0;
};

class limit_exceeded : public virtual error {
 public:
  limit_exceeded(std::size_t limit, std::chrono::nanoseconds waited, limit_details details = {})
      : error(errc::limit_exceeded, describe("pool", limit, waited, details)),
        limit_(limit),
        waited_(waited),
        in_use_(details.in_use),
        waiting_(details.waiting),
        group_(details.group) {}

  // The pool's limit when the acquire gave up (the group's max_total if group_cap()).
  std::size_t limit() const noexcept { return limit_; }
  // How long the caller waited before giving up (zero for a non-waiting acquire).
  std::chrono::nanoseconds waited() const noexcept { return waited_; }
  // Resources in use and acquirers waiting when the pool refused (0 if not known).
  std::size_t in_use() const noexcept { return in_use_; }
  std::size_t waiting() const noexcept { return waiting_; }
  // True if the pool had room but its group was at max_total (no idle
  // resource of another key to close): limit() is then max_total, and
  // in_use() / waiting() count the whole group.
  bool group_cap() const noexcept { return group_; }

  // "connection pool limit of 10 exceeded after waiting 250.1 ms (pool
  // amqp://guest:**@host:5672//: 10 in use, 3 waiting); raise the limit
  // (resize(), pools::set_limit()) or look for leases held too long
  // (PoolPolicy::leak_threshold)"; without waiting "... exceeded (did not
  // wait; pool ...: ...); raise ...". The pools never name themselves with a password.
  static std::string describe(const char* what, std::size_t limit, std::chrono::nanoseconds waited,
                              const limit_details& details = {}) {
    using std::chrono::duration_cast;
    std::string text = std::string(what) + (details.group ? " group max_total of " : " limit of ") +
                       std::to_string(limit) + " exceeded";
    std::string facts;
    if (details.known && details.group) {
      // "... group max_total of 8 exceeded after waiting 1.2 ms (group: 8 in
      // use, 3 waiting; pool X: 2 in use, 1 waiting); raise max_total ..."
      facts += "group: " + std::to_string(details.in_use) + " in use, " + std::to_string(details.waiting) +
               " waiting; " + (details.pool.empty() ? std::string("this pool") : "pool " + details.pool) +
               ": " + std::to_string(details.pool_in_use) + " in use, " +
               std::to_string(details.pool_waiting) + " waiting";
    } else if (details.known) {
      if (!details.pool.empty()) facts += "pool " + details.pool + ": ";
      facts += std::to_string(details.in_use) + " in use, " + std::to_string(details.waiting) + " waiting";
    }
    if (waited.count() > 0) {
      auto us = duration_cast<std::chrono::microseconds>(waited).count();
      text += " after waiting " + std::to_string(us / 1000) + "." + std::to_string(us % 1000 / 100) + " ms";
      if (!facts.empty()) text += " (" + facts + ")";
    } else {
      text += facts.empty() ? " (did not wait)" : " (did not wait; " + facts + ")";
    }
    if (details.known && details.group) {
      text +=
          "; no idle resource of another key was left to close: raise max_total "
          "(PoolGroup::set_max_total(), pools::set_max_total()) or look for leases held too long "
          "(PoolPolicy::leak_threshold)";
    } else if (details.known) {
      text +=
          "; raise the limit (resize(), pools::set_limit()) or look for leases held too long "
          "(PoolPolicy::leak_threshold)";
    }
    return text;
  }

 protected:
  // For derived classes: the virtual base `error` is initialised by the most derived class.
  limit_exceeded(std::size_t limit, std::chrono::nanoseconds waited, int, const limit_details& details = {})
      : error(errc::limit_exceeded, std::string()),
        limit_(limit),
        waited_(waited),
        in_use_(details.in_use),
        waiting_(details.waiting),
        group_(details.group) {}

 private:
  std::size_t limit_;
  std::chrono::nanoseconds waited_;
  std::size_t in_use_ = 0;
  std::size_t waiting_ = 0;
  bool group_ = false;
};

// A wait with a timeout expired.
class acquire_timeout : public virtual limit_exceeded {
 public:
  acquire_timeout(std::size_t limit, std::chrono::nanoseconds waited, const limit_details& details = {})
      : error(errc::acquire_timeout, limit_exceeded::describe("pool", limit, waited, details)),
        limit_exceeded(limit, waited, 0, details) {}

 protected:
  acquire_timeout() : error(errc::acquire_timeout, std::string()), limit_exceeded(0, {}, 0) {}
};

// A connection pool could not hand out a connection. kombu: ConnectionLimitExceeded.
class connection_limit_exceeded : public virtual limit_exceeded {
 public:
  connection_limit_exceeded(std::size_t limit, std::chrono::nanoseconds waited,
                            const limit_details& details = {})
      : error(errc::connection_limit_exceeded,
              limit_exceeded::describe("connection pool", limit, waited, details)),
        limit_exceeded(limit, waited, 0, details) {}

 protected:
  connection_limit_exceeded()
      : error(errc::connection_limit_exceeded, std::string()), limit_exceeded(0, {}, 0) {}
};

// A connection pool's wait with a timeout expired: catchable as
// connection_limit_exceeded, as acquire_timeout and as limit_exceeded. Its
// code is errc::acquire_timeout.
class connection_acquire_timeout final : public connection_limit_exceeded, public acquire_timeout {
 public:
  connection_acquire_timeout(std::size_t limit, std::chrono::nanoseconds waited,
                             const limit_details& details = {})
      : error(errc::acquire_timeout, limit_exceeded::describe("connection pool", limit, waited, details)),
        limit_exceeded(limit, waited, 0, details) {}
};

// Acquire on a closed pool, or a waiter woken because its pool was closed or reset.
class pool_closed : public error {
 public:
  pool_closed() : error(errc::pool_closed, "pool closed") {}
  explicit pool_closed(const std::string& what) : error(errc::pool_closed, what) {}
};

// A URL that cannot be parsed. The message never contains the password.
class invalid_url : public error {
 public:
  invalid_url(const std::string& what, std::size_t position)
      : error(errc::invalid_url, "invalid URL: " + what + " (at position " + std::to_string(position) + ")"),
        position_(position) {}
  // Offset into the URL where parsing failed.
  std::size_t position() const noexcept { return position_; }

 private:
  std::size_t position_;
};

// No transport serves this scheme.
class unknown_transport : public error {
 public:
  explicit unknown_transport(const std::string& scheme)
      : error(errc::unknown_transport, "unknown transport: '" + scheme + "'"), scheme_(scheme) {}
  const std::string& scheme() const noexcept { return scheme_; }

 private:
  std::string scheme_;
};

}  // namespace respool
