// respool/pools.hpp — the process-wide pool groups and the global limit (kombu.pools).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "respool/connection.hpp"
#include "respool/connection_params.hpp"
#include "respool/connection_pool.hpp"
#include "respool/detail/globals.hpp"
#include "respool/pool_group.hpp"
#include "respool/pool_policy.hpp"
#include "respool/producer.hpp"

namespace respool::detail {

// A pool group keyed by connection parameters whose `[]` also takes a
// Connection or a URL (the base of pools::Connections and pools::Producers).
template <class Pool>
class params_group : public PoolGroup<ConnectionParams, Pool> {
  using base = PoolGroup<ConnectionParams, Pool>;

 public:
  using base::base;
  using base::operator[];
  Pool& operator[](const Connection& connection) { return (*this)[connection.params()]; }
  Pool& operator[](std::string_view url) { return (*this)[ConnectionParams::parse(url)]; }
  Pool& operator[](const std::string& url) { return (*this)[ConnectionParams::parse(url)]; }
  Pool& operator[](const char* url) { return (*this)[ConnectionParams::parse(url)]; }
};

}  // namespace respool::detail

namespace respool::detail {
// The policies pools::set_connection_policy / set_producer_policy gave the
// process-wide groups (read by their factories). Never destroyed.
// `mutex` guards the two policies and is a leaf: held only to copy them,
// never while anything else is called. It follows the fork rule
// (detail/globals.hpp): a factory may run in a parent thread at fork().
// `apply_mutex` only serialises the setters (guards no data: re-created in
// the child).
struct global_policies {
  std::mutex mutex;
  PoolPolicy connections;
  PoolPolicy producers;
  std::mutex apply_mutex;

  PoolPolicy get(PoolPolicy global_policies::*which) {
    std::lock_guard<std::mutex> lock(mutex);
    return this->*which;
  }
  void set(PoolPolicy global_policies::*which, const PoolPolicy& policy) {
    std::lock_guard<std::mutex> lock(mutex);
    this->*which = policy;
  }
};
inline global_policies& policies() {
  static global_policies* const instance = new global_policies;
  // Registered once `instance` exists and before any caller can lock it.
  static const bool registered = [] {
    static constexpr fork_lock_hooks hooks{
        []() noexcept { instance->mutex.lock(); },
        []() noexcept { instance->mutex.unlock(); },
        []() noexcept {
          ::new (static_cast<void*>(&instance->mutex)) std::mutex;
          ::new (static_cast<void*>(&instance->apply_mutex)) std::mutex;
        },
    };
    register_fork_lock(fork_lock_rank::policies, &hooks);
    return true;
  }();
  (void)registered;
  return *instance;
}
}  // namespace respool::detail

namespace respool::pools {

// Connection pools keyed by normalised connection parameters:
// group["redis://localhost"] and group[Connection("redis://localhost:6379/0")]
// are the same pool. A PoolGroup<ConnectionParams, ConnectionPool>.
class Connections : public respool::detail::params_group<ConnectionPool> {
 public:
  // A group with `limit` connections per pool.
  explicit Connections(std::size_t limit) : params_group(limit, factory()) {}
  // A group that follows the global limit (set_limit).
  explicit Connections(use_default_limit_t) : params_group(use_default_limit, factory()) {}

 private:
  static factory_type factory() {
    return [](const ConnectionParams& params, std::size_t limit) {
      auto pool = std::make_unique<ConnectionPool>(params, limit);
      pool->set_name(params.as_uri());  // password masked
      pool->set_policy(respool::detail::policies().get(&respool::detail::global_policies::connections));
      return pool;
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
// are followed. A PoolGroup<ConnectionParams, ProducerPool>.
class Producers : public respool::detail::params_group<ProducerPool> {
 public:
  explicit Producers(std::size_t limit) : params_group(limit, factory()) {}
  explicit Producers(use_default_limit_t) : params_group(use_default_limit, factory()) {}

 private:
  static factory_type factory() {
    return [](const ConnectionParams& params, std::size_t limit) {
      auto pool = std::make_unique<ProducerPool>(
          [params]() -> ConnectionPool& { return respool::detail::global_connections()[params]; }, limit);
      pool->set_name("producers for " + params.as_uri());  // password masked
      pool->set_policy(respool::detail::policies().get(&respool::detail::global_policies::producers));
      return pool;
    };
  }
};

// A handle to one of the process-wide groups. It holds nothing and is
// constant-initialised, so it works from any translation unit's static
// constructors and destructors, whatever the link order: the group itself is
// created on first use (and never destroyed). Use it like the group
// (handle[url], handle.limit(), ...); it converts to a reference to it.
template <class Group, Group& (*Get)()>
class group_handle {
 public:
  using group_type = Group;
  constexpr group_handle() noexcept = default;

  // The group (created on first use).
  Group& get() const { return Get(); }
  operator Group&() const { return Get(); }
  Group& operator*() const { return Get(); }
  Group* operator->() const { return &Get(); }

  // As the group's members.
  template <class Key>
  decltype(auto) operator[](Key&& key) const {
    return Get()[std::forward<Key>(key)];
  }
  std::size_t limit() const { return Get().limit(); }
  void resize(std::size_t limit, bool force = false) const { Get().resize(limit, force); }
  std::size_t size() const { return Get().size(); }
  void reset() const { Get().reset(); }
  bool follows_default_limit() const { return Get().follows_default_limit(); }
  void set_max_total(std::size_t max_total) const { Get().set_max_total(max_total); }
  std::size_t max_total() const { return Get().max_total(); }
};

// The process-wide groups; they follow the global limit.
inline constexpr group_handle<Connections, &respool::detail::global_connections> connections{};
inline constexpr group_handle<Producers, &respool::detail::global_producers> producers{};

// Set the global limit (default 200) and resize every pool of every group
// that follows it, waking waiters when it grows. Shrinking a pool below its
// number in use throws error(errc::pool_in_use) unless `force` (then that
// pool's resources are force-closed); on a refusal nothing changes.
// Returns the new limit.
inline std::size_t set_limit(std::size_t limit, bool force = false) {
  return respool::detail::set_default_limit(limit, force);
}

// Cap the connections of all the pools of pools::connections together at
// `max_total`, and the producers of pools::producers likewise (0 = no cap,
// the default). set_limit bounds each pool (each key); without a cap a
// process may open limit x keys connections. At the cap, an acquire that
// needs a new connection first closes the oldest idle connection of
// another key; if none is idle it waits (within its timeout) and the
// longest waiter of the group, whatever its key, is served first. An
// expired wait throws connection_acquire_timeout naming the group's
// max_total (limit_exceeded::group_cap()). Lowering it closes idle
// connections, oldest first, until within it. Returns the new cap. See
// PoolGroup::set_max_total.
inline std::size_t set_max_total(std::size_t max_total) {
  connections.set_max_total(max_total);
  producers.set_max_total(max_total);
  return max_total;
}

// The cap of the process-wide groups (0 = none, the default).
inline std::size_t get_max_total() { return connections.max_total(); }

// The production policies (respool/pool_policy.hpp: idle_timeout,
// max_lifetime, validation_bypass, leak_threshold, min_idle, observer) of
// every pool of pools::connections / pools::producers: the pools there now
// get them at once, pools made later when they are made. Call it at start-up:
// a pool whose key is first used while this runs may miss it. The observer
// must outlive the pools (they are never destroyed: in practice, a static).
inline void set_connection_policy(const PoolPolicy& policy) {
  auto& global = respool::detail::policies();
  std::lock_guard<std::mutex> serialise(global.apply_mutex);
  global.set(&respool::detail::global_policies::connections, policy);
  connections->for_each([&](ConnectionPool& pool) { pool.set_policy(policy); });
}
inline void set_producer_policy(const PoolPolicy& policy) {
  auto& global = respool::detail::policies();
  std::lock_guard<std::mutex> serialise(global.apply_mutex);
  global.set(&respool::detail::global_policies::producers, policy);
  producers->for_each([&](ProducerPool& pool) { pool.set_policy(policy); });
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
