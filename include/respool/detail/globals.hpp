// respool/detail/globals.hpp — process-wide state: the fork generation and the
// registry of pool groups (for the global default limit and pools::reset()).
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

namespace respool::detail {

// Bumped in the child after every fork(). Pools, groups and leases remember
// the generation they were made in; a mismatch means "inherited from the
// parent": abandon it (never close it, never lock its possibly-held mutex).
inline std::atomic<std::uint32_t> fork_generation_counter{0};

// Serialises the lazy after-fork resets in the child. Re-initialised by the
// child handler, because a parent thread may have held it at fork time.
inline std::mutex fork_reset_mutex;

// A pool group, as seen by the global registry.
class group_base {
 public:
  virtual ~group_base() = default;
  // Resize every pool of the group (only called on groups that follow the default).
  virtual void apply_default_limit(std::size_t limit, bool force) = 0;
  // Force-close every pool and forget them (pools::reset()).
  virtual void reset() = 0;
  virtual bool follows_default_limit() const noexcept = 0;
};

struct group_registry {
  std::mutex mutex;
  std::size_t default_limit = 200;  // kombu's guide: 200 per pool until set_limit
  std::vector<group_base*> groups;
};

inline group_registry& registry() {
  static group_registry* instance = new group_registry;  // never destroyed: usable from static destructors
  return *instance;
}

inline void on_fork_child() noexcept {
  fork_generation_counter.fetch_add(1, std::memory_order_acq_rel);
  // The child has one thread; any other holder of these mutexes is gone.
  ::new (static_cast<void*>(&fork_reset_mutex)) std::mutex;
  ::new (static_cast<void*>(&registry().mutex)) std::mutex;
}

inline void ensure_atfork_registered() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, &on_fork_child);
    return true;
  }();
  (void)registered;
}

// The current fork generation (0 in a process that never forked).
inline std::uint32_t fork_generation() noexcept {
  return fork_generation_counter.load(std::memory_order_acquire);
}

// Names "this process" for objects that must notice they were inherited by a
// forked child: never 0, and different in the child. An atomic load, where
// getpid() is a system call.
inline std::uint64_t process_token() noexcept {
  ensure_atfork_registered();
  return std::uint64_t{fork_generation()} + 1;
}

// Registers `group`. If `default_limit_out` is given, the current default
// limit is stored there under the same lock (before the group is visible to
// set_default_limit).
inline void register_group(group_base* group, std::atomic<std::size_t>* default_limit_out = nullptr) {
  ensure_atfork_registered();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (default_limit_out != nullptr) default_limit_out->store(r.default_limit, std::memory_order_relaxed);
  r.groups.push_back(group);
}

inline void unregister_group(group_base* group) noexcept {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.groups.erase(std::remove(r.groups.begin(), r.groups.end(), group), r.groups.end());
}

inline std::size_t default_limit() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.default_limit;
}

// Set the default limit and resize every group that follows it. If a group
// refuses (shrinking below its use without force), the groups already resized
// are grown back, the old default stays, and the error propagates.
inline std::size_t set_default_limit(std::size_t limit, bool force) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const std::size_t previous = r.default_limit;
  std::vector<group_base*> done;
  try {
    for (group_base* g : r.groups) {
      if (!g->follows_default_limit()) continue;
      g->apply_default_limit(limit, force);
      done.push_back(g);
    }
  } catch (...) {
    for (group_base* g : done) g->apply_default_limit(previous, true);
    throw;
  }
  r.default_limit = limit;
  return limit;
}

// Reset every live group.
inline void reset_all_groups() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (group_base* g : r.groups) g->reset();
}

}  // namespace respool::detail
