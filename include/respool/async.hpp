// respool/async.hpp — asynchronous acquire on Boost.Asio.
//
//   pool.async_acquire(token)            waits as long as it takes
//   pool.async_acquire(timeout, token)   waits at most `timeout` (zero: don't wait)
//
// Completion signature: void(boost::system::error_code, Lease<T>). Any Asio
// completion token works (callbacks, use_future, use_awaitable, deferred,
// as_tuple); with use_future / use_awaitable a failure is thrown as
// boost::system::system_error.
//
// Errors: respool::errc::acquire_timeout (timeout expired),
// respool::errc::limit_exceeded (zero timeout, pool full; a connection pool
// says respool::errc::connection_limit_exceeded, as its sync acquire does),
// respool::errc::pool_closed (pool closed or destroyed while waiting),
// boost::asio::error::operation_aborted (cancelled), or the code of the
// std::system_error a factory / prepare hook threw
// (respool::errc::resource_creation_failed for other exceptions); the slot is
// freed in every case.
//
// The operation waits in the same FIFO queue as synchronous acquirers. The
// handler always runs on its associated executor (system_executor if it has
// none), never inline in the initiating call nor inside Lease::release(). A
// factory needed to create a resource runs on that executor too. While
// queued, the operation counts as outstanding work on the executor.
//
// Cancellation: per-operation, via bind_cancellation_slot; any cancellation
// type removes a queued operation, which completes with operation_aborted.
// Cancelling after the operation was served has no effect.
//
// Thread safety: as Resource. Destroy the pool before the execution context
// its queued operations complete on.
//
// Fork: in a child that runs an io_context inherited from the parent (after
// notify_fork), an operation the parent started completes with
// respool::errc::pool_closed (one still queued at the fork: when its timer
// expires or it is cancelled; one queued without a timeout keeps the
// io_context's work until cancelled, as the child cannot tell whether the
// parent served it); nothing the parent was granted is handed out or closed
// in the child.
#pragma once

#include <any>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

#include "respool/detail/pool_core.hpp"
#include "respool/errors.hpp"
#include "respool/lease.hpp"
#include "respool/producer.hpp"
#include "respool/resource.hpp"

namespace respool {
namespace detail {

using async_clock = std::chrono::steady_clock;
inline constexpr async_clock::duration no_timeout = async_clock::duration::max();

template <class T, class Handler>
class async_acquire_op final : public waiter<T>,
                               public std::enable_shared_from_this<async_acquire_op<T, Handler>> {
 public:
  using executor_type = boost::asio::associated_executor_t<Handler, boost::asio::system_executor>;

  async_acquire_op(pool_core<T>* core, Handler handler, bool run_prepare = true)
      : run_prepare_(run_prepare),
        core_(core),
        handler_(std::move(handler)),
        work_(boost::asio::get_associated_executor(handler_, boost::asio::system_executor())),
        slot_(boost::asio::get_associated_cancellation_slot(handler_)) {}

  ~async_acquire_op() {
    if (slot_.is_connected()) slot_.clear();
    // Started in the parent of a forked child: the child's core knows nothing
    // of it (check_fork() started it afresh), so touch nothing.
    if (inherited()) return;
    // Never completed (its executor was destroyed): give back what it was granted.
    if (!done_) core_->abandon_grant(this->state, this->granted);
    // Dropped here, not in complete(): a timer handler that was already
    // queued when the operation completed still holds the op and calls into
    // the core, which must outlive it even if the pool is destroyed meanwhile.
    core_->drop_async_ref();
  }

  void start(async_clock::duration timeout) {
    core_->check_fork();
    generation_ = fork_generation();
    slot<T>* s = nullptr;
    {
      std::unique_lock<std::mutex> lock(core_->mutex());
      core_->add_async_ref_locked();
      const bool wait = timeout > async_clock::duration::zero();
      acquire_result r = core_->start_acquire_locked(wait ? this : nullptr, s, this->where, t0_);
      bool counted = false;
      if (r == acquire_result::capped) {
        // A pool of a group with max_total: queue through the group (its
        // waiters are served oldest first across keys); arm() runs under
        // the pool lock before anyone can serve us.
        lock.unlock();
        r = core_->start_async_capped(this, wait, s, this->where, t0_, [&] { arm(timeout); });
        if (r == acquire_result::queued) return;
        counted = true;  // a zero-wait refusal was counted by the pool
      }
      switch (r) {
        case acquire_result::slot:
          this->state = wait_state::granted_slot;
          this->granted = s;
          break;
        case acquire_result::create:
          this->state = wait_state::granted_create;
          break;
        case acquire_result::closed:
          this->state = wait_state::closed;
          break;
        case acquire_result::no_capacity:
          if (!counted) core_->count_timeout_locked();
          this->state = wait_state::timed_out;
          no_wait_ = true;
          break;
        case acquire_result::capped:
          break;  // not after start_async_capped()
        case acquire_result::queued:
          // Still under the pool lock: nobody can serve us before the timer
          // and the cancellation handler are in place.
          arm(timeout);
          return;
      }
    }
    post_completion(this->shared_from_this());
  }

  // Called by the pool, under its lock, once the state left `waiting`.
  void notify() override { post_completion(std::move(keep_alive_)); }

 private:
  // Queued: under the pool lock, set up what serves, expires or cancels us.
  void arm(async_clock::duration timeout) {
    keep_alive_ = this->shared_from_this();
    if (timeout != no_timeout) {
      timer_.emplace(work_.get_executor());
      timer_->expires_after(timeout);
      timer_->async_wait([self = this->shared_from_this()](const boost::system::error_code& ec) {
        if (ec) return;
        if (!self->inherited()) {
          self->core_->withdraw(self.get(), wait_state::timed_out);
        } else if (self->keep_alive_) {
          // Queued in the parent, expired in a forked child: nobody
          // here will serve it, so it completes (with pool_closed).
          post_completion(std::move(self->keep_alive_));
        }
      });
    }
    if (slot_.is_connected()) {
      slot_.assign([this](boost::asio::cancellation_type type) {
        if (type == boost::asio::cancellation_type::none) return;
        if (!inherited())
          core_->withdraw(this, wait_state::cancelled);
        else if (keep_alive_)
          post_completion(std::move(keep_alive_));  // as the timer above
      });
    }
  }

  static void post_completion(std::shared_ptr<async_acquire_op> self) {
    auto executor = self->work_.get_executor();
    boost::asio::post(executor, [self = std::move(self)]() mutable { self->complete(); });
  }

  // On the handler's executor.
  void complete() {
    if (slot_.is_connected()) slot_.clear();
    // The signal may die with the handler (Asio only asks it to live until
    // then): forget the slot, so that the destructor never touches it.
    slot_ = boost::asio::cancellation_slot();
    if (timer_) timer_->cancel();
    boost::system::error_code ec;
    Lease<T> lease;
    // In a forked child, an operation started by the parent completes with
    // pool_closed: what it was granted belongs to the parent (never handed
    // out, never closed here).
    switch (inherited() ? wait_state::closed : this->state) {
      case wait_state::granted_slot:
      case wait_state::granted_create:
        try {
          slot<T>* s = core_->finish_acquire(this->granted, this->state == wait_state::granted_create,
                                             acquire_deadline{}, run_prepare_, this->where, t0_);
          lease = Lease<T>(core_, s);
        } catch (const std::system_error& e) {
          ec = e.code();
        } catch (...) {
          ec = errc::resource_creation_failed;
        }
        break;
      case wait_state::closed:
        ec = errc::pool_closed;
        break;
      case wait_state::timed_out:
        if (PoolObserver* observer = core_->observer()) observer->on_timeout();
        // The codes of the exceptions the sync acquire throws.
        ec = !no_wait_                          ? errc::acquire_timeout
             : core_->hooks().connection_errors ? errc::connection_limit_exceeded
                                                : errc::limit_exceeded;
        break;
      case wait_state::cancelled:
        ec = boost::asio::error::operation_aborted;
        break;
      case wait_state::waiting:
        break;  // unreachable
    }
    done_ = true;
    auto handler = std::move(handler_);
    auto work = std::move(work_);
    work.reset();
    std::move(handler)(ec, std::move(lease));
  }

  bool inherited() const noexcept { return generation_ != fork_generation(); }

  bool run_prepare_;
  pool_core<T>* core_;
  std::uint32_t generation_ = fork_generation();  // the process (fork generation) it started in
  Handler handler_;
  boost::asio::executor_work_guard<executor_type> work_;
  boost::asio::cancellation_slot slot_;
  std::optional<boost::asio::steady_timer> timer_;
  std::shared_ptr<async_acquire_op> keep_alive_;  // set while queued
  bool no_wait_ = false;
  bool done_ = false;
  std::chrono::steady_clock::time_point t0_{};  // the policies' start of the acquire (observer)
};

// The operation's memory. A handler with no allocator of its own gets
// Asio's recycling allocator (stateless, per-thread cache: on an
// io_context's thread a warm acquire reuses the last operation's block, no
// heap allocation; any thread may free it). A handler's own allocator is not
// used: Asio lets such memory be freed only before the handler runs, and the
// operation (shared with its timer) may outlive that.
template <class Op, class Handler, class... Args>
std::shared_ptr<Op> make_op(const Handler&, Args&&... args) {
  if constexpr (std::is_same_v<boost::asio::associated_allocator_t<Handler>, std::allocator<void>>)
    return std::allocate_shared<Op>(boost::asio::recycling_allocator<void>(), std::forward<Args>(args)...);
  else
    return std::make_shared<Op>(std::forward<Args>(args)...);
}

// True for a handler with no associated executor of its own.
template <class Handler>
inline constexpr bool has_no_executor_v =
    std::is_same_v<boost::asio::associated_executor_t<Handler, boost::asio::system_executor>,
                   boost::asio::system_executor>;

// launch(handler), the handler bound to the pool's executor (`executor()`,
// read only for handlers without one) if it has none and the pool has one.
template <class Handler, class GetExecutor, class Launch>
void with_pool_executor(Handler&& handler, GetExecutor&& executor, Launch&& launch) {
  if constexpr (has_no_executor_v<std::decay_t<Handler>>) {
    const std::any ex = executor();
    if (ex.has_value()) {
      const auto* io = std::any_cast<boost::asio::any_io_executor>(&ex);
      if (io == nullptr)
        throw std::invalid_argument(
            "respool: a pool executor must be a boost::asio::any_io_executor (use respool::pool_executor)");
      launch(boost::asio::bind_executor(*io, std::forward<Handler>(handler)));
      return;
    }
  }
  launch(std::forward<Handler>(handler));
}

template <class T>
struct async_acquire_initiation {
  pool_core<T>* core;
  bool run_prepare = true;

  template <class Handler>
  void operator()(Handler&& handler, async_clock::duration timeout) const {
    with_pool_executor(
        std::forward<Handler>(handler), [this] { return core->executor(); },
        [&](auto&& h) {
          using op_type = async_acquire_op<T, std::decay_t<decltype(h)>>;
          auto op = make_op<op_type>(h, core, std::forward<decltype(h)>(h), run_prepare);
          op->start(timeout);
        });
  }
};

template <class Rep, class Period>
async_clock::duration to_async_timeout(std::chrono::duration<Rep, Period> timeout) {
  if (timeout <= timeout.zero()) return async_clock::duration::zero();
  if (std::chrono::duration<double>(timeout) > std::chrono::hours(24 * 365 * 100)) return no_timeout;
  return std::chrono::ceil<async_clock::duration>(timeout);
}

}  // namespace detail

template <class T>
template <class Token>
auto Resource<T>::async_acquire(Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, Lease<T>)>(
      detail::async_acquire_initiation<T>{core_}, token, detail::no_timeout);
}

template <class T>
template <class Rep, class Period, class Token>
auto Resource<T>::async_acquire(std::chrono::duration<Rep, Period> timeout, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, Lease<T>)>(
      detail::async_acquire_initiation<T>{core_}, token, detail::to_async_timeout(timeout));
}

template <class T>
template <class Token>
auto Resource<T>::async_acquire_unprepared(std::chrono::steady_clock::duration timeout, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, Lease<T>)>(
      detail::async_acquire_initiation<T>{core_, false}, token, timeout);
}

// ---------------------------------------------------------------------------
// ProducerPool: a producer slot, then (if it has none) a connection borrowed
// with the connection pool's own async acquire, both within one deadline and
// without blocking the executor.

namespace detail {

template <class Handler>
class producer_acquire_op final : public std::enable_shared_from_this<producer_acquire_op<Handler>> {
 public:
  using executor_type = boost::asio::associated_executor_t<Handler, boost::asio::system_executor>;

  producer_acquire_op(Handler handler, std::function<ConnectionPool&()> connections)
      : handler_(std::move(handler)),
        executor_(boost::asio::get_associated_executor(handler_, boost::asio::system_executor())),
        connections_(std::move(connections)) {}

  void start(ProducerPool& pool, async_clock::duration timeout) {
    start_ = async_clock::now();
    timeout_ = timeout;
    auto self = this->shared_from_this();
    pool.async_acquire_unprepared(
        timeout, bind(boost::asio::bind_executor(
                     executor_, [self](boost::system::error_code ec, Lease<Producer> producer) mutable {
                       self->on_producer(ec, std::move(producer));
                     })));
  }

 private:
  // Each stage's handler carries the user's cancellation slot (one stage is
  // in flight at a time; each clears the slot when it completes).
  template <class Inner>
  auto bind(Inner inner) {
    return boost::asio::bind_cancellation_slot(boost::asio::get_associated_cancellation_slot(handler_),
                                               std::move(inner));
  }

  void on_producer(boost::system::error_code ec, Lease<Producer> producer) {
    if (ec || producer->has_connection()) return finish(ec, std::move(producer));
    // What is left of the caller's timeout (zero stays zero: never wait).
    async_clock::duration left = timeout_;
    if (timeout_ != no_timeout && timeout_ > async_clock::duration::zero()) {
      left = timeout_ - (async_clock::now() - start_);
      if (left <= async_clock::duration::zero()) left = std::chrono::nanoseconds(1);  // expires at once
    }
    producer_ = std::move(producer);
    boost::system::error_code failed;
    try {
      ConnectionPool& connections = connections_();
      auto self = this->shared_from_this();
      connections.async_acquire(
          left, bind(boost::asio::bind_executor(
                    executor_, [self](boost::system::error_code ec2, Lease<Connection> connection) mutable {
                      self->on_connection(ec2, std::move(connection));
                    })));
      return;
    } catch (const std::system_error& e) {
      failed = e.code();
    } catch (...) {
      failed = errc::resource_creation_failed;
    }
    producer_.release();
    finish(failed, Lease<Producer>());
  }

  void on_connection(boost::system::error_code ec, Lease<Connection> connection) {
    if (ec) {
      producer_.release();  // the producer slot goes back; the caller gets the connection pool's error
      return finish(ec, Lease<Producer>());
    }
    producer_->attach(std::move(connection));
    finish(ec, std::move(producer_));
  }

  // Already on the handler's executor (every stage's completion is bound to it).
  void finish(boost::system::error_code ec, Lease<Producer> producer) {
    auto handler = std::move(handler_);
    std::move(handler)(ec, std::move(producer));
  }

  Handler handler_;
  executor_type executor_;
  std::function<ConnectionPool&()> connections_;
  Lease<Producer> producer_;
  async_clock::time_point start_{};
  async_clock::duration timeout_{};
};

struct producer_acquire_initiation {
  ProducerPool* pool;
  std::function<ConnectionPool&()> connections;
  pool_core<Producer>* core;

  template <class Handler>
  void operator()(Handler&& handler, async_clock::duration timeout) const {
    with_pool_executor(
        std::forward<Handler>(handler), [this] { return core->executor(); },
        [&](auto&& h) {
          using op_type = producer_acquire_op<std::decay_t<decltype(h)>>;
          auto op = make_op<op_type>(h, std::forward<decltype(h)>(h), connections);
          op->start(*pool, timeout);
        });
  }
};

}  // namespace detail

template <class Token>
auto ProducerPool::async_acquire(Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, Lease<Producer>)>(
      detail::producer_acquire_initiation{this, connections_, core()}, token, detail::no_timeout);
}

template <class Rep, class Period, class Token>
auto ProducerPool::async_acquire(std::chrono::duration<Rep, Period> timeout, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, Lease<Producer>)>(
      detail::producer_acquire_initiation{this, connections_, core()}, token,
      detail::to_async_timeout(timeout));
}

// ---------------------------------------------------------------------------
// The pool executor and the reaper.

// What Options::executor / Resource::set_executor take: `executor` as a
// boost::asio::any_io_executor. async_acquire handlers with no associated
// executor of their own then run on it, not on Asio's system executor (its
// hidden thread pool); a handler's own executor always wins.
template <class Executor>
std::any pool_executor(const Executor& executor) {
  return std::any(boost::asio::any_io_executor(executor));
}

// Runs pool.maintain() every `interval` on `executor` (idle/lifetime expiry
// in the background, leak reports for leases still out, min_idle), with no
// thread of its own: a steady_timer on the executor. Factories and close
// hooks of a pass run there too, so give it an executor that may block for
// a connect or a close. Stops when stopped or destroyed; after stop()
// returns no pass is running or will run. Destroy (or stop) it before the
// pool and before the execution context. Thread safety: stop() may be
// called from any thread, but not from a maintenance pass itself.
class Reaper {
 public:
  template <class Pool, class Executor>
  Reaper(Pool& pool, const Executor& executor, std::chrono::steady_clock::duration interval)
      : state_(std::make_shared<state>(boost::asio::any_io_executor(executor))) {
    if (interval <= std::chrono::steady_clock::duration::zero())
      throw std::invalid_argument("respool::Reaper needs a positive interval");
    state_->interval = interval;
    state_->pass = [&pool] { pool.maintain(); };
    std::lock_guard<std::mutex> lock(state_->mutex);
    arm(state_);
  }

  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  ~Reaper() { stop(); }

  void stop() noexcept {
    std::lock_guard<std::mutex> lock(state_->mutex);  // waits for a pass that is running
    state_->stopped = true;
    state_->timer.cancel();
  }

  // Completed passes (for tests and monitoring).
  std::size_t passes() const noexcept { return state_->passes.load(std::memory_order_relaxed); }

 private:
  struct state {
    explicit state(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
    std::mutex mutex;  // guards timer, stopped; held by a pass
    bool stopped = false;
    boost::asio::steady_timer timer;
    std::chrono::steady_clock::duration interval{};
    std::function<void()> pass;
    std::atomic<std::size_t> passes{0};
  };

  // Under state->mutex.
  static void arm(const std::shared_ptr<state>& s) {
    s->timer.expires_after(s->interval);
    s->timer.async_wait([s](const boost::system::error_code& ec) {
      if (ec) return;
      std::lock_guard<std::mutex> lock(s->mutex);
      if (s->stopped) return;
      try {
        s->pass();
      } catch (...) {
        // maintain() reports nothing by throwing; a bad_alloc waits for the next pass.
      }
      s->passes.fetch_add(1, std::memory_order_relaxed);
      arm(s);
    });
  }

  std::shared_ptr<state> state_;
};

}  // namespace respool
