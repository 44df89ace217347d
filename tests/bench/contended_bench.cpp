// Contended pools: more threads than resources. Each thread acquires, holds
// the resource for `work` nanoseconds of busy work, releases, and goes again.
// Side by side in one run, for L resources and T threads:
//   Resource    respool::Resource<int>: default starvation_threshold (1 ms):
//               barging while no waiter starves, then hand-off
//   ResourceStrictFifo  the same with starvation_threshold 0 (strict FIFO)
//   Naive       std::mutex + condition_variable + deque (barging: a releasing
//               thread may take the resource straight back)
//   FairFifo    the simplest fair pool: a queue of waiters, each with its own
//               condition_variable; release hands the resource to the oldest
//   Poco        Poco::ObjectPool<int> (capacity = peak capacity = L)
// (the three peers are in peer_pools.hpp, shared with core_bench.cpp)
// Counters (besides items_per_second, the aggregate acquisitions/s):
//   share_max_min  the busiest thread's acquisitions / the idlest's (1 = fair)
//   p50_us p99_us max_us   acquire latency (the wait inside acquire())
//
//   cmake --build build/bench --target bench_contended_bench
//   build/bench/tests/bench_contended_bench
// (each case runs every thread for 0.5 s; --benchmark_repetitions=N repeats)
//
// docs/performance.md has a table; tests/bench/plot_bench.py turns the
// JSON output (--benchmark_format=json) into plots.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "peer_pools.hpp"
#include "respool/lease.hpp"
#include "respool/resource.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

// Busy work of about `ns` nanoseconds (holding the resource).
inline void busy(std::int64_t ns) {
  if (ns <= 0) return;
  const auto until = clock_type::now() + std::chrono::nanoseconds(ns);
  while (clock_type::now() < until) {
  }
}

// ---------------------------------------------------------------- the pools

using respool_bench::fair_fifo_pool;
using respool_bench::naive_pool;
using respool_bench::poco_pool;

// Threshold: respool's default (1 ms, barging) or zero (strict FIFO hand-off).
template <long ThresholdNs>
struct basic_resource_pool {
  respool::Resource<int> pool;
  static respool::Resource<int>::Options options(int limit) {
    respool::Resource<int>::Options o;
    o.limit = static_cast<std::size_t>(limit);
    o.preload = static_cast<std::size_t>(limit);
    o.create = [] { return 42; };
    o.starvation_threshold = std::chrono::nanoseconds(ThresholdNs);
    return o;
  }
  explicit basic_resource_pool(int limit) : pool(options(limit)) {}
};
using resource_pool = basic_resource_pool<1000000>;
using strict_resource_pool = basic_resource_pool<0>;

// ---------------------------------------------------------------- one run

// What the threads of one run share: the pool, and each thread's results,
// merged by thread 0 once every thread has finished.
template <class Pool>
struct run_state {
  std::unique_ptr<Pool> pool;
  std::mutex mutex;
  std::condition_variable all_done;
  int finished = 0;
  std::vector<std::int64_t> counts;
  std::vector<std::int64_t> latencies_ns;
};

template <class Pool>
std::unique_ptr<run_state<Pool>> g_run;

template <class Pool>
void setup(const benchmark::State& state) {
  g_run<Pool> = std::make_unique<run_state<Pool>>();
  g_run<Pool>->pool = std::make_unique<Pool>(static_cast<int>(state.range(0)));
}
template <class Pool>
void teardown(const benchmark::State&) {
  g_run<Pool>.reset();
}

// One acquisition: acquire (timed), work, release.
template <long ThresholdNs>
inline std::int64_t cycle(basic_resource_pool<ThresholdNs>& p, std::int64_t work) {
  const auto t0 = clock_type::now();
  respool::Lease<int> lease = p.pool.acquire();
  const auto waited = clock_type::now() - t0;
  benchmark::DoNotOptimize(*lease);
  busy(work);
  lease.release();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count();
}
template <class Pool>
inline std::int64_t cycle(Pool& p, std::int64_t work) {
  const auto t0 = clock_type::now();
  int v = p.acquire();
  const auto waited = clock_type::now() - t0;
  benchmark::DoNotOptimize(v);
  busy(work);
  p.release(v);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count();
}
inline std::int64_t cycle(poco_pool& p, std::int64_t work) {
  const auto t0 = clock_type::now();
  int* v = p.pool.borrowObject(60 * 1000);
  const auto waited = clock_type::now() - t0;
  benchmark::DoNotOptimize(v);
  busy(work);
  p.pool.returnObject(v);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count();
}

std::int64_t percentile(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// How long each thread runs (one benchmark iteration).
constexpr auto window = std::chrono::milliseconds(500);

template <class Pool>
void BM_Contended(benchmark::State& state) {
  auto& run = *g_run<Pool>;
  Pool& pool = *run.pool;
  const std::int64_t work = state.range(1);
  std::vector<std::int64_t> mine;
  mine.reserve(1 << 20);
  std::int64_t count = 0;
  // A fixed time per thread, not Google Benchmark's fixed iteration count
  // per thread (which would make every share equal by construction).
  for (auto _ : state) {
    const auto deadline = clock_type::now() + window;
    do {
      const std::int64_t waited = cycle(pool, work);
      if (mine.size() < mine.capacity()) mine.push_back(waited);
      ++count;
    } while (clock_type::now() < deadline);
  }
  state.SetItemsProcessed(count);
  std::unique_lock<std::mutex> lock(run.mutex);
  run.counts.push_back(count);
  run.latencies_ns.insert(run.latencies_ns.end(), mine.begin(), mine.end());
  if (++run.finished == state.threads()) run.all_done.notify_all();
  if (state.thread_index() != 0) return;
  run.all_done.wait(lock, [&] { return run.finished == state.threads(); });
  const auto [lo, hi] = std::minmax_element(run.counts.begin(), run.counts.end());
  // Counters are summed over threads: only thread 0 sets them.
  state.counters["share_max_min"] = *lo > 0 ? static_cast<double>(*hi) / static_cast<double>(*lo) : 1e9;
  state.counters["p50_us"] = static_cast<double>(percentile(run.latencies_ns, 0.50)) / 1000.0;
  state.counters["p99_us"] = static_cast<double>(percentile(run.latencies_ns, 0.99)) / 1000.0;
  state.counters["max_us"] =
      static_cast<double>(*std::max_element(run.latencies_ns.begin(), run.latencies_ns.end())) / 1000.0;
  // Google Benchmark calls a benchmark function several times (to size the
  // run): start the next call from a clean slate.
  run.counts.clear();
  run.latencies_ns.clear();
  run.finished = 0;
}

// L = 1, 2, 4 resources; T = 2, 4, 8, 16 threads (only T > L); work 0 and 200 ns.
template <class Pool>
void configure(benchmark::internal::Benchmark* b) {
  b->Setup(setup<Pool>)->Teardown(teardown<Pool>)->UseRealTime()->Iterations(1)->ArgNames({"L", "work_ns"});
  for (int work : {0, 200})
    for (int limit : {1, 2, 4}) b->Args({limit, work});
}

}  // namespace

#define RESPOOL_CONTENDED(label, Pool)   \
  BENCHMARK_TEMPLATE(BM_Contended, Pool) \
      ->Name(label)                      \
      ->Apply(configure<Pool>)           \
      ->Threads(2)                       \
      ->Threads(4)                       \
      ->Threads(8)                       \
      ->Threads(16)

RESPOOL_CONTENDED("Resource", resource_pool);
RESPOOL_CONTENDED("ResourceStrictFifo", strict_resource_pool);
RESPOOL_CONTENDED("Naive", naive_pool);
RESPOOL_CONTENDED("FairFifo", fair_fifo_pool);
RESPOOL_CONTENDED("Poco", poco_pool);

int main(int argc, char** argv) {
  // glibc skips atomics until a process has had a second thread.
  std::thread([] {}).join();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
