// Core pool benchmarks: respool::Resource<int> acquire + release next to
// the floor (what any mutex-guarded pool must pay), a naive
// mutex + condition_variable pool, Poco::ObjectPool, PoolGroup lookups and
// async_acquire on an io_context (callbacks; coroutines in C++20) next to a
// hand-written strand pool. See docs/performance.md for how to read it.
//
//   g++ -std=c++17 -O2 -DNDEBUG -I include tests/bench/core_bench.cpp
//       -lbenchmark -lPocoFoundation -pthread -lz -o /tmp/core_bench
//   /tmp/core_bench --benchmark_min_time=0.2 --benchmark_repetitions=10
//       --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true
//
// (Random interleaving of the repetitions spreads the noise of a shared or
// loaded machine evenly over all benchmarks; compare the medians.)
//
// (CMake builds it as bench_core_bench; Poco is needed.)
//
// Every multi-threaded benchmark uses UseRealTime(): the reported time is wall
// time divided by the operations of all threads together, i.e. the inverse of
// the aggregate throughput. One "op" is one acquire plus one release.
//
// Shared state lives in globals built by a Setup hook (which Google Benchmark
// runs once per run, before the threads start) and torn down by a Teardown
// hook, so every thread of a run works on the same pool, as real users do.
//
// Every pool is sized to the number of threads and pre-warmed: each thread
// holds at most one resource at a time, so no acquirer ever has to wait or
// create anything; what is measured is the hand-out path itself.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

// C++20 with Asio's co_await support: the coroutine variants of the async benchmark.
#if defined(__cpp_impl_coroutine) && defined(BOOST_ASIO_HAS_CO_AWAIT)
#define RESPOOL_BENCH_COROUTINES 1
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#endif

#include "peer_pools.hpp"
#include "respool/async.hpp"
#include "respool/connection_params.hpp"
#include "respool/lease.hpp"
#include "respool/pool_group.hpp"
#include "respool/pool_policy.hpp"
#include "respool/resource.hpp"

namespace {

using respool::ConnectionParams;
using respool::Lease;
using respool::PoolGroup;
using IntPool = respool::Resource<int>;
using IntGroup = PoolGroup<ConnectionParams, IntPool>;

constexpr std::size_t kKeys = 1000;

// ---------------------------------------------------------------------------
// (a) The floor: one shared std::mutex and a std::vector<int> of idle values.
// acquire = lock, pop_back, unlock; release = lock, push_back, unlock.
// The mutex is shared by all threads, as a pool's is (a pool is shared
// state); with one thread it is uncontended. BM_Floor_PrivateMutex gives each
// thread its own mutex and vector, i.e. the same work without contention.

struct floor_pool {
  std::mutex mutex;
  std::vector<int> idle;
};
std::unique_ptr<floor_pool> g_floor;

void floor_setup(const benchmark::State& state) {
  g_floor = std::make_unique<floor_pool>();
  g_floor->idle.reserve(static_cast<std::size_t>(state.threads()));
  for (int i = 0; i < state.threads(); ++i) g_floor->idle.push_back(i);
}
void floor_teardown(const benchmark::State&) { g_floor.reset(); }

inline void floor_round_trip(floor_pool& p) {
  int value;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    value = p.idle.back();
    p.idle.pop_back();
  }
  benchmark::DoNotOptimize(value);
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    p.idle.push_back(value);
  }
}

void BM_Floor(benchmark::State& state) {
  floor_pool& p = *g_floor;
  for (auto _ : state) floor_round_trip(p);
}

void BM_Floor_PrivateMutex(benchmark::State& state) {
  floor_pool p;  // this thread's own
  p.idle.reserve(1);
  p.idle.push_back(0);
  for (auto _ : state) floor_round_trip(p);
}

// ---------------------------------------------------------------------------
// (b) respool::Resource<int>, limit = number of threads, preloaded.

std::unique_ptr<IntPool> g_resource;

std::unique_ptr<IntPool> make_int_pool(std::size_t limit) {
  IntPool::Options options;
  options.limit = limit;
  options.preload = limit;
  options.create = [] { return 42; };
  return std::make_unique<IntPool>(std::move(options));
}

void resource_setup(const benchmark::State& state) {
  g_resource = make_int_pool(static_cast<std::size_t>(state.threads()));
}
void resource_teardown(const benchmark::State&) { g_resource.reset(); }

void BM_Resource(benchmark::State& state) {
  IntPool& pool = *g_resource;
  for (auto _ : state) {
    Lease<int> lease = pool.acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

// ---------------------------------------------------------------------------
// (b') The same pool with production policies on (respool/pool_policy.hpp):
// what each costs on the uncontended hand-out path. BM_Resource above is the
// cost with every policy off.

struct NullObserver final : respool::PoolObserver {
  void on_wait(std::chrono::nanoseconds d) override { benchmark::DoNotOptimize(d); }
  void on_use(std::chrono::nanoseconds d) override { benchmark::DoNotOptimize(d); }
};
NullObserver g_observer;

std::unique_ptr<IntPool> make_policy_pool(std::size_t limit, int which) {
  IntPool::Options options;
  options.limit = limit;
  options.preload = limit;
  options.create = [] { return 42; };
  options.validate = [](int&) { return true; };
  switch (which) {
    case 0:  // expiry: idle timeout + max lifetime + validation bypass
      options.policy.idle_timeout = std::chrono::minutes(10);
      options.policy.max_lifetime = std::chrono::hours(1);
      options.policy.validation_bypass = std::chrono::milliseconds(500);
      break;
    case 1:  // leak detection
      options.policy.leak_threshold = std::chrono::minutes(1);
      break;
    case 2:  // observer
      options.policy.observer = &g_observer;
      break;
    default:  // validate, no policy (the bypass's baseline)
      break;
  }
  return std::make_unique<IntPool>(std::move(options));
}

template <int Which>
void policy_setup(const benchmark::State& state) {
  g_resource = make_policy_pool(static_cast<std::size_t>(state.threads()), Which);
}

void BM_Resource_Policy(benchmark::State& state) {
  IntPool& pool = *g_resource;
  for (auto _ : state) {
    Lease<int> lease = pool.acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

// ---------------------------------------------------------------------------
// (c) A naive pool: std::mutex + std::condition_variable + std::deque<int>.
// acquire waits on the cv while the deque is empty; release pushes, unlocks
// and notify_one()s (as a careful textbook pool does).

using respool_bench::naive_pool;  // peer_pools.hpp (shared with contended_bench.cpp)
std::unique_ptr<naive_pool> g_naive;

void naive_setup(const benchmark::State& state) { g_naive = std::make_unique<naive_pool>(state.threads()); }
void naive_teardown(const benchmark::State&) { g_naive.reset(); }

void BM_NaiveCvPool(benchmark::State& state) {
  naive_pool& pool = *g_naive;
  for (auto _ : state) {
    int value = pool.acquire();
    benchmark::DoNotOptimize(value);
    pool.release(value);
  }
}

// ---------------------------------------------------------------------------
// (d) Poco::ObjectPool<int> (capacity = peak capacity = number of threads),
// pre-warmed by borrowing and returning every object once.

std::unique_ptr<respool_bench::poco_pool> g_poco;  // peer_pools.hpp

void poco_setup(const benchmark::State& state) {
  g_poco = std::make_unique<respool_bench::poco_pool>(state.threads());
}
void poco_teardown(const benchmark::State&) { g_poco.reset(); }

void BM_PocoObjectPool(benchmark::State& state) {
  Poco::ObjectPool<int>& pool = g_poco->pool;
  for (auto _ : state) {
    // Never empty (see the top of the file); the timeout is a safety net.
    int* p = pool.borrowObject(60 * 1000);
    if (p == nullptr) {
      state.SkipWithError("Poco::ObjectPool::borrowObject timed out");
      break;
    }
    benchmark::DoNotOptimize(*p);
    pool.returnObject(p);
  }
}

// ---------------------------------------------------------------------------
// PoolGroup<ConnectionParams, Resource<int>>: group[key].acquire() + release,
// for 1 key and for 1000 distinct keys, next to the bare acquire on the very
// same pools (references looked up once, outside the loop).
//
// The 1000 keys differ in host name ("amqp://guest:guest@host-<i>:5672//"),
// every pool is created (and preloaded) by Setup, and each thread walks a
// fixed shuffled order of the keys starting at its own offset, so successive
// lookups hit unrelated hash buckets and pools.

struct group_fixture {
  std::unique_ptr<IntGroup> group;
  std::vector<ConnectionParams> keys;  // keys[i]
  std::vector<IntPool*> pools;         // &(*group)[keys[i]]
  std::vector<std::uint32_t> order;    // shuffled 0..keys.size()-1
};
std::unique_ptr<group_fixture> g_group;

void group_setup(const benchmark::State& state, std::size_t key_count) {
  auto f = std::make_unique<group_fixture>();
  const auto limit = static_cast<std::size_t>(state.threads());
  f->group = std::make_unique<IntGroup>(
      limit, [](const ConnectionParams&, std::size_t lim) { return make_int_pool(lim); });
  if (key_count == 1) {
    f->keys.push_back(ConnectionParams::parse("amqp://guest:guest@localhost:5672//"));
  } else {
    for (std::size_t i = 0; i < key_count; ++i)
      f->keys.push_back(ConnectionParams::parse("amqp://guest:guest@host-" + std::to_string(i) + ":5672//"));
  }
  for (const auto& key : f->keys) f->pools.push_back(&(*f->group)[key]);
  f->order.resize(key_count);
  for (std::size_t i = 0; i < key_count; ++i) f->order[i] = static_cast<std::uint32_t>(i);
  std::mt19937 rng(12345);
  std::shuffle(f->order.begin(), f->order.end(), rng);
  g_group = std::move(f);
}
void group1_setup(const benchmark::State& state) { group_setup(state, 1); }
void group1000_setup(const benchmark::State& state) { group_setup(state, kKeys); }
// The cost of the cap across keys when on but not reached (set_max_total at
// limit x keys): every acquire and release also counts in the group's cap.
void group1000_capped_setup(const benchmark::State& state) {
  group_setup(state, kKeys);
  g_group->group->set_max_total(kKeys * static_cast<std::size_t>(state.threads()));
}
void group_teardown(const benchmark::State&) { g_group.reset(); }

void BM_Group_Lookup_1Key(benchmark::State& state) {
  IntGroup& group = *g_group->group;
  const ConnectionParams& key = g_group->keys.front();
  for (auto _ : state) {
    Lease<int> lease = group[key].acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

void BM_Group_Bare_1Key(benchmark::State& state) {
  IntPool& pool = *g_group->pools.front();
  for (auto _ : state) {
    Lease<int> lease = pool.acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

void BM_Group_Lookup_1000Keys(benchmark::State& state) {
  group_fixture& f = *g_group;
  IntGroup& group = *f.group;
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * (kKeys / 4);
  for (auto _ : state) {
    if (++i == kKeys) i = 0;
    Lease<int> lease = group[f.keys[f.order[i]]].acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

void BM_Group_Bare_1000Keys(benchmark::State& state) {
  group_fixture& f = *g_group;
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * (kKeys / 4);
  for (auto _ : state) {
    if (++i == kKeys) i = 0;
    Lease<int> lease = f.pools[f.order[i]]->acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

// ---------------------------------------------------------------------------
// async_acquire + release on an io_context (1 thread): start the operation
// with a callback bound to the io_context that releases the lease, then
// io.poll() runs the completion. The round trip includes the operation's
// allocation, the post to the io_context and running the handler.

void BM_AsyncAcquire(benchmark::State& state) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);  // poll() must not stop the context when idle
  auto pool = make_int_pool(1);
  std::int64_t completed = 0;
  for (auto _ : state) {
    pool->async_acquire(boost::asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int> lease) {
      if (!ec) {
        benchmark::DoNotOptimize(*lease);
        lease.release();
        ++completed;
      }
    }));
    io.poll();
  }
  if (completed != static_cast<std::int64_t>(state.iterations()))
    state.SkipWithError("an async_acquire failed");
}

// The baseline one writes by hand on Asio: a strand serialises acquire and
// release, an idle vector and a deque of waiting handlers (std::function for
// callbacks; Asio's any_completion_handler for the coroutine variant, whose
// handlers are move-only). acquire posts to the strand, which calls the
// handler at once if a value is idle; release posts to the strand. Same loop
// as BM_AsyncAcquire.
template <class Waiter>
struct basic_strand_pool {
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  std::vector<int> idle{42};
  std::deque<Waiter> waiting;
  explicit basic_strand_pool(boost::asio::io_context& io) : strand(io.get_executor()) {}
  template <class Handler>
  void async_acquire(Handler handler) {
    boost::asio::post(strand, [this, handler = std::move(handler)]() mutable {
      if (idle.empty()) {
        waiting.emplace_back(std::move(handler));
        return;
      }
      const int value = idle.back();
      idle.pop_back();
      std::move(handler)(value);
    });
  }
  void release(int value) {
    boost::asio::post(strand, [this, value] {
      if (waiting.empty()) {
        idle.push_back(value);
        return;
      }
      auto handler = std::move(waiting.front());
      waiting.pop_front();
      std::move(handler)(value);
    });
  }
};
using strand_pool = basic_strand_pool<std::function<void(int)>>;

void BM_AsyncAcquire_StrandBaseline(benchmark::State& state) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  strand_pool pool(io);
  std::int64_t completed = 0;
  for (auto _ : state) {
    pool.async_acquire([&](int value) {
      benchmark::DoNotOptimize(value);
      pool.release(value);
      ++completed;
    });
    io.poll();
  }
  if (completed != static_cast<std::int64_t>(state.iterations()))
    state.SkipWithError("a strand acquire failed");
}

// The synchronous acquire on the same kind of pool (1 thread), for comparison.
void BM_AsyncAcquire_SyncBaseline(benchmark::State& state) {
  auto pool = make_int_pool(1);
  for (auto _ : state) {
    Lease<int> lease = pool->acquire();
    benchmark::DoNotOptimize(*lease);
    lease.release();
  }
}

#if defined(RESPOOL_BENCH_COROUTINES)
// The same round trips from a C++20 coroutine: one coroutine on the
// io_context loops `co_await pool.async_acquire(use_awaitable)` + release
// (io.run() on this thread drives it), next to the strand pool driven the
// same way (its acquire wrapped in async_initiate, so that it takes any
// completion token).

void BM_AsyncAcquire_Coroutine(benchmark::State& state) {
  boost::asio::io_context io;
  auto pool = make_int_pool(1);
  std::exception_ptr failure;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        for (auto _ : state) {
          Lease<int> lease = co_await pool->async_acquire(boost::asio::use_awaitable);
          benchmark::DoNotOptimize(*lease);
          lease.release();
        }
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) state.SkipWithError("an async_acquire failed");
}

struct coroutine_strand_pool : basic_strand_pool<boost::asio::any_completion_handler<void(int)>> {
  using basic_strand_pool::basic_strand_pool;
  template <class Token>
  auto async_acquire_token(Token&& token) {
    return boost::asio::async_initiate<Token, void(int)>(
        [this](auto handler) { this->async_acquire(std::move(handler)); }, token);
  }
};

void BM_AsyncAcquire_Coroutine_StrandBaseline(benchmark::State& state) {
  boost::asio::io_context io;
  coroutine_strand_pool pool(io);
  std::exception_ptr failure;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        for (auto _ : state) {
          const int value = co_await pool.async_acquire_token(boost::asio::use_awaitable);
          benchmark::DoNotOptimize(value);
          pool.release(value);
        }
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) state.SkipWithError("a strand acquire failed");
}
#endif

// ---------------------------------------------------------------------------

#define RESPOOL_THREADS(b) b->Threads(1)->Threads(2)->Threads(4)->UseRealTime()

RESPOOL_THREADS(BENCHMARK(BM_Floor)->Setup(floor_setup)->Teardown(floor_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Floor_PrivateMutex));
RESPOOL_THREADS(BENCHMARK(BM_Resource)->Setup(resource_setup)->Teardown(resource_teardown));
BENCHMARK(BM_Resource_Policy)
    ->Name("BM_Resource_Validate")
    ->Setup(policy_setup<3>)
    ->Teardown(resource_teardown)
    ->Threads(1)
    ->UseRealTime();
BENCHMARK(BM_Resource_Policy)
    ->Name("BM_Resource_Expiry")
    ->Setup(policy_setup<0>)
    ->Teardown(resource_teardown)
    ->Threads(1)
    ->UseRealTime();
BENCHMARK(BM_Resource_Policy)
    ->Name("BM_Resource_LeakDetection")
    ->Setup(policy_setup<1>)
    ->Teardown(resource_teardown)
    ->Threads(1)
    ->UseRealTime();
BENCHMARK(BM_Resource_Policy)
    ->Name("BM_Resource_Observer")
    ->Setup(policy_setup<2>)
    ->Teardown(resource_teardown)
    ->Threads(1)
    ->UseRealTime();
RESPOOL_THREADS(BENCHMARK(BM_NaiveCvPool)->Setup(naive_setup)->Teardown(naive_teardown));
RESPOOL_THREADS(BENCHMARK(BM_PocoObjectPool)->Setup(poco_setup)->Teardown(poco_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Group_Bare_1Key)->Setup(group1_setup)->Teardown(group_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Group_Lookup_1Key)->Setup(group1_setup)->Teardown(group_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Group_Bare_1000Keys)->Setup(group1000_setup)->Teardown(group_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Group_Lookup_1000Keys)->Setup(group1000_setup)->Teardown(group_teardown));
RESPOOL_THREADS(BENCHMARK(BM_Group_Lookup_1000Keys)
                    ->Name("BM_Group_Lookup_1000Keys_MaxTotal")
                    ->Setup(group1000_capped_setup)
                    ->Teardown(group_teardown));
BENCHMARK(BM_AsyncAcquire_SyncBaseline);
BENCHMARK(BM_AsyncAcquire);
BENCHMARK(BM_AsyncAcquire_StrandBaseline);
#if defined(RESPOOL_BENCH_COROUTINES)
BENCHMARK(BM_AsyncAcquire_Coroutine);
BENCHMARK(BM_AsyncAcquire_Coroutine_StrandBaseline);
#endif

}  // namespace

int main(int argc, char** argv) {
  // glibc (and libstdc++, via __libc_single_threaded) skip atomic
  // instructions in a process that never had a second thread, which makes
  // 1-thread mutex numbers look several times cheaper than they are in any
  // real, threaded program. Start and join one thread first so every
  // benchmark, whatever its order, runs in a "multi-threaded" process.
  std::thread([] {}).join();

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
