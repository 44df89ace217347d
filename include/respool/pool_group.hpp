// respool/pool_group.hpp — PoolGroup<Key, Pool>: one pool per key (kombu PoolGroup).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/detail/parallel.hpp"
#include "respool/detail/pool_core.hpp"
#include "respool/resource.hpp"

namespace respool {

namespace detail {
// Whether a group of Pool can have a max_total: Pool is a Resource<T> (or derives from one).
template <class Pool, class = void>
struct group_cap_traits {
  static constexpr bool capable = false;
  struct cap_type {
    explicit cap_type(std::size_t) {}
  };
};
template <class Pool>
struct group_cap_traits<Pool,
                        std::enable_if_t<std::is_base_of<Resource<typename Pool::value_type>, Pool>::value>> {
  static constexpr bool capable = true;
  using cap_type = group_cap<typename Pool::value_type>;
  static pool_core<typename Pool::value_type>* core(const Pool& pool) noexcept {
    return resource_access::core(static_cast<const Resource<typename Pool::value_type>&>(pool));
  }
};
}  // namespace detail

// Sentinel accepted wherever a limit is: follow the global default limit
// (respool::pools::set_limit / get_limit), including later changes.
struct use_default_limit_t {
  explicit constexpr use_default_limit_t() = default;
};
inline constexpr use_default_limit_t use_default_limit{};

// A map from keys to pools, creating each pool on first use. Equal keys give
// the same Pool object for the group's lifetime (until reset()), also when
// threads race on a new key; the factory runs once per distinct key.
//
// Pool needs resize(std::size_t, bool), force_close_all(), close() and
// stats(); Key needs std::hash and ==. Thread safety: every member may be
// called concurrently. Looking up an existing key takes no lock and writes
// no shared memory (an open-addressing table of immutable entries, replaced
// whole when it grows), so pools::connections adds no global lock to the
// acquire path; creating a pool for a new key takes the group's mutex
// briefly (the factory runs outside it: threads asking for the same new key
// wait for that one factory call, others go on). resize() and reset() close
// resources outside that mutex, so lookups never wait for their I/O.
// After fork(), the child's group starts empty: pools inherited from the
// parent are abandoned, never closed or touched.
//
// A cap across keys (set_max_total, off by default): at most max_total
// resources in all the pools together; at the cap, a key that needs a new
// resource first closes the oldest idle resource of another key, and if
// none is idle its acquirer waits, the group's waiters being served first
// come, first served across keys (see set_max_total). Needs pools derived
// from Resource<T> (ConnectionPool and ProducerPool are).
template <class Key, class Pool>
class PoolGroup {
 public:
  using key_type = Key;
  using pool_type = Pool;
  using factory_type = std::function<std::unique_ptr<Pool>(const Key&, std::size_t limit)>;

  // A group whose pools have `limit` resources each (0 = unlimited).
  PoolGroup(std::size_t limit, factory_type factory) : PoolGroup(limit, false, std::move(factory)) {}
  // A group that follows the global default limit.
  PoolGroup(use_default_limit_t, factory_type factory) : PoolGroup(0, true, std::move(factory)) {}

  PoolGroup(const PoolGroup&) = delete;
  PoolGroup& operator=(const PoolGroup&) = delete;

  ~PoolGroup() {
    detail::unregister_group(&entry_);
    if (generation_.load(std::memory_order_relaxed) != detail::fork_generation())
      forget();  // inherited: leak, don't close
  }

  // The pool for `key`, created on first use. Throws what the factory throws
  // (nothing is remembered then; a thread that waited for that call tries again).
  Pool& operator[](const Key& key) {
    check_fork();
    const std::size_t hash = hasher{}(key);
    if (Pool* pool = find(table_.load(std::memory_order_acquire), key, hash)) return *pool;
    return make_pool(key, hash);
  }

  // The limit given to every pool of the group.
  std::size_t limit() const {
    const_cast<PoolGroup*>(this)->check_fork();
    return limit_.load(std::memory_order_acquire);
  }

  // Resize every pool (see Resource::resize). A group built with
  // use_default_limit stops following the default after an explicit resize
  // (one that worked: a refused resize changes nothing). If a pool refuses
  // (its use grew past the new limit meanwhile, without force), the pools
  // already resized get their old limit back and the error propagates.
  void resize(std::size_t limit, bool force = false) { do_resize(limit, force, true); }

  // Number of pools (distinct keys seen since construction or reset()).
  std::size_t size() const {
    const_cast<PoolGroup*>(this)->check_fork();
    std::lock_guard<std::mutex> lock(mutex_);
    return table_.load(std::memory_order_relaxed)->count;
  }

  // Force-close every pool and forget them all: the next group[key] makes a
  // new pool. The old pools are closed (their waiters wake with pool_closed,
  // later acquires on them throw pool_closed) and kept until the group dies,
  // so a reference another thread looked up just before the reset never
  // dangles. Leases still out stay valid and give back a dead slot.
  void reset() {
    check_fork();
    std::vector<node*> old;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      old = entries(table_.load(std::memory_order_relaxed));
      table_.store(new_table(initial_capacity), std::memory_order_release);
    }
    // Outside the lock, and the pools at once: closing may wait for a stalled
    // broker (up to a transport's close bound), so a reset of many pools
    // takes about one bound, not one per pool.
    detail::run_in_parallel(old.size(), max_close_threads, [&](std::size_t i) {
      old[i]->pool->close();
      old[i]->pool->force_close_all();
    });
  }

  // Calls fn(pool) for every pool of the group (a snapshot, taken under the
  // group's mutex; fn runs outside it). A pool created concurrently may be missed.
  template <class Fn>
  void for_each(Fn&& fn) {
    check_fork();
    std::vector<node*> pools;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pools = entries(table_.load(std::memory_order_relaxed));
    }
    for (node* n : pools) fn(*n->pool);
  }

  // True if the group follows the global default limit.
  bool follows_default_limit() const noexcept { return follows_default_.load(std::memory_order_relaxed); }

  // Cap the resources of all the pools together at `max_total` (0 = no cap,
  // the default; commons-pool2's maxTotal). Each pool keeps its own limit
  // too. At the cap, an acquire that needs a new resource first closes the
  // oldest idle resource of another key (clearOldest), outside every lock;
  // if nothing is idle anywhere it waits (within its timeout; a zero
  // timeout or try_acquire() does not) and a release, discard or close in
  // any pool of the group serves the group's longest waiter, whatever its
  // key (first come, first served across keys; while anyone in the group
  // waits, a capped pool hands resources out in that order, with no
  // barging). An expired wait says the group's max_total was the limit
  // (limit_exceeded::group_cap()). Lowering it closes idle resources,
  // oldest first, until the group is within it; resources in use are not
  // touched (new ones wait until enough are given back). Applies to the
  // pools there now and to those made later; survives reset() and, in a
  // forked child, fork(). With no cap, the pools cost what they did.
  // Lock order: the group's mutexes, then the cap's, then one pool's.
  void set_max_total(std::size_t max_total) {
    static_assert(cap_traits::capable,
                  "PoolGroup::set_max_total needs pools derived from respool::Resource<T>");
    check_fork();
    std::lock_guard<std::mutex> resizing(resize_mutex_);
    std::shared_ptr<cap_type> cap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      max_total_.store(max_total, std::memory_order_release);
      if (max_total == 0) {
        cap = std::move(cap_);
        cap_.reset();
      } else if (cap_) {
        cap = cap_;
      } else {
        cap = std::make_shared<cap_type>(max_total);
        for (node* n : entries(table_.load(std::memory_order_relaxed))) cap->join(cap_traits::core(*n->pool));
        cap_ = cap;  // pools made from now on join it (make_pool)
      }
    }
    if constexpr (cap_traits::capable) {
      if (max_total == 0) {
        if (cap) cap->lift();
      } else {
        cap->set_max_total(max_total);  // closes idle resources over it (outside the group's mutex)
      }
    }
  }

  // The cap across keys (0 = none).
  std::size_t max_total() const {
    const_cast<PoolGroup*>(this)->check_fork();
    return max_total_.load(std::memory_order_acquire);
  }

 private:
  using cap_traits = detail::group_cap_traits<Pool>;
  using cap_type = typename cap_traits::cap_type;

  struct hasher {
    std::size_t operator()(const Key& k) const noexcept(noexcept(std::hash<Key>{}(k))) {
      return std::hash<Key>{}(k);
    }
  };
  // Immutable once published: readers compare hash and key without a lock.
  struct node {
    std::size_t hash;
    Key key;
    std::unique_ptr<Pool> pool;
  };
  struct table {
    explicit table(std::size_t capacity) : mask(capacity - 1), slots(new std::atomic<node*>[capacity]) {
      for (std::size_t i = 0; i < capacity; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
    }
    std::size_t mask;  // capacity - 1 (a power of two)
    std::unique_ptr<std::atomic<node*>[]> slots;
    std::size_t count = 0;  // written under the mutex only
  };
  static constexpr std::size_t initial_capacity = 16;
  // Threads that close pools at once in reset() and resize() (each pool may
  // start more to close its own connections).
  static constexpr std::size_t max_close_threads = 64;

  PoolGroup(std::size_t limit, bool follows, factory_type factory)
      : limit_(limit),
        follows_default_(follows),
        factory_(std::move(factory)),
        generation_(detail::fork_generation()) {
    table_.store(new_table(initial_capacity), std::memory_order_relaxed);
    entry_.self = this;
    entry_.apply_default_limit = [](void* self, std::size_t l, bool force) {
      static_cast<PoolGroup*>(self)->do_resize(l, force, false);
    };
    entry_.reset = [](void* self) { static_cast<PoolGroup*>(self)->reset(); };
    // A group that follows the default reads it under the registry lock, as
    // it registers: a set_default_limit() racing with this constructor
    // either comes before (and is read here) or after (and resizes us). The
    // registry calls through entry_ (plain function pointers), never through
    // a vtable that derived constructors are still writing.
    detail::register_group(&entry_, follows ? &limit_ : nullptr);
  }

  // operator[]'s slow path: make the pool for a new key, the factory running
  // outside mutex_ and once per key.
  [[gnu::noinline]] Pool& make_pool(const Key& key, std::size_t hash) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (Pool* pool = find(table_.load(std::memory_order_relaxed), key, hash)) return *pool;
      bool pending = false;
      for (const auto& p : pending_) pending = pending || (p.hash == hash && *p.key == key);
      if (!pending) break;
      made_.wait(lock);  // another thread is running the factory for this key
    }
    pending_.push_back({hash, &key});
    const std::size_t limit = limit_.load(std::memory_order_relaxed);
    const std::uint64_t epoch = limit_epoch_;
    lock.unlock();
    auto done_pending = [&] {
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (it->key == &key) {
          pending_.erase(it);
          break;
        }
      }
      made_.notify_all();
    };
    std::unique_ptr<node> made;
    try {
      made = std::make_unique<node>(node{hash, key, factory_(key, limit)});
    } catch (...) {
      lock.lock();
      done_pending();
      throw;
    }
    lock.lock();
    done_pending();
    if constexpr (cap_traits::capable) {
      if (cap_) cap_->join(cap_traits::core(*made->pool));  // before anyone can find it
    }
    table* t = table_.load(std::memory_order_relaxed);
    if ((t->count + 1) * 2 > t->mask + 1) t = grow(t);
    node* n = made.get();
    nodes_.push_back(std::move(made));
    insert(t, n);
    ++t->count;
    const bool stale = limit_epoch_ != epoch;  // a resize (or its undoing) ran meanwhile
    lock.unlock();
    if (stale) {
      // A resize ran while the factory did and did not see this pool: bring
      // it to the group's limit, in line with other resizes.
      std::lock_guard<std::mutex> resizing(resize_mutex_);
      try {
        n->pool->resize(limit_.load(std::memory_order_acquire), false);
      } catch (...) {
        // A brand-new pool has nothing in use: cannot refuse.
      }
    }
    return *n->pool;
  }

  // Fibonacci hashing spreads even identity hashes (std::hash<int>) over the table.
  static std::size_t slot_of(std::size_t hash, std::size_t mask) {
    return static_cast<std::size_t>((static_cast<std::uint64_t>(hash) * 0x9E3779B97F4A7C15ull) >> 32) & mask;
  }

  static Pool* find(table* t, const Key& key, std::size_t hash) {
    for (std::size_t i = slot_of(hash, t->mask);; i = (i + 1) & t->mask) {
      node* n = t->slots[i].load(std::memory_order_acquire);
      if (n == nullptr) return nullptr;
      if (n->hash == hash && n->key == key) return n->pool.get();
    }
  }

  static void insert(table* t, node* n) {
    std::size_t i = slot_of(n->hash, t->mask);
    while (t->slots[i].load(std::memory_order_relaxed) != nullptr) i = (i + 1) & t->mask;
    t->slots[i].store(n, std::memory_order_release);
  }

  static std::vector<node*> entries(table* t) {
    std::vector<node*> out;
    for (std::size_t i = 0; i <= t->mask; ++i)
      if (node* n = t->slots[i].load(std::memory_order_relaxed)) out.push_back(n);
    return out;
  }

  // Under the mutex. Tables are kept until the group dies (a reader may still
  // be probing an old one); they double, so all of them together stay under
  // twice the size of the last.
  table* new_table(std::size_t capacity) {
    tables_.push_back(std::make_unique<table>(capacity));
    return tables_.back().get();
  }

  table* grow(table* t) {
    table* bigger = new_table((t->mask + 1) * 2);
    for (node* n : entries(t)) insert(bigger, n);
    bigger->count = t->count;
    table_.store(bigger, std::memory_order_release);
    return bigger;
  }

  // Resize every pool to `limit`. `explicit_call`: resize() (stops following
  // the default); otherwise set_limit applying the default (skipped once the
  // group stopped following it). Pools are resized outside mutex_; resizes
  // are serialised by resize_mutex_, so the last one wins in every pool.
  void do_resize(std::size_t limit, bool force, bool explicit_call) {
    check_fork();
    std::lock_guard<std::mutex> resizing(resize_mutex_);
    if (!explicit_call && !follows_default_.load(std::memory_order_relaxed)) return;
    std::vector<node*> pools;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pools = entries(table_.load(std::memory_order_relaxed));
    }
    // Check first, so that a refusal (nearly always) leaves every pool as it was.
    if (!force && limit != 0) {
      for (node* n : pools)
        if (n->pool->stats().in_use > limit) n->pool->resize(limit, false);  // throws pool_in_use
    }
    std::size_t previous;
    {
      // Pools made from now on get the new limit; the ones made meanwhile are in the new snapshot.
      std::lock_guard<std::mutex> lock(mutex_);
      previous = limit_.exchange(limit, std::memory_order_acq_rel);
      ++limit_epoch_;
      pools = entries(table_.load(std::memory_order_relaxed));
    }
    try {
      // All pools at once: shrinking closes resources, and each close may
      // wait for a stalled broker up to the transport's close bound.
      // (Only when something may be closed: a forced or shrinking resize.
      // Growing, or keeping, the limit closes nothing and starts no thread.)
      const bool may_close = force || (limit != 0 && (previous == 0 || limit < previous));
      detail::run_in_parallel(pools.size(), may_close ? max_close_threads : 1,
                              [&](std::size_t i) { pools[i]->pool->resize(limit, force); });
    } catch (...) {
      // Use grew between the check and here: undo, so nothing is half-applied
      // (pools made meanwhile at the new limit included).
      {
        std::lock_guard<std::mutex> lock(mutex_);
        limit_.store(previous, std::memory_order_release);
        ++limit_epoch_;
        pools = entries(table_.load(std::memory_order_relaxed));
      }
      detail::run_in_parallel(pools.size(), max_close_threads, [&](std::size_t i) noexcept {
        try {
          pools[i]->pool->resize(previous, false);
        } catch (...) {
        }
      });
      throw;
    }
    if (explicit_call) follows_default_.store(false, std::memory_order_relaxed);
  }

  void check_fork() {
    if (generation_.load(std::memory_order_acquire) == detail::fork_generation()) return;
    std::lock_guard<std::mutex> guard(detail::fork_reset_mutex);
    const auto now = detail::fork_generation();
    if (generation_.load(std::memory_order_relaxed) == now) return;
    forget();
    // A set_limit() of the parent may have been half-way through this group.
    if (follows_default_.load(std::memory_order_relaxed))
      limit_.store(detail::default_limit(), std::memory_order_relaxed);
    // The parent's cap is abandoned with its pools (forget()); the child's pools get a new one.
    if (const std::size_t max_total = max_total_.load(std::memory_order_relaxed))
      cap_ = std::make_shared<cap_type>(max_total);
    generation_.store(now, std::memory_order_release);
  }

  // Drop the parent's pools without destroying them (destroying would close
  // their connections, writing to sockets the parent still uses).
  void forget() noexcept {
    // Placement-new leaks the old tables and nodes without running a single
    // destructor; a parent thread may even have been half-way through an
    // insert, or have held the mutex.
    ::new (static_cast<void*>(&mutex_)) std::mutex;
    ::new (static_cast<void*>(&resize_mutex_)) std::mutex;
    ::new (static_cast<void*>(&made_)) std::condition_variable;
    ::new (static_cast<void*>(&pending_)) std::vector<pending_key>;
    ::new (static_cast<void*>(&nodes_)) std::vector<std::unique_ptr<node>>;
    ::new (static_cast<void*>(&tables_)) std::vector<std::unique_ptr<table>>;
    ::new (static_cast<void*>(&cap_)) std::shared_ptr<cap_type>;
    table_.store(new_table(initial_capacity), std::memory_order_release);
  }

  struct pending_key {
    std::size_t hash;
    const Key* key;  // the key of the thread running the factory (alive until it is done)
  };

  mutable std::mutex mutex_;      // inserts, snapshots for resize/reset; never held across I/O or a factory
  std::mutex resize_mutex_;       // serialises resizes (held while they close resources)
  std::condition_variable made_;  // a factory call finished (mutex_)
  std::vector<pending_key> pending_;  // keys whose factory is running (mutex_)
  std::uint64_t limit_epoch_ = 0;     // bumped by every change of limit_ by a resize (mutex_)
  detail::group_entry entry_;
  std::atomic<table*> table_{nullptr};
  std::vector<std::unique_ptr<table>> tables_;  // every table made, current one last
  std::vector<std::unique_ptr<node>> nodes_;    // every entry made (reset ones too: references stay valid)
  std::atomic<std::size_t> limit_;
  std::atomic<bool> follows_default_;
  std::shared_ptr<cap_type> cap_;          // the cap across keys, or none (mutex_)
  std::atomic<std::size_t> max_total_{0};  // 0 = no cap
  factory_type factory_;
  std::atomic<std::uint32_t> generation_;
};

}  // namespace respool
