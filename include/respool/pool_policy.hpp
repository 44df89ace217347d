// respool/pool_policy.hpp — the production policies of a pool (PoolPolicy):
// idle timeout, max lifetime, validation bypass, leak detection, min_idle and
// a metrics observer (PoolObserver). Every one is off by default and costs
// nothing measurable then. See docs/resource.md ("Production policies").
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif
#if defined(__cpp_lib_source_location) && __cpp_lib_source_location >= 201907L
#include <source_location>
#define RESPOOL_HAS_SOURCE_LOCATION 1
#else
#define RESPOOL_HAS_SOURCE_LOCATION 0
#endif

namespace respool {

// Where a lease was acquired: std::source_location in C++20, an empty tag in
// C++17. Resource::acquire() and try_acquire() take it as a defaulted last
// argument, so callers never write it.
#if RESPOOL_HAS_SOURCE_LOCATION
using acquire_site = std::source_location;
#else
struct acquire_site {
  static constexpr acquire_site current() noexcept { return {}; }
};
#endif

// A lease held longer than PoolPolicy::leak_threshold (the leak callback's argument).
struct LeakInfo {
  std::chrono::nanoseconds held{};  // how long it has been held so far
  bool released = false;            // false: found still held by maintain(); true: reported as it came back
#if RESPOOL_HAS_SOURCE_LOCATION
  std::source_location where{};  // where it was acquired (async_acquire: inside respool)
#endif
};

// Receives a pool's measurements, after OpenTelemetry's connection-pool
// conventions (db.client.connection.*): create_time, wait_time, use_time
// (histograms) and timeouts (a counter). Usage by state (idle / used),
// pending requests, max and min idle are gauges: read them from
// Resource::stats() (idle, in_use, waiting, limit) in an observable
// callback. Every method is called outside the pool lock, from the thread
// that did the work, possibly from several threads at once; keep them cheap
// and never call back into the pool from them. The observer must outlive the
// pool (and its leases and async operations).
class PoolObserver {
 public:
  virtual ~PoolObserver() = default;
  // A resource was created: how long the factory took.
  virtual void on_create(std::chrono::nanoseconds /*took*/) {}
  // An acquire handed out a resource: how long it took in all (queueing,
  // creating, validating, preparing). An acquire that failed is not reported here.
  virtual void on_wait(std::chrono::nanoseconds /*waited*/) {}
  // A lease gave its resource back (release or discard): how long it was held.
  virtual void on_use(std::chrono::nanoseconds /*held*/) {}
  // An acquire ended in limit_exceeded / acquire_timeout.
  virtual void on_timeout() {}
};

// A pool's production policies (Resource::Options::policy, Resource::set_policy,
// pools::set_policy). Zero durations mean "off".
struct PoolPolicy {
  using duration = std::chrono::steady_clock::duration;

  // An idle resource unused for longer is closed instead of handed out.
  duration idle_timeout{0};
  // A resource older than this is closed instead of handed out, and retired
  // when given back (a resource in constant use is retired too).
  duration max_lifetime{0};
  // Each resource's max_lifetime is shortened by a random fraction in
  // [0, lifetime_jitter) so that resources created together do not expire together.
  double lifetime_jitter = 0.025;
  // validate is skipped for a resource given back less than this ago.
  duration validation_bypass{0};
  // A lease held longer is reported to on_leak (and counted in stats().leaks):
  // when it comes back, or by maintain() (the reaper) while it is still out.
  duration leak_threshold{0};
  // Called outside the pool lock, once per leaked lease; must not throw. Logs nothing by itself.
  std::function<void(const LeakInfo&)> on_leak{};
  // maintain() (the reaper) creates resources until this many are idle (within the limit).
  std::size_t min_idle = 0;
  // Receives the measurements; not owned; nullptr = none.
  PoolObserver* observer = nullptr;
};

// What one maintain() pass did.
struct MaintainResult {
  std::size_t expired = 0;  // idle resources closed (idle_timeout / max_lifetime)
  std::size_t leaks = 0;    // leases newly reported as leaked
  std::size_t created = 0;  // resources created for min_idle
};

}  // namespace respool
