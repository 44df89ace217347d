// Integration tests of respool/transport/redis.hpp against a live Redis
// (RESPOOL_REDIS_URL, set by tests/run) and against Python kombu 5.2.4
// (tests/integration/kombu_peer.py, run with /usr/bin/python3 or
// $RESPOOL_PYTHON). Without RESPOOL_REDIS_URL every test is skipped with a
// warning; without kombu the interop tests are.
//
// What is checked: kombu's key layout (binding sets, priority lists, the
// unacked hash and index), the envelope byte for byte against one kombu
// wrote, kombu's topic regexes (cross-checked with kombu's own matcher),
// fanout over PUBLISH, AUTH / SELECT / timeouts from the URL, failures
// (connection_failed naming the sanitised URI, connection_lost mid-operation,
// a restart of the server), abandon() in a forked child, and both directions
// of interop with kombu's Producer / SimpleQueue / Consumer.

#include "respool/transport/redis.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../unit/support.hpp"
#include "respool/connection_params.hpp"
#include "respool/detail/codec.hpp"

namespace {

using respool::ConnectionParams;
using respool::Envelope;
using respool::errc;
using respool::Exchange;
using respool::Queue;
using respool::transport::channel_impl;
using respool::transport::connection_impl;
using respool::transport::redis_connection;
using json = nlohmann::json;
using namespace std::chrono_literals;

#define RESPOOL_REQUIRE_REDIS()                                 \
  const auto redis_url_value = redis_url();                     \
  if (!redis_url_value) {                                       \
    WARN("skipped: RESPOOL_REDIS_URL not set (run tests/run)"); \
    return;                                                     \
  }                                                             \
  const std::string& url = *redis_url_value;                    \
  (void)url

#define RESPOOL_REQUIRE_KOMBU()                                                          \
  if (!kombu_available()) {                                                              \
    WARN("skipped: Python kombu not importable by " + python() + " (need kombu+redis)"); \
    return;                                                                              \
  }

std::optional<std::string> redis_url() {
  const char* value = std::getenv("RESPOOL_REDIS_URL");
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

// ---------------------------------------------------------------- helpers

// Names unique to this process and test, and removal of every key that
// contains them when the test ends.
class scratch;
struct raw_redis;

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string python() {
  const char* value = std::getenv("RESPOOL_PYTHON");
  return value && *value ? value : "/usr/bin/python3";
}

std::string peer_script() {
  if (const char* value = std::getenv("RESPOOL_KOMBU_PEER"); value && *value) return value;
  std::string file = __FILE__;
  auto slash = file.rfind('/');
  std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  return dir + "/kombu_peer.py";
}

struct process_result {
  int status = -1;
  std::vector<std::string> lines;
};

process_result run(const std::string& command) {
  process_result result;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[1 << 16];
  std::string line;
  while (std::fgets(buffer, sizeof buffer, pipe)) {
    line += buffer;
    if (!line.empty() && line.back() == '\n') {
      line.pop_back();
      result.lines.push_back(line);
      line.clear();
    }
  }
  if (!line.empty()) result.lines.push_back(line);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool kombu_available() {
  static const bool available = run(python() + " -c 'import kombu, redis' >/dev/null 2>&1; echo $?").lines ==
                                std::vector<std::string>{"0"};
  return available;
}

// A kombu_peer.py run in the background (popen), read line by line.
class peer_process {
 public:
  explicit peer_process(const std::string& args) {
    pipe_ = ::popen((python() + " " + shell_quote(peer_script()) + " " + args).c_str(), "r");
    REQUIRE(pipe_ != nullptr);
  }
  ~peer_process() {
    if (pipe_) ::pclose(pipe_);
  }
  std::optional<std::string> next_line() {
    char buffer[1 << 16];
    std::string line;
    while (std::fgets(buffer, sizeof buffer, pipe_)) {
      line += buffer;
      if (line.back() == '\n') {
        line.pop_back();
        return line;
      }
    }
    if (!line.empty()) return line;
    return std::nullopt;
  }
  int wait() {
    int status = ::pclose(std::exchange(pipe_, nullptr));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  FILE* pipe_ = nullptr;
};

// kombu_peer.py consume: the messages it printed.
std::vector<json> kombu_consume(const std::string& url, const std::string& queue, int count,
                                const std::string& extra = {}) {
  auto result = run(python() + " " + shell_quote(peer_script()) + " consume " + shell_quote(url) + " " +
                    shell_quote(queue) + " --count " + std::to_string(count) + " --timeout 10 " + extra);
  INFO("kombu_peer consume exited " << result.status);
  REQUIRE(result.status == 0);
  std::vector<json> messages;
  for (const auto& line : result.lines) {
    auto value = json::parse(line);
    if (value.is_string() && value == "READY") continue;
    messages.push_back(std::move(value));
  }
  return messages;
}

// kombu_peer.py publish with this spec.
void kombu_publish(const std::string& url, const json& spec) {
  char path[] = "/tmp/respool-kombu-spec-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << spec.dump();
  }
  auto result =
      run(python() + " " + shell_quote(peer_script()) + " publish " + shell_quote(url) + " < " + path);
  ::unlink(path);
  REQUIRE(result.status == 0);
}

// An independent hiredis connection, to look at what the transport stored.
struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r) freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

struct raw_redis {
  redisContext* ctx = nullptr;

  explicit raw_redis(const ConnectionParams& p) {
    ctx = redisConnect(p.hostname().c_str(), p.port());
    REQUIRE(ctx != nullptr);
    REQUIRE(ctx->err == 0);
    if (!p.password().empty()) {
      auto r = p.userid().empty() ? cmd({"AUTH", p.password()}) : cmd({"AUTH", p.userid(), p.password()});
      REQUIRE(r->type != REDIS_REPLY_ERROR);
    }
    if (p.virtual_host() != "0") REQUIRE(cmd({"SELECT", p.virtual_host()})->type != REDIS_REPLY_ERROR);
  }
  explicit raw_redis(const std::string& url) : raw_redis(ConnectionParams::parse(url)) {}
  ~raw_redis() {
    if (ctx) redisFree(ctx);
  }
  raw_redis(const raw_redis&) = delete;
  raw_redis& operator=(const raw_redis&) = delete;

  reply_ptr cmd(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
    REQUIRE(r != nullptr);
    return reply_ptr(r);
  }
  long long integer(const std::vector<std::string>& args) {
    auto r = cmd(args);
    INFO(args.front() << ": reply type " << r->type << " " << (r->str ? r->str : ""));
    REQUIRE(r->type == REDIS_REPLY_INTEGER);
    return r->integer;
  }
  std::optional<std::string> str(const std::vector<std::string>& args) {
    auto r = cmd(args);
    if (r->type == REDIS_REPLY_NIL) return std::nullopt;
    INFO(args.front() << ": reply type " << r->type);
    REQUIRE((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS));
    return std::string(r->str, r->len);
  }
  std::vector<std::string> strings(const std::vector<std::string>& args) {
    auto r = cmd(args);
    REQUIRE(r->type == REDIS_REPLY_ARRAY);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < r->elements; ++i) out.emplace_back(r->element[i]->str, r->element[i]->len);
    return out;
  }
  std::set<std::string> members(const std::string& key) {
    auto v = strings({"SMEMBERS", key});
    return {v.begin(), v.end()};
  }
  bool exists(const std::string& key) { return integer({"EXISTS", key}) == 1; }
};

// Unique names for one test; every key containing the test's prefix is
// deleted at the end.
class scratch {
 public:
  explicit scratch(std::string url) : url_(std::move(url)) {
    static int counter = 0;
    prefix_ = "respool-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  }
  ~scratch() {
    try {
      raw_redis r(url_);
      for (std::string cursor = "0";;) {
        auto reply = r.cmd({"SCAN", cursor, "MATCH", "*" + prefix_ + "*", "COUNT", "1000"});
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) break;
        cursor.assign(reply->element[0]->str, reply->element[0]->len);
        for (std::size_t i = 0; i < reply->element[1]->elements; ++i) {
          auto* k = reply->element[1]->element[i];
          r.cmd({"DEL", std::string(k->str, k->len)});
        }
        if (cursor == "0") break;
      }
    } catch (...) {
    }
  }
  std::string operator()(const std::string& name) const { return prefix_ + "." + name; }

 private:
  std::string url_;
  std::string prefix_;
};

std::unique_ptr<connection_impl> make(const ConnectionParams& params) {
  auto factory = respool::transport::find_transport(params.transport());
  REQUIRE(factory);
  return factory(params);
}

std::unique_ptr<connection_impl> open(const std::string& url) {
  auto c = make(ConnectionParams::parse(url));
  c->connect();
  return c;
}

redis_connection& as_redis(connection_impl& c) { return dynamic_cast<redis_connection&>(c); }

// The URL with another database (credentials and host kept).
ConnectionParams with_db(const std::string& url, const std::string& db) {
  auto p = ConnectionParams::parse(url);
  return ConnectionParams(p.transport(), p.hostname(), p.port(), p.userid(), p.password(), db, p.options());
}

ConnectionParams with_options(const std::string& url, ConnectionParams::options_type options,
                              std::optional<std::uint16_t> port = std::nullopt) {
  auto p = ConnectionParams::parse(url);
  for (const auto& [k, v] : p.options()) options.emplace(k, v);
  return ConnectionParams(p.transport(), p.hostname(), port ? *port : p.port(), p.userid(), p.password(),
                          p.virtual_host(), options);
}

long db_of(const std::string& url) { return std::stol(ConnectionParams::parse(url).virtual_host()); }

// What the lead's Producer puts in an Envelope for each serializer.
Envelope json_message(const std::string& text, json headers = json::object(), int priority = 0) {
  Envelope e;
  e.body = text;
  e.content_type = "application/json";
  e.content_encoding = "utf-8";
  e.headers = std::move(headers);
  e.priority = priority;
  return e;
}
Envelope zlib_message(const std::string& text, json headers = json::object()) {
  Envelope e = json_message(respool::detail::zlib_compress(text), std::move(headers));
  e.headers["compression"] = "application/x-gzip";
  return e;
}
Envelope raw_message(const std::string& bytes) {
  Envelope e;
  e.body = bytes;
  e.content_type = "application/data";
  e.content_encoding = "binary";
  return e;
}

// A free TCP port on 127.0.0.1 (bound, then released).
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A listening socket that never accepts or answers (a hung server).
struct silent_server {
  int fd = -1;
  std::uint16_t port = 0;
  silent_server() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~silent_server() { ::close(fd); }
};

// "ip:port" of the local end of a connection (as CLIENT LIST's addr= shows it).
std::string local_address(redis_connection& c) {
  redisContext* ctx = c.native_handle();
  REQUIRE(ctx != nullptr);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(ctx->fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  char host[INET6_ADDRSTRLEN] = {};
  std::uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  return std::string(host) + ":" + std::to_string(port);
}

// A canonical version 4 UUID: xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx, lowercase.
bool is_uuid4(const std::string& text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return text[14] == '4' && (text[19] == '8' || text[19] == '9' || text[19] == 'a' || text[19] == 'b');
}

std::string SEP = std::string("\x06\x16");

}  // namespace

// ====================================================================== no server needed

TEST_CASE("including the header registers redis:// and rediss://", "[redis]") {
  CHECK(respool::transport::find_transport("redis"));
  CHECK(respool::transport::find_transport("rediss"));
  auto c = make(ConnectionParams::parse("redis://localhost"));
  CHECK_FALSE(c->connected());
  CHECK_FALSE(c->alive());
  CHECK_THROWS_AS(c->channel(), respool::error);
}

TEST_CASE("options come from the URL", "[redis]") {
  using respool::transport::redis::options;
  auto o = options::from(
      ConnectionParams::parse("redis://u:pw@[::1]:6380/3?connect_timeout=0.25&socket_timeout=1.5"));
  CHECK(o.host == "::1");
  CHECK(o.port == 6380);
  CHECK(o.db == 3);
  CHECK(o.userid == "u");
  CHECK(o.password == "pw");
  REQUIRE(o.connect_timeout);
  CHECK(*o.connect_timeout == Approx(0.25));
  REQUIRE(o.socket_timeout);
  CHECK(*o.socket_timeout == Approx(1.5));
  CHECK_FALSE(o.tls);
  CHECK(o.uri.find("pw") == std::string::npos);

  auto d = options::from(ConnectionParams::parse("redis://"));
  CHECK(d.host == "localhost");
  CHECK(d.port == 6379);
  CHECK(d.db == 0);
  REQUIRE(d.connect_timeout);
  CHECK(*d.connect_timeout == Approx(5.0));
  CHECK_FALSE(d.socket_timeout);

  CHECK(options::from(ConnectionParams::parse("rediss://h")).tls);
  CHECK_FALSE(options::from(ConnectionParams::parse("redis://h?connect_timeout=0")).connect_timeout);
  CHECK(*options::from(ConnectionParams::parse("redis://h?socket_connect_timeout=2")).connect_timeout ==
        Approx(2.0));
  try {
    options::from(ConnectionParams::parse("redis://:secret@h?socket_timeout=soon"));
    FAIL("no exception");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::invalid_url);
    CHECK(std::string(e.what()).find("socket_timeout") != std::string::npos);
    CHECK(std::string(e.what()).find("secret") == std::string::npos);
  }
  CHECK_THROWS_AS(options::from(ConnectionParams::parse("redis://h?connect_timeout=-1")), respool::error);
}

TEST_CASE("kombu's names and topic regexes", "[redis]") {
  namespace r = respool::transport::redis;
  CHECK(r::binding_key("news") == "_kombu.binding.news");
  CHECK(r::binding_member("domestic", "", "news_domestic") == "domestic" + SEP + SEP + "news_domestic");
  CHECK(r::priority_queue("q", 0) == "q");
  CHECK(r::priority_queue("q", 2) == "q");
  CHECK(r::priority_queue("q", 3) == "q" + SEP + "3");
  CHECK(r::priority_queue("q", 5) == "q" + SEP + "3");
  CHECK(r::priority_queue("q", 8) == "q" + SEP + "6");
  CHECK(r::priority_queue("q", 9) == "q" + SEP + "9");
  CHECK(r::priority_queue("q", 42) == "q" + SEP + "9");
  CHECK(r::priority_queue("q", -3) == "q");
  CHECK(r::fanout_channel(0, "bcast", "") == "/0.bcast");
  CHECK(r::fanout_channel(4, "bcast", "rk") == "/4.bcast/rk");
  // As kombu 5.2.4 stored them (redis-cli MONITOR of kombu's queue_bind).
  CHECK(r::key_to_pattern("*.error") == "^.*?[^\\.]\\.error$");
  CHECK(r::key_to_pattern("app.#") == "^app\\..*?$");
  CHECK(r::key_to_pattern("a-b.c_d*") == "^a\\-b\\.c\\_d*$");
}

// ====================================================================== connection

TEST_CASE("connect, alive, close, reconnect", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  auto c = make(ConnectionParams::parse(url));
  CHECK_FALSE(c->connected());
  c->connect();
  CHECK(c->connected());
  CHECK(c->alive());
  c->connect();  // no-op
  CHECK(c->connected());
  c->close();
  CHECK_FALSE(c->connected());
  CHECK_FALSE(c->alive());
  CHECK_THROWS_AS(c->channel(), respool::error);
  c->close();  // idempotent
  c->connect();
  CHECK(c->alive());
  CHECK(c->channel().queue_size("respool-test-nothing-here") == 0);
}

TEST_CASE("an unreachable server is connection_failed naming the sanitised URI", "[redis][integration]") {
  auto port = free_port();
  auto params = ConnectionParams::parse("redis://someone:s3cr3t-pw@127.0.0.1:" + std::to_string(port) + "/0");
  auto c = make(params);
  try {
    c->connect();
    FAIL("connected to a closed port");
  } catch (const respool::error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(e.code() == errc::connection_failed);
    CHECK(what.find(params.as_uri()) != std::string::npos);
    CHECK(what.find("s3cr3t-pw") == std::string::npos);
  }
  CHECK_FALSE(c->connected());

  auto tls = make(ConnectionParams::parse("rediss://:pw@127.0.0.1:" + std::to_string(port)));
  try {
    tls->connect();
    FAIL("rediss connected");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK(std::string(e.what()).find("TLS") != std::string::npos);
    CHECK(std::string(e.what()).find(":pw@") == std::string::npos);
  }
}

TEST_CASE("connect_timeout and socket_timeout bound a hung server", "[redis][integration]") {
  silent_server hung;  // accepts the TCP handshake (backlog) and never answers
  auto base = "redis://:pw@127.0.0.1:" + std::to_string(hung.port) + "/0";
  for (auto query : {"?socket_timeout=0.3", "?connect_timeout=0.3"}) {
    INFO(query);
    auto c = make(ConnectionParams::parse(base + query));
    auto start = std::chrono::steady_clock::now();
    try {
      c->connect();
      FAIL("connected to a silent server");
    } catch (const respool::error& e) {
      CHECK(e.code() == errc::connection_failed);
      CHECK(std::string(e.what()).find("pw@") == std::string::npos);
    }
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 250ms);
    CHECK(took < 3s);
    CHECK_FALSE(c->connected());
  }
}

TEST_CASE("socket_timeout mid-operation is connection_lost, never a silent drop", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  auto c = make(with_options(url, {{"socket_timeout", "0.3"}}));
  c->connect();
  raw_redis raw(url);
  auto pause = raw.cmd({"CLIENT", "PAUSE", "1500", "WRITE"});
  if (pause->type == REDIS_REPLY_ERROR) pause = raw.cmd({"CLIENT", "PAUSE", "1500"});
  REQUIRE(pause->type != REDIS_REPLY_ERROR);
  auto start = std::chrono::steady_clock::now();
  try {
    c->channel().publish(json_message("{}"), "", names("paused"));
    FAIL("publish returned while the server was paused");
  } catch (const respool::error& e) {
    INFO(e.what());
    CHECK(e.code() == errc::connection_lost);
    CHECK(std::string(e.what()).find("timed out") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - start < 1200ms);
  CHECK_FALSE(c->connected());
  raw.cmd({"CLIENT", "UNPAUSE"});
  c->connect();  // a new connection works
  CHECK(c->alive());
}

TEST_CASE("alive() is a local check: it never waits for the server", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  auto c = make(ConnectionParams::parse(url));
  c->connect();
  raw_redis raw(url);
  // A paused server answers nothing; alive() must not send anything and wait.
  REQUIRE(raw.cmd({"CLIENT", "PAUSE", "200"})->type != REDIS_REPLY_ERROR);
  CHECK(c->alive());
  CHECK(c->connected());
}

TEST_CASE("AUTH with a Redis 6 ACL user (user and password)", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  raw_redis raw(url);
  auto p = ConnectionParams::parse(url);
  std::string user = "respool-test-user-" + std::to_string(::getpid());
  auto created = raw.cmd({"ACL", "SETUSER", user, "on", ">right-pw", "~*", "&*", "+@all"});
  if (created->type == REDIS_REPLY_ERROR) {
    WARN("skipped: the server has no ACLs (Redis < 6)");
    return;
  }
  auto good = ConnectionParams(p.transport(), p.hostname(), p.port(), user, "right-pw", p.virtual_host());
  auto c = make(good);
  c->connect();
  auto* who = static_cast<redisReply*>(redisCommand(as_redis(*c).native_handle(), "ACL WHOAMI"));
  REQUIRE(who != nullptr);
  CHECK(std::string(who->str, who->len) == user);
  freeReplyObject(who);

  auto bad = ConnectionParams(p.transport(), p.hostname(), p.port(), user, "wrong-pw", p.virtual_host());
  auto b = make(bad);
  try {
    b->connect();
    FAIL("connected with a wrong password");
  } catch (const respool::error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(e.code() == errc::connection_failed);
    CHECK(what.find("authentication failed") != std::string::npos);
    CHECK(what.find(bad.as_uri()) != std::string::npos);
    CHECK(what.find("wrong-pw") == std::string::npos);
  }
  CHECK_FALSE(b->connected());
  raw.cmd({"ACL", "DELUSER", user});
}

TEST_CASE("AUTH password against a requirepass server", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  if (run("command -v redis-server >/dev/null 2>&1; echo $?").lines != std::vector<std::string>{"0"}) {
    WARN("skipped: redis-server not in PATH");
    return;
  }
  auto port = free_port();
  std::string pidfile = "/tmp/respool-test-redis-" + std::to_string(::getpid()) + ".pid";
  std::string start =
      "redis-server --port " + std::to_string(port) +
      " --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --requirepass 'p@ss:w/rd'" +
      " --pidfile " + pidfile + " --logfile /dev/null";
  REQUIRE(std::system(start.c_str()) == 0);
  struct stopper {
    std::string pidfile;
    ~stopper() {
      std::ifstream in(pidfile);
      long pid = 0;
      if (in >> pid && pid > 0) ::kill(static_cast<pid_t>(pid), SIGTERM);
      ::unlink(pidfile.c_str());
    }
  } stop{pidfile};
  std::string base = "127.0.0.1:" + std::to_string(port);
  // wait until it listens
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    redisContext* probe = redisConnect("127.0.0.1", port);
    bool up = probe && !probe->err;
    if (probe) redisFree(probe);
    if (up) break;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();  // polling another process's readiness, bounded by the deadline
  }
  auto ok = make(ConnectionParams::parse("redis://:p%40ss%3Aw%2Frd@" + base + "/2"));
  ok->connect();
  CHECK(ok->alive());

  auto none = make(ConnectionParams::parse("redis://" + base));
  try {
    none->connect();
    FAIL("connected without a password");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK(std::string(e.what()).find("NOAUTH") != std::string::npos);
  }
  auto wrong = make(ConnectionParams::parse("redis://:nope@" + base));
  try {
    wrong->connect();
    FAIL("connected with a wrong password");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK(std::string(e.what()).find("nope") == std::string::npos);
  }
}

TEST_CASE("the URL's database is SELECTed", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  auto params = with_db(url, "7");
  scratch names7(params.as_uri(true));
  auto c = make(params);
  c->connect();
  std::string q = names7("in-db-7");
  c->channel().publish(json_message("{\"db\": 7}"), "", q);
  raw_redis raw7(params);
  CHECK(raw7.integer({"LLEN", q}) == 1);
  raw_redis raw(url);
  if (ConnectionParams::parse(url).virtual_host() != "7") CHECK(raw.integer({"LLEN", q}) == 0);
  CHECK(c->channel().get(q, true)->body() == "{\"db\": 7}");
}

// ====================================================================== layout

TEST_CASE("declaring stores nothing, bindings are kombu's set members", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto& ch = c->channel();

  Exchange direct{names("news")};
  Queue q{names("news_domestic"), direct, "domestic"};
  ch.declare_exchange(direct);
  ch.declare_queue(q);
  CHECK_FALSE(raw.exists(q.name));  // kombu: a queue is a list, created by the first message
  CHECK_FALSE(raw.exists("_kombu.binding." + direct.name));
  ch.bind_queue(q);
  CHECK(raw.members("_kombu.binding." + direct.name) ==
        std::set<std::string>{"domestic" + SEP + SEP + q.name});
  CHECK_FALSE(raw.exists(q.name));
  ch.bind_queue(q);  // idempotent
  CHECK(raw.integer({"SCARD", "_kombu.binding." + direct.name}) == 1);

  Exchange topic{names("logs"), "topic"};
  ch.declare_exchange(topic);
  for (auto [queue, key] : {std::pair{"q_star", "*.error"}, {"q_hash", "app.#"}, {"q_weird", "a-b.c_d*"}})
    ch.bind_queue(Queue{names(queue), topic, key});
  CHECK(raw.members("_kombu.binding." + topic.name) ==
        std::set<std::string>{"*.error" + SEP + "^.*?[^\\.]\\.error$" + SEP + names("q_star"),
                              "app.#" + SEP + "^app\\..*?$" + SEP + names("q_hash"),
                              "a-b.c_d*" + SEP + "^a\\-b\\.c\\_d*$" + SEP + names("q_weird")});

  Exchange fanout{names("bcast"), "fanout"};
  ch.bind_queue(Queue{names("bcast_q1"), fanout, ""});  // declares the exchange too
  CHECK(raw.members("_kombu.binding." + fanout.name) == std::set<std::string>{SEP + SEP + names("bcast_q1")});

  // A queue on the default exchange is not bound.
  ch.bind_queue(Queue{names("plain"), Exchange{}, names("plain")});
  CHECK_FALSE(raw.exists("_kombu.binding."));

  // kombu's NotEquivalentError, and unknown types.
  try {
    ch.declare_exchange(Exchange{direct.name, "fanout"});
    FAIL("redeclared with another type");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::channel_error);
  }
  CHECK_THROWS_AS(ch.declare_exchange(Exchange{names("hdrs"), "headers"}), respool::error);
  ch.declare_exchange(direct);  // same again: fine
}

TEST_CASE("direct routing, default exchange, unroutable messages", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto& ch = c->channel();
  Exchange ex{names("direct")};
  ch.declare_exchange(ex);
  ch.bind_queue(Queue{names("a1"), ex, "a"});
  ch.bind_queue(Queue{names("a2"), ex, "a"});
  ch.bind_queue(Queue{names("b"), ex, "b"});
  ch.publish(json_message("{\"k\": \"a\"}"), ex.name, "a");
  CHECK(raw.integer({"LLEN", names("a1")}) == 1);
  CHECK(raw.integer({"LLEN", names("a2")}) == 1);
  CHECK_FALSE(raw.exists(names("b")));
  // One delivery tag for every copy, as kombu.
  auto t1 = json::parse(*raw.str({"LINDEX", names("a1"), "0"}))["properties"]["delivery_tag"];
  auto t2 = json::parse(*raw.str({"LINDEX", names("a2"), "0"}))["properties"]["delivery_tag"];
  CHECK(t1 == t2);

  ch.publish(json_message("{}"), ex.name, "nobody-listens");  // dropped, no error
  ch.publish(json_message("{}"), names("undeclared-exchange"), "a");
  CHECK(raw.integer({"LLEN", names("a1")}) == 1);

  // The default exchange: LPUSH to the queue named by the routing key.
  ch.publish(json_message("{\"d\": 1}"), "", names("by-name"));
  auto stored = json::parse(*raw.str({"LINDEX", names("by-name"), "0"}));
  CHECK(stored["properties"]["delivery_info"] == json{{"exchange", ""}, {"routing_key", names("by-name")}});
  auto m = ch.get(names("by-name"), true);
  REQUIRE(m);
  CHECK(m->payload() == json{{"d", 1}});
  CHECK(m->exchange().empty());
  CHECK(m->routing_key() == names("by-name"));
}

TEST_CASE("topic routing agrees with kombu's matcher", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  std::vector<std::string> bindings = {"*.error",      "app.#", "#",   "*",   "a.*.c", "a-b.c_d*",
                                       "stock.#.nyse", "#.x",   "a.b", "*.*", "#.#",   "x.*.#"};
  std::vector<std::string> keys = {
      "app.error",  "app.x.y",      "x",  "",      "a.b.c", "a.b.b.c", "a-b.c_dd", "a-b.c_",
      "stock.nyse", "stock.a.nyse", "..", "a.b.x", "a.b",   "ab",      "x.y",      "x.y.z"};
  auto c = open(url);
  auto& ch = c->channel();
  Exchange topic{names("topic"), "topic"};
  ch.declare_exchange(topic);
  for (std::size_t b = 0; b < bindings.size(); ++b)
    ch.bind_queue(Queue{names("tq" + std::to_string(b)), topic, bindings[b]});
  std::vector<std::vector<bool>> ours;
  for (const auto& key : keys) {
    ch.publish(raw_message(key), topic.name, key);
    std::vector<bool> row;
    for (std::size_t b = 0; b < bindings.size(); ++b) {
      auto m = ch.get(names("tq" + std::to_string(b)), true);
      row.push_back(m.has_value());
      if (m) CHECK(m->body() == key);
    }
    ours.push_back(row);
  }
  // Without kombu, check a few by hand; with it, all against kombu's own code.
  CHECK(ours[0][0]);        // app.error ~ *.error
  CHECK(ours[1][1]);        // app.x.y ~ app.#
  CHECK_FALSE(ours[2][1]);  // x !~ app.#
  CHECK(ours[4][4]);        // a.b.c ~ a.*.c
  if (!kombu_available()) {
    WARN("kombu not available: topic routing not cross-checked");
    return;
  }
  char path[] = "/tmp/respool-topic-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << json{{"bindings", bindings}, {"keys", keys}}.dump();
  }
  auto result = run(python() +
                    " -c 'import json,sys,re\n"
                    "from kombu.transport.virtual.exchange import TopicExchange\n"
                    "t = TopicExchange(None)\n"
                    "s = json.load(open(sys.argv[1]))\n"
                    "print(json.dumps({\"patterns\": [t.key_to_pattern(b) for b in s[\"bindings\"]],"
                    " \"matches\": [[bool(t._match(t.key_to_pattern(b), k)) for b in s[\"bindings\"]]"
                    " for k in s[\"keys\"]]}))' " +
                    path);
  ::unlink(path);
  REQUIRE(result.status == 0);
  REQUIRE(result.lines.size() == 1);
  auto kombu = json::parse(result.lines[0]);
  for (std::size_t b = 0; b < bindings.size(); ++b) {
    INFO("binding " << bindings[b]);
    CHECK(raw.members("_kombu.binding." + topic.name)
              .count(bindings[b] + SEP + kombu["patterns"][b].get<std::string>() + SEP +
                     names("tq" + std::to_string(b))) == 1);
  }
  for (std::size_t k = 0; k < keys.size(); ++k)
    for (std::size_t b = 0; b < bindings.size(); ++b) {
      INFO("routing key '" << keys[k] << "' vs binding '" << bindings[b] << "'");
      CHECK(ours[k][b] == kombu["matches"][k][b].get<bool>());
    }
}

TEST_CASE("the envelope is byte for byte what kombu stores", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  raw_redis raw(url);
  std::string q = names("envelope");
  auto c = open(url);
  auto& ch = c->channel();
  auto tagless = [](std::string item) {
    const std::string key = "\"delivery_tag\": \"";
    auto at = item.find(key);
    REQUIRE(at != std::string::npos);
    REQUIRE(is_uuid4(item.substr(at + key.size(), 36)));
    return item.replace(at + key.size(), 36, "TAG");
  };
  struct sample {
    json spec;
    Envelope ours;
  };
  std::vector<sample> samples = {
      {{{"body", {{"a", 1}, {"s", "h\u00e9 \u2603 \U0001F600"}}}, {"headers", {{"x-h", "v"}, {"n", 2}}}},
       json_message("{\"a\": 1, \"s\": \"h\\u00e9 \\u2603 \\ud83d\\ude00\"}", {{"n", 2}, {"x-h", "v"}})},
      {{{"body_b64", "AAFyYXf/"}}, raw_message(std::string("\x00\x01raw\xff", 6))},
      {{{"body", {{"p", 9}}}, {"priority", 9}}, json_message("{\"p\": 9}", json::object(), 9)},
      {{{"body", "text \u00e9"}, {"headers", {{"h\u00e9", "\u00e9\"\\\n"}}}},
       json_message("\"text \\u00e9\"", {{"h\u00e9", "\u00e9\"\\\n"}})},
  };
  for (auto& s : samples) {
    s.spec["exchange"] = "";
    s.spec["routing_key"] = q;
    INFO(s.spec.dump());
    kombu_publish(url, json::array({s.spec}));
    int priority = s.spec.value("priority", 0);
    std::string list = respool::transport::redis::priority_queue(q, priority);
    auto theirs = raw.str({"RPOP", list});
    REQUIRE(theirs);
    ch.publish(s.ours, "", q);
    auto mine = raw.str({"RPOP", list});
    REQUIRE(mine);
    CHECK(tagless(*mine) == tagless(*theirs));
    auto parsed = nlohmann::ordered_json::parse(*mine);
    std::vector<std::string> top, props;
    for (auto& [k, v] : parsed.items()) top.push_back(k);
    for (auto& [k, v] : parsed["properties"].items()) props.push_back(k);
    CHECK(top ==
          std::vector<std::string>{"body", "content-encoding", "content-type", "headers", "properties"});
    CHECK(props == std::vector<std::string>{"delivery_mode", "delivery_info", "priority", "body_encoding",
                                            "delivery_tag"});
    CHECK(is_uuid4(parsed["properties"]["delivery_tag"].get<std::string>()));
  }
}

TEST_CASE("priorities use kombu's lists and consumption order", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  std::string q = names("prio");
  auto c = open(url);
  auto& ch = c->channel();
  std::vector<int> priorities = {9, 5, 0, 3, 7, 2, 6, 1, 4, 8, 12, -1};
  for (int p : priorities) ch.publish(json_message(std::to_string(p), json::object(), p), "", q);
  CHECK(raw.integer({"LLEN", q}) == 4);              // 0 1 2 -1
  CHECK(raw.integer({"LLEN", q + SEP + "3"}) == 3);  // 3 4 5
  CHECK(raw.integer({"LLEN", q + SEP + "6"}) == 3);  // 6 7 8
  CHECK(raw.integer({"LLEN", q + SEP + "9"}) == 2);  // 9 12
  CHECK(ch.queue_size(q) == priorities.size());
  // The stored priority is the one given (kombu clamps only to pick the list).
  CHECK(json::parse(*raw.str({"LINDEX", q + SEP + "9", "0"}))["properties"]["priority"] == 12);
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    auto m = ch.get(q, true);
    REQUIRE(m);
    order.push_back(m->body());
  }
  // Step 0 first (FIFO within a list), then step 3: kombu's Redis order.
  CHECK(order == std::vector<std::string>{"0", "2", "1", "-1", "5", "3"});
  CHECK(ch.queue_size(q) == 6);
  CHECK(ch.purge(q) == 6);
  CHECK(ch.queue_size(q) == 0);
  for (auto step : {"",
                    "\x06\x16"
                    "3",
                    "\x06\x16"
                    "6",
                    "\x06\x16"
                    "9"})
    CHECK_FALSE(raw.exists(q + step));
  CHECK_FALSE(ch.get(q, true));
  CHECK(ch.purge(q) == 0);
}

TEST_CASE("get with no_ack=false keeps kombu's unacked hash and index, ack clears them",
          "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  std::string q = names("acks");
  auto c = open(url);
  auto& ch = c->channel();
  Exchange ex{names("ex")};
  ch.declare_exchange(ex);
  ch.bind_queue(Queue{q, ex, "rk"});
  ch.publish(json_message("{\"n\": 1}", {{"h", "v"}}), ex.name, "rk");
  ch.publish(json_message("{\"n\": 2}"), ex.name, "rk");
  auto stored = *raw.str({"LINDEX", q, "-1"});

  auto m = ch.get(q, false);
  REQUIRE(m);
  CHECK(m->payload() == json{{"n", 1}});
  CHECK(m->headers() == json{{"h", "v"}});
  CHECK(m->exchange() == ex.name);
  CHECK(m->routing_key() == "rk");
  CHECK(is_uuid4(m->delivery_tag()));
  CHECK_FALSE(m->acknowledged());
  const std::string tag = m->delivery_tag();
  auto record = raw.str({"HGET", "unacked", tag});
  REQUIRE(record);
  CHECK(*record == "[" + stored + ", \"" + ex.name + "\", \"rk\"]");  // kombu: dumps([message._raw, EX, RK])
  auto score = raw.str({"ZSCORE", "unacked_index", tag});
  REQUIRE(score);
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(std::stod(*score) == Approx(now).margin(30));
  CHECK(as_redis(*c).unacked() == 1);

  m->ack();
  CHECK(m->acknowledged());
  CHECK_FALSE(raw.str({"HGET", "unacked", tag}));
  CHECK_FALSE(raw.str({"ZSCORE", "unacked_index", tag}));
  CHECK(as_redis(*c).unacked() == 0);
  m->ack();  // later calls do nothing

  auto n = ch.get(q, true);  // no_ack: nothing recorded
  REQUIRE(n);
  CHECK_FALSE(raw.str({"HGET", "unacked", n->delivery_tag()}));
  CHECK(n->acknowledged());
}

TEST_CASE("close() puts unacked messages back as kombu's restore_by_tag does", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  std::string q = names("restore");
  auto c = open(url);
  Exchange ex{names("ex")};
  c->channel().declare_exchange(ex);
  c->channel().bind_queue(Queue{q, ex, "rk"});
  c->channel().publish(json_message("{\"first\": true}"), ex.name, "rk");
  c->channel().publish(json_message("{\"second\": true}"), ex.name, "rk");
  auto m = c->channel().get(q, false);
  REQUIRE(m);
  std::string tag = m->delivery_tag();
  c->close();
  CHECK_FALSE(raw.str({"HGET", "unacked", tag}));
  CHECK_FALSE(raw.str({"ZSCORE", "unacked_index", tag}));
  CHECK(raw.integer({"LLEN", q}) == 2);
  // RPUSHed: it is the next one out, flagged redelivered (headers and delivery_info).
  auto again = json::parse(*raw.str({"LINDEX", q, "-1"}));
  CHECK(again["properties"]["delivery_tag"] == tag);
  CHECK(again["headers"]["redelivered"] == true);
  CHECK(again["properties"]["delivery_info"]["redelivered"] == true);
  try {
    m->ack();
    FAIL("acked a message that was put back");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_lost);
  }
  c->connect();
  auto first = c->channel().get(q, true);
  REQUIRE(first);
  CHECK(first->payload() == json{{"first", true}});
  CHECK(first->headers()["redelivered"] == true);
}

TEST_CASE("fanout PUBLISHes to /<db>.<exchange>, reaching live subscribers only", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  raw_redis sub(url);
  long db = db_of(url);
  Exchange fan{names("fan"), "fanout"};
  std::string channel = "/" + std::to_string(db) + "." + fan.name;
  struct timeval tv = {5, 0};
  redisSetTimeout(sub.ctx, tv);
  auto subscribed = sub.cmd({"PSUBSCRIBE", channel, channel + "/*"});
  REQUIRE(subscribed->type == REDIS_REPLY_ARRAY);
  void* second = nullptr;  // the reply for the second pattern
  REQUIRE(redisGetReply(sub.ctx, &second) == REDIS_OK);
  freeReplyObject(second);

  auto c = open(url);
  auto& ch = c->channel();
  ch.declare_exchange(fan);
  ch.bind_queue(Queue{names("fq"), fan, ""});
  ch.publish(json_message("{\"f\": 1}"), fan.name, "");
  ch.publish(json_message("{\"f\": 2}"), fan.name, "rk");
  std::vector<std::pair<std::string, json>> got;
  for (int i = 0; i < 2; ++i) {
    void* r = nullptr;
    REQUIRE(redisGetReply(sub.ctx, &r) == REDIS_OK);
    reply_ptr reply(static_cast<redisReply*>(r));
    REQUIRE(reply->type == REDIS_REPLY_ARRAY);
    REQUIRE(reply->elements == 4);  // pmessage, pattern, channel, data
    got.emplace_back(std::string(reply->element[2]->str, reply->element[2]->len),
                     json::parse(std::string(reply->element[3]->str, reply->element[3]->len)));
  }
  CHECK(got[0].first == channel);
  CHECK(got[1].first == channel + "/rk");
  CHECK(got[0].second["properties"]["delivery_info"] == json{{"exchange", fan.name}, {"routing_key", ""}});
  CHECK(respool::detail::redis::base64_decode(got[1].second["body"].get<std::string>()) == "{\"f\": 2}");
  // Nothing is stored for the bound queue: the message reached live subscribers only.
  CHECK_FALSE(raw.exists(names("fq")));
  CHECK_FALSE(ch.get(names("fq"), true));
}

// ====================================================================== failures

TEST_CASE("a connection killed mid-session is connection_lost, then reconnects", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto& rc = as_redis(*c);
  std::string q = names("killed");
  c->channel().publish(json_message("{\"before\": 1}"), "", q);

  auto kill_it = [&] { REQUIRE(raw.integer({"CLIENT", "KILL", "ADDR", local_address(rc)}) == 1); };
  kill_it();
  try {
    c->channel().publish(json_message("{\"lost\": 1}"), "", q);
    FAIL("publish on a killed connection did not throw");
  } catch (const respool::error& e) {
    INFO(e.what());
    CHECK(e.code() == errc::connection_lost);
    CHECK(std::string(e.what()).find(ConnectionParams::parse(url).as_uri()) != std::string::npos);
  }
  CHECK_FALSE(c->connected());
  CHECK_FALSE(c->alive());
  CHECK_THROWS_AS(c->channel(), respool::error);

  c->connect();
  CHECK(c->alive());
  kill_it();
  CHECK_FALSE(c->alive());  // the server closed it: the pool would replace it
  CHECK_FALSE(c->connected());

  c->connect();
  kill_it();
  CHECK_THROWS_AS(c->channel().get(q, true), respool::error);
  c->connect();
  kill_it();
  CHECK_THROWS_AS(c->channel().queue_size(q), respool::error);
  c->connect();
  CHECK(c->channel().queue_size(q) == 1);
}

// Writing to a socket the server has closed returns EPIPE, and with write(2)
// raises SIGPIPE, whose default action kills the process. A publish larger
// than any socket buffer to a killed connection must take several writes,
// so the later ones meet the closed socket: the test process would die here
// if any of them raised SIGPIPE.
TEST_CASE("a large publish to a connection the server closed is connection_lost, never SIGPIPE",
          "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto& rc = as_redis(*c);
  struct sigaction old_action {};
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  REQUIRE(::sigaction(SIGPIPE, &default_action, &old_action) == 0);
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  REQUIRE(::pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old_mask) == 0);

  REQUIRE(raw.integer({"CLIENT", "KILL", "ADDR", local_address(rc)}) == 1);
  // Wait (bounded, in the kernel) until the server's FIN has arrived.
  pollfd p{rc.native_handle()->fd, POLLRDHUP, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  std::string big(32 << 20, 'x');
  try {
    c->channel().publish(json_message("\"" + big + "\""), "", names("epipe"));
    FAIL("publish on a closed connection did not throw");
  } catch (const respool::error& e) {
    INFO(e.what());
    CHECK(e.code() == errc::connection_lost);
  }
  sigset_t pending;
  sigemptyset(&pending);
  REQUIRE(::sigpending(&pending) == 0);
  CHECK_FALSE(sigismember(&pending, SIGPIPE));
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &old_action, nullptr);
  c->connect();
  c->channel().publish(json_message("{\"after\": 1}"), "", names("epipe"));
  CHECK(c->channel().queue_size(names("epipe")) == 1);
}

TEST_CASE("close() from another thread interrupts a blocked operation", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto pause = raw.cmd({"CLIENT", "PAUSE", "3000", "WRITE"});
  if (pause->type == REDIS_REPLY_ERROR) {
    WARN("skipped: CLIENT PAUSE WRITE needs Redis 6.2");
    return;
  }
  const std::string addr = local_address(as_redis(*c));  // before the publisher uses the connection
  std::atomic<bool> threw{false};
  auto start = std::chrono::steady_clock::now();
  std::thread publisher([&] {
    try {
      c->channel().publish(json_message("{}"), "", names("blocked"));
    } catch (const respool::error& e) {
      threw = e.code() == errc::connection_lost;
    }
  });
  // Wait (bounded) until the server holds the publisher's LPUSH: the pause
  // blocks its client (CLIENT LIST flags "b").
  const auto blocked = [&] {
    const std::string clients = raw.str({"CLIENT", "LIST"}).value_or("");
    const auto at = clients.find("addr=" + addr + " ");
    if (at == std::string::npos) return false;
    const auto flags = clients.find(" flags=", at);
    const auto end = clients.find(' ', flags + 1);
    return flags != std::string::npos && clients.substr(flags, end - flags).find('b') != std::string::npos;
  };
  REQUIRE(respool_test::eventually(blocked));
  c->close();
  publisher.join();
  raw.cmd({"CLIENT", "UNPAUSE"});
  CHECK(threw);
  CHECK(std::chrono::steady_clock::now() - start < 2500ms);
  CHECK_FALSE(c->connected());
}

TEST_CASE("a server restart is connection_lost, then connection_failed, then recovers",
          "[redis][integration][restart]") {
  RESPOOL_REQUIRE_REDIS();
  const char* stop = std::getenv("RESPOOL_REDIS_STOP");
  const char* start = std::getenv("RESPOOL_REDIS_START");
  if (!stop || !*stop || !start || !*start) {
    WARN("skipped: RESPOOL_REDIS_STOP / RESPOOL_REDIS_START not set (run tests/run)");
    return;
  }
  scratch names(url);
  auto c = open(url);
  REQUIRE(std::system(stop) == 0);
  try {
    c->channel().publish(json_message("{}"), "", names("restart"));
    FAIL("publish to a stopped server did not throw");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_lost);
  }
  try {
    c->connect();
    FAIL("connected to a stopped server");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::connection_failed);
  }
  REQUIRE(std::system(start) == 0);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    try {
      c->connect();
      break;
    } catch (const respool::error&) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::yield();  // polling the restarted server's readiness, bounded by the deadline
    }
  }
  c->channel().publish(json_message("{}"), "", names("restart"));
  CHECK(c->channel().queue_size(names("restart")) == 1);
}

TEST_CASE("abandon() in a forked child leaves the parent's connection alone", "[redis][integration]") {
  RESPOOL_REQUIRE_REDIS();
  scratch names(url);
  raw_redis raw(url);
  auto c = open(url);
  auto& rc = as_redis(*c);
  std::string q = names("fork");
  c->channel().publish(json_message("{\"parent\": 1}"), "", q);
  auto m = c->channel().get(q, false);  // an unacked message the child must not restore
  REQUIRE(m);
  int fd = rc.native_handle()->fd;
  std::string addr = local_address(rc);

  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    c->abandon();
    bool fd_closed = ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
    bool state_ok = !c->connected() && !c->alive();
    bool ack_refused = false;
    try {
      m->ack();
    } catch (const respool::error&) {
      ack_refused = true;
    }
    c.reset();  // destructor after abandon: still writes nothing
    ::_exit(fd_closed && state_ok && ack_refused ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // A child that just uses close() (or the destructor) on the inherited
  // connection: the same, and no restore of the parent's unacked message.
  child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    bool ok = !c->connected() && !c->alive();
    try {
      c->channel().publish(json_message("{\"child\": 1}"), "", q);
      ok = false;
    } catch (const respool::error& e) {
      ok = ok && e.code() == errc::connection_lost;
    }
    c->close();
    c.reset();
    ::_exit(ok ? 0 : 1);
  }
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // The parent's session survived: no QUIT, no shutdown() on the shared socket.
  CHECK(c->alive());
  auto clients = *raw.str({"CLIENT", "LIST"});
  CHECK(clients.find("addr=" + addr + " ") != std::string::npos);
  CHECK(raw.str({"HGET", "unacked", m->delivery_tag()}));  // still the parent's to ack
  m->ack();
  CHECK_FALSE(raw.str({"HGET", "unacked", m->delivery_tag()}));
  c->channel().publish(json_message("{\"after\": 1}"), "", q);
  CHECK(c->channel().queue_size(q) == 1);
}

// ====================================================================== interop with Python kombu

TEST_CASE("interop: kombu consumes and decodes what respool publishes", "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string q = names("to-kombu");
  auto c = open(url);
  auto& ch = c->channel();
  const std::string payload = "{\"id\": 7, \"name\": \"caf\\u00e9\", \"list\": [1, 2.5, null, true]}";
  ch.publish(json_message(payload), "", q);
  ch.publish(zlib_message(payload), "", q);
  ch.publish(raw_message(std::string("\x00\xff\x10raw bytes", 12)), "", q);
  ch.publish(
      json_message("{\"h\": 1}", {{"x-trace", "abc"}, {"n", 42}, {"nested", {{"a", json::array({1, 2})}}}}),
      "", q);
  ch.publish(json_message("{\"p\": 5}", json::object(), 5), "", q);

  auto got = kombu_consume(url, q, 5);
  REQUIRE(got.size() == 5);
  const json expected_payload = json::parse(payload);
  for (const auto& m : got) {
    INFO(m.dump());
    CHECK(m["delivery_info"]["exchange"] == "");
    CHECK(m["delivery_info"]["routing_key"] == q);
    CHECK(m["properties"]["body_encoding"] == "base64");
    CHECK(m["properties"]["delivery_mode"] == 2);
    CHECK(is_uuid4(m["delivery_tag"].get<std::string>()));
  }
  // json
  CHECK(got[0]["payload"] == expected_payload);
  CHECK(got[0]["content_type"] == "application/json");
  CHECK(got[0]["content_encoding"] == "utf-8");
  CHECK(got[0]["headers"] == json::object());
  // json + zlib: kombu decompressed it
  CHECK(got[1]["payload"] == expected_payload);
  CHECK(got[1]["headers"] == json{{"compression", "application/x-gzip"}});
  CHECK(respool::detail::redis::base64_decode(got[1]["body_b64"].get<std::string>()) == payload);
  // raw bytes
  CHECK(got[2]["content_type"] == "application/data");
  CHECK(got[2]["content_encoding"] == "binary");
  CHECK(got[2]["payload"].is_null());  // bytes
  CHECK(respool::detail::redis::base64_decode(got[2]["body_b64"].get<std::string>()) ==
        std::string("\x00\xff\x10raw bytes", 12));
  // custom headers
  CHECK(got[3]["headers"] == json{{"x-trace", "abc"}, {"n", 42}, {"nested", {{"a", {1, 2}}}}});
  CHECK(got[3]["payload"] == json{{"h", 1}});
  // priority
  CHECK(got[4]["priority"] == 5);
  CHECK(got[4]["payload"] == json{{"p", 5}});
}

TEST_CASE("interop: respool reads and decodes what kombu publishes", "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string q = names("from-kombu");
  const json body = {{"id", 7}, {"name", "caf\u00e9 \U0001F600"}, {"list", {1, 2.5, nullptr, true}}};
  json spec = json::array({
      {{"exchange", ""}, {"routing_key", q}, {"body", body}},
      {{"exchange", ""}, {"routing_key", q}, {"body", body}, {"compression", "zlib"}},
      {{"exchange", ""}, {"routing_key", q}, {"body_b64", "AP8QcmF3IGJ5dGVz"}},
      {{"exchange", ""},
       {"routing_key", q},
       {"body", "plain text"},
       {"headers", {{"x-trace", "abc"}, {"n", 42}}}},
      {{"exchange", ""}, {"routing_key", q}, {"body", {{"p", 5}}}, {"priority", 5}},
  });
  kombu_publish(url, spec);
  auto c = open(url);
  auto& ch = c->channel();
  CHECK(ch.queue_size(q) == 5);
  std::vector<respool::Message> got;
  while (auto m = ch.get(q, false)) got.push_back(std::move(*m));
  REQUIRE(got.size() == 5);
  for (auto& m : got) {
    INFO(m.delivery_tag());
    CHECK(m.exchange().empty());
    CHECK(m.routing_key() == q);
    CHECK(is_uuid4(m.delivery_tag()));
    CHECK(m.delivery_mode() == 2);
    m.ack();
  }
  CHECK(got[0].payload() == body);
  CHECK(got[0].content_type() == "application/json");
  CHECK(got[0].content_encoding() == "utf-8");
  CHECK(got[1].payload() == body);  // zlib
  CHECK(got[1].headers() == json{{"compression", "application/x-gzip"}});
  CHECK(respool::detail::zlib_decompress(got[1].body()) == got[0].body());
  CHECK(got[2].body() == std::string("\x00\xff\x10raw bytes", 12));
  CHECK(got[2].content_type() == "application/data");
  CHECK(got[2].content_encoding() == "binary");
  CHECK(got[3].headers() == json{{"x-trace", "abc"}, {"n", 42}});
  CHECK(got[3].payload() == "plain text");
  CHECK(got[3].body() == "\"plain text\"");  // kombu's json serializer
  CHECK(got[4].priority() == 5);
  CHECK(got[4].payload() == json{{"p", 5}});
  CHECK(as_redis(*c).unacked() == 0);
}

TEST_CASE("interop: a queue kombu declared receives respool's publish to its exchange",
          "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string exchange = names("news"), queue = names("news_domestic");
  auto declared =
      run(python() + " " + shell_quote(peer_script()) + " declare " + shell_quote(url) + " " +
          shell_quote(queue) + " --exchange " + shell_quote(exchange) + " --routing-key domestic");
  REQUIRE(declared.status == 0);
  // A fresh respool connection that declared nothing: "news" routes as direct, as in kombu.
  auto c = open(url);
  c->channel().publish(json_message("{\"headline\": \"respool\"}", {{"source", "c++"}}), exchange,
                       "domestic");
  c->channel().publish(json_message("{\"headline\": \"elsewhere\"}"), exchange,
                       "foreign");  // unbound: dropped
  auto got = kombu_consume(url, queue, 1, "--exchange " + shell_quote(exchange) + " --routing-key domestic");
  REQUIRE(got.size() == 1);
  CHECK(got[0]["payload"] == json{{"headline", "respool"}});
  CHECK(got[0]["headers"] == json{{"source", "c++"}});
  CHECK(got[0]["delivery_info"] == json{{"exchange", exchange}, {"routing_key", "domestic"}});
  CHECK(c->channel().queue_size(queue) == 0);
}

TEST_CASE("interop: a live kombu consumer receives respool's fanout publish", "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string exchange = names("bcast"), queue = names("bcast_q");
  peer_process peer("consume " + shell_quote(url) + " " + shell_quote(queue) + " --count 1 --timeout 10 " +
                    "--exchange " + shell_quote(exchange) + " --exchange-type fanout");
  auto ready = peer.next_line();
  REQUIRE(ready);
  REQUIRE(*ready == "\"READY\"");
  raw_redis raw(url);
  std::string channel = "/" + std::to_string(db_of(url)) + "." + exchange;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (raw.integer({"PUBSUB", "NUMPAT"}) < 1) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();  // each poll is a round trip to the server; bounded by the deadline
  }
  auto c = open(url);
  c->channel().declare_exchange(Exchange{exchange, "fanout"});
  c->channel().publish(json_message("{\"all\": \"hands\"}"), exchange, "");
  auto line = peer.next_line();
  REQUIRE(line);
  auto m = json::parse(*line);
  CHECK(m["payload"] == json{{"all", "hands"}});
  CHECK(m["delivery_info"]["exchange"] == exchange);
  CHECK(peer.wait() == 0);
  CHECK_FALSE(raw.exists(queue));  // pub/sub only
}

TEST_CASE("interop: topic exchanges route the same both ways", "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string exchange = names("logs");
  std::string kombu_queue = names("kombu_errors"), our_queue = names("respool_app");
  REQUIRE(run(python() + " " + shell_quote(peer_script()) + " declare " + shell_quote(url) + " " +
              shell_quote(kombu_queue) + " --exchange " + shell_quote(exchange) +
              " --exchange-type topic --routing-key '*.error'")
              .status == 0);
  auto c = open(url);
  auto& ch = c->channel();
  Exchange topic{exchange, "topic"};
  ch.declare_exchange(topic);
  ch.bind_queue(Queue{our_queue, topic, "app.#"});
  // respool publishes: kombu's binding (regex written by kombu) must match.
  ch.publish(json_message("{\"from\": \"respool\"}"), exchange, "db.error");
  auto got =
      kombu_consume(url, kombu_queue, 1,
                    "--exchange " + shell_quote(exchange) + " --exchange-type topic --routing-key '*.error'");
  REQUIRE(got.size() == 1);
  CHECK(got[0]["payload"] == json{{"from", "respool"}});
  CHECK(got[0]["delivery_info"]["routing_key"] == "db.error");
  // kombu publishes: respool's binding (regex written by respool) must match.
  kombu_publish(url, json::array({{{"exchange", exchange},
                                   {"exchange_type", "topic"},
                                   {"routing_key", "app.web.error"},
                                   {"body", {{"from", "kombu"}}}}}));
  auto mine = ch.get(our_queue, true);
  REQUIRE(mine);
  CHECK(mine->payload() == json{{"from", "kombu"}});
  CHECK(mine->routing_key() == "app.web.error");
  // "app.web.error" also matched kombu's "*.error" binding (kombu's regex: * spans dots).
  auto also =
      kombu_consume(url, kombu_queue, 1,
                    "--exchange " + shell_quote(exchange) + " --exchange-type topic --routing-key '*.error'");
  REQUIRE(also.size() == 1);
  CHECK(also[0]["payload"] == json{{"from", "kombu"}});
}

TEST_CASE("interop: kombu consumes a message respool put back on close", "[redis][integration][kombu]") {
  RESPOOL_REQUIRE_REDIS();
  RESPOOL_REQUIRE_KOMBU();
  scratch names(url);
  std::string q = names("requeued");
  auto c = open(url);
  c->channel().publish(json_message("{\"try\": 1}"), "", q);
  auto m = c->channel().get(q, false);
  REQUIRE(m);
  c->close();  // not acked: back in the queue
  auto got = kombu_consume(url, q, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0]["payload"] == json{{"try", 1}});
  CHECK(got[0]["redelivered"] == true);
  CHECK(got[0]["delivery_tag"] == m->delivery_tag());
}
