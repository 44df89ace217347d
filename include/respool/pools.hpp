// respool/pools.hpp — the process-wide pool groups and the global limit (kombu.pools).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "respool/connection.hpp"
#include "respool/connection_params.hpp"
#include "respool/connection_pool.hpp"
#include "respool/detail/globals.hpp"
#include "respool/pool_group.hpp"
#include "respool/producer.hpp"

namespace respool::pools {

// Connection pools keyed by normalised connection parameters. `[]` also takes
// a Connection or a URL: group["redis://localhost"] and
// group[Connection("redis://localhost:6379/0")] are the same pool.
class Connections : public PoolGroup<ConnectionParams, ConnectionPool> {
 public:
  // A group with `limit` connections per pool.
  explicit Connections(std::size_t limit) : PoolGroup(limit, factory()) {}
  // A group that follows the global limit (set_limit).
  explicit Connections(use_default_limit_t) : PoolGroup(use_default_limit, factory()) {}

  using PoolGroup::operator[];
  ConnectionPool& operator[](const Connection& connection) { return (*this)[connection.params()]; }
  ConnectionPool& operator[](std::string_view url) { return (*this)[ConnectionParams::parse(url)]; }
  ConnectionPool& operator[](const std::string& url) { return (*this)[ConnectionParams::parse(url)]; }
  ConnectionPool& operator[](const char* url) { return (*this)[ConnectionParams::parse(url)]; }

 private:
  static factory_type factory() {
    return [](const ConnectionParams& params, std::size_t limit) {
      return std::make_unique<ConnectionPool>(params, limit);
    };
  }
};

class Producers;

}  // namespace respool::pools

namespace respool::detail {
// Never destroyed: usable from other static objects' constructors and destructors.
inline pools::Connections& global_connections() {
  static auto* instance = new pools::Connections(use_default_limit);
  return *instance;
}
pools::Producers& global_producers();
}  // namespace respool::detail

namespace respool::pools {

// Producer pools keyed like Connections. Each ProducerPool borrows its
// connections from the process-wide pools::connections[params] (kombu
// Producers.create), looked up at every acquire so that reset() and fork()
// are followed.
class Producers : public PoolGroup<ConnectionParams, ProducerPool> {
 public:
  explicit Producers(std::size_t limit) : PoolGroup(limit, factory()) {}
  explicit Producers(use_default_limit_t) : PoolGroup(use_default_limit, factory()) {}

  using PoolGroup::operator[];
  ProducerPool& operator[](const Connection& connection) { return (*this)[connection.params()]; }
  ProducerPool& operator[](std::string_view url) { return (*this)[ConnectionParams::parse(url)]; }
  ProducerPool& operator[](const std::string& url) { return (*this)[ConnectionParams::parse(url)]; }
  ProducerPool& operator[](const char* url) { return (*this)[ConnectionParams::parse(url)]; }

 private:
  static factory_type factory() {
    return [](const ConnectionParams& params, std::size_t limit) {
      return std::make_unique<ProducerPool>(
          [params]() -> ConnectionPool& { return respool::detail::global_connections()[params]; }, limit);
    };
  }
};

// The process-wide groups; they follow the global limit.
inline Connections& connections = respool::detail::global_connections();
inline Producers& producers = respool::detail::global_producers();

// Set the global limit (default 200) and resize every pool of every group
// that follows it, waking waiters when it grows. Shrinking a pool below its
// number in use throws error(errc::pool_in_use) unless `force` (then that
// pool's resources are force-closed); on a refusal nothing changes.
// Returns the new limit.
inline std::size_t set_limit(std::size_t limit, bool force = false) {
  return respool::detail::set_default_limit(limit, force);
}

// The global limit: 200 until set_limit is called.
inline std::size_t get_limit() { return respool::detail::default_limit(); }

// Force-close every pool of every group (the global ones and any others) and forget them.
inline void reset() { respool::detail::reset_all_groups(); }

}  // namespace respool::pools

namespace respool::detail {
inline pools::Producers& global_producers() {
  static auto* instance = new pools::Producers(use_default_limit);
  return *instance;
}
}  // namespace respool::detail
