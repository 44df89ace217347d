// respool-test: own-main
// Allocation tests: once a pool is warm, an uncontended acquire/release pair
// (acquire(), acquire(timeout), acquire(0s), try_acquire()) allocates nothing;
// nor does a warm async_acquire + release on an io_context (the operation
// lives in memory from the handler's associated allocator, by default
// Asio's recycling allocator).
//
// Global operator new/delete (every form: plain, array, nothrow, aligned,
// sized) are replaced by counting versions, which is why this file has its
// own main (CATCH_CONFIG_RUNNER). Counting is switched on only around the
// measured loops, which make no Catch2 assertions.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// Catch2 with our own main (below the operator replacements).
#define CATCH_CONFIG_RUNNER
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "respool/async.hpp"
#include "respool/resource.hpp"

namespace {

std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
std::atomic<long> deallocations{0};

void* allocate(std::size_t size) noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  std::size_t align = static_cast<std::size_t>(alignment);
  if (align < sizeof(void*)) align = sizeof(void*);
  void* p = nullptr;
  if (::posix_memalign(&p, align, size == 0 ? 1 : size) != 0) return nullptr;
  return p;
}

void deallocate(void* p) noexcept {
  if (p == nullptr) return;
  if (counting.load(std::memory_order_relaxed)) deallocations.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}

void* allocate_or_throw(std::size_t size) {
  if (void* p = allocate(size)) return p;
  throw std::bad_alloc();
}

void* allocate_aligned_or_throw(std::size_t size, std::align_val_t alignment) {
  if (void* p = allocate_aligned(size, alignment)) return p;
  throw std::bad_alloc();
}

// Counts the allocations made while it lives.
class Counter {
 public:
  Counter() {
    allocations = 0;
    deallocations = 0;
    counting = true;
  }
  ~Counter() { counting = false; }
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;
  std::pair<long, long> stop() {
    counting = false;
    return {allocations.load(), deallocations.load()};
  }
};

// Keeps the optimiser from dropping a test allocation.
void* volatile sink = nullptr;

constexpr int rounds = 1000;

}  // namespace

// ----- the replacements -----------------------------------------------------------

void* operator new(std::size_t size) { return allocate_or_throw(size); }
void* operator new[](std::size_t size) { return allocate_or_throw(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new(std::size_t size, std::align_val_t a) { return allocate_aligned_or_throw(size, a); }
void* operator new[](std::size_t size, std::align_val_t a) { return allocate_aligned_or_throw(size, a); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(size, a);
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(size, a);
}

void operator delete(void* p) noexcept { deallocate(p); }
void operator delete[](void* p) noexcept { deallocate(p); }
void operator delete(void* p, std::size_t) noexcept { deallocate(p); }
void operator delete[](void* p, std::size_t) noexcept { deallocate(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { deallocate(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { deallocate(p); }
void operator delete(void* p, std::align_val_t) noexcept { deallocate(p); }
void operator delete[](void* p, std::align_val_t) noexcept { deallocate(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { deallocate(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { deallocate(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { deallocate(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { deallocate(p); }

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }

// ----- the tests --------------------------------------------------------------------

using namespace std::chrono_literals;
using respool::Lease;
using respool::Resource;

TEST_CASE("allocation: the counting operators see every form", "[allocation]") {
  Counter counter;
  sink = new int(1);
  delete static_cast<int*>(sink);
  sink = new char[10];
  delete[] static_cast<char*>(sink);
  sink = new (std::nothrow) int(2);
  delete static_cast<int*>(sink);
  struct alignas(64) Wide {
    char bytes[64];
  };
  sink = new Wide;
  delete static_cast<Wide*>(sink);
  sink = new Wide[2];
  delete[] static_cast<Wide*>(sink);
  sink = new (std::nothrow) Wide;
  delete static_cast<Wide*>(sink);
  std::string heap(100, 'x');  // beyond the small-string buffer
  sink = heap.data();
  const auto [allocs, deallocs] = counter.stop();
  CHECK(allocs == 7);
  CHECK(deallocs == 6);
}

TEST_CASE("allocation: warm Resource<int>: acquire/release pairs allocate nothing", "[allocation]") {
  Resource<int> pool(4, [] { return 7; });
  // Warm up: create the resources and let every path run once.
  {
    std::vector<Lease<int>> all;
    for (int i = 0; i < 4; ++i) all.push_back(pool.acquire());
  }
  pool.acquire().release();
  pool.acquire(1s).release();
  pool.acquire(0s).release();
  pool.try_acquire().reset();

  long total = 0;
  SECTION("acquire()") {
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto lease = pool.acquire();
      sink = lease.get();
    }
    total = counter.stop().first;
  }
  SECTION("acquire(timeout)") {
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto lease = pool.acquire(1s);
      sink = lease.get();
    }
    total = counter.stop().first;
  }
  SECTION("acquire(0s)") {
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto lease = pool.acquire(0s);
      sink = lease.get();
    }
    total = counter.stop().first;
  }
  SECTION("try_acquire()") {
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto lease = pool.try_acquire();
      sink = lease ? lease->get() : nullptr;
    }
    total = counter.stop().first;
  }
  SECTION("try_acquire() on a full pool") {
    std::vector<Lease<int>> all;
    for (int i = 0; i < 4; ++i) all.push_back(pool.acquire());
    pool.try_acquire().reset();
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto lease = pool.try_acquire();
      sink = lease ? lease->get() : nullptr;
    }
    total = counter.stop().first;
  }
  SECTION("several held at once, moved, released in any order") {
    Counter counter;
    for (int i = 0; i < rounds; ++i) {
      auto a = pool.acquire();
      auto b = pool.acquire(0s);
      auto c = pool.try_acquire();
      Lease<int> d = std::move(a);
      b.release();
      c.reset();
      sink = d.get();
    }
    total = counter.stop().first;
  }
  SECTION("stats()") {
    Counter counter;
    std::size_t sum = 0;
    for (int i = 0; i < rounds; ++i) sum += pool.stats().idle;
    total = counter.stop().first;
    CHECK(sum == static_cast<std::size_t>(rounds) * 4);
  }
  CHECK(total == 0);
}

TEST_CASE("allocation: warm Resource<std::string>: acquire/release pairs allocate nothing", "[allocation]") {
  Resource<std::string> pool(3, [] { return std::string(200, 'r'); });  // heap-allocated strings
  {
    std::vector<Lease<std::string>> all;
    for (int i = 0; i < 3; ++i) all.push_back(pool.acquire());
  }
  pool.acquire(0s).release();
  pool.try_acquire().reset();

  Counter counter;
  std::size_t length = 0;
  for (int i = 0; i < rounds; ++i) {
    {
      auto lease = pool.acquire();
      length += lease->size();
    }
    {
      auto lease = pool.acquire(0s);
      length += lease->size();
    }
    {
      auto lease = pool.acquire(50ms);
      length += lease->size();
    }
    if (auto lease = pool.try_acquire()) length += (*lease)->size();
  }
  const auto [allocs, deallocs] = counter.stop();
  CHECK(allocs == 0);
  CHECK(deallocs == 0);
  CHECK(length == static_cast<std::size_t>(rounds) * 4 * 200);
}

TEST_CASE("allocation: a warm unlimited pool allocates nothing either", "[allocation]") {
  Resource<int> pool(0, [] { return 1; });
  {
    std::vector<Lease<int>> all;
    for (int i = 0; i < 8; ++i) all.push_back(pool.acquire());
  }
  Counter counter;
  for (int i = 0; i < rounds; ++i) {
    auto a = pool.acquire();
    auto b = pool.acquire(0s);
    auto c = pool.try_acquire();
    sink = a.get();
  }
  CHECK(counter.stop().first == 0);
}

TEST_CASE("allocation: warm async_acquire + release on an io_context allocates nothing",
          "[allocation][async]") {
  Resource<int> pool(2, [] { return 7; });
  boost::asio::io_context io;
  long completed = 0;
  // A chain of async acquires, each started from the previous one's handler
  // (on the io_context's thread, where Asio recycles memory), `n` long.
  struct chain {
    using executor_type = boost::asio::io_context::executor_type;
    Resource<int>* pool;
    long* completed;
    int left;
    executor_type executor;
    executor_type get_executor() const noexcept { return executor; }
    void operator()(boost::system::error_code ec, Lease<int> lease) {
      if (ec) return;
      lease.release();
      ++*completed;
      if (--left > 0) pool->async_acquire(std::move(*this));
    }
  };
  pool.async_acquire(chain{&pool, &completed, 100, io.get_executor()});  // warm up
  io.run();
  io.restart();
  REQUIRE(completed == 100);
  completed = 0;
  long allocs = 0;
  {
    Counter counter;
    pool.async_acquire(chain{&pool, &completed, rounds, io.get_executor()});
    io.run();
    allocs = counter.stop().first;
  }
  CHECK(completed == rounds);
  // The first operation, started outside the io_context's thread, may come
  // from the heap; the rest must not.
  CHECK(allocs <= 1);
}
