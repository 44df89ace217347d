// Unit tests of respool/lease.hpp: Lease<T>, the move-only RAII handle to a
// pooled resource.

#include "respool/lease.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "respool/resource.hpp"

namespace {

using respool::Lease;
using respool::Resource;

struct Counters {
  int created = 0;
  int closed = 0;
};

Resource<std::string>::Options string_pool(Counters& c, std::size_t limit) {
  Resource<std::string>::Options o;
  o.limit = limit;
  o.create = [&c] { return "r" + std::to_string(++c.created); };
  o.close = [&c](std::string&) { ++c.closed; };
  return o;
}

struct Widget {
  int value = 0;
  int twice() const { return 2 * value; }
};

}  // namespace

// ----- type properties ------------------------------------------------------------

static_assert(!std::is_copy_constructible_v<Lease<int>>, "Lease is move-only");
static_assert(!std::is_copy_assignable_v<Lease<int>>, "Lease is move-only");
static_assert(std::is_nothrow_move_constructible_v<Lease<int>>, "Lease is nothrow-movable");
static_assert(std::is_nothrow_move_assignable_v<Lease<int>>, "Lease is nothrow-movable");
static_assert(std::is_nothrow_destructible_v<Lease<int>>);
static_assert(std::is_nothrow_default_constructible_v<Lease<int>>);
static_assert(!std::is_convertible_v<Lease<int>, bool>, "operator bool is explicit");
static_assert(std::is_constructible_v<bool, Lease<int>>);
static_assert(std::is_same_v<decltype(*std::declval<const Lease<int>&>()), int&>);
static_assert(std::is_same_v<decltype(std::declval<const Lease<int>&>().operator->()), int*>);
static_assert(std::is_same_v<decltype(std::declval<const Lease<int>&>().get()), int*>);
static_assert(std::is_nothrow_swappable_v<Lease<int>>);

TEST_CASE("Lease: operators give access to the resource", "[lease]") {
  Resource<Widget> pool(1, [] { return Widget{21}; });
  auto lease = pool.acquire();
  REQUIRE(lease);
  CHECK((*lease).value == 21);
  CHECK(lease->twice() == 42);
  CHECK(lease.get() == &*lease);
  CHECK(lease.get() == lease.operator->());
  lease->value = 5;  // mutable through a const lease too: the lease is the handle, not the value
  const auto& same = lease;
  CHECK(same->value == 5);
  lease.release();
  CHECK(pool.acquire()->value == 5);  // the same object came back
}

TEST_CASE("Lease: an empty lease", "[lease]") {
  Lease<int> empty;
  CHECK_FALSE(empty);
  CHECK(empty.get() == nullptr);
  empty.release();  // no-ops
  empty.discard();
  CHECK_FALSE(empty);
}

TEST_CASE("Lease: release() gives the resource back and is idempotent", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 1));
  auto lease = pool.acquire();
  CHECK(*lease == "r1");
  lease.release();
  CHECK_FALSE(lease);
  CHECK(lease.get() == nullptr);
  CHECK(pool.stats().idle == 1);
  CHECK(pool.stats().in_use == 0);
  lease.release();
  lease.discard();
  CHECK(pool.stats().idle == 1);
  CHECK(c.closed == 0);
  CHECK(*pool.acquire(std::chrono::seconds(0)) == "r1");
}

TEST_CASE("Lease: discard() closes the resource and frees its slot", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 1));
  auto lease = pool.acquire();
  lease.discard();
  CHECK_FALSE(lease);
  CHECK(c.closed == 1);
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle == 0);
  lease.discard();  // idempotent
  lease.release();
  CHECK(c.closed == 1);
  auto next = pool.acquire(std::chrono::seconds(0));
  CHECK(*next == "r2");
}

TEST_CASE("Lease: the destructor releases", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 1));
  {
    auto lease = pool.acquire();
    CHECK(pool.stats().in_use == 1);
  }
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle == 1);
  CHECK(c.closed == 0);
}

TEST_CASE("Lease: moving transfers ownership and leaves the source empty", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 2));
  auto a = pool.acquire();
  std::string* resource = a.get();
  Lease<std::string> b(std::move(a));
  CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): the contract says empty
  CHECK(a.get() == nullptr);
  REQUIRE(b);
  CHECK(b.get() == resource);
  CHECK(pool.stats().in_use == 1);

  Lease<std::string> d;
  d = std::move(b);
  CHECK_FALSE(b);  // NOLINT(bugprone-use-after-move)
  CHECK(d.get() == resource);
  CHECK(pool.stats().in_use == 1);

  // Leases live happily in containers.
  std::vector<Lease<std::string>> leases;
  leases.push_back(std::move(d));
  leases.push_back(pool.acquire());
  leases.reserve(100);  // reallocation moves them
  CHECK(*leases[0] == "r1");
  CHECK(*leases[1] == "r2");
  CHECK(pool.stats().in_use == 2);
  leases.clear();
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle == 2);
}

TEST_CASE("Lease: move-assignment releases the resource held before", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 2));
  auto a = pool.acquire();
  auto b = pool.acquire();
  CHECK(pool.stats().in_use == 2);
  a = std::move(b);  // a's old resource goes back
  CHECK(*a == "r2");
  CHECK(pool.stats().in_use == 1);
  CHECK(pool.stats().idle == 1);
  CHECK(c.closed == 0);
  a = Lease<std::string>();  // assigning an empty lease releases too
  CHECK_FALSE(a);
  CHECK(pool.stats().in_use == 0);
}

TEST_CASE("Lease: self-move-assignment keeps the resource", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 1));
  auto a = pool.acquire();
  auto& alias = a;
  a = std::move(alias);
  REQUIRE(a);
  CHECK(*a == "r1");
  CHECK(pool.stats().in_use == 1);
}

TEST_CASE("Lease: swap exchanges resources", "[lease]") {
  Counters c;
  Resource<std::string> pool(string_pool(c, 2));
  auto a = pool.acquire();
  auto b = pool.acquire();
  std::swap(a, b);
  CHECK(*a == "r2");
  CHECK(*b == "r1");
  CHECK(pool.stats().in_use == 2);
}

TEST_CASE("Lease: leases of different pools do not mix", "[lease]") {
  Counters c1, c2;
  Resource<std::string> p1(string_pool(c1, 1));
  Resource<std::string> p2(string_pool(c2, 1));
  auto a = p1.acquire();
  auto b = p2.acquire();
  a = std::move(b);  // p1's resource goes back to p1, p2's now held by a
  CHECK(p1.stats().idle == 1);
  CHECK(p2.stats().in_use == 1);
  a.release();
  CHECK(p2.stats().idle == 1);
  CHECK(p1.stats().in_use == 0);
}

TEST_CASE("Lease: a lease may outlive its pool", "[lease]") {
  Counters c;
  Lease<std::string> survivor;
  Lease<std::string> discarded;
  {
    Resource<std::string> pool(string_pool(c, 3));
    survivor = pool.acquire();
    discarded = pool.acquire();
    pool.acquire().release();  // one idle: closed with the pool
  }
  CHECK(c.closed == 1);
  REQUIRE(survivor);
  CHECK(*survivor == "r1");  // still usable
  *survivor += "!";
  CHECK(*survivor == "r1!");
  survivor.release();  // closes it (nothing to go back to)
  CHECK(c.closed == 2);
  discarded.discard();
  CHECK(c.closed == 3);
  CHECK(c.created == 3);
}

TEST_CASE("Lease: a lease moved after its pool died still closes once", "[lease]") {
  Counters c;
  Lease<std::string> outer;
  {
    auto pool = std::make_unique<Resource<std::string>>(string_pool(c, 1));
    Lease<std::string> inner = pool->acquire();
    pool.reset();
    outer = std::move(inner);
  }
  CHECK(c.closed == 0);
  outer = Lease<std::string>();
  CHECK(c.closed == 1);
}
