// Unit tests of respool/errors.hpp: the exception hierarchy, the respool
// error category and the errc equivalences (kombu: LimitExceeded,
// ConnectionLimitExceeded).

#include "respool/errors.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <system_error>
#include <type_traits>

#include "respool/resource.hpp"

namespace {

using namespace std::chrono_literals;
using respool::errc;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Throws `e` and reports which handlers catch it.
template <class Exception, class Catch>
bool caught_as(const Exception& e) {
  try {
    throw e;
  } catch (const Catch&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

static_assert(std::is_base_of_v<std::system_error, respool::error>);
static_assert(std::is_base_of_v<respool::error, respool::limit_exceeded>);
static_assert(std::is_base_of_v<respool::limit_exceeded, respool::acquire_timeout>);
static_assert(std::is_base_of_v<respool::limit_exceeded, respool::connection_limit_exceeded>);
static_assert(std::is_base_of_v<respool::connection_limit_exceeded, respool::connection_acquire_timeout>);
static_assert(std::is_base_of_v<respool::acquire_timeout, respool::connection_acquire_timeout>);
static_assert(std::is_base_of_v<respool::error, respool::pool_closed>);
static_assert(std::is_base_of_v<respool::error, respool::invalid_url>);
static_assert(std::is_base_of_v<respool::error, respool::unknown_transport>);
static_assert(std::is_error_code_enum_v<errc>);

TEST_CASE("errors: the respool category", "[errors]") {
  const std::error_code code = errc::limit_exceeded;  // implicit, via is_error_code_enum
  CHECK(code.category() == respool::error_category());
  CHECK(std::string(respool::error_category().name()) == "respool");
  CHECK(&respool::error_category() == &respool::error_category());
  CHECK(code.value() == static_cast<int>(errc::limit_exceeded));
  CHECK(static_cast<bool>(code));
  for (int v = static_cast<int>(errc::limit_exceeded); v <= static_cast<int>(errc::encoding_error); ++v) {
    const std::string text = respool::error_category().message(v);
    CHECK_FALSE(text.empty());
    CHECK(text != respool::error_category().message(999));
  }
  CHECK(respool::make_error_code(errc::pool_closed).message() == "pool closed");
  CHECK(respool::make_error_condition(errc::pool_closed).category() == respool::error_category());
  // Not confused with the generic category's numbers.
  CHECK(std::error_code(errc::limit_exceeded) != std::error_code(1, std::generic_category()));
  CHECK(std::error_code(1, std::generic_category()) != errc::limit_exceeded);
}

TEST_CASE("errors: acquire_timeout and connection_limit_exceeded codes are kinds of limit_exceeded",
          "[errors]") {
  const std::error_code timeout = errc::acquire_timeout;
  const std::error_code connection = errc::connection_limit_exceeded;
  const std::error_code plain = errc::limit_exceeded;
  // As a condition, limit_exceeded matches all three.
  CHECK(timeout == respool::make_error_condition(errc::limit_exceeded));
  CHECK(connection == respool::make_error_condition(errc::limit_exceeded));
  CHECK(plain == respool::make_error_condition(errc::limit_exceeded));
  // Exact codes stay distinct.
  CHECK(timeout == errc::acquire_timeout);
  CHECK(timeout != errc::limit_exceeded);
  CHECK(plain != errc::acquire_timeout);
  CHECK(connection != errc::acquire_timeout);
  // Nothing else is a limit_exceeded.
  CHECK(std::error_code(errc::pool_closed) != respool::make_error_condition(errc::limit_exceeded));
  CHECK(std::error_code(errc::pool_in_use) != respool::make_error_condition(errc::limit_exceeded));
  CHECK(std::error_code(errc::limit_exceeded) != respool::make_error_condition(errc::acquire_timeout));
}

TEST_CASE("errors: limit_exceeded carries the limit and the time waited", "[errors]") {
  const respool::limit_exceeded e(10, 0ns);
  CHECK(e.code() == errc::limit_exceeded);
  CHECK(e.limit() == 10);
  CHECK(e.waited() == 0ns);
  const std::string what = e.what();
  CHECK(contains(what, "10"));
  CHECK(contains(what, "did not wait"));
  CHECK(caught_as<respool::limit_exceeded, respool::error>(e));
  CHECK(caught_as<respool::limit_exceeded, std::system_error>(e));
  CHECK_FALSE(caught_as<respool::limit_exceeded, respool::acquire_timeout>(e));
}

TEST_CASE("errors: acquire_timeout", "[errors]") {
  const respool::acquire_timeout e(3, 1500us);
  CHECK(e.code() == errc::acquire_timeout);
  CHECK(e.code() == respool::make_error_condition(errc::limit_exceeded));
  CHECK(e.limit() == 3);
  CHECK(e.waited() == 1500us);
  const std::string what = e.what();
  CHECK(contains(what, "limit of 3"));
  CHECK(contains(what, "1.5 ms"));
  CHECK(caught_as<respool::acquire_timeout, respool::limit_exceeded>(e));
  CHECK(caught_as<respool::acquire_timeout, respool::error>(e));
  CHECK(caught_as<respool::acquire_timeout, std::system_error>(e));
  CHECK(caught_as<respool::acquire_timeout, std::exception>(e));
  CHECK_FALSE(caught_as<respool::acquire_timeout, respool::connection_limit_exceeded>(e));
}

TEST_CASE("errors: connection_limit_exceeded", "[errors]") {
  const respool::connection_limit_exceeded e(200, 0ns);
  CHECK(e.code() == errc::connection_limit_exceeded);
  CHECK(e.limit() == 200);
  CHECK(contains(e.what(), "connection pool limit of 200"));
  CHECK(caught_as<respool::connection_limit_exceeded, respool::limit_exceeded>(e));
  CHECK(caught_as<respool::connection_limit_exceeded, respool::error>(e));
  CHECK_FALSE(caught_as<respool::connection_limit_exceeded, respool::acquire_timeout>(e));
}

TEST_CASE("errors: connection_acquire_timeout is catchable every way", "[errors]") {
  const respool::connection_acquire_timeout e(7, 2s);
  CHECK(e.code() == errc::acquire_timeout);
  CHECK(e.code() == respool::make_error_condition(errc::limit_exceeded));
  CHECK(e.limit() == 7);
  CHECK(e.waited() == 2s);
  const std::string what = e.what();
  CHECK(contains(what, "connection pool limit of 7"));
  CHECK(contains(what, "2000.0 ms"));
  CHECK(caught_as<respool::connection_acquire_timeout, respool::connection_limit_exceeded>(e));
  CHECK(caught_as<respool::connection_acquire_timeout, respool::acquire_timeout>(e));
  CHECK(caught_as<respool::connection_acquire_timeout, respool::limit_exceeded>(e));  // one base, unambiguous
  CHECK(caught_as<respool::connection_acquire_timeout, respool::error>(e));
  CHECK(caught_as<respool::connection_acquire_timeout, std::system_error>(e));
  CHECK(caught_as<respool::connection_acquire_timeout, std::runtime_error>(e));
  // The accessors reach the one limit_exceeded through every path.
  const respool::limit_exceeded& as_limit = e;
  const respool::acquire_timeout& as_timeout = e;
  const respool::connection_limit_exceeded& as_connection = e;
  CHECK(&as_limit == static_cast<const respool::limit_exceeded*>(&as_timeout));
  CHECK(as_timeout.limit() == 7);
  CHECK(as_connection.waited() == 2s);
  CHECK(as_connection.code() == errc::acquire_timeout);
}

TEST_CASE("errors: pool_closed, invalid_url, unknown_transport", "[errors]") {
  const respool::pool_closed closed;
  CHECK(closed.code() == errc::pool_closed);
  CHECK(caught_as<respool::pool_closed, respool::error>(closed));
  CHECK_FALSE(caught_as<respool::pool_closed, respool::limit_exceeded>(closed));
  CHECK(respool::pool_closed("pool was reset").code() == errc::pool_closed);
  CHECK(contains(respool::pool_closed("pool was reset").what(), "pool was reset"));

  const respool::invalid_url bad("unterminated IPv6 literal", 9);
  CHECK(bad.code() == errc::invalid_url);
  CHECK(bad.position() == 9);
  CHECK(contains(bad.what(), "unterminated IPv6 literal"));
  CHECK(contains(bad.what(), "9"));

  const respool::unknown_transport unknown("bogus");
  CHECK(unknown.code() == errc::unknown_transport);
  CHECK(unknown.scheme() == "bogus");
  CHECK(contains(unknown.what(), "bogus"));

  const respool::error generic(errc::pool_in_use, "cannot shrink");
  CHECK(generic.code() == errc::pool_in_use);
  CHECK(contains(generic.what(), "cannot shrink"));
}

TEST_CASE("errors: what the pool throws carries limit and time waited", "[errors]") {
  respool::Resource<int> pool(2, [] { return 1; });
  auto a = pool.acquire();
  auto b = pool.acquire();
  try {
    pool.acquire(0s);
    FAIL("no limit_exceeded");
  } catch (const respool::limit_exceeded& e) {
    CHECK(e.limit() == 2);
    CHECK(e.waited() == 0ns);
    CHECK(contains(e.what(), "limit of 2"));
    CHECK(contains(e.what(), "did not wait"));
  }
  try {
    pool.acquire(20ms);
    FAIL("no acquire_timeout");
  } catch (const respool::acquire_timeout& e) {
    CHECK(e.limit() == 2);
    CHECK(e.waited() >= 20ms);
    CHECK(contains(e.what(), "limit of 2"));
    CHECK(contains(e.what(), "after waiting"));
    CHECK(contains(e.what(), " ms"));
  }
}
