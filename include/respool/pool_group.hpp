// respool/pool_group.hpp — PoolGroup<Key, Pool>: one pool per key (kombu PoolGroup).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"

namespace respool {

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
// called concurrently. The map is split in shards by key hash, each with its
// own mutex, so lookups of different keys (different brokers in
// pools::connections) do not contend on one lock.
// After fork(), the child's group starts empty: pools inherited from the
// parent are abandoned, never closed or touched.
template <class Key, class Pool>
class PoolGroup : private detail::group_base {
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

  ~PoolGroup() override {
    detail::unregister_group(this);
    if (generation_.load(std::memory_order_relaxed) != detail::fork_generation()) forget();  // inherited: leak, don't close
  }

  // The pool for `key`, created on first use. Throws what the factory throws
  // (nothing is remembered then).
  Pool& operator[](const Key& key) {
    check_fork();
    shard& sh = shard_for(key);
    std::lock_guard<std::mutex> lock(sh.mutex);
    auto it = sh.pools.find(key);
    if (it != sh.pools.end()) return *it->second;
    // Under the shard's lock, so the factory runs once per key. Pool
    // construction is cheap (resources are created lazily).
    auto pool = factory_(key, limit_.load(std::memory_order_acquire));
    Pool& ref = *pool;
    sh.pools.emplace(key, std::move(pool));
    return ref;
  }

  // The limit given to every pool of the group.
  std::size_t limit() const {
    const_cast<PoolGroup*>(this)->check_fork();
    return limit_.load(std::memory_order_acquire);
  }

  // Resize every pool (see Resource::resize). A group built with
  // use_default_limit stops following the default after an explicit resize
  // (one that worked: a refused resize changes nothing).
  void resize(std::size_t limit, bool force = false) {
    do_resize(limit, force);
    follows_default_.store(false, std::memory_order_relaxed);
  }

  // Number of pools (distinct keys seen since construction or reset()).
  std::size_t size() const {
    const_cast<PoolGroup*>(this)->check_fork();
    std::size_t n = 0;
    for (const shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mutex);
      n += sh.pools.size();
    }
    return n;
  }

  // Force-close every pool and forget them all: the next group[key] makes a
  // new pool. The old pools are closed (their waiters wake with pool_closed,
  // later acquires on them throw pool_closed) and kept until the group dies,
  // so a reference another thread looked up just before the reset never
  // dangles. Leases still out stay valid and give back a dead slot.
  void reset() override {
    check_fork();
    std::lock_guard<std::mutex> admin(admin_mutex_);
    for (shard& sh : shards_) {
      map_type old;
      {
        std::lock_guard<std::mutex> lock(sh.mutex);
        old.swap(sh.pools);
      }
      for (auto& entry : old) {  // outside the shard lock: close hooks may take time
        entry.second->close();
        entry.second->force_close_all();
        retired_.push_back(std::move(entry.second));
      }
    }
  }

  // True if the group follows the global default limit.
  bool follows_default_limit() const noexcept override { return follows_default_.load(std::memory_order_relaxed); }

 private:
  struct hasher {
    std::size_t operator()(const Key& k) const noexcept(noexcept(std::hash<Key>{}(k))) { return std::hash<Key>{}(k); }
  };
  using map_type = std::unordered_map<Key, std::unique_ptr<Pool>, hasher>;

  static constexpr std::size_t shard_count = 16;
  struct alignas(64) shard {  // one cache line each: no false sharing between shards' mutexes
    mutable std::mutex mutex;
    map_type pools;
  };

  PoolGroup(std::size_t limit, bool follows, factory_type factory)
      : limit_(limit), follows_default_(follows), factory_(std::move(factory)), generation_(detail::fork_generation()) {
    // A group that follows the default reads it under the registry lock, as
    // it registers: a set_default_limit() racing with this constructor
    // either comes before (and is read here) or after (and resizes us).
    detail::register_group(this, follows ? &limit_ : nullptr);
  }

  shard& shard_for(const Key& key) {
    // Fibonacci hashing spreads even identity hashes (std::hash<int>) over
    // the shards; its top bits pick one.
    const std::uint64_t h = static_cast<std::uint64_t>(hasher{}(key)) * 0x9E3779B97F4A7C15ull;
    return shards_[static_cast<std::size_t>(h >> 60) % shard_count];
  }

  void apply_default_limit(std::size_t limit, bool force) override { do_resize(limit, force); }

  void do_resize(std::size_t limit, bool force) {
    check_fork();
    std::lock_guard<std::mutex> admin(admin_mutex_);
    // Check first, so that a refusal leaves every pool as it was.
    if (!force && limit != 0) {
      for (shard& sh : shards_) {
        std::lock_guard<std::mutex> lock(sh.mutex);
        for (auto& entry : sh.pools)
          if (entry.second->stats().in_use > limit) entry.second->resize(limit, false);  // throws pool_in_use
      }
    }
    // New pools made from here on get the new limit; existing ones are resized.
    limit_.store(limit, std::memory_order_release);
    for (shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mutex);
      for (auto& entry : sh.pools) entry.second->resize(limit, force);
    }
  }

  void check_fork() {
    if (generation_.load(std::memory_order_acquire) == detail::fork_generation()) return;
    std::lock_guard<std::mutex> guard(detail::fork_reset_mutex);
    const auto now = detail::fork_generation();
    if (generation_.load(std::memory_order_relaxed) == now) return;
    forget();
    generation_.store(now, std::memory_order_release);
  }

  // Drop the parent's pools without destroying them (destroying would close
  // their connections, writing to sockets the parent still uses).
  void forget() noexcept {
    // Placement-new over the old maps leaks their nodes without running a
    // single destructor; a parent thread may even have been half-way through
    // an insert, or have held any of these mutexes.
    for (shard& sh : shards_) {
      ::new (static_cast<void*>(&sh.mutex)) std::mutex;
      ::new (static_cast<void*>(&sh.pools)) map_type;
    }
    ::new (static_cast<void*>(&admin_mutex_)) std::mutex;
    ::new (static_cast<void*>(&retired_)) std::vector<std::unique_ptr<Pool>>;
  }

  std::array<shard, shard_count> shards_;
  std::atomic<std::size_t> limit_;
  std::atomic<bool> follows_default_;
  factory_type factory_;
  std::mutex admin_mutex_;                      // serialises resize() and reset(); never on the acquire path
  std::vector<std::unique_ptr<Pool>> retired_;  // closed by reset(), kept alive for references still held
  std::atomic<std::uint32_t> generation_;
};

}  // namespace respool
