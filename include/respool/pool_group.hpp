// respool/pool_group.hpp — PoolGroup<Key, Pool>: one pool per key (kombu PoolGroup).
#pragma once

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
// Pool needs resize(std::size_t, bool), force_close_all(), close() and stats(); Key needs
// std::hash and ==. Thread safety: every member may be called concurrently.
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
  PoolGroup(use_default_limit_t, factory_type factory)
      : PoolGroup(detail::default_limit(), true, std::move(factory)) {}

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
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(key);
    if (it != pools_.end()) return *it->second;
    // Under the lock, so the factory runs once per key. Pool construction is
    // cheap (resources are created lazily).
    auto pool = factory_(key, limit_);
    Pool& ref = *pool;
    pools_.emplace(key, std::move(pool));
    return ref;
  }

  // The limit given to every pool of the group.
  std::size_t limit() const {
    const_cast<PoolGroup*>(this)->check_fork();
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
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
    std::lock_guard<std::mutex> lock(mutex_);
    return pools_.size();
  }

  // Force-close every pool and forget them all: the next group[key] makes a
  // new pool. The old pools are closed (their waiters wake with pool_closed,
  // later acquires on them throw pool_closed) and kept until the group dies,
  // so a reference another thread looked up just before the reset never
  // dangles. Leases still out stay valid and give back a dead slot.
  void reset() override {
    check_fork();
    std::unordered_map<Key, std::unique_ptr<Pool>, hasher> old;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      old.swap(pools_);
    }
    std::vector<std::unique_ptr<Pool>> closed;
    closed.reserve(old.size());
    for (auto& entry : old) {  // outside the lock: close hooks may take time
      entry.second->close();
      entry.second->force_close_all();
      closed.push_back(std::move(entry.second));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& pool : closed) retired_.push_back(std::move(pool));
  }

  // True if the group follows the global default limit.
  bool follows_default_limit() const noexcept override { return follows_default_.load(std::memory_order_relaxed); }

 private:
  struct hasher {
    std::size_t operator()(const Key& k) const noexcept(noexcept(std::hash<Key>{}(k))) { return std::hash<Key>{}(k); }
  };

  PoolGroup(std::size_t limit, bool follows, factory_type factory)
      : limit_(limit), follows_default_(follows), factory_(std::move(factory)), generation_(detail::fork_generation()) {
    // A group that follows the default reads it under the registry lock, as
    // it registers: a set_default_limit() racing with this constructor
    // either comes before (and is read here) or after (and resizes us).
    detail::register_group(this, follows ? &limit_ : nullptr);
  }

  void apply_default_limit(std::size_t limit, bool force) override { do_resize(limit, force); }

  void do_resize(std::size_t limit, bool force) {
    check_fork();
    std::lock_guard<std::mutex> lock(mutex_);
    // Check first, so that a refusal leaves every pool as it was.
    if (!force) {
      for (auto& entry : pools_) {
        auto stats = entry.second->stats();
        if (limit != 0 && stats.in_use > limit) entry.second->resize(limit, false);  // throws pool_in_use
      }
    }
    for (auto& entry : pools_) entry.second->resize(limit, force);
    limit_ = limit;
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
    // Placement-new over the old map leaks its nodes without running a single
    // destructor; a parent thread may even have been half-way through an insert.
    ::new (static_cast<void*>(&mutex_)) std::mutex;
    ::new (static_cast<void*>(&pools_)) std::unordered_map<Key, std::unique_ptr<Pool>, hasher>;
    ::new (static_cast<void*>(&retired_)) std::vector<std::unique_ptr<Pool>>;
  }

  mutable std::mutex mutex_;
  std::size_t limit_;
  std::atomic<bool> follows_default_;
  factory_type factory_;
  std::unordered_map<Key, std::unique_ptr<Pool>, hasher> pools_;
  std::vector<std::unique_ptr<Pool>> retired_;  // closed by reset(), kept alive for references still held
  std::atomic<std::uint32_t> generation_;
};

}  // namespace respool
