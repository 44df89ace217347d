// respool/resource.hpp — Resource<T>, the generic pool (kombu's Resource).
#pragma once

#include <any>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "respool/detail/pool_core.hpp"
#include "respool/errors.hpp"
#include "respool/lease.hpp"
#include "respool/pool_policy.hpp"

namespace respool {

template <class T>
class Resource;

namespace detail {
// How PoolGroup reaches a pool's core (to put it under the group's max_total).
struct resource_access {
  template <class T>
  static pool_core<T>* core(const Resource<T>& pool) noexcept {
    return pool.core();
  }
};
}  // namespace detail

// A pool of up to `limit` resources of type T, created lazily by a factory,
// handed out as Lease<T> and reused LIFO (warmest first). Waiters are served
// first come, first served, synchronous and asynchronous ones in one queue.
//
// Thread safety: every member may be called concurrently, except destruction.
// Destroying the pool while leases are out is safe: they close their resource
// when they let go.
template <class T>
class Resource {
 public:
  using value_type = T;

  // Construction parameters; an aggregate, so C++20 callers may use designated initializers.
  struct Options {
    std::size_t limit = 0;    // maximum number of resources; 0 = unlimited
    std::size_t preload = 0;  // resources created eagerly by the constructor (at most limit)
    // (The `{}` initializers keep -Wmissing-field-initializers quiet when
    // callers leave the optional hooks out of an aggregate initialization.)
    std::function<T()> create{};      // makes a resource (kombu new()); required
    std::function<void(T&)> close{};  // closes one (kombu close_resource); optional
    std::function<bool(T&)>
        validate{};  // on acquire of an idle one; false (or a throw) = close and replace; optional
    std::function<void(T&)>
        prepare{};  // on every hand-out, after validate (kombu prepare); may throw; optional
    std::function<void(T&)>
        on_release{};  // when a lease gives it back (kombu release); must not throw; optional
    // Idle timeout, max lifetime, validation bypass, leak detection, min_idle,
    // observer (respool/pool_policy.hpp); all off by default. See set_policy().
    PoolPolicy policy{};
    // The pool's name in limit_exceeded messages; never put a password in it.
    std::string name{};
    // The policies' clock; empty = std::chrono::steady_clock::now. For tests
    // (no sleeps): it is called under the pool lock, so it must be cheap and
    // never touch the pool, and it must never return time_point{} (the epoch).
    std::function<std::chrono::steady_clock::time_point()> clock{};
    // The executor async_acquire handlers with no associated executor run on
    // (Boost.MySQL's pool executor), instead of Asio's system executor: a
    // boost::asio::any_io_executor, most simply made by
    // respool::pool_executor(io.get_executor()) (respool/async.hpp). Empty = none.
    std::any executor{};
    // Fairness (DESIGN.md): while the longest waiter has waited less than
    // this, a running thread may take a just-released resource ahead of it
    // (Go's sync.Mutex rule: far fewer context switches when threads
    // outnumber resources); past it a released resource goes straight to
    // the longest waiter. Zero = always straight to the longest waiter
    // (strict first come, first served).
    std::chrono::nanoseconds starvation_threshold = std::chrono::milliseconds(1);
  };

  // Throws std::invalid_argument without a factory; propagates a preload factory's exception.
  explicit Resource(Options options) : core_(make_core(options)) { preload(options.preload); }

  // A pool of `limit` resources made by `create`.
  Resource(std::size_t limit, std::function<T()> create)
      : Resource(Options{limit, 0, std::move(create), {}, {}, {}, {}}) {}

  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;

  // Closes the pool: waiters get pool_closed, idle resources are closed now,
  // leased ones when their lease lets go.
  ~Resource() { core_->shutdown(); }

  // Wait as long as it takes for a resource. Throws pool_closed, or whatever
  // the factory / prepare hook throws (the slot is freed first).
  // (`where` records the caller's source location for leak reports in C++20;
  // leave it defaulted.)
  Lease<T> acquire(acquire_site where = acquire_site::current()) {
    return {core_, core_->acquire(true, clock::time_point::max(), {}, where)};
  }

  // Wait at most `timeout`. A zero (or negative) timeout never waits and
  // throws limit_exceeded at once (kombu block=False); an expired wait throws
  // acquire_timeout (which is a limit_exceeded).
  //
  // The limit_exceeded family says which pool, how many were in use and
  // waiting, and hints at raising the limit or looking for leaks.
  template <class Rep, class Period>
  Lease<T> acquire(std::chrono::duration<Rep, Period> timeout, acquire_site where = acquire_site::current()) {
    if (timeout <= timeout.zero()) return {core_, core_->acquire(false, clock::time_point::max(), {}, where)};
    const auto start = clock::now();
    return {core_, core_->acquire(true, deadline_after(timeout, start), start, where)};
  }

  // Never waits: a lease, or nothing if the pool is at its limit. Throws
  // pool_closed on a closed pool, and what the factory throws.
  std::optional<Lease<T>> try_acquire(acquire_site where = acquire_site::current()) {
    if (detail::slot<T>* s = core_->try_acquire(where)) return Lease<T>(core_, s);
    return std::nullopt;
  }

  // Asynchronous acquire with a Boost.Asio completion token; completion
  // signature void(boost::system::error_code, Lease<T>). Defined in respool/async.hpp.
  template <class Token>
  auto async_acquire(Token&& token);
  template <class Rep, class Period, class Token>
  auto async_acquire(std::chrono::duration<Rep, Period> timeout, Token&& token);

  // The current limit (0 = unlimited).
  std::size_t limit() const { return core_->limit(); }

  // Change the limit. Growing wakes waiters. Shrinking closes idle resources
  // above the new limit at once; below the number in use it throws
  // error(errc::pool_in_use) unless `force`, which force-closes everything first.
  void resize(std::size_t limit, bool force = false) { core_->resize(limit, force); }

  // Close idle and leased resources ("drags them from under their feet");
  // held leases then only give back a dead slot. The pool stays open. The
  // close hook runs on this thread while other threads may be using those
  // resources — also one being validated or prepared for a hand-out right
  // now — so with force_close_all() (and PoolGroup::reset(), pools::reset())
  // the hooks must tolerate that; the built-in transports' close() does.
  void force_close_all() { core_->force_close_all(); }

  // Refuse further acquires (pool_closed), wake waiters with pool_closed, close idle resources.
  void close() { core_->close(); }

  // A snapshot of the counters.
  PoolStats stats() const { return core_->stats(); }

  // Replace the production policies (idle_timeout, max_lifetime,
  // validation_bypass, leak_threshold + on_leak, min_idle, observer); they
  // apply to the resources already in the pool too. All off = the pool
  // costs what it did without them.
  void set_policy(PoolPolicy policy) { core_->set_policy(std::move(policy)); }
  PoolPolicy policy() const { return core_->policy(); }

  // The executor for async_acquire handlers that have none (see
  // Options::executor); applies to operations started afterwards.
  void set_executor(std::any executor) { core_->set_executor(std::move(executor)); }

  // The name limit_exceeded messages give the pool (never a password).
  void set_name(std::string name) { core_->set_name(std::move(name)); }

  // One maintenance pass: close expired idle resources, report leases held
  // longer than leak_threshold, create resources up to min_idle. The reaper
  // (respool/async.hpp, start_reaper) runs it periodically; without one,
  // expiry is still checked lazily on every acquire and release.
  MaintainResult maintain() { return core_->maintain(); }

 protected:
  using clock = std::chrono::steady_clock;

  explicit Resource(Options options, bool connection_errors) : core_(make_core(options, connection_errors)) {
    preload(options.preload);
  }

  // With a deadline-aware prepare hook (ProducerPool).
  Resource(Options options, std::function<void(T&, const detail::acquire_deadline&)> prepare_until)
      : core_(make_core(options, false, std::move(prepare_until))) {
    preload(options.preload);
  }

  // Asynchronous acquire without the prepare hooks (ProducerPool chains its
  // own asynchronous prepare). Defined in respool/async.hpp.
  template <class Token>
  auto async_acquire_unprepared(std::chrono::steady_clock::duration timeout, Token&& token);

  detail::pool_core<T>* core() const noexcept { return core_; }

  template <class Rep, class Period>
  static clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout,
                                          clock::time_point start = clock::now()) {
    // Anything beyond a century is "forever" (and must not overflow the clock).
    if (std::chrono::duration<double>(timeout) > std::chrono::hours(24 * 365 * 100))
      return clock::time_point::max();
    return start + std::chrono::ceil<clock::duration>(timeout);
  }

 private:
  friend struct detail::resource_access;

  static detail::pool_core<T>* make_core(
      Options& o, bool connection_errors = false,
      std::function<void(T&, const detail::acquire_deadline&)> prepare_until = {}) {
    if (!o.create) throw std::invalid_argument("respool::Resource needs a create function");
    detail::pool_hooks<T> hooks;
    hooks.create = std::move(o.create);
    hooks.close = std::move(o.close);
    hooks.validate = std::move(o.validate);
    hooks.prepare = std::move(o.prepare);
    hooks.prepare_until = std::move(prepare_until);
    hooks.on_release = std::move(o.on_release);
    hooks.connection_errors = connection_errors;
    // Connection pools: a close may wait for a stalled broker (up to the
    // transport's close bound), so force_close_all/resize/reset close them in parallel.
    hooks.parallel_close = connection_errors;
    hooks.clock = std::move(o.clock);
    hooks.starvation_threshold = o.starvation_threshold;
    auto* core = new detail::pool_core<T>(o.limit, std::move(hooks));
    core->set_name(std::move(o.name));
    core->set_policy(std::move(o.policy));
    core->set_executor(std::move(o.executor));
    return core;
  }

  void preload(std::size_t n) {
    if (core_->limit() != 0 && n > core_->limit()) n = core_->limit();
    std::vector<Lease<T>> leases;
    leases.reserve(n);
    try {
      for (std::size_t i = 0; i < n; ++i) leases.emplace_back(core_, core_->preload_one());
    } catch (...) {
      leases.clear();
      core_->shutdown();
      throw;
    }
  }

  detail::pool_core<T>* core_;
};

}  // namespace respool
