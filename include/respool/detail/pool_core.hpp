// respool/detail/pool_core.hpp — the state machine behind Resource<T>.
//
// One mutex guards everything. Idle resources sit in a LIFO vector; waiters
// (sync and async together) in one intrusive FIFO list; resources handed out
// in an intrusive list so force_close_all() can reach them. A released
// resource goes straight to the longest waiter. Factories, validators and
// close hooks always run outside the lock.
//
// Lifetime: the core outlives its Resource while leases or async operations
// still refer to it; the last of them deletes it (`in_use_` and
// `async_refs_` are the reference counts, `owner_gone_` says the Resource died).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/errors.hpp"

namespace respool {

// A snapshot of a pool's counters (Resource::stats()).
struct PoolStats {
  std::size_t limit = 0;     // 0 = unlimited
  std::size_t in_use = 0;    // leased out (or being created for an acquirer)
  std::size_t idle = 0;      // ready for reuse
  std::size_t waiting = 0;   // acquirers queued (sync and async)
  std::size_t created = 0;   // resources ever created
  std::size_t closed = 0;    // resources ever closed
  std::size_t timeouts = 0;  // acquires that ended in limit_exceeded (zero-wait ones included)
};

namespace detail {

template <class T>
struct slot {
  explicit slot(T&& v) : value(std::move(v)) {}
  T value;
  slot* prev = nullptr;  // in the in-use list
  slot* next = nullptr;
  bool dead = false;      // force-closed while leased
  bool closing = false;   // force_close_all() is running the close hook on it
  bool released = false;  // its lease came back while `closing`
};

enum class wait_state : unsigned char { waiting, granted_slot, granted_create, closed, timed_out, cancelled };

// A queued acquirer. `notify()` is called with the pool lock held, right
// after the state changed away from `waiting`.
template <class T>
struct waiter {
  waiter* prev = nullptr;
  waiter* next = nullptr;
  wait_state state = wait_state::waiting;
  slot<T>* granted = nullptr;
  virtual void notify() = 0;

 protected:
  ~waiter() = default;
};

template <class T>
struct sync_waiter final : waiter<T> {
  std::condition_variable cv;
  // Under the lock: the waiting thread cannot return (and destroy cv) before we are done.
  void notify() override { cv.notify_one(); }
};

// How long an acquirer is prepared to wait: handed to a deadline-aware
// prepare hook (ProducerPool borrows its connection within it).
struct acquire_deadline {
  bool wait = true;  // false: try_acquire() or a zero timeout, never wait
  std::chrono::steady_clock::time_point until =
      std::chrono::steady_clock::time_point::max();  // max(): no limit
};

// Hooks and policies of a pool (what Resource<T>::Options carries, plus the
// internal ones used by ConnectionPool/ProducerPool).
template <class T>
struct pool_hooks {
  std::function<T()> create;
  std::function<void(T&)> close;
  std::function<bool(T&)> validate;
  std::function<void(T&)> prepare;  // after validate, before handing out; may throw
  // As prepare, within the acquirer's deadline (internal: ProducerPool). Runs after `prepare`.
  std::function<void(T&, const acquire_deadline&)> prepare_until;
  std::function<void(T&)> on_release;  // when a lease gives it back; must not throw
  bool connection_errors = false;      // throw connection_limit_exceeded & co
  bool parallel_close = false;         // close several at once on threads (hooks that may block on I/O)
};

// What an acquire attempt got while holding the lock.
enum class acquire_result { slot, create, queued, closed, no_capacity };

template <class T>
class pool_core {
 public:
  using clock = std::chrono::steady_clock;

  pool_core(std::size_t limit, pool_hooks<T> hooks)
      : limit_(limit), hooks_(std::move(hooks)), generation_(fork_generation()) {
    ensure_atfork_registered();
    if (limit_ != 0 && limit_ <= 4096) idle_.reserve(limit_);
  }

  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  const pool_hooks<T>& hooks() const noexcept { return hooks_; }

  // ----- acquire -----------------------------------------------------------

  // Blocking acquire. `wait`: false = never wait; `deadline` = clock::time_point::max() for no timeout.
  // `start`: when the wait began (the time `deadline` was computed from), so
  // that an expired wait never reports less than its timeout as waited; only
  // read when a finite deadline expires.
  //
  // The fast path (an idle resource or room to create one) reads no clock and
  // builds no waiter: a std::condition_variable's destructor
  // (pthread_cond_destroy) is an atomic read-modify-write, and with the
  // clock_gettime they cost as much as the two lock/unlock pairs of an
  // acquire + release together.
  slot<T>* acquire(bool wait, clock::time_point deadline, clock::time_point start = {}) {
    check_fork();
    slot<T>* s = nullptr;
    bool create = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      switch (start_acquire_locked(nullptr, s)) {
        case acquire_result::slot:
          break;
        case acquire_result::create:
          create = true;
          break;
        case acquire_result::closed:
          throw pool_closed();
        case acquire_result::queued:
          break;  // not without a waiter
        case acquire_result::no_capacity:
          if (wait) {
            s = wait_locked(lock, deadline, start, create);
            break;
          }
          ++timeouts_;
          const std::size_t limit = limit_;
          const bool connection_errors = hooks_.connection_errors;
          lock.unlock();  // from here on the core may be gone (a Resource destroyed concurrently)
          throw_limit_exceeded(connection_errors, limit, std::chrono::nanoseconds(0), false);
      }
    }
    return finish_acquire(s, create, acquire_deadline{wait, deadline});
  }

  // acquire()'s slow path, under the lock: queue behind earlier waiters and
  // sleep until served (returns the slot, or nullptr with `create` set),
  // closed (throws pool_closed) or past `deadline` (throws).
  [[gnu::noinline]] slot<T>* wait_locked(std::unique_lock<std::mutex>& lock, clock::time_point deadline,
                                         clock::time_point start, bool& create) {
    sync_waiter<T> w;
    link_waiter(&w);
    // A sleeping thread is a reference to the core: a Resource destroyed
    // meanwhile wakes it with pool_closed, and the core lives until it has
    // let go of the mutex (the last one out deletes it).
    ++sync_refs_;
    while (w.state == wait_state::waiting) {
      if (deadline == clock::time_point::max()) {
        w.cv.wait(lock);
      } else if (w.cv.wait_until(lock, deadline) == std::cv_status::timeout &&
                 w.state == wait_state::waiting) {
        unlink_waiter(&w);
        w.state = wait_state::timed_out;
        ++timeouts_;
        --sync_refs_;
        const std::size_t limit = limit_;
        const bool connection_errors = hooks_.connection_errors;
        lock.unlock();
        throw_limit_exceeded(connection_errors, limit, clock::now() - start, true);
      }
    }
    --sync_refs_;
    if (w.state == wait_state::closed) {
      const bool delete_self = should_delete_locked();
      lock.unlock();
      if (delete_self) delete this;
      throw pool_closed();
    }
    create = w.state == wait_state::granted_create;
    return w.granted;
  }

  // Never waits: a resource, or nullptr if the pool is at its limit (not
  // counted as a timeout: nothing was refused, the caller only asked).
  slot<T>* try_acquire() {
    check_fork();
    slot<T>* s = nullptr;
    acquire_result r;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      r = start_acquire_locked(nullptr, s);
    }
    if (r == acquire_result::closed) throw pool_closed();
    if (r == acquire_result::no_capacity) return nullptr;
    return finish_acquire(s, r == acquire_result::create, acquire_deadline{false});
  }

  // Under the lock: take an idle resource, reserve a slot to create one, or
  // (if `w` is given) queue `w`. Newcomers never overtake queued waiters.
  acquire_result start_acquire_locked(waiter<T>* w, slot<T>*& out) {
    if (shut_) return acquire_result::closed;
    if (waiters_head_ == nullptr) {
      if (!idle_.empty()) {
        out = idle_.back();
        idle_.pop_back();
        ++in_use_;
        return acquire_result::slot;
      }
      if (limit_ == 0 || total_locked() < limit_) {
        ++in_use_;
        return acquire_result::create;
      }
    }
    if (w == nullptr) return acquire_result::no_capacity;
    link_waiter(w);
    return acquire_result::queued;
  }

  // Outside the lock: create (if `create`) or validate `s`, then prepare it.
  // On failure the reservation is returned and the exception propagates.
  // `deadline` is handed to the prepare_until hook; `run_prepare` false
  // leaves both prepare hooks to the caller (ProducerPool's async acquire).
  slot<T>* finish_acquire(slot<T>* s, bool create, const acquire_deadline& deadline = {},
                          bool run_prepare = true) {
    for (;;) {
      if (create) {
        try {
          s = new slot<T>(hooks_.create());
        } catch (...) {
          cancel_reservation();
          throw;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        ++created_;
        link_slot(s);
      } else if (hooks_.validate && !validate(s)) {
        // Broken: close it and create a replacement in the same slot. A
        // force_close_all() meanwhile may have closed it already (it is then
        // dead: don't close it twice) or may still be closing it (then it
        // deletes the slot itself).
        bool close_it;
        bool delete_it;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          close_it = !s->dead;
          if (close_it) ++closed_;
          delete_it = !s->closing;
          if (delete_it)
            unlink_slot(s);
          else
            s->released = true;
        }
        if (close_it) close_quietly(s->value);
        if (delete_it) delete s;
        create = true;
        continue;
      }
      if (run_prepare && (hooks_.prepare || hooks_.prepare_until)) {
        try {
          if (hooks_.prepare) hooks_.prepare(s->value);
          if (hooks_.prepare_until) hooks_.prepare_until(s->value, deadline);
        } catch (...) {
          release(s);
          throw;
        }
      }
      return s;
    }
  }

  // Create one resource for the constructor's preload (no validate/prepare).
  slot<T>* preload_one() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_use_;
    }
    slot<T>* s;
    try {
      s = new slot<T>(hooks_.create());
    } catch (...) {
      cancel_reservation();
      throw;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++created_;
    link_slot(s);
    return s;
  }

  // ----- release -----------------------------------------------------------

  // Give a leased resource back (Lease::release). `generation` is the fork
  // generation the lease was made in.
  void release(slot<T>* s, std::uint32_t generation) noexcept {
    if (generation != fork_generation()) return;  // inherited from the parent: abandon, touch nothing
    if (hooks_.on_release) {
      try {
        hooks_.on_release(s->value);
      } catch (...) {
        discard(s, generation);
        return;
      }
    }
    release(s);
  }

  // Close a leased resource and free its slot (Lease::discard, kombu replace).
  void discard(slot<T>* s, std::uint32_t generation) noexcept {
    if (generation != fork_generation()) return;
    bool close_it = false;
    bool delete_self = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      if (s->dead && s->closing) {
        s->released = true;  // force_close_all() deletes it when done closing
        s = nullptr;
      } else {
        unlink_slot(s);
        if (!s->dead) {
          close_it = true;
          ++closed_;
        }
      }
      grant_capacity_locked();
      if (close_it) ++sync_refs_;  // the close hook is a member: keep the core until it returns
      delete_self = should_delete_locked();
    }
    if (close_it) {
      close_quietly(s->value);
      delete_self = drop_ref_after_close();
    }
    delete s;
    if (delete_self) delete this;
  }

  // ----- async support -------------------------------------------------------

  // Remove a still-queued waiter with `reason` (timeout/cancel). Returns false
  // if it was already served.
  bool withdraw(waiter<T>* w, wait_state reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (w->state != wait_state::waiting) return false;
    unlink_waiter(w);
    w->state = reason;
    if (reason == wait_state::timed_out) ++timeouts_;
    w->notify();
    return true;
  }

  std::mutex& mutex() noexcept { return mutex_; }
  void count_timeout_locked() noexcept { ++timeouts_; }
  void add_async_ref_locked() noexcept { ++async_refs_; }
  void drop_async_ref() noexcept {
    bool delete_self;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --async_refs_;
      delete_self = should_delete_locked();
    }
    if (delete_self) delete this;
  }

  // Give back a granted slot or creation right that nobody will use.
  void abandon_grant(wait_state state, slot<T>* s) noexcept {
    if (state == wait_state::granted_slot) release(s);
    if (state == wait_state::granted_create) cancel_reservation();
  }

  // ----- management ----------------------------------------------------------

  std::size_t limit() const {
    const_cast<pool_core*>(this)->check_fork();
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
  }

  void resize(std::size_t limit, bool force) {
    check_fork();
    std::vector<slot<T>*> doomed;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (limit != 0 && limit < in_use_) {
        if (!force) {
          const std::size_t in_use = in_use_;
          lock.unlock();
          throw error(errc::pool_in_use, "cannot shrink pool to " + std::to_string(limit) + " while " +
                                             std::to_string(in_use) + " resources are in use (use force)");
        }
        lock.unlock();
        force_close_all();
        lock.lock();
      }
      limit_ = limit;
      if (limit_ != 0 && total_locked() > limit_) {
        // Close the coldest idle resources (the bottom of the LIFO stack).
        const std::size_t excess = std::min(total_locked() - limit_, idle_.size());
        doomed.assign(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(excess));
        idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(excess));
        for (slot<T>* d : doomed) unlink_slot(d);
        closed_ += excess;
      }
      grant_capacity_locked();
    }
    close_and_delete(doomed);
  }

  // Close idle and leased resources; leases still held then release a dead slot.
  void force_close_all() {
    check_fork();
    std::vector<slot<T>*> idle;
    std::vector<slot<T>*> leased;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle.swap(idle_);
      for (slot<T>* d : idle) unlink_slot(d);  // what remains in the list is leased
      if (limit_ != 0 && limit_ <= 4096) idle_.reserve(limit_);
      closed_ += idle.size();
      for (slot<T>* s = slots_head_; s != nullptr; s = s->next) {
        if (s->dead) continue;
        s->dead = true;
        s->closing = true;
        leased.push_back(s);
      }
      closed_ += leased.size();
      grant_capacity_locked();
    }
    // Idle and leased ones together, in parallel where closes may block.
    const std::size_t idle_count = idle.size();
    for_each_close(idle_count + leased.size(), [&](std::size_t i) noexcept {
      if (i < idle_count) {
        close_quietly(idle[i]->value);
        delete idle[i];
        return;
      }
      slot<T>* s = leased[i - idle_count];
      close_quietly(s->value);
      bool gone;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        s->closing = false;
        gone = s->released;
        if (gone) unlink_slot(s);  // its lease came back meanwhile
      }
      if (gone) delete s;
    });
  }

  // Refuse further acquires, wake waiters with pool_closed, close idle resources.
  void close() {
    check_fork();
    std::vector<slot<T>*> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_flag_locked(idle);
    }
    close_and_delete(idle);
  }

  // The owning Resource is going away: close, then delete now or when the
  // last lease / async operation is done.
  void shutdown() noexcept {
    if (generation_.load(std::memory_order_relaxed) != fork_generation()) return;  // inherited: leak it
    std::vector<slot<T>*> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_flag_locked(idle);
    }
    // The close hooks (members of this core) run before owner_gone_ is set:
    // until then no lease, async operation or woken waiter can decide to
    // delete the core under them.
    close_and_delete(idle);
    bool delete_self;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      owner_gone_ = true;
      delete_self = should_delete_locked();
    }
    if (delete_self) delete this;
  }

  PoolStats stats() const {
    const_cast<pool_core*>(this)->check_fork();
    std::lock_guard<std::mutex> lock(mutex_);
    PoolStats st;
    st.limit = limit_;
    st.in_use = in_use_;
    st.idle = idle_.size();
    st.waiting = waiting_;
    st.created = created_;
    st.closed = closed_;
    st.timeouts = timeouts_;
    return st;
  }

  bool is_closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return shut_;
  }

  [[noreturn]] static void throw_limit_exceeded(bool connection_errors, std::size_t limit,
                                                std::chrono::nanoseconds waited, bool timed) {
    if (connection_errors) {
      if (timed) throw connection_acquire_timeout(limit, waited);
      throw connection_limit_exceeded(limit, waited);
    }
    if (timed) throw acquire_timeout(limit, waited);
    throw limit_exceeded(limit, waited);
  }

  // After fork(), the child starts this pool afresh: whatever the parent had
  // (resources, waiters, a possibly-held mutex) is abandoned, never touched.
  void check_fork() {
    if (generation_.load(std::memory_order_acquire) == fork_generation()) return;
    std::lock_guard<std::mutex> guard(fork_reset_mutex);
    const std::uint32_t now = fork_generation();
    if (generation_.load(std::memory_order_relaxed) == now) return;
    ::new (static_cast<void*>(&mutex_)) std::mutex;
    ::new (static_cast<void*>(&idle_)) std::vector<slot<T>*>;  // the parent's slots leak on purpose
    if (limit_ != 0 && limit_ <= 4096) idle_.reserve(limit_);
    waiters_head_ = waiters_tail_ = nullptr;
    slots_head_ = nullptr;
    in_use_ = waiting_ = 0;
    async_refs_ = sync_refs_ = 0;  // the parent's async operations never touch a child's core (async.hpp)
    generation_.store(now, std::memory_order_release);
  }

 private:
  bool validate(slot<T>* s) noexcept {
    try {
      return hooks_.validate(s->value);
    } catch (...) {
      return false;
    }
  }

  void close_quietly(T& value) noexcept {
    if (!hooks_.close) return;
    try {
      hooks_.close(value);
    } catch (...) {
      // A close hook that throws must not take the pool down; the resource is gone either way.
    }
  }

  void close_and_delete(std::vector<slot<T>*>& slots) noexcept {
    for_each_close(slots.size(), [&](std::size_t i) noexcept {
      close_quietly(slots[i]->value);
      delete slots[i];
    });
    slots.clear();
  }

  // fn(0) ... fn(n - 1). With hooks_.parallel_close (connection pools, whose
  // close may wait for a stalled broker up to the transport's close bound),
  // on up to 256 threads at once: closing many connections takes about one
  // close bound, not one per connection. Serial if a thread cannot be made.
  template <class F>
  void for_each_close(std::size_t n, F&& fn) noexcept {
    if (!hooks_.parallel_close || n < 2) {
      for (std::size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    std::atomic<std::size_t> next{0};
    auto worker = [&]() noexcept {
      for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
    };
    std::vector<std::thread> threads;
    const std::size_t extra = std::min<std::size_t>(n, 256) - 1;
    try {
      threads.reserve(extra);
      for (std::size_t k = 0; k < extra; ++k) threads.emplace_back(worker);
    } catch (...) {
      // Out of threads: this one does the rest.
    }
    worker();
    for (auto& t : threads) t.join();
  }

  // Back from a lease (or a failed prepare): to the longest waiter, to the
  // idle stack, or closed if the pool is closed or over its limit.
  void release(slot<T>* s) noexcept {
    bool close_it = false;
    bool delete_it = false;
    bool delete_self = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      if (s->dead) {
        if (s->closing) {
          s->released = true;  // force_close_all() deletes it when done closing
        } else {
          unlink_slot(s);
          delete_it = true;
        }
        grant_capacity_locked();
      } else if (shut_ || (limit_ != 0 && total_locked() >= limit_)) {  // this slot is no longer in in_use_
        ++closed_;
        unlink_slot(s);
        close_it = true;
        grant_capacity_locked();
      } else if (waiters_head_ != nullptr) {
        waiter<T>* w = waiters_head_;
        unlink_waiter(w);
        ++in_use_;
        w->granted = s;
        w->state = wait_state::granted_slot;
        w->notify();
      } else {
        idle_.push_back(s);
      }
      if (close_it) ++sync_refs_;  // the close hook is a member: keep the core until it returns
      delete_self = should_delete_locked();
    }
    if (close_it) {
      close_quietly(s->value);
      delete_self = drop_ref_after_close();
    }
    if (close_it || delete_it) delete s;
    if (delete_self) delete this;
  }

  // After a close hook run outside the lock under a reference (sync_refs_):
  // drop it; true if the core must now be deleted (by the caller, unlocked).
  bool drop_ref_after_close() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    --sync_refs_;
    return should_delete_locked();
  }

  // A reserved creation slot was not used (factory threw, grant dropped).
  void cancel_reservation() noexcept {
    bool delete_self;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      grant_capacity_locked();
      delete_self = should_delete_locked();
    }
    if (delete_self) delete this;
  }

  // Hand free capacity (room under the limit) to queued waiters, oldest first.
  void grant_capacity_locked() {
    while (waiters_head_ != nullptr && !shut_ && (limit_ == 0 || total_locked() < limit_)) {
      waiter<T>* w = waiters_head_;
      unlink_waiter(w);
      ++in_use_;
      w->state = wait_state::granted_create;
      w->notify();
    }
  }

  void closed_flag_locked(std::vector<slot<T>*>& idle) {
    shut_ = true;
    while (waiters_head_ != nullptr) {
      waiter<T>* w = waiters_head_;
      unlink_waiter(w);
      w->state = wait_state::closed;
      w->notify();
    }
    idle.swap(idle_);
    for (slot<T>* d : idle) unlink_slot(d);
    closed_ += idle.size();
  }

  // Resources that exist or are being created: idle + leased + reserved
  // (derived, not stored: in_use_ counts leased and reserved slots).
  std::size_t total_locked() const noexcept { return in_use_ + idle_.size(); }

  bool should_delete_locked() const noexcept {
    return owner_gone_ && in_use_ == 0 && async_refs_ == 0 && sync_refs_ == 0;
  }

  void link_waiter(waiter<T>* w) noexcept {
    w->prev = waiters_tail_;
    w->next = nullptr;
    if (waiters_tail_)
      waiters_tail_->next = w;
    else
      waiters_head_ = w;
    waiters_tail_ = w;
    ++waiting_;
  }
  void unlink_waiter(waiter<T>* w) noexcept {
    if (w->prev)
      w->prev->next = w->next;
    else
      waiters_head_ = w->next;
    if (w->next)
      w->next->prev = w->prev;
    else
      waiters_tail_ = w->prev;
    w->prev = w->next = nullptr;
    --waiting_;
  }
  // Every live slot (idle, leased or being validated) is in one list, linked
  // when created and unlinked when deleted, so that acquire and release
  // never touch it: force_close_all() finds the leased ones there.
  void link_slot(slot<T>* s) noexcept {
    s->prev = nullptr;
    s->next = slots_head_;
    if (slots_head_) slots_head_->prev = s;
    slots_head_ = s;
  }
  void unlink_slot(slot<T>* s) noexcept {
    if (s->prev)
      s->prev->next = s->next;
    else
      slots_head_ = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = nullptr;
  }

  mutable std::mutex mutex_;
  std::size_t limit_;
  pool_hooks<T> hooks_;
  std::vector<slot<T>*> idle_;  // LIFO: back() is the warmest
  waiter<T>* waiters_head_ = nullptr;
  waiter<T>* waiters_tail_ = nullptr;
  slot<T>* slots_head_ = nullptr;  // every live slot
  std::size_t in_use_ = 0;         // leased + being created
  std::size_t waiting_ = 0;
  std::size_t created_ = 0;
  std::size_t closed_ = 0;
  std::size_t timeouts_ = 0;
  std::size_t async_refs_ = 0;
  std::size_t sync_refs_ = 0;  // threads asleep in wait_locked() or running a close hook after a release
  bool shut_ = false;          // close() was called
  bool owner_gone_ = false;
  std::atomic<std::uint32_t> generation_;
};

}  // namespace detail
}  // namespace respool
