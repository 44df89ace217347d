// respool/detail/globals.hpp — process-wide state: the fork generation, the
// fork rule for process-wide locks, and the registry of pool groups (for the
// global default limit and pools::reset()).
//
// The fork rule. A child forked while other threads are anywhere in the
// library may use the library at once. So:
//  * Every process-wide mutex that guards data is registered here with a
//    rank. The pthread_atfork prepare handler takes all of them in rank
//    order (the way glibc's malloc takes its arena locks), so no other thread
//    is inside one at the moment of fork() and the data they guard is
//    consistent; the parent handler releases them, the child handler
//    re-creates them unlocked. Such a mutex is only ever held briefly, never
//    across I/O or user code, so fork() never waits long.
//  * A process-wide mutex that only serialises long operations and guards no
//    data (the set_limit/reset mutex below) is re-created unlocked in the
//    child: the operation it serialised does not exist there.
//  * Per-object state (pools, groups, connections) is never touched by the
//    handlers: objects compare the generation they were made in with the
//    current one and start afresh (abandoning what the parent had) on first
//    use in the child.
// Hot-path lookups (the transport registry, existing pool-group keys) take no
// lock at all.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
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

// The ranks of the process-wide locks, in the order the prepare handler takes
// them. A thread holding one of them never takes one of a lower rank.
enum class fork_lock_rank : unsigned {
  fork_reset,      // fork_reset_mutex: lazy after-fork resets of objects
  groups,          // the pool-group registry (default limit, group list)
  transports,      // the transport registry (writers only)
  memory_brokers,  // memory://'s broker registry, then every broker's own mutex
  policies,        // the global pools' policies (pools.hpp; a leaf: nothing is taken under it)
  count
};

// How the fork handlers lock, unlock and re-create one process-wide lock.
struct fork_lock_hooks {
  void (*lock)() noexcept;
  void (*unlock)() noexcept;
  void (*recreate)() noexcept;  // in the child: a fresh, unlocked mutex
};

inline std::atomic<const fork_lock_hooks*> fork_locks[static_cast<unsigned>(fork_lock_rank::count)] = {};

// What this thread's prepare handler locked (prepare, parent and child
// handlers of one fork() run on the forking thread), so a lock registered
// during the fork is never unlocked without having been locked.
inline thread_local const fork_lock_hooks* fork_locked[static_cast<unsigned>(fork_lock_rank::count)] = {};

// Serialises the lazy after-fork resets in the child.
inline std::mutex fork_reset_mutex;

inline void fork_prepare() noexcept {
  for (unsigned i = 0; i < static_cast<unsigned>(fork_lock_rank::count); ++i) {
    const fork_lock_hooks* h = fork_locks[i].load(std::memory_order_acquire);
    if (h != nullptr) h->lock();
    fork_locked[i] = h;
  }
}

inline void fork_parent() noexcept {
  for (unsigned i = static_cast<unsigned>(fork_lock_rank::count); i-- > 0;) {
    if (const fork_lock_hooks* h = fork_locked[i]) h->unlock();
    fork_locked[i] = nullptr;
  }
}

inline void fork_child() noexcept {
  fork_generation_counter.fetch_add(1, std::memory_order_acq_rel);
  // The child has one thread; the locks were taken by it (prepare): start
  // them afresh rather than unlock, as glibc does for its own locks. Every
  // lock registered now is re-created, also one registered by another thread
  // while this fork() ran (prepare did not take it; it may be held).
  for (unsigned i = static_cast<unsigned>(fork_lock_rank::count); i-- > 0;) {
    if (const fork_lock_hooks* h = fork_locks[i].load(std::memory_order_acquire)) h->recreate();
    fork_locked[i] = nullptr;
  }
}

inline void ensure_atfork_registered() noexcept {
  static const bool registered = [] {
    // fork_reset_mutex is taken by every object's lazy after-fork reset:
    // covered from the first pool on, whatever else the program uses.
    static constexpr fork_lock_hooks reset_hooks{
        []() noexcept { fork_reset_mutex.lock(); },
        []() noexcept { fork_reset_mutex.unlock(); },
        []() noexcept { ::new (static_cast<void*>(&fork_reset_mutex)) std::mutex; },
    };
    fork_locks[static_cast<unsigned>(fork_lock_rank::fork_reset)].store(&reset_hooks,
                                                                        std::memory_order_release);
    ::pthread_atfork(&fork_prepare, &fork_parent, &fork_child);
    return true;
  }();
  (void)registered;
}

// Registers the hooks of a process-wide lock (once per rank; idempotent).
inline void register_fork_lock(fork_lock_rank rank, const fork_lock_hooks* hooks) noexcept {
  ensure_atfork_registered();
  fork_locks[static_cast<unsigned>(rank)].store(hooks, std::memory_order_release);
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

// ---------------------------------------------------------------------------
// The registry of pool groups.

// One registered group, as the registry sees it: plain function pointers and
// the group's address, so that the registry never reads the group's vtable
// (a group registers in its base constructor, while derived constructors may
// still be running on another thread's view of it).
struct group_entry {
  void* self = nullptr;
  // Resize every pool of the group to the default limit (if the group still follows it).
  void (*apply_default_limit)(void* self, std::size_t limit, bool force) = nullptr;
  // Force-close every pool and forget them (pools::reset()).
  void (*reset)(void* self) = nullptr;
  std::size_t pins = 0;  // operations using the group outside the registry lock (registry mutex)
};

struct group_registry {
  std::mutex mutex;  // guards the fields below; held briefly, never across I/O or user code
  std::condition_variable unpinned;
  std::size_t default_limit = 200;  // kombu's guide: 200 per pool until set_limit
  std::vector<group_entry*> groups;
  // Serialises set_default_limit() and reset_all_groups(), which do I/O
  // (closing connections) outside `mutex`. Guards no data: re-created in the child.
  std::mutex apply_mutex;
};

inline group_registry& registry() {
  static group_registry* instance = new group_registry;  // never destroyed: usable from static destructors
  return *instance;
}

inline void register_process_locks() noexcept {
  static const bool done = [] {
    static constexpr fork_lock_hooks groups_hooks{
        []() noexcept { registry().mutex.lock(); },
        []() noexcept { registry().mutex.unlock(); },
        []() noexcept {
          auto& r = registry();
          ::new (static_cast<void*>(&r.mutex)) std::mutex;
          ::new (static_cast<void*>(&r.unpinned)) std::condition_variable;
          ::new (static_cast<void*>(&r.apply_mutex)) std::mutex;
          // Pins were held by parent threads, which do not exist here.
          for (group_entry* e : r.groups) e->pins = 0;
        },
    };
    register_fork_lock(fork_lock_rank::groups, &groups_hooks);
    return true;
  }();
  (void)done;
}

// Registers `group`. If `default_limit_out` is given, the current default
// limit is stored there under the same lock (before the group is visible to
// set_default_limit).
inline void register_group(group_entry* group, std::atomic<std::size_t>* default_limit_out = nullptr) {
  register_process_locks();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (default_limit_out != nullptr) default_limit_out->store(r.default_limit, std::memory_order_relaxed);
  r.groups.push_back(group);
}

// Unregisters `group`, waiting for a set_limit / reset that is using it right now.
inline void unregister_group(group_entry* group) noexcept {
  auto& r = registry();
  std::unique_lock<std::mutex> lock(r.mutex);
  r.unpinned.wait(lock, [&] { return group->pins == 0; });
  r.groups.erase(std::remove(r.groups.begin(), r.groups.end(), group), r.groups.end());
}

inline std::size_t default_limit() {
  register_process_locks();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.default_limit;
}

// Pins every registered group (under the registry lock) so that it stays
// registered and alive while used outside the lock; unpins on destruction.
class pinned_groups {
 public:
  explicit pinned_groups(group_registry& r) : r_(r) {
    std::lock_guard<std::mutex> lock(r_.mutex);
    groups_ = r_.groups;
    for (group_entry* e : groups_) ++e->pins;
  }
  ~pinned_groups() {
    {
      std::lock_guard<std::mutex> lock(r_.mutex);
      for (group_entry* e : groups_) --e->pins;
    }
    r_.unpinned.notify_all();
  }
  pinned_groups(const pinned_groups&) = delete;
  pinned_groups& operator=(const pinned_groups&) = delete;
  const std::vector<group_entry*>& groups() const noexcept { return groups_; }

 private:
  group_registry& r_;
  std::vector<group_entry*> groups_;
};

// Set the default limit and resize every group that follows it. If a group
// refuses (shrinking below its use without force), the groups already resized
// are grown back, the old default stays, and the error propagates. The pools
// are resized (and connections closed) outside the registry lock: lookups,
// get_limit() and new groups never wait for that I/O. Concurrent calls are
// serialised; the last one wins.
inline std::size_t set_default_limit(std::size_t limit, bool force) {
  register_process_locks();
  auto& r = registry();
  std::lock_guard<std::mutex> apply(r.apply_mutex);
  std::size_t previous;
  {
    // Set first: a group registering meanwhile starts at the new limit.
    std::lock_guard<std::mutex> lock(r.mutex);
    previous = r.default_limit;
    r.default_limit = limit;
  }
  pinned_groups pinned(r);
  std::vector<group_entry*> done;
  try {
    for (group_entry* g : pinned.groups()) {
      g->apply_default_limit(g->self, limit, force);
      done.push_back(g);
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(r.mutex);
      r.default_limit = previous;
    }
    for (group_entry* g : done) {
      try {
        g->apply_default_limit(g->self, previous, true);  // growing back never closes anything
      } catch (...) {
      }
    }
    throw;
  }
  return limit;
}

// Reset every live group (outside the registry lock).
inline void reset_all_groups() {
  register_process_locks();
  auto& r = registry();
  std::lock_guard<std::mutex> apply(r.apply_mutex);
  pinned_groups pinned(r);
  for (group_entry* g : pinned.groups()) g->reset(g->self);
}

}  // namespace respool::detail
