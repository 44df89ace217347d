// respool/detail/pool_core.hpp — the state machine behind Resource<T>.
//
// One mutex guards everything but the spare. Idle resources sit in a LIFO
// vector; waiters (sync and async together) in one intrusive FIFO list;
// resources handed out in an intrusive list so force_close_all() can reach
// them. A released resource goes straight to the longest waiter. Factories,
// validators and close hooks always run outside the lock.
//
// The spare (spare_) is one released resource parked in an atomic pointer:
// while nobody waits and no policy, cap or shutdown needs the lock's
// bookkeeping, a release parks its resource there with one compare-and-swap
// and the next acquire takes it with another, where the mutex would cost two
// lock/unlock pairs. Any path that needs to see every resource (an acquirer
// about to wait, a close, a policy or cap switched on) closes the spare
// under the lock with one exchange, which also moves a parked resource to
// the idle stack. A release that finds the spare full parks its resource
// there all the same and takes the lock to put the older one on the idle
// stack (reuse stays LIFO); one that finds it closed takes the lock as
// before, and reopens the spare once those conditions are gone.
//
// Lifetime: the core outlives its Resource while leases or async operations
// still refer to it; the last of them deletes it (`in_use_` and
// `async_refs_` are the reference counts, `owner_gone_` says the Resource died).
#pragma once

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/errors.hpp"
#include "respool/pool_policy.hpp"

namespace respool {

// A snapshot of a pool's counters (Resource::stats()).
struct PoolStats {
  std::size_t limit = 0;        // 0 = unlimited
  std::size_t in_use = 0;       // leased out (or being created for an acquirer)
  std::size_t idle = 0;         // ready for reuse
  std::size_t waiting = 0;      // acquirers queued (sync and async)
  std::size_t created = 0;      // resources ever created
  std::size_t closed = 0;       // resources ever closed
  std::size_t timeouts = 0;     // acquires that ended in limit_exceeded (zero-wait ones included)
  std::size_t peak_in_use = 0;  // the most ever in use at once
  std::size_t waits = 0;        // acquires that had to queue (served, timed out, cancelled or closed)
  std::chrono::nanoseconds wait_time{0};  // their time in the queue, in all (the pool's clock)
  std::size_t expired = 0;                // closed for idle_timeout / max_lifetime (counted in `closed` too)
  std::size_t leaks = 0;                  // leases reported as held longer than leak_threshold
};

namespace detail {

template <class T>
struct slot {
  using time_point = std::chrono::steady_clock::time_point;
  explicit slot(T&& v) : value(std::move(v)) {}
  T value;
  slot* prev = nullptr;  // in the in-use list
  slot* next = nullptr;
  bool dead = false;           // force-closed while leased
  bool closing = false;        // force_close_all() is running the close hook on it
  bool released = false;       // its lease came back while `closing`
  bool retire = false;         // expired when handed out: close it instead
  bool skip_validate = false;  // used less than validation_bypass ago
  bool leak_reported = false;
  std::uint64_t idle_seq = 0;  // in a capped group: when it went idle (group_cap's order)
  // The policies' bookkeeping (PoolPolicy), after the fields every hand-out
  // touches; written under the pool lock, except created_at/jitter (before
  // the slot is published) and retire/skip_validate (by the acquirer that
  // owns it, after its hand-out).
  std::uint32_t jitter = 0;  // this resource's share of lifetime_jitter, in 1/2^32
  time_point created_at{};
  time_point last_used{};    // given back (or created); idle_timeout, validation_bypass
  time_point acquired_at{};  // handed out (time_point{} while idle, or policies off)
  acquire_site where{};
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
  std::uint64_t ticket = 0;  // in a capped group: its place in the group's queue (group_cap)
  std::chrono::steady_clock::time_point queued_at{};  // the pool's clock
  acquire_site where{};
  // Sync waiters only (barging, see pool_core::release): parked_at is when
  // it went to sleep (steady_clock); woken: told to come and take an idle
  // resource, not yet back.
  bool sync = false;
  bool woken = false;
  std::chrono::steady_clock::time_point parked_at{};
  virtual void notify() = 0;

 protected:
  ~waiter() = default;
};

template <class T>
struct sync_waiter final : waiter<T> {
  sync_waiter() noexcept { this->sync = true; }
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
  // The policies' clock (tests inject one); empty = steady_clock::now. Called
  // under the pool lock too: it must be cheap and never touch the pool.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Go's sync.Mutex rule: while the longest sync waiter has waited less than
  // this, a running acquirer may take a just-released resource ahead of it
  // (no context switch per hand-off); past it, and always with zero, a
  // released resource goes straight to the longest waiter (strict FIFO).
  std::chrono::nanoseconds starvation_threshold = std::chrono::milliseconds(1);
};

// What an acquire attempt got while holding the lock. `capped`: nothing at
// hand in a pool of a group with max_total; the caller queues through the
// group (group_cap), never in the pool alone.
enum class acquire_result { slot, create, queued, closed, no_capacity, capped };

template <class T>
class group_cap;

template <class T>
class pool_core {
  friend class group_cap<T>;

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
  slot<T>* acquire(bool wait, clock::time_point deadline, clock::time_point start = {},
                   const acquire_site& where = {}) {
    check_fork();
    if (slot<T>* parked = take_spare())
      return finish_acquire(parked, false, acquire_deadline{wait, deadline});
    slot<T>* s = nullptr;
    bool create = false;
    clock::time_point t0{};  // the policies' start of this acquire (only with policies on)
    {
      std::unique_lock<std::mutex> lock(mutex_);
      switch (start_acquire_locked(nullptr, s, where, t0)) {
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
            s = wait_locked(lock, deadline, start, create, where);
            break;
          }
          refuse_locked(lock);
        case acquire_result::capped:
          s = acquire_capped(lock, wait, deadline, start, create, where, t0);
          break;
      }
    }
    return finish_acquire(s, create, acquire_deadline{wait, deadline}, true, where, t0);
  }

  // acquire(false, ...) on a full pool: throw limit_exceeded (out of line,
  // so that the hand-out path stays small).
  [[noreturn, gnu::noinline, gnu::cold]] void refuse_locked(std::unique_lock<std::mutex>& lock) {
    throw_refusal(lock, std::chrono::nanoseconds(0), false);
  }

  // Count a refusal (zero wait) or an expired wait and throw its
  // limit_exceeded, releasing the lock first. When the pool had room but its
  // group was at max_total, the error names the group cap and its counts.
  [[noreturn, gnu::noinline, gnu::cold]] void throw_refusal(std::unique_lock<std::mutex>& lock,
                                                            std::chrono::nanoseconds waited, bool timed) {
    ++timeouts_;
    std::size_t limit = limit_;
    const bool connection_errors = hooks_.connection_errors;
    limit_details details = details_locked();
    std::shared_ptr<group_cap<T>> cap;
    if (cap_ && (limit_ == 0 || total_locked() < limit_)) cap = cap_;  // the group's cap was the limit
    PoolObserver* observer = observer_.load(std::memory_order_acquire);
    lock.unlock();  // from here on the core may be gone (a Resource destroyed concurrently)
    if (cap) limit = cap->describe(details);
    if (observer) observer->on_timeout();
    throw_limit_exceeded(connection_errors, limit, waited, timed, details);
  }

  // acquire()'s slow path, under the lock: queue behind earlier waiters and
  // sleep until served (returns the slot, or nullptr with `create` set),
  // closed (throws pool_closed) or past `deadline` (throws).
  [[gnu::noinline]] slot<T>* wait_locked(std::unique_lock<std::mutex>& lock, clock::time_point deadline,
                                         clock::time_point start, bool& create, const acquire_site& where) {
    sync_waiter<T> w;
    w.where = where;
    if (hooks_.starvation_threshold.count() > 0) w.parked_at = clock::now();
    link_waiter(&w);
    // A sleeping thread is a reference to the core: a Resource destroyed
    // meanwhile wakes it with pool_closed, and the core lives until it has
    // let go of the mutex (the last one out deletes it).
    ++sync_refs_;
    return sleep_locked(lock, w, deadline, start, create);
  }

  // wait_locked()'s sleep, for a queued `w` whose thread holds a sync_refs_
  // reference (dropped here).
  slot<T>* sleep_locked(std::unique_lock<std::mutex>& lock, sync_waiter<T>& w, clock::time_point deadline,
                        clock::time_point start, bool& create) {
    while (w.state == wait_state::waiting) {
      if (w.woken && take_woken_locked(&w)) break;  // barging mode: it was told to come
      if (deadline == clock::time_point::max()) {
        w.cv.wait(lock);
      } else if (w.cv.wait_until(lock, deadline) == std::cv_status::timeout &&
                 w.state == wait_state::waiting && !(w.woken && take_woken_locked(&w))) {
        unlink_waiter(&w);
        serve_idle_locked();  // it may have been the one told to take an idle resource
        w.state = wait_state::timed_out;
        --sync_refs_;
        throw_refusal(lock, clock::now() - start, true);
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
  slot<T>* try_acquire(const acquire_site& where = {}) {
    check_fork();
    if (slot<T>* parked = take_spare()) return finish_acquire(parked, false, acquire_deadline{false});
    slot<T>* s = nullptr;
    acquire_result r;
    clock::time_point t0{};
    {
      std::unique_lock<std::mutex> lock(mutex_);
      r = start_acquire_locked(nullptr, s, where, t0);
      if (r == acquire_result::capped) {
        bool create = false;
        s = acquire_capped(lock, false, clock::time_point::max(), {}, create, where, t0, false);
        r = s != nullptr ? acquire_result::slot
            : create     ? acquire_result::create
                         : acquire_result::no_capacity;
      }
    }
    if (r == acquire_result::closed) throw pool_closed();
    if (r == acquire_result::no_capacity) return nullptr;
    return finish_acquire(s, r == acquire_result::create, acquire_deadline{false}, true, where, t0);
  }

  // Under the lock: take an idle resource, reserve a slot to create one, or
  // (if `w` is given) queue `w`. Newcomers never overtake queued waiters,
  // except by taking an idle resource in barging mode (see release()).
  // With policies on, `t0` gets the pool clock's now (the acquire's start).
  acquire_result start_acquire_locked(waiter<T>* w, slot<T>*& out, const acquire_site& where,
                                      clock::time_point& t0) {
    if (shut_) return acquire_result::closed;
    const bool timed = timed_.load(std::memory_order_relaxed);
    if (timed) t0 = now();
    // An idle resource with waiters queued exists only in barging mode (a
    // release woke a waiter instead of handing it over): a running acquirer
    // may take it while the longest waiter is not starving.
    if (idle_.empty()) {
      if (slot<T>* parked = take_spare()) {  // (an open spare: no waiter, no policy, no cap)
        out = parked;                        // counted in in_use_ while parked
        return acquire_result::slot;
      }
    }
    for (;;) {
      if (!idle_.empty() && (waiters_head_ == nullptr || may_barge_locked())) {
        out = idle_.back();
        idle_.pop_back();
        ++in_use_;
        note_peak_locked();
        if (timed) handout_locked(out, t0, where);
        return acquire_result::slot;
      }
      if (waiters_head_ == nullptr) {
        if (limit_ == 0 || total_locked() < limit_) {
          if (cap_ && !take_unit_locked(true)) return acquire_result::capped;
          ++in_use_;
          note_peak_locked();
          return acquire_result::create;
        }
      }
      // Nothing at hand: this acquirer queues or is refused. Close the spare
      // first, so that no release can park a resource there unseen while it
      // waits; one parked meanwhile is on the idle stack now.
      if (close_spare_locked() == nullptr) break;
    }
    if (cap_) return acquire_result::capped;  // queue through the group (acquire_capped)
    if (w == nullptr) return acquire_result::no_capacity;
    w->where = where;
    link_waiter(w);
    return acquire_result::queued;
  }

  // ----- the group's cap (PoolGroup::set_max_total; see group_cap) -----------
  //
  // Lock order: a group_cap's mutex before a pool's; never two pools' at
  // once; a thread holding a pool's mutex never takes the cap's (under it,
  // a pool only uses the cap's atomics: taking and giving back units, the
  // waiter count). Waiters of a capped pool queue with the cap's mutex held,
  // each with a ticket from the group's one sequence, and are served by
  // group_cap::dispatch(), oldest ticket first across the keys.

  // acquire() / try_acquire() found nothing at hand in a capped pool: queue
  // `w` through the group, let the group serve its waiters in order
  // (closing the oldest idle resource of another key to make room if need
  // be) and, if `wait`, sleep until served, closed or past `deadline`.
  // Called and returns with `lock` (this pool's) held. Without `wait`, a
  // refusal throws (`throw_on_refusal`) or returns nullptr with `create` false.
  [[gnu::noinline]] slot<T>* acquire_capped(std::unique_lock<std::mutex>& lock, bool wait,
                                            clock::time_point deadline, clock::time_point start, bool& create,
                                            const acquire_site& where, clock::time_point& t0,
                                            bool throw_on_refusal = true) {
    sync_waiter<T> w;
    w.where = where;
    for (;;) {
      std::shared_ptr<group_cap<T>> cap = cap_;
      if (!cap) {  // the cap was lifted meanwhile: an ordinary acquire
        slot<T>* s = nullptr;
        switch (start_acquire_locked(nullptr, s, where, t0)) {
          case acquire_result::slot:
            return s;
          case acquire_result::create:
            create = true;
            return nullptr;
          case acquire_result::closed:
            lock.unlock();
            throw pool_closed();
          default:
            if (wait) return wait_locked(lock, deadline, start, create, where);
            if (throw_on_refusal) refuse_locked(lock);
            return nullptr;
        }
      }
      lock.unlock();
      std::unique_lock<std::mutex> cap_lock(cap->mutex_);
      lock.lock();
      if (cap_ != cap) {  // lifted or replaced meanwhile: start again
        cap_lock.unlock();
        continue;
      }
      slot<T>* s = nullptr;
      switch (start_acquire_locked(nullptr, s, where, t0)) {
        case acquire_result::slot:
          return s;
        case acquire_result::create:
          create = true;
          return nullptr;
        case acquire_result::closed:
          lock.unlock();
          throw pool_closed();
        default:
          break;
      }
      // Without waiting, a pool at its own limit refuses at once (the group cannot help).
      if (!wait && idle_.empty() && limit_ != 0 && total_locked() >= limit_) {
        cap_lock.unlock();
        if (throw_on_refusal) refuse_locked(lock);
        return nullptr;
      }
      if (hooks_.starvation_threshold.count() > 0) w.parked_at = clock::now();
      cap->enqueue_locked(this, &w);
      ++sync_refs_;
      lock.unlock();
      cap->dispatch_locked(cap_lock);  // serves the group's waiters in order: maybe `w`
      cap_lock.unlock();
      lock.lock();
      if (wait) return sleep_locked(lock, w, deadline, start, create);
      --sync_refs_;
      if (w.state == wait_state::waiting) {
        unlink_waiter(&w);  // not served at once: refused
        w.state = wait_state::timed_out;
        if (throw_on_refusal) refuse_locked(lock);
        return nullptr;
      }
      if (w.state == wait_state::closed) {
        const bool delete_self = should_delete_locked();
        lock.unlock();
        if (delete_self) delete this;
        throw pool_closed();
      }
      create = w.state == wait_state::granted_create;
      return w.granted;
    }
  }

  // An async acquire (async.hpp) that found nothing at hand in a capped
  // pool: as acquire_capped(), for the operation `w` (queued only if
  // `wait`; `on_queued` runs under the pool lock once it is, before anyone
  // can serve it). Returns slot / create (s, state set by the caller),
  // closed, no_capacity or queued (the operation is then served, closed or
  // withdrawn later, by notify()).
  template <class OnQueued>
  acquire_result start_async_capped(waiter<T>* w, bool wait, slot<T>*& s, const acquire_site& where,
                                    clock::time_point& t0, OnQueued&& on_queued) {
    if (!wait) {
      std::unique_lock<std::mutex> lock(mutex_);
      bool create = false;
      acquire_result r = start_acquire_locked(nullptr, s, where, t0);
      if (r == acquire_result::no_capacity) ++timeouts_;  // (the cap was lifted meanwhile)
      if (r != acquire_result::capped) return r;
      try {
        s = acquire_capped(lock, false, clock::time_point::max(), {}, create, where, t0, false);
      } catch (const pool_closed&) {
        return acquire_result::closed;
      }
      if (s != nullptr) return acquire_result::slot;
      if (create) return acquire_result::create;
      ++timeouts_;  // as the sync zero-wait acquire counts its refusal
      return acquire_result::no_capacity;
    }
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      std::shared_ptr<group_cap<T>> cap = cap_;
      if (!cap) {
        acquire_result r = start_acquire_locked(w, s, where, t0);
        if (r == acquire_result::queued) on_queued();
        return r;
      }
      lock.unlock();
      std::unique_lock<std::mutex> cap_lock(cap->mutex_);
      lock.lock();
      if (cap_ != cap) continue;
      acquire_result r = start_acquire_locked(nullptr, s, where, t0);
      if (r != acquire_result::capped) return r;
      w->where = where;
      cap->enqueue_locked(this, w);
      on_queued();
      lock.unlock();
      cap->dispatch_locked(cap_lock);
      return acquire_result::queued;
    }
  }

  // Under the lock, in a capped pool: take one of the group's units (room
  // for one more resource). A newcomer never takes one while anyone in the
  // group waits (they are served first, in order).
  bool take_unit_locked(bool newcomer) noexcept {
    if (!cap_->try_take(newcomer)) return false;
    ++units_;
    return true;
  }

  // Under the lock, in a capped pool: give the group back the units of
  // resources this pool no longer has (closed, discarded, reservations dropped).
  void return_units_locked() noexcept {
    const std::size_t total = total_locked();
    if (units_ > total) {
      cap_->give_back(units_ - total);
      units_ = total;
    }
  }

  // Under the lock, at the end of a change: the cap to dispatch once the
  // lock is released (anyone waiting in the group may be served now), or nothing.
  std::shared_ptr<group_cap<T>> cap_wake_locked() const noexcept {
    if (cap_ && cap_->waiting() > 0) return cap_;
    return nullptr;
  }

  // Outside the lock: create (if `create`) or validate `s`, then prepare it.
  // On failure the reservation is returned and the exception propagates.
  // `deadline` is handed to the prepare_until hook; `run_prepare` false
  // leaves both prepare hooks to the caller (ProducerPool's async acquire).
  // `where` and `t0` (the acquire's start, with policies on) feed leak
  // detection and the observer.
  slot<T>* finish_acquire(slot<T>* s, bool create, const acquire_deadline& deadline = {},
                          bool run_prepare = true, const acquire_site& where = {},
                          clock::time_point t0 = {}) {
    // The warm hand-out of a pool without hooks or policies: nothing to do.
    if (!create && t0 == clock::time_point{} && !s->retire && !s->skip_validate && !hooks_.validate &&
        !(run_prepare && (hooks_.prepare || hooks_.prepare_until)))
      return s;
    return finish_acquire_slow(s, create, deadline, run_prepare, where, t0);
  }

  [[gnu::noinline]] slot<T>* finish_acquire_slow(slot<T>* s, bool create, const acquire_deadline& deadline,
                                                 bool run_prepare, const acquire_site& where,
                                                 clock::time_point t0) {
    for (;;) {
      bool retire = false;
      if (create) {
        s = create_slot(&where);
      } else if (must_replace(s, retire)) {
        s = replace(s, retire, where);
        create = s == nullptr;
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
      if (t0 != clock::time_point{}) {
        if (PoolObserver* observer = observer_.load(std::memory_order_acquire)) observer->on_wait(now() - t0);
      }
      return s;
    }
  }

  // finish_acquire()'s slow path: `s` is broken or expired: close it. A
  // force_close_all() meanwhile may have closed it already (it is then dead:
  // don't close it twice) or may still be closing it (then it deletes the
  // slot itself). A broken one is replaced by a new one in the same slot
  // (returns nullptr: create); an expired one by the next idle one if there
  // is one (returned, to be checked in turn).
  [[gnu::noinline]] slot<T>* replace(slot<T>* s, bool retire, const acquire_site& where) {
    bool close_it;
    bool delete_it;
    slot<T>* next = nullptr;
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      close_it = !s->dead;
      if (close_it) ++closed_;
      if (close_it && retire) ++expired_;
      delete_it = !s->closing;
      if (delete_it)
        unlink_slot(s);
      else
        s->released = true;
      if (retire && !idle_.empty() && (waiters_head_ == nullptr || may_barge_locked())) {
        next = idle_.back();
        idle_.pop_back();
        if (timed_.load(std::memory_order_relaxed)) handout_locked(next, now(), where);
        grant_capacity_locked();  // one resource fewer in all: room for a waiter's create
        wake = cap_wake_locked();
      }
    }
    if (close_it) close_quietly(s->value);
    if (delete_it) delete s;
    if (wake) wake->dispatch();
    return next;
  }

  // Create one resource for the constructor's preload or maintain()'s
  // min_idle (no validate/prepare); the caller releases it into the pool.
  slot<T>* preload_one() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_use_;
      if (cap_) {  // (a pool joins its group after its constructor: not reached today)
        cap_->force_take();
        ++units_;
      }
    }
    return create_slot(nullptr);
  }

  // Run the factory for a reserved slot (in_use_ counts it) and link the
  // new resource. `where`: the acquirer's site (it is handed out at once), or
  // nullptr (it goes idle). On failure the reservation is returned.
  [[gnu::noinline]] slot<T>* create_slot(const acquire_site* where) {
    PoolObserver* observer = observer_.load(std::memory_order_acquire);
    const clock::time_point before = observer ? now() : clock::time_point{};
    slot<T>* s;
    try {
      s = new slot<T>(hooks_.create());
    } catch (...) {
      cancel_reservation();
      throw;
    }
    // One clock read per creation, policies on or off: a resource's age must
    // be known if max_lifetime is set later.
    const clock::time_point made = now();
    s->created_at = s->last_used = made;
    s->jitter = jitter_for(s, made);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++created_;
      link_slot(s);
      if (where != nullptr && timed_.load(std::memory_order_relaxed)) {
        s->acquired_at = made;
        s->where = *where;
      }
    }
    if (observer) observer->on_create(made - before);
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
    return_note note;
    const bool timed = timed_.load(std::memory_order_relaxed);
    const clock::time_point t = timed ? now() : clock::time_point{};
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      if (timed) note_return_locked(s, t, note);
      if (s->dead) --dead_leased_;
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
      wake = cap_wake_locked();
      open_spare_locked();
      if (close_it) ++sync_refs_;  // the close hook is a member: keep the core until it returns
      delete_self = should_delete_locked();
    }
    if (timed) deliver(note);
    if (close_it) {
      close_quietly(s->value);
      delete_self = drop_ref_after_close();
    }
    delete s;
    if (delete_self) delete this;
    if (wake) wake->dispatch();  // (a deleted core had left its group: the cap never reaches it)
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

  PoolObserver* observer() const noexcept { return observer_.load(std::memory_order_acquire); }

  // ----- policies (PoolPolicy) -------------------------------------------------

  // Replace the policies; they apply to the resources already there too. On
  // switching them on, every resource counts as used now (nothing was
  // measured while they were off).
  void set_policy(PoolPolicy policy) {
    check_fork();
    const bool on = policy.idle_timeout.count() > 0 || policy.max_lifetime.count() > 0 ||
                    policy.validation_bypass.count() > 0 || policy.leak_threshold.count() > 0 ||
                    policy.observer != nullptr;
    PoolPolicy old;
    std::lock_guard<std::mutex> lock(mutex_);
    if (on) close_spare_locked();  // released resources need the lock's bookkeeping from now on
    if (on && !timed_.load(std::memory_order_relaxed)) {
      const clock::time_point t = now();
      for (slot<T>* s = slots_head_; s != nullptr; s = s->next) {
        s->last_used = t;
        s->acquired_at = t;  // leased ones: held from now on, as far as we know
        s->leak_reported = false;
      }
      for (slot<T>* s : idle_) s->acquired_at = clock::time_point{};
    }
    old = std::exchange(policy_, std::move(policy));  // the old hooks die after the lock (RAII order)
    observer_.store(policy_.observer, std::memory_order_release);
    timed_.store(on, std::memory_order_relaxed);
    slow_release_.store(on || cap_ != nullptr, std::memory_order_relaxed);
  }

  PoolPolicy policy() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return policy_;
  }

  // The executor for async_acquire handlers that have none (a
  // boost::asio::any_io_executor in a std::any; empty = none). See async.hpp.
  void set_executor(std::any executor) {
    std::lock_guard<std::mutex> lock(mutex_);
    executor_.swap(executor);
  }
  std::any executor() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return executor_;
  }

  // The pool's name in limit_exceeded messages (a connection pool: its URL, password masked).
  void set_name(std::string name) {
    std::lock_guard<std::mutex> lock(mutex_);
    name_.swap(name);
  }

  // One maintenance pass (the reaper runs it; anyone may): close expired idle
  // resources, report leases held longer than leak_threshold, and create
  // resources until min_idle are idle (within the limit). Factories and
  // close hooks run on the calling thread, outside the lock; a factory
  // failure ends the pass quietly (it is retried at the next one).
  MaintainResult maintain() {
    check_fork();
    MaintainResult result;
    std::vector<slot<T>*> doomed;
    std::vector<LeakInfo> leaks;
    std::function<void(const LeakInfo&)> on_leak;
    std::size_t to_create = 0;
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (shut_) return result;
      close_spare_locked();  // min_idle counts a parked resource as idle (the next release reopens it)
      const bool timed = timed_.load(std::memory_order_relaxed);
      const clock::time_point t = timed ? now() : clock::time_point{};
      if (timed) {
        auto keep = std::stable_partition(idle_.begin(), idle_.end(),
                                          [&](slot<T>* s) { return !expired_locked(s, t); });
        doomed.assign(keep, idle_.end());
        idle_.erase(keep, idle_.end());
        for (slot<T>* d : doomed) unlink_slot(d);
        closed_ += doomed.size();
        expired_ += doomed.size();
        if (policy_.leak_threshold.count() > 0) {
          for (slot<T>* s = slots_head_; s != nullptr; s = s->next) {
            if (s->dead || s->leak_reported || s->acquired_at == clock::time_point{}) continue;
            const auto held = t - s->acquired_at;
            if (held <= policy_.leak_threshold) continue;
            s->leak_reported = true;
            ++leaks_;
            LeakInfo info;
            info.held = held;
#if RESPOOL_HAS_SOURCE_LOCATION
            info.where = s->where;
#endif
            leaks.push_back(info);
          }
          if (!leaks.empty()) on_leak = policy_.on_leak;
        }
      }
      while (idle_.size() + to_create < policy_.min_idle && waiters_head_ == nullptr &&
             (limit_ == 0 || total_locked() < limit_) && (!cap_ || take_unit_locked(true))) {
        ++in_use_;  // reserved: created below
        ++to_create;
      }
      grant_capacity_locked();
      wake = cap_wake_locked();
    }
    if (wake) wake->dispatch();
    result.expired = doomed.size();
    result.leaks = leaks.size();
    close_and_delete(doomed);
    if (on_leak) {
      for (const LeakInfo& info : leaks) {
        try {
          on_leak(info);
        } catch (...) {
          // must not throw; nothing to report it to
        }
      }
    }
    for (; to_create > 0; --to_create) {
      slot<T>* s;
      try {
        s = create_slot(nullptr);  // gives its reservation back if the factory throws
      } catch (...) {
        while (--to_create > 0) cancel_reservation();
        break;
      }
      release(s);
      ++result.created;
    }
    return result;
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
    std::shared_ptr<group_cap<T>> wake;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      close_spare_locked();  // (a parked resource is idle, not in use; the next release reopens it)
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
      wake = cap_wake_locked();
    }
    close_and_delete(doomed);
    if (wake) wake->dispatch();  // a grown pool may serve the group's waiters
  }

  // Close idle and leased resources; leases still held then release a dead slot.
  void force_close_all() {
    check_fork();
    std::vector<slot<T>*> idle;
    std::vector<slot<T>*> leased;
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      close_spare_locked();  // stays closed until every dead slot's lease is back (dead_leased_)
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
      dead_leased_ += leased.size();
      closed_ += leased.size();
      grant_capacity_locked();
      wake = cap_wake_locked();
    }
    if (wake) wake->dispatch();
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
    std::shared_ptr<group_cap<T>> cap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_flag_locked(idle);
      cap = cap_;
    }
    if (cap) cap->leave(this);  // serves the group's waiters with the units given back
    close_and_delete(idle);
  }

  // The owning Resource is going away: close, then delete now or when the
  // last lease / async operation is done.
  void shutdown() noexcept {
    if (generation_.load(std::memory_order_relaxed) != fork_generation()) return;  // inherited: leak it
    std::vector<slot<T>*> idle;
    std::shared_ptr<group_cap<T>> cap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_flag_locked(idle);
      cap = cap_;
    }
    // Out of the group before owner_gone_ is set (the group's dispatch never
    // reaches a core that may be deleted); the units of leases still out
    // are given back as they come home.
    if (cap) cap->leave(this);
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
    if (slot<T>* parked = spare_.load(std::memory_order_acquire);
        parked != nullptr && parked != spare_closed()) {
      --st.in_use;  // counted in in_use_ while parked, but idle
      ++st.idle;
    }
    st.waiting = waiting_;
    st.created = created_;
    st.closed = closed_;
    st.timeouts = timeouts_;
    st.peak_in_use = peak_in_use_;
    st.waits = waits_;
    st.wait_time = std::chrono::duration_cast<std::chrono::nanoseconds>(wait_time_);
    st.expired = expired_;
    st.leaks = leaks_;
    return st;
  }

  bool is_closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return shut_;
  }

  [[noreturn]] static void throw_limit_exceeded(bool connection_errors, std::size_t limit,
                                                std::chrono::nanoseconds waited, bool timed,
                                                const limit_details& details = {}) {
    if (connection_errors) {
      if (timed) throw connection_acquire_timeout(limit, waited, details);
      throw connection_limit_exceeded(limit, waited, details);
    }
    if (timed) throw acquire_timeout(limit, waited, details);
    throw limit_exceeded(limit, waited, details);
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
    dead_leased_ = 0;
    spare_.store(spare_closed(),
                 std::memory_order_relaxed);  // a parked parent resource leaks; the next release reopens it
    woken_ = 0;  // the parent's woken waiters are not here: a stale count would stop every wake-up
    starving_ = false;
    async_refs_ = sync_refs_ = 0;  // the parent's async operations never touch a child's core (async.hpp)
    // The parent's group cap is abandoned (its mutex may be held): leak our
    // reference; the child's group gives its new pools a new cap.
    ::new (static_cast<void*>(&cap_)) std::shared_ptr<group_cap<T>>;
    units_ = 0;
    in_cap_list_ = false;
    in_wait_list_ = false;
    capped_.store(false, std::memory_order_relaxed);
    slow_release_.store(timed_.load(std::memory_order_relaxed), std::memory_order_relaxed);
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
    // (A release that read these flags just before the pool joined a
    // group's cap takes the uncapped path: it serves this pool's waiters,
    // but may leave its resource idle without a dispatch for another key's
    // waiter until the group's next release, discard or close. Only the
    // first set_max_total() of a group with leases out can cause it; the
    // hot path stays what it was.)
    if (slow_release_.load(std::memory_order_relaxed))
      return capped_.load(std::memory_order_relaxed) ? release_slow<true>(s) : release_slow<false>(s);
    // Park it in the open spare, without the lock: done if the spare was
    // empty; else the resource parked there before goes to the idle stack
    // (under the lock, below), so that idle resources stay LIFO. (Touch
    // nothing parked after that: the next acquirer, or a close, owns it.)
    for (slot<T>* parked = spare_.load(std::memory_order_relaxed); parked != spare_closed();) {
      if (spare_.compare_exchange_weak(parked, s, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        if (parked == nullptr) return;
        s = parked;
        break;
      }
    }
    bool close_it = false;
    bool delete_it = false;
    bool delete_self = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      if (s->dead) {
        --dead_leased_;
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
      } else if (waiters_head_ != nullptr && !(waiters_head_->sync && may_barge_locked())) {
        // Strict hand-off to the longest waiter (see release_slow()).
        waiter<T>* w = waiters_head_;
        unlink_waiter(w);
        if (starving_ && (waiters_head_ == nullptr || !w->sync ||
                          clock::now() - w->parked_at < hooks_.starvation_threshold))
          starving_ = false;
        ++in_use_;
        w->granted = s;
        w->state = wait_state::granted_slot;
        w->notify();
        serve_idle_locked();  // `w` may have been woken for an idle resource: pass it on
      } else if (waiters_head_ != nullptr) {
        // Barging mode (see release_slow()).
        idle_.push_back(s);
        serve_idle_locked();
      } else {
        idle_.push_back(s);
      }
      open_spare_locked();
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

  // release() with policies on or in a capped group (kept out of line: with
  // neither, release() is what it was). Policies: one clock read before the
  // lock; the resource itself may be retired (max_lifetime), the coldest
  // idle one closed if expired, a leak and the use time reported (outside
  // the lock). Cap: while anyone in the group waits, the resource goes to
  // the idle stack and the group's dispatch (after the lock) serves the
  // longest waiter across keys (of this key, or of another after closing
  // the oldest idle resource to make room).
  //
  // Capped false: policies on, no cap (timed is a constant: the path of the
  // policies is what it was); true: in a group's cap, policies on or off.
  template <bool Capped>
  [[gnu::noinline]] void release_slow(slot<T>* s) noexcept {
    bool close_it = false;
    bool delete_it = false;
    bool delete_self = false;
    // (set_policy() may switch them off meanwhile: the zero policy does nothing)
    const bool timed = Capped ? timed_.load(std::memory_order_relaxed) : true;
    const clock::time_point t = timed ? now() : clock::time_point{};
    return_note note;
    slot<T>* cold = nullptr;
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      if (timed) note_return_locked(s, t, note);
      if (s->dead) {
        --dead_leased_;
        if (s->closing) {
          s->released = true;  // force_close_all() deletes it when done closing
        } else {
          unlink_slot(s);
          delete_it = true;
        }
        grant_capacity_locked();
      } else if (shut_ || (limit_ != 0 && total_locked() >= limit_) ||  // this slot is no longer in in_use_
                 (timed && lifetime_over_locked(s, t))) {
        ++closed_;
        if (!shut_ && !(limit_ != 0 && total_locked() >= limit_)) ++expired_;
        unlink_slot(s);
        close_it = true;
        grant_capacity_locked();
      } else if (Capped && cap_ && cap_->waiting() > 0) {
        // Someone in the group waits: the group's dispatch decides (below).
        if (timed) s->last_used = t;
        s->idle_seq = cap_->next_idle_seq();
        idle_.push_back(s);
      } else if (waiters_head_ != nullptr && !(waiters_head_->sync && may_barge_locked())) {
        // Strict hand-off to the longest waiter: an async one (its handler
        // is posted: no thread to wake), a starving one, or threshold zero.
        waiter<T>* w = waiters_head_;
        unlink_waiter(w);
        // Starvation mode lasts while the waiters served have waited long.
        if (starving_ && (waiters_head_ == nullptr || !w->sync ||
                          clock::now() - w->parked_at < hooks_.starvation_threshold))
          starving_ = false;
        ++in_use_;
        if (timed) {
          s->last_used = t;
          handout_locked(s, t, w->where);
        }
        w->granted = s;
        w->state = wait_state::granted_slot;
        w->notify();
        serve_idle_locked();  // `w` may have been woken for an idle resource: pass it on
      } else if (waiters_head_ != nullptr) {
        // Barging mode (Go's sync.Mutex): back to the idle stack, and wake
        // the longest waiter to come and take it. A running acquirer (this
        // thread, looping) may take it first: no context switch per
        // hand-off. The woken waiter that finds nothing sleeps again at the
        // head of the queue and, once it has waited past the threshold,
        // turns on strict hand-off (starvation mode).
        if (timed) s->last_used = t;
        idle_.push_back(s);
        serve_idle_locked();
      } else {
        if (timed) s->last_used = t;
        if (Capped && cap_) s->idle_seq = cap_->next_idle_seq();
        idle_.push_back(s);
      }
      if (timed && !shut_) cold = take_cold_locked(t);
      if (Capped) wake = cap_wake_locked();
      if (close_it) ++sync_refs_;  // the close hook is a member: keep the core until it returns
      if (cold) ++sync_refs_;
      delete_self = should_delete_locked();
    }
    if (timed) deliver(note);
    if (close_it) {
      close_quietly(s->value);
      delete_self = drop_ref_after_close();
    }
    if (cold) {
      close_quietly(cold->value);
      delete cold;
      delete_self = drop_ref_after_close();
    }
    if (close_it || delete_it) delete s;
    if (delete_self) delete this;
    if (wake) wake->dispatch();  // (a deleted core had left its group: the cap never reaches it)
  }

  // ----- policies ------------------------------------------------------------

  // Outside the lock, by the acquirer that owns `s`: true if it must be
  // closed instead of handed out — expired (`retire` set), or failing
  // validate. The flags handout_locked() set (policies on) are cleared for
  // the next hand-out.
  bool must_replace(slot<T>* s, bool& retire) noexcept {
    if (!s->retire && !s->skip_validate) return hooks_.validate && !validate(s);
    retire = std::exchange(s->retire, false);
    const bool skip = std::exchange(s->skip_validate, false);
    return retire || (!skip && hooks_.validate && !validate(s));
  }

  // What a lease's return found (reported outside the lock by deliver()).
  struct return_note {
    PoolObserver* observer = nullptr;
    std::chrono::nanoseconds held{0};
    bool leak = false;
    LeakInfo info;
    std::function<void(const LeakInfo&)> on_leak;  // copied only when a leak is reported
  };

  // Under the lock, policies on: `s` comes back at `t`.
  void note_return_locked(slot<T>* s, clock::time_point t, return_note& note) {
    if (s->acquired_at == clock::time_point{}) return;  // handed out while the policies were off
    const auto held = t - s->acquired_at;
    note.observer = observer_.load(std::memory_order_relaxed);
    note.held = held;
    if (policy_.leak_threshold.count() > 0 && !s->leak_reported && held > policy_.leak_threshold) {
      ++leaks_;
      note.leak = true;
      note.info.held = held;
      note.info.released = true;
#if RESPOOL_HAS_SOURCE_LOCATION
      note.info.where = s->where;
#endif
      note.on_leak = policy_.on_leak;
    }
    s->acquired_at = clock::time_point{};
    s->leak_reported = false;
  }

  static void deliver(return_note& note) noexcept {
    if (note.observer) note.observer->on_use(note.held);
    if (note.leak && note.on_leak) {
      try {
        note.on_leak(note.info);
      } catch (...) {
        // A leak callback must not throw; a release cannot report it.
      }
    }
  }

  // Under the lock, policies on: `s` is handed out at `t` to `where`.
  [[gnu::noinline]] void handout_locked(slot<T>* s, clock::time_point t, const acquire_site& where) noexcept {
    s->retire = expired_locked(s, t);
    s->skip_validate = policy_.validation_bypass.count() > 0 && t - s->last_used < policy_.validation_bypass;
    s->acquired_at = t;
    s->leak_reported = false;
    s->where = where;
  }

  bool expired_locked(const slot<T>* s, clock::time_point t) const noexcept {
    if (policy_.idle_timeout.count() > 0 && t - s->last_used > policy_.idle_timeout) return true;
    return lifetime_over_locked(s, t);
  }

  // Older than its max_lifetime (shortened by its share of the jitter).
  bool lifetime_over_locked(const slot<T>* s, clock::time_point t) const noexcept {
    if (policy_.max_lifetime.count() <= 0) return false;
    const double jitter = std::min(std::max(policy_.lifetime_jitter, 0.0), 1.0) * (s->jitter / 4294967296.0);
    const auto cut = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double, clock::period>(
        static_cast<double>(policy_.max_lifetime.count()) * jitter));
    return t - s->created_at >= policy_.max_lifetime - cut;
  }

  // The coldest idle resource (the bottom of the LIFO stack), taken out if expired.
  slot<T>* take_cold_locked(clock::time_point t) {
    if (idle_.empty() || !expired_locked(idle_.front(), t)) return nullptr;
    return take_coldest_locked();
  }
  [[gnu::noinline]] slot<T>* take_coldest_locked() {
    slot<T>* c = idle_.front();
    idle_.erase(idle_.begin());
    unlink_slot(c);
    ++closed_;
    ++expired_;
    grant_capacity_locked();
    return c;
  }

  static std::uint32_t jitter_for(const void* p, clock::time_point t) noexcept {
    std::uint64_t x = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p)) ^
                      static_cast<std::uint64_t>(t.time_since_epoch().count());
    x += 0x9E3779B97F4A7C15ull;  // splitmix64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<std::uint32_t>((x ^ (x >> 31)) >> 32);
  }

  // Out of line: only the policies' paths (and the slow ones) read the clock.
  [[gnu::noinline]] clock::time_point now() const { return hooks_.clock ? hooks_.clock() : clock::now(); }

  void note_peak_locked() noexcept {
    if (in_use_ > peak_in_use_) peak_in_use_ = in_use_;
  }

  limit_details details_locked() const {
    limit_details d;
    d.pool = name_;
    d.in_use = in_use_;
    d.waiting = waiting_;
    d.known = true;
    return d;
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
    std::shared_ptr<group_cap<T>> wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_use_;
      grant_capacity_locked();
      wake = cap_wake_locked();
      delete_self = should_delete_locked();
    }
    if (delete_self) delete this;
    if (wake) wake->dispatch();
  }

  // Barging is allowed: a threshold is set and no waiter is starving. (The
  // longest waiter past the threshold counts as starving already, so that a
  // stream of newcomers cannot keep it asleep until it wakes to notice.)
  bool may_barge_locked() noexcept {
    if (hooks_.starvation_threshold.count() <= 0 || starving_ || cap_) return false;
    const waiter<T>* head = waiters_head_;
    if (head == nullptr || !head->sync) return true;
    if (clock::now() - head->parked_at < hooks_.starvation_threshold) return true;
    starving_ = true;
    return false;
  }

  // Barging mode: make sure every idle resource has a waiter coming for it
  // (woken, oldest first), so that none sits idle while waiters sleep.
  // Async waiters are handed one directly (no thread to wake).
  void wake_for_idle_locked() {
    waiter<T>* w = waiters_head_;
    while (w != nullptr && woken_ < idle_.size()) {
      waiter<T>* next = w->next;
      if (!w->sync) {
        grant_slot_locked(w);
      } else if (!w->woken) {
        w->woken = true;
        ++woken_;
        w->notify();
      }
      w = next;
    }
  }

  // A woken sync waiter is back (under the lock): take an idle resource if
  // one is left (true: `w` is served and unlinked); else sleep again at its
  // place, turning on starvation mode if it has waited past the threshold.
  bool take_woken_locked(waiter<T>* w) {
    w->woken = false;
    --woken_;
    if (idle_.empty()) {
      if (clock::now() - w->parked_at >= hooks_.starvation_threshold) starving_ = true;
      return false;
    }
    slot<T>* s = idle_.back();
    idle_.pop_back();
    unlink_waiter(w);
    ++in_use_;
    note_peak_locked();
    if (timed_.load(std::memory_order_relaxed)) handout_locked(s, now(), w->where);
    w->granted = s;
    w->state = wait_state::granted_slot;
    if (waiters_head_ == nullptr) starving_ = false;
    serve_idle_locked();  // more idle ones than woken waiters? (a release raced)
    return true;
  }

  // Idle resources while waiters are queued (barging mode, or left over by
  // a path that freed capacity): wake waiters to come for them while
  // barging is allowed; otherwise hand them straight to the longest waiters.
  void serve_idle_locked() {
    if (cap_) return;  // a capped pool's waiters are served by the group's dispatch, in the group's order
    while (!idle_.empty() && waiters_head_ != nullptr && !shut_) {
      waiter<T>* w = waiters_head_;
      if (w->sync && may_barge_locked()) {
        wake_for_idle_locked();
        return;
      }
      grant_slot_locked(w);
    }
  }

  // Serve the waiter `w` (unlinked and notified here) with the warmest idle
  // resource / the right to create one: serve_idle_locked, the async branch
  // of wake_for_idle_locked, the group's dispatch. The caller checked there
  // is one / took the unit.
  void grant_slot_locked(waiter<T>* w) {
    slot<T>* s = idle_.back();
    idle_.pop_back();
    unlink_waiter(w);
    ++in_use_;
    note_peak_locked();
    if (timed_.load(std::memory_order_relaxed)) handout_locked(s, now(), w->where);
    w->granted = s;
    w->state = wait_state::granted_slot;
    w->notify();
  }
  void grant_create_locked(waiter<T>* w) {
    unlink_waiter(w);
    ++in_use_;
    note_peak_locked();
    w->state = wait_state::granted_create;
    w->notify();
  }

  // Hand free capacity (room under the limit) to queued waiters, oldest
  // first: idle resources first, then the right to create one.
  void grant_capacity_locked() {
    if (cap_) {  // the group's dispatch (after the lock) serves the waiters, oldest first across keys
      return_units_locked();
      return;
    }
    serve_idle_locked();
    grant_creates_locked();
    serve_idle_locked();  // a woken waiter granted a create leaves its idle resource to another
  }
  void grant_creates_locked() {
    if (cap_) return;
    while (waiters_head_ != nullptr && !shut_ && (limit_ == 0 || total_locked() < limit_)) {
      waiter<T>* w = waiters_head_;
      unlink_waiter(w);
      ++in_use_;
      note_peak_locked();
      w->state = wait_state::granted_create;
      w->notify();
    }
  }

  void closed_flag_locked(std::vector<slot<T>*>& idle) {
    shut_ = true;
    close_spare_locked();  // for good: open_spare_locked() never reopens a shut pool
    while (waiters_head_ != nullptr) {
      waiter<T>* w = waiters_head_;
      unlink_waiter(w);
      w->state = wait_state::closed;
      w->notify();
    }
    idle.swap(idle_);
    for (slot<T>* d : idle) unlink_slot(d);
    closed_ += idle.size();
    if (cap_) return_units_locked();
  }

  // ----- the spare ---------------------------------------------------------

  static slot<T>* spare_closed() noexcept { return reinterpret_cast<slot<T>*>(std::uintptr_t{1}); }

  // Without the lock: the parked resource, if any (now leased: in_use_
  // already counts it), or nullptr.
  slot<T>* take_spare() noexcept {
    slot<T>* s = spare_.load(std::memory_order_relaxed);
    if (s == nullptr || s == spare_closed()) return nullptr;
    if (!spare_.compare_exchange_strong(s, nullptr, std::memory_order_acq_rel, std::memory_order_relaxed))
      return nullptr;
    return s;
  }

  // Under the lock: close the spare. A resource parked there goes to the
  // idle stack (returned; nullptr if there was none). Every release from
  // here on takes the lock, until open_spare_locked().
  slot<T>* close_spare_locked() noexcept {
    if (spare_.load(std::memory_order_relaxed) == spare_closed()) return nullptr;
    slot<T>* s = spare_.exchange(spare_closed(), std::memory_order_acq_rel);
    if (s == nullptr) return nullptr;
    --in_use_;
    idle_.push_back(s);
    return s;
  }

  // Under the lock, at the end of a release: reopen a closed spare if
  // nothing needs every release under the lock any more.
  void open_spare_locked() noexcept {
    if (spare_.load(std::memory_order_relaxed) != spare_closed()) return;
    if (shut_ || cap_ || waiters_head_ != nullptr || woken_ != 0 || dead_leased_ != 0 ||
        timed_.load(std::memory_order_relaxed) || (limit_ != 0 && total_locked() > limit_))
      return;
    spare_.store(nullptr, std::memory_order_release);
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
    if (cap_) cap_->waiters_.fetch_add(1);
    w->queued_at = now();  // the slow path only: stats().wait_time
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
    if (w->woken) {
      w->woken = false;
      --woken_;
    }
    if (waiters_head_ == nullptr) starving_ = false;
    --waiting_;
    if (cap_) cap_->waiters_.fetch_sub(1);
    ++waits_;
    wait_time_ += now() - w->queued_at;
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
  std::size_t peak_in_use_ = 0;
  std::size_t waits_ = 0;
  clock::duration wait_time_{0};
  std::size_t expired_ = 0;
  std::size_t leaks_ = 0;
  PoolPolicy policy_;                      // under mutex_
  std::string name_;                       // under mutex_
  std::any executor_;                      // under mutex_
  std::atomic<bool> timed_{false};         // a policy needs the clock (written under mutex_)
  std::atomic<bool> slow_release_{false};  // timed_ or capped_: release() takes release_slow() (mutex_)
  std::atomic<bool> capped_{false};        // cap_ is set (written with it)
  // The group's cap (PoolGroup::set_max_total), or none; written under
  // mutex_ with the cap's mutex held too (group_cap::join / lift).
  std::shared_ptr<group_cap<T>> cap_;
  std::size_t units_ = 0;      // the group's units this pool holds (== total_locked() after each change)
  bool in_cap_list_ = false;   // in cap_->pools_ (the cap's mutex)
  bool in_wait_list_ = false;  // in cap_->waiting_ (the cap's mutex)
  std::atomic<PoolObserver*> observer_{nullptr};
  std::size_t async_refs_ = 0;
  std::size_t woken_ = 0;        // sync waiters woken to take an idle resource, not yet back (barging)
  bool starving_ = false;        // strict hand-off until the waiters served stop starving
  std::size_t sync_refs_ = 0;    // threads asleep in wait_locked() or running a close hook after a release
  std::size_t dead_leased_ = 0;  // force-closed slots whose leases are still out (the spare stays closed)
  // The spare (see the top of this file): nullptr (open, empty), a released
  // slot (still counted in in_use_), or spare_closed(). Only the lock's
  // holder closes or reopens it; without the lock, a release may only swap
  // its resource into an open spare (taking out what was parked) and an
  // acquire only empty a full one.
  std::atomic<slot<T>*> spare_{nullptr};
  bool shut_ = false;  // close() was called
  bool owner_gone_ = false;
  std::atomic<std::uint32_t> generation_;
};

// The cap of a PoolGroup across its keys (PoolGroup::set_max_total,
// commons-pool2's maxTotal): at most max_total resources in all the pools
// of the group (in use, idle or being created).
//
// * Units. total_ counts the group's resources; a pool holds units_ of
//   them (its total_locked()). A pool takes a unit (an atomic
//   compare-and-swap, under its own mutex only) before it reserves a
//   create, and gives units back as its resources go (return_units_locked).
// * Waiting. A capped pool's acquirer that finds nothing at hand queues
//   with this cap's mutex held, with a ticket from one sequence for the
//   whole group, and its pool is put on waiting_. dispatch() serves the
//   waiters oldest ticket first across keys: with an idle resource of their
//   own key, or with a unit (a free one, or one made by closing the oldest
//   idle resource of another key). It runs after every change that may let
//   a waiter in (a release, discard or close while anyone in the group
//   waits, a new waiter, a grown limit or max_total), on the thread that
//   made the change.
// * Lock order: this mutex, then one pool's mutex at a time. No thread
//   holding a pool's mutex takes this one. Resources are closed with no
//   lock held (the victim's core is kept alive by a sync_refs_ reference).
// * Lifetime: owned by the group and by every pool that joined it
//   (shared_ptr), so a pool's last lease may give back its unit after the
//   group is gone. A pool leaves (pools_, waiting_) when closed or
//   destroyed, before its core may be deleted.
template <class T>
class group_cap : public std::enable_shared_from_this<group_cap<T>> {
 public:
  explicit group_cap(std::size_t max_total) : max_total_(max_total) {}
  group_cap(const group_cap&) = delete;
  group_cap& operator=(const group_cap&) = delete;

  std::size_t max_total() const noexcept { return max_total_.load(); }
  std::size_t total() const noexcept { return total_.load(); }
  std::size_t waiting() const noexcept { return waiters_.load(); }

  // Room for one more resource in the group? A newcomer gets none while
  // anyone in the group waits (those are served first, by dispatch()).
  // (Sequentially consistent, with waiters_: a unit given back while a
  // waiter queues is seen by one of them.)
  bool try_take(bool newcomer) noexcept {
    if (newcomer && waiters_.load() > 0) return false;
    std::size_t t = total_.load();
    do {
      if (t >= max_total_.load()) return false;
    } while (!total_.compare_exchange_weak(t, t + 1));
    return true;
  }
  void force_take() noexcept { total_.fetch_add(1); }
  void give_back(std::size_t n) noexcept { total_.fetch_sub(n); }
  std::uint64_t next_idle_seq() noexcept { return idle_seq_.fetch_add(1, std::memory_order_relaxed) + 1; }

  // `p` joins the group: its resources count from now on (its waiters
  // queued before come first). No-op for a closed pool or one in a group.
  void join(pool_core<T>* p) {
    std::lock_guard<std::mutex> cap_lock(mutex_);
    pools_.reserve(pools_.size() + 1);
    waiting_.reserve(pools_.size() + 1);  // waiting_ is a subset of pools_: push_back never allocates
    std::lock_guard<std::mutex> lock(p->mutex_);
    if (p->shut_ || p->cap_) return;
    if (slot<T>* parked = p->close_spare_locked()) parked->idle_seq = next_idle_seq();
    p->cap_ = this->shared_from_this();
    p->units_ = p->total_locked();
    total_.fetch_add(p->units_);
    waiters_.fetch_add(p->waiting_);
    pools_.push_back(p);
    p->in_cap_list_ = true;
    if (p->waiters_head_ != nullptr) {
      waiting_.push_back(p);
      p->in_wait_list_ = true;
    }
    p->capped_.store(true, std::memory_order_relaxed);
    p->slow_release_.store(true, std::memory_order_relaxed);
  }

  // A closed pool leaves (dispatch never reaches it again); what it gave
  // back serves the waiters. Its units of leases still out are given back
  // as they come home.
  void leave(pool_core<T>* p) noexcept {
    std::unique_lock<std::mutex> cap_lock(mutex_);
    {
      std::lock_guard<std::mutex> lock(p->mutex_);
      if (p->in_cap_list_) pools_.erase(std::find(pools_.begin(), pools_.end(), p));
      if (p->in_wait_list_) waiting_.erase(std::find(waiting_.begin(), waiting_.end(), p));
      p->in_cap_list_ = p->in_wait_list_ = false;
    }
    dispatch_locked(cap_lock);
  }

  // set_max_total(0): every pool leaves and is uncapped; its waiters are
  // served by the pool alone again.
  void lift() noexcept {
    std::lock_guard<std::mutex> cap_lock(mutex_);
    for (pool_core<T>* p : pools_) {
      std::lock_guard<std::mutex> lock(p->mutex_);
      total_.fetch_sub(p->units_);
      waiters_.fetch_sub(p->waiting_);
      p->units_ = 0;
      p->in_cap_list_ = p->in_wait_list_ = false;
      p->cap_.reset();  // (the group still holds this cap)
      p->capped_.store(false, std::memory_order_relaxed);
      p->slow_release_.store(p->timed_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      p->grant_capacity_locked();  // uncapped now: room under its own limit goes to its waiters
    }
    pools_.clear();
    waiting_.clear();
  }

  // A new max_total: shrinking closes idle resources, oldest first, until
  // the group is within it (resources in use are not touched: creates wait
  // until enough are given back); growing serves waiters.
  void set_max_total(std::size_t max_total) noexcept {
    std::unique_lock<std::mutex> cap_lock(mutex_);
    max_total_.store(max_total);
    while (total_.load() > max_total_.load() &&
           close_oldest_idle_locked(cap_lock, nullptr, std::numeric_limits<std::uint64_t>::max())) {
    }
    dispatch_locked(cap_lock);
  }

  // Queue `w` on `p` (both mutexes held) behind every earlier waiter of the group.
  void enqueue_locked(pool_core<T>* p, waiter<T>* w) noexcept {
    w->ticket = next_ticket_++;
    p->link_waiter(w);
    if (!p->in_wait_list_) {
      waiting_.push_back(p);
      p->in_wait_list_ = true;
    }
  }

  void dispatch() noexcept {
    std::unique_lock<std::mutex> cap_lock(mutex_);
    dispatch_locked(cap_lock);
  }

  // Serve the group's waiters, oldest ticket first among those that can be
  // served: an idle resource of their own key, else (their pool under its
  // own limit) a unit — a free one, or one made by closing the oldest idle
  // resource of another key. Stops when the oldest such waiter cannot be
  // served (no free unit, nothing idle anywhere else). Releases the cap's
  // mutex while it closes a resource; holds it on return.
  void dispatch_locked(std::unique_lock<std::mutex>& cap_lock) noexcept {
    for (;;) {
      pool_core<T>* best = nullptr;
      std::uint64_t best_ticket = 0;
      for (std::size_t i = 0; i < waiting_.size();) {
        pool_core<T>* p = waiting_[i];
        std::lock_guard<std::mutex> lock(p->mutex_);
        const waiter<T>* head = p->waiters_head_;
        if (head == nullptr || p->shut_) {
          p->in_wait_list_ = false;
          waiting_[i] = waiting_.back();
          waiting_.pop_back();
          continue;
        }
        const bool servable = !p->idle_.empty() || p->limit_ == 0 || p->total_locked() < p->limit_;
        if (servable && (best == nullptr || head->ticket < best_ticket)) {
          best = p;
          best_ticket = head->ticket;
        }
        ++i;
      }
      if (best == nullptr) return;
      {
        std::lock_guard<std::mutex> lock(best->mutex_);
        waiter<T>* head = best->waiters_head_;
        if (head == nullptr || best->shut_) continue;  // changed meanwhile: look again
        if (!best->idle_.empty()) {
          best->grant_slot_locked(head);
          continue;
        }
        if (best->limit_ != 0 && best->total_locked() >= best->limit_) continue;
        if (best->take_unit_locked(false)) {
          best->grant_create_locked(head);
          continue;
        }
      }
      if (!close_oldest_idle_locked(cap_lock, best, best_ticket))
        return;  // nothing idle elsewhere: they wait
    }
  }

  // The group's counts for a refusal that the cap caused (limit_details:
  // in_use / waiting become the group's, this pool's move to pool_*).
  // Returns max_total.
  std::size_t describe(limit_details& d) {
    std::lock_guard<std::mutex> cap_lock(mutex_);
    d.group = true;
    d.pool_in_use = d.in_use;
    d.pool_waiting = d.waiting;
    d.in_use = d.waiting = 0;
    for (pool_core<T>* p : pools_) {
      std::lock_guard<std::mutex> lock(p->mutex_);
      d.in_use += p->in_use_;
      d.waiting += p->waiting_;
    }
    return max_total_.load();
  }

 private:
  // Close the oldest idle resource of a pool other than `except`, with the
  // cap's mutex released during the close. False if there was none. A pool
  // whose longest waiter came before `ticket` (the waiter the room is made
  // for) keeps its idle resources: they are that waiter's (given back
  // after the dispatch looked at that pool, its own dispatch serves it).
  bool close_oldest_idle_locked(std::unique_lock<std::mutex>& cap_lock, pool_core<T>* except,
                                std::uint64_t ticket) noexcept {
    pool_core<T>* victim = nullptr;
    std::uint64_t oldest = 0;
    for (pool_core<T>* p : pools_) {
      if (p == except) continue;
      std::lock_guard<std::mutex> lock(p->mutex_);
      if (p->shut_ || p->idle_.empty()) continue;
      if (p->waiters_head_ != nullptr && p->waiters_head_->ticket < ticket) continue;
      if (victim == nullptr || p->idle_.front()->idle_seq < oldest) {
        victim = p;
        oldest = p->idle_.front()->idle_seq;
      }
    }
    if (victim == nullptr) return false;
    slot<T>* s;
    {
      std::lock_guard<std::mutex> lock(victim->mutex_);
      if (victim->shut_ || victim->idle_.empty() ||
          (victim->waiters_head_ != nullptr && victim->waiters_head_->ticket < ticket))
        return true;              // changed meanwhile: the caller looks again
      s = victim->idle_.front();  // the bottom of its LIFO stack: its coldest
      victim->idle_.erase(victim->idle_.begin());
      victim->unlink_slot(s);
      ++victim->closed_;
      victim->return_units_locked();
      ++victim->sync_refs_;  // the close hook is a member: keep the core until it returns
    }
    cap_lock.unlock();
    victim->close_quietly(s->value);
    delete s;
    if (victim->drop_ref_after_close()) delete victim;  // (it left the group before it could be deleted)
    cap_lock.lock();
    return true;
  }

  std::mutex mutex_;
  std::atomic<std::size_t> max_total_;
  std::atomic<std::size_t> total_{0};    // the group's resources (the sum of the pools' units_)
  std::atomic<std::size_t> waiters_{0};  // acquirers queued in the group's pools
  std::atomic<std::uint64_t> idle_seq_{0};
  std::uint64_t next_ticket_ = 1;     // mutex_
  std::vector<pool_core<T>*> pools_;  // the pools in the group, open (mutex_)
  std::vector<pool_core<T>*>
      waiting_;  // pools that queued a waiter since dispatch last found them empty (mutex_)

  friend class pool_core<T>;
};

}  // namespace detail
}  // namespace respool
