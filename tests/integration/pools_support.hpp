// Helpers shared by the pool-level integration tests (redis_pools_test,
// amqp_pools_test): environment, a free port, and a pool's live connections.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <respool/connection_pool.hpp>
#include <vector>

namespace respool_test {

// The value of an environment variable, or nullptr if unset or empty.
inline const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// `const std::string url` from the variable `var`, or skip the test visibly.
#define RESPOOL_URL_OR_SKIP(var)                      \
  const char* url_c = ::respool_test::env(var);       \
  if (url_c == nullptr) {                             \
    WARN("skipped: " var " not set (run tests/run)"); \
    return;                                           \
  }                                                   \
  const std::string url = url_c

// A loopback port nothing listens on (bound then released).
inline std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Acquire every idle connection of `pool` and count the connected ones.
inline std::size_t connected_idle(respool::ConnectionPool& pool) {
  using namespace std::chrono_literals;
  std::vector<respool::Lease<respool::Connection>> all;
  std::size_t idle = pool.stats().idle, connected = 0;
  for (std::size_t i = 0; i < idle; ++i) all.push_back(pool.acquire(0s));
  for (auto& c : all) connected += c->connected();
  return connected;
}

}  // namespace respool_test
