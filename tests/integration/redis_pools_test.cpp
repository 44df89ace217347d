// The pools on a real Redis (tests/run starts it): failure behaviour — broker
// down, connections killed mid-stream, server restart — with every publish
// either reported or failing loudly, no connection leaked (the server's
// client list proves it), and fork with live connections.
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <respool/respool.hpp>
#include <respool/transport/redis.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pools_support.hpp"

using namespace respool;
using namespace std::chrono_literals;
using respool_test::connected_idle;
using respool_test::env;
using respool_test::free_port;

namespace {

// A plain hiredis client for looking at the server from outside respool.
struct raw_client {
  std::unique_ptr<redisContext, void (*)(redisContext*)> ctx{nullptr, redisFree};
  explicit raw_client(const std::string& url) {
    auto p = ConnectionParams::parse(url);
    ctx.reset(redisConnect(p.hostname().c_str(), p.port()));
    REQUIRE(ctx);
    REQUIRE(ctx->err == 0);
  }
  std::unique_ptr<redisReply, void (*)(void*)> cmd(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r =
        static_cast<redisReply*>(redisCommandArgv(ctx.get(), int(argv.size()), argv.data(), lens.data()));
    REQUIRE(r != nullptr);
    return {r, freeReplyObject};
  }
  long long integer(const std::vector<std::string>& args) { return cmd(args)->integer; }
  // Normal clients connected to the server, this one excluded.
  long long clients() {
    auto r = cmd({"CLIENT", "LIST", "TYPE", "normal"});
    std::string text(r->str, r->len);
    long long lines = 0;
    for (char c : text) lines += c == '\n';
    return lines - 1;
  }
};

// Redis handles a client's disconnect asynchronously: poll its client list
// (a round trip each time, no sleep) until it shows `expected`, for at most 10 s.
long long clients_eventually(raw_client& raw, long long expected) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  long long now = raw.clients();
  while (now != expected && std::chrono::steady_clock::now() < deadline) now = raw.clients();
  return now;
}

// The client id the server gives `connection` (proves which socket it is).
long long client_id(Connection& connection) {
  auto& impl = dynamic_cast<transport::redis_connection&>(connection.transport_impl());
  auto* r = static_cast<redisReply*>(redisCommand(impl.native_handle(), "CLIENT ID"));
  REQUIRE(r != nullptr);
  long long id = r->integer;
  freeReplyObject(r);
  return id;
}

std::string unique_queue(const char* what) {
  return std::string("respool-pools-") + what + "-" + std::to_string(::getpid());
}

}  // namespace

TEST_CASE("broker down at acquire: ensure_connection retries, then a clear error without the password",
          "[redis][integration][failure]") {
  const std::string down = "redis://:hunter2-secret@127.0.0.1:" + std::to_string(free_port()) + "/0";
  ConnectionPool pool(down, 2);
  {
    auto conn = pool.acquire();
    try {
      conn->ensure_connection(2, 1ms, 1ms, 1ms);
      FAIL("connected to nothing");
    } catch (const error& e) {
      std::string what = e.what();
      INFO(what);
      CHECK(e.code() == errc::connection_failed);
      CHECK(what.find("redis://:**@127.0.0.1:") != std::string::npos);
      CHECK(what.find("3 attempt") != std::string::npos);
      CHECK(what.find("hunter2") == std::string::npos);
    }
  }
  // Through the producer pool: the publish throws, and both leases go back.
  pools::Producers producers(2);
  {
    auto producer = producers[down].acquire();
    PublishOptions o;
    o.routing_key = "nowhere";
    CHECK_THROWS_AS(producer->publish({{"x", 1}}, o), error);
  }
  CHECK(producers[down].stats().in_use == 0);
  CHECK(pools::connections[down].stats().in_use == 0);
  pools::reset();
}

TEST_CASE("connections killed mid-stream: publishes succeed or throw, none lost, none leaked",
          "[redis][integration][failure]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  pools::reset();
  raw_client raw(url);
  const std::string queue = unique_queue("killed");
  raw.cmd({"DEL", queue});
  const long long clients_before = raw.clients();

  constexpr int threads = 8, per_thread = 400;
  std::atomic<int> done{0};
  std::mutex mutex;
  std::set<int> sent;
  int failures = 0;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      PublishOptions o;
      o.routing_key = queue;
      for (int i = 0; i < per_thread; ++i) {
        const int id = t * per_thread + i;
        try {
          auto producer = pools::producers[url].acquire(10s);
          producer->publish({{"id", id}}, o);
          std::lock_guard<std::mutex> lock(mutex);
          sent.insert(id);
        } catch (const error& e) {
          std::lock_guard<std::mutex> lock(mutex);
          CHECK((e.code() == errc::connection_lost || e.code() == errc::connection_failed));
          ++failures;
        }
        ++done;
      }
    });
  }
  // Kill every respool connection three times while the publishers run.
  for (int round = 1; round <= 3; ++round) {
    while (done.load() < round * threads * per_thread / 4) std::this_thread::yield();
    raw.cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  }
  for (auto& w : workers) w.join();

  INFO("sent " << sent.size() << ", failed " << failures);
  CHECK(sent.size() + failures == threads * per_thread);
  // Every publish reported as sent is in the queue (a failed one may be too:
  // its reply can be lost after the server ran it — at least once).
  auto items = raw.cmd({"LRANGE", queue, "0", "-1"});
  std::set<int> stored;
  for (size_t i = 0; i < items->elements; ++i) {
    auto envelope = nlohmann::json::parse(std::string(items->element[i]->str, items->element[i]->len));
    auto body =
        nlohmann::json::parse(respool::detail::redis::base64_decode(envelope["body"].get<std::string>()));
    stored.insert(body["id"].get<int>());
  }
  std::size_t missing = 0;
  for (int id : sent) missing += stored.count(id) == 0;
  CHECK(missing == 0);
  CHECK(stored.size() <= sent.size() + failures);

  // The pools are consistent and the server sees exactly the pool's live connections.
  auto& connections = pools::connections[url];
  CHECK(connections.stats().in_use == 0);
  CHECK(pools::producers[url].stats().in_use == 0);
  auto stats = connections.stats();
  CHECK(stats.created - stats.closed == stats.idle);  // every replaced connection was closed
  CHECK(stats.idle <= threads);
  const std::size_t live = connected_idle(connections);
  CHECK(clients_eventually(raw, clients_before + static_cast<long long>(live)) - clients_before ==
        static_cast<long long>(live));
  raw.cmd({"DEL", queue});
  pools::reset();
  CHECK(clients_eventually(raw, clients_before) == clients_before);
}

TEST_CASE("server restart: publishes fail loudly while it is down, the pool reconnects, nothing leaks",
          "[redis][integration][failure]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  const char* stop = env("RESPOOL_REDIS_STOP");
  const char* start = env("RESPOOL_REDIS_START");
  if (!stop || !start) {
    WARN("skipped: RESPOOL_REDIS_STOP / RESPOOL_REDIS_START not set (run tests/run)");
    return;
  }
  pools::reset();
  const std::string queue = unique_queue("restart");
  PublishOptions o;
  o.routing_key = queue;
  for (int i = 0; i < 4; ++i) {  // four warm connections
    std::vector<Lease<Producer>> held;
    for (int k = 0; k < 4; ++k) held.push_back(pools::producers[url].acquire());
    for (auto& p : held) p->publish({{"phase", "before"}}, o);
  }
  REQUIRE(std::system(stop) == 0);
  int failed = 0;
  for (int i = 0; i < 8; ++i) {
    try {
      pools::producers[url].acquire()->publish({{"phase", "down"}}, o);
    } catch (const error& e) {
      CHECK((e.code() == errc::connection_lost || e.code() == errc::connection_failed));
      ++failed;
    }
  }
  CHECK(failed == 8);  // never silently dropped
  REQUIRE(std::system(start) == 0);
  int sent = 0;
  for (int i = 0; i < 20; ++i) {
    pools::producers[url].acquire()->publish({{"phase", "after"}, {"i", i}}, o);
    ++sent;
  }
  raw_client raw(url);
  CHECK(raw.integer({"LLEN", queue}) == sent);  // the restarted server (no persistence) has exactly these
  auto& connections = pools::connections[url];
  CHECK(connections.stats().in_use == 0);
  auto stats = connections.stats();
  CHECK(stats.created - stats.closed == stats.idle);  // dead ones replaced and closed, none leaked
  CHECK(stats.idle <= 4);
  const auto live = static_cast<long long>(connected_idle(connections));
  CHECK(clients_eventually(raw, live) == live);
  raw.cmd({"DEL", queue});
  pools::reset();
}

TEST_CASE("fork with live Redis connections: the child uses its own, the parent's survives",
          "[redis][integration][fork]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  pools::reset();
  const std::string queue = unique_queue("fork");
  raw_client raw(url);
  raw.cmd({"DEL", queue});
  long long parent_id = 0;
  {
    auto conn = pools::connections[url].acquire();
    conn->connect();
    parent_id = client_id(*conn);
  }
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(20);  // watchdog
    int code = 0;
    try {
      auto conn = pools::connections[url].acquire();
      conn->connect();
      if (client_id(*conn) == parent_id) code = 1;  // must be a new socket
      PublishOptions o;
      o.routing_key = queue;
      pools::producers[url].acquire()->publish({{"from", "child"}}, o);
      pools::reset();  // closes only the child's own connections
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(raw.integer({"LLEN", queue}) == 1);
  // The parent's connection is the same socket and still works.
  auto conn = pools::connections[url].acquire();
  CHECK(conn->alive());
  CHECK(client_id(*conn) == parent_id);
  PublishOptions o;
  o.routing_key = queue;
  Producer(*conn).publish({{"from", "parent"}}, o);
  CHECK(raw.integer({"LLEN", queue}) == 2);
  raw.cmd({"DEL", queue});
  conn.release();
  pools::reset();
}
