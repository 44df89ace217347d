// Helpers for the integration tests that run Redis servers of their own: a
// redis-server (or redis-server --sentinel) of the test's own, started here
// and killed by the destructor; a tiny hiredis client; kombu_peer.py runs.
#pragma once

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "pools_support.hpp"

namespace respool_test {

// A scratch directory (RESPOOL_TEST_DIR's, or /tmp), removed by the destructor.
struct scratch_dir {
  std::string path;
  scratch_dir() {
    const char* base = env("RESPOOL_TEST_DIR");
    std::string pattern = std::string(base ? base : "/tmp") + "/respool-redis-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    REQUIRE(::mkdtemp(buffer.data()) != nullptr);
    path = buffer.data();
  }
  ~scratch_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

// A hiredis connection (TCP or unix socket), for checks behind respool's back.
struct raw_redis {
  redisContext* c = nullptr;
  explicit raw_redis(std::uint16_t port) : c(redisConnect("127.0.0.1", port)) {}
  explicit raw_redis(const std::string& socket) : c(redisConnectUnix(socket.c_str())) {}
  ~raw_redis() {
    if (c) redisFree(c);
  }
  bool ok() const { return c != nullptr && c->err == 0; }
  using reply_ptr = std::unique_ptr<redisReply, void (*)(void*)>;
  // The reply, or null on a failure.
  reply_ptr reply(const std::vector<std::string>& args) {
    if (!ok()) return {nullptr, freeReplyObject};
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : args) argv.push_back(a.data()), lengths.push_back(a.size());
    return {static_cast<redisReply*>(
                redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data())),
            freeReplyObject};
  }
  // The reply as text (strings, status, errors), integers in decimal; arrays
  // as their elements joined by ' '; "" for nil or a failure.
  std::string command(const std::vector<std::string>& args) {
    auto r = reply(args);
    return r ? text(r.get()) : std::string();
  }
  // The number of elements of an array reply (0 otherwise).
  std::size_t count(const std::vector<std::string>& args) {
    auto r = reply(args);
    return r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
  }
  // An integer reply (the test fails on any other).
  long long integer(const std::vector<std::string>& args) {
    auto r = reply(args);
    REQUIRE(r);
    REQUIRE(r->type == REDIS_REPLY_INTEGER);
    return r->integer;
  }
  // calls=<n> of "cmdstat_<name>" in INFO commandstats (0 if absent).
  long long calls(const std::string& name) {
    const std::string stats = command({"INFO", "commandstats"});
    const std::string key = "cmdstat_" + name + ":calls=";
    const auto at = stats.find(key);
    return at == std::string::npos ? 0 : std::stoll(stats.substr(at + key.size()));
  }
  static std::string text(const redisReply* r) {
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    if (r->type == REDIS_REPLY_ARRAY) {
      std::string out;
      for (std::size_t i = 0; i < r->elements; ++i) out += (i ? " " : "") + text(r->element[i]);
      return out;
    }
    return r->str ? std::string(r->str, r->len) : std::string();
  }
};

// A redis-server (or sentinel) of the test's own. `args` follow the binary's
// name (a config file first for a sentinel). Killed by the destructor.
struct own_server {
  pid_t pid = -1;
  explicit own_server(std::vector<std::string> args) {
    pid = ::fork();
    if (pid == 0) {
      std::vector<char*> argv;
      static std::string name = "redis-server";
      argv.push_back(name.data());
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    REQUIRE(pid > 0);
  }
  void kill() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~own_server() { kill(); }
};

// Polls `ready` until it holds, for at most `limit` (readiness of other
// processes; no fixed sleeps). Fails the test with `what` otherwise.
template <class Ready>
void wait_until(Ready ready, std::chrono::seconds limit, const std::string& what) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > give_up) FAIL("gave up waiting: " << what);
    // A pause between polls (not a synchronisation: the condition decides),
    // so that polling other processes does not take a core from them.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A plain redis-server of the test's own on a free loopback port, answering
// when constructed (killed by the destructor): for tests that kill their
// server or read its global statistics, which the shared test server
// (RESPOOL_REDIS_URL, used by other tests at the same time) cannot give.
struct own_redis {
  std::uint16_t port = free_port();
  own_server server{{"--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                     "no", "--logfile", "/dev/null"}};
  own_redis() {
    wait_until([&] { return raw_redis(port).ok(); }, std::chrono::seconds(20),
               "redis-server on port " + std::to_string(port));
  }
  void kill() { server.kill(); }
};

// ------------------------------------------------------------ kombu peer

inline std::string python() {
  const char* value = env("RESPOOL_PYTHON");
  return value ? value : "/usr/bin/python3";
}

// kombu_peer.py: RESPOOL_KOMBU_PEER, next to this file (__FILE__ may be
// relative to the build directory, where CTest runs), or under the cwd.
inline std::string peer_script() {
  if (const char* value = env("RESPOOL_KOMBU_PEER")) return value;
  std::string file = __FILE__;
  auto slash = file.rfind('/');
  std::string path =
      (slash == std::string::npos ? std::string(".") : file.substr(0, slash)) + "/kombu_peer.py";
  if (::access(path.c_str(), R_OK) == 0) return path;
  return "tests/integration/kombu_peer.py";
}

inline std::string shell_arg(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command; its exit status and output lines.
inline std::pair<int, std::vector<std::string>> run(const std::string& command) {
  std::vector<std::string> lines;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[1 << 16];
  std::string line;
  while (std::fgets(buffer, sizeof buffer, pipe)) {
    line += buffer;
    if (line.back() == '\n') line.pop_back(), lines.push_back(line), line.clear();
  }
  if (!line.empty()) lines.push_back(line);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, lines};
}

// kombu_peer.py consume: the messages kombu read (JSON objects).
inline std::vector<nlohmann::json> kombu_consume(const std::string& url, const std::string& queue,
                                                 int count) {
  auto [status, lines] = run(python() + " " + shell_arg(peer_script()) + " consume " + shell_arg(url) + " " +
                             shell_arg(queue) + " --count " + std::to_string(count) + " --timeout 20");
  INFO("kombu_peer consume exited " << status);
  REQUIRE(status == 0);
  std::vector<nlohmann::json> out;
  for (const auto& l : lines) {
    auto v = nlohmann::json::parse(l);
    if (!v.is_string()) out.push_back(std::move(v));
  }
  return out;
}

// kombu_peer.py publish of `spec` (a JSON list of messages).
inline void kombu_publish(const std::string& url, const nlohmann::json& spec) {
  scratch_dir dir;
  const std::string path = dir.path + "/spec.json";
  std::ofstream(path) << spec.dump();
  auto [status, lines] =
      run(python() + " " + shell_arg(peer_script()) + " publish " + shell_arg(url) + " < " + path);
  INFO("kombu_peer publish exited " << status);
  REQUIRE(status == 0);
}

}  // namespace respool_test
