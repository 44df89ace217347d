// Hostile messages on real Redis and RabbitMQ (issue 13): Python kombu, or a
// raw client where kombu cannot write the message, puts each hostile message
// in a queue followed by a good one (tests/integration/hostile_peer.py);
// respool reads them all with no_ack=false and then no_ack=true: every
// hostile one gets a clear respool::error (from get() or payload()), the
// process survives, and every good message is delivered, with nothing left
// in the queue or unacknowledged. Also: kombu's binding separator in a Redis
// routing key or queue name is refused before anything is sent.
//
// Needs RESPOOL_REDIS_URL / RESPOOL_AMQP_URL (tests/run) and kombu
// (RESPOOL_PYTHON, /usr/bin/python3); skipped with a warning without them.
//
// On the code before the limits, the first get() crashes the process
// (SIGSEGV: the 100,000-level Redis headers), payload() of the zlib bomb
// expands 200 MiB, and the pickle / binary payload() throws nothing.

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "respool/connection.hpp"
#include "respool/transport/amqp.hpp"
#include "respool/transport/redis.hpp"

namespace {

using respool::errc;
using json = nlohmann::json;

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

std::string python() { return env("RESPOOL_PYTHON").value_or("/usr/bin/python3"); }

// __FILE__ may be relative to the build directory (ccache's CCACHE_BASEDIR),
// which is this executable's directory: try the current directory, then that.
std::string peer_script() {
  std::string file = __FILE__;
  auto slash = file.rfind('/');
  std::string dir = slash == std::string::npos ? std::string(".") : file.substr(0, slash);
  std::string script = dir + "/hostile_peer.py";
  if (dir[0] == '/' || ::access(script.c_str(), R_OK) == 0) return script;
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return script;
  std::string exe_dir(exe, static_cast<std::size_t>(n));
  return exe_dir.substr(0, exe_dir.rfind('/')) + "/" + script;
}

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

bool kombu_available() {
  static const bool ok =
      std::system((python() + " -c 'import kombu, redis, amqp' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

// Runs hostile_peer.py write URL QUEUE; true when it printed OK.
bool write_hostile(const std::string& url, const std::string& queue) {
  std::string command = python() + " " + shell_quote(peer_script()) + " write " + shell_quote(url) + " " +
                        shell_quote(queue) + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return false;
  std::string output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  int status = ::pclose(pipe);
  INFO(output);
  CHECK(status == 0);
  return status == 0 && output.find("OK") != std::string::npos;
}

std::string unique(const std::string& what) {
  static int counter = 0;
  return "respool.hostile." + what + "." + std::to_string(::getpid()) + "." + std::to_string(++counter);
}

// What reading the message at each position must give.
struct expected {
  const char* what;
  bool get_fails;               // get() throws encoding_error (the message is removed / rejected)
  const char* contains;         // text the error names (get() or payload())
  std::optional<json> payload;  // a good (or decodable) message
};

const std::vector<expected>& sequence() {
  static const std::vector<expected> s = {
      {"deeply nested headers", true, "max_depth", std::nullopt},
      {"good 1", false, "", json{{"good", 1}}},
      {"body nesting 100,000 levels", false, "max_depth", std::nullopt},
      {"good 2", false, "", json{{"good", 2}}},
      {"zlib bomb", false, "max_body_size", std::nullopt},
      {"good 3", false, "", json{{"good", 3}}},
      {"pickle", false, "pickle", std::nullopt},
      {"good 4", false, "", json{{"good", 4}}},
      {"binary", false, "binary", std::nullopt},
      {"good 5", false, "", json{{"good", 5}}},
      {"utf-16 text", false, "", json("h\u00e9llo w\u00f6rld")},
      {"good 6", false, "", json{{"good", 6}}},
  };
  return s;
}

// Reads the whole sequence from `queue` on a fresh connection.
void read_sequence(const std::string& url, const std::string& queue, bool no_ack) {
  respool::Connection c(url);
  auto& channel = c.default_channel();
  for (const auto& e : sequence()) {
    INFO(e.what << (no_ack ? " (no_ack)" : " (ack)"));
    std::optional<respool::Message> m;
    if (e.get_fails) {
      try {
        m = channel.get(queue, no_ack);
        FAIL("get() decoded " << e.what);
      } catch (const respool::error& err) {
        CHECK(err.code() == errc::encoding_error);
        CHECK_THAT(err.what(), Catch::Contains(e.contains));
      }
      continue;
    }
    REQUIRE_NOTHROW(m = channel.get(queue, no_ack));
    REQUIRE(m);
    CHECK_FALSE(m->body().empty());
    if (e.payload) {
      CHECK(m->payload() == *e.payload);
      CHECK_NOTHROW(m->payload().dump());
    } else {
      try {
        (void)m->payload();
        FAIL("payload() decoded " << e.what);
      } catch (const respool::error& err) {
        CHECK(err.code() == errc::encoding_error);
        CHECK_THAT(err.what(), Catch::Contains(e.contains));
      }
    }
    m->ack();  // a no-op with no_ack
  }
  CHECK_FALSE(channel.get(queue, no_ack));
  CHECK(channel.queue_size(queue) == 0);
  c.close();
  // Nothing left unacknowledged: a closed connection would have put it back.
  respool::Connection again(url);
  CHECK(again.default_channel().queue_size(queue) == 0);
}

// A hiredis connection to the test Redis, for looking at what was (not) written.
struct raw_redis {
  redisContext* c = nullptr;
  raw_redis() {
    auto port = env("RESPOOL_REDIS_PORT");
    c = redisConnect("127.0.0.1", port ? std::atoi(port->c_str()) : 6379);
    REQUIRE(c);
    REQUIRE(c->err == 0);
  }
  ~raw_redis() { redisFree(c); }
  long long integer(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) argv.push_back(a.c_str()), lens.push_back(a.size());
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    REQUIRE(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
  }
};

}  // namespace

TEST_CASE("redis: hostile kombu messages get clear errors and the good ones behind them arrive",
          "[hostile][redis][integration][kombu]") {
  auto url = env("RESPOOL_REDIS_URL");
  if (!url) {
    WARN("skipped: RESPOOL_REDIS_URL not set (run tests/run)");
    return;
  }
  if (!kombu_available()) {
    WARN("skipped: kombu not importable by " + python());
    return;
  }
  for (bool no_ack : {false, true}) {
    const std::string queue = unique(no_ack ? "redis-noack" : "redis-ack");
    REQUIRE(write_hostile(*url, queue));
    read_sequence(*url, queue, no_ack);
    raw_redis r;
    CHECK(r.integer({"HLEN", "unacked"}) == 0);
  }
}

TEST_CASE("amqp: hostile kombu messages get clear errors and the good ones behind them arrive",
          "[hostile][amqp][integration][kombu]") {
  auto url = env("RESPOOL_AMQP_URL");
  if (!url) {
    WARN("skipped: RESPOOL_AMQP_URL not set (run tests/run)");
    return;
  }
  if (!kombu_available()) {
    WARN("skipped: kombu not importable by " + python());
    return;
  }
  for (bool no_ack : {false, true}) {
    const std::string queue = unique(no_ack ? "amqp-noack" : "amqp-ack");
    REQUIRE(write_hostile(*url, queue));
    read_sequence(*url, queue, no_ack);
    respool::Connection c(*url);
    c.default_channel();
    auto* impl = dynamic_cast<respool::transport::amqp_connection*>(&c.transport_impl());
    if (impl) impl->channel().delete_queue(queue);
  }
}

TEST_CASE("redis: kombu's separator in a routing key or queue name is refused before anything is sent",
          "[hostile][redis][integration]") {
  auto url = env("RESPOOL_REDIS_URL");
  if (!url) {
    WARN("skipped: RESPOOL_REDIS_URL not set (run tests/run)");
    return;
  }
  const std::string sep = "\x06\x16";
  const std::string exchange = unique("sep-x"), queue = unique("sep-q");
  respool::Connection c(*url);
  auto& channel = c.default_channel();
  raw_redis r;
  auto refused = [](const std::function<void()>& f, const char* what) {
    try {
      f();
      FAIL("accepted " << what);
    } catch (const respool::error& e) {
      CHECK(e.code() == errc::encoding_error);
      CHECK_THAT(e.what(), Catch::Contains("\\x06\\x16"));
      CHECK_THAT(e.what(), Catch::Contains(what));
    }
  };
  refused(
      [&] {
        channel.declare(respool::Queue{queue, respool::Exchange{exchange}, "a" + sep + "b"});
      },
      "routing key");
  refused(
      [&] {
        channel.declare(respool::Queue{queue + sep + "3", respool::Exchange{exchange}, "rk"});
      },
      "queue name");
  CHECK(r.integer({"EXISTS", "_kombu.binding." + exchange}) == 0);

  respool::Envelope e;
  e.body = "{}";
  e.content_type = "application/json";
  refused([&] { channel.publish(e, "", "a" + sep + "b"); }, "routing key");
  refused([&] { channel.publish(e, exchange, "a" + sep + "b"); }, "routing key");
  CHECK(r.integer({"EXISTS", "a" + sep + "b"}) == 0);
  refused([&] { (void)channel.get(queue + sep + "3"); }, "queue name");

  // The connection is still usable.
  channel.declare(respool::Queue{queue, respool::Exchange{exchange}, "rk"});
  channel.publish(e, exchange, "rk");
  auto m = channel.get(queue);
  REQUIRE(m);
  CHECK(m->payload() == json::object());
  r.integer({"DEL", "_kombu.binding." + exchange});
}

// ---------------------------------------------------------------- AMQP tables (no server)

namespace {

// A chain of `depth` nested tables {"a": {"a": ... {"a": 1}}} in rabbitmq-c's form.
struct deep_table {
  std::vector<amqp_table_entry_t> entries;
  explicit deep_table(std::size_t depth) : entries(depth) {
    for (std::size_t i = 0; i < depth; ++i) {
      entries[i].key = amqp_cstring_bytes("a");
      if (i + 1 == depth) {
        entries[i].value.kind = AMQP_FIELD_KIND_I32;
        entries[i].value.value.i32 = 1;
      } else {
        entries[i].value.kind = AMQP_FIELD_KIND_TABLE;
        entries[i].value.value.table = amqp_table_t{1, &entries[i + 1]};
      }
    }
  }
  amqp_table_t table() { return amqp_table_t{1, entries.data()}; }
};

}  // namespace

TEST_CASE("amqp: header tables are decoded within max_depth and max_header_size", "[hostile][amqp]") {
  namespace amqp = respool::detail::amqp;
  respool::MessageLimits l;
  l.max_depth = 8;
  deep_table at(8), past(9), hostile(100000);
  CHECK(amqp::table_to_json(at.table(), l).dump().size() > 0);
  for (auto* t : {&past, &hostile}) {
    try {
      (void)amqp::table_to_json(t->table(), l);
      FAIL("decoded a table deeper than max_depth");
    } catch (const respool::error& e) {
      CHECK(e.code() == errc::encoding_error);
      CHECK_THAT(e.what(), Catch::Contains("max_depth (8 levels)"));
    }
  }
  // With the default limits too (100,000 levels crashed the old decoder).
  CHECK_THROWS_AS(amqp::table_to_json(hostile.table()), respool::error);

  // Size: keys and strings count their bytes.
  std::string big(1000, 'x');
  amqp_table_entry_t entry;
  entry.key = amqp_cstring_bytes("big");
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = amqp_bytes_t{big.size(), big.data()};
  l.max_header_size = 1003;
  CHECK(amqp::table_to_json(amqp_table_t{1, &entry}, l)["big"] == big);
  l.max_header_size = 1002;
  try {
    (void)amqp::table_to_json(amqp_table_t{1, &entry}, l);
    FAIL("decoded headers over max_header_size");
  } catch (const respool::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("max_header_size (1002 bytes)"));
  }
}

TEST_CASE("amqp: decoded headers always dump: invalid UTF-8 is replaced, byte arrays kept as binary",
          "[hostile][amqp]") {
  namespace amqp = respool::detail::amqp;
  std::string bad_text = "ok\xff\xc3(";
  std::string bytes("\x00\xff\x10", 3);
  amqp_table_entry_t entries[3];
  entries[0].key = amqp_cstring_bytes("s");
  entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[0].value.value.bytes = amqp_bytes_t{bad_text.size(), bad_text.data()};
  entries[1].key = amqp_cstring_bytes("x");
  entries[1].value.kind = AMQP_FIELD_KIND_BYTES;
  entries[1].value.value.bytes = amqp_bytes_t{bytes.size(), bytes.data()};
  entries[2].key = amqp_bytes_t{2, const_cast<char*>("\xfe\xfd")};
  entries[2].value.kind = AMQP_FIELD_KIND_VOID;
  json headers = amqp::table_to_json(amqp_table_t{3, entries});
  CHECK_NOTHROW(headers.dump());
  CHECK(headers["s"] == "ok\xef\xbf\xbd\xef\xbf\xbd(");
  REQUIRE(headers["x"].is_binary());
  const std::vector<std::uint8_t> expected_bytes{0x00, 0xff, 0x10};
  CHECK(static_cast<const std::vector<std::uint8_t>&>(headers["x"].get_binary()) == expected_bytes);
  CHECK(headers.contains("\xef\xbf\xbd\xef\xbf\xbd"));
  // A binary value is written back as an 'x' byte array.
  amqp::table_builder builder;
  const json source{{"x", headers["x"]}};  // the table points into it
  amqp_table_t table = builder.table(source);
  REQUIRE(table.num_entries == 1);
  CHECK(table.entries[0].value.kind == AMQP_FIELD_KIND_BYTES);
  CHECK(amqp::table_to_json(table)["x"] == headers["x"]);
}

TEST_CASE("deep AMQP headers are refused on a thread with a 128 KiB stack", "[hostile][amqp]") {
  std::string result;
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, 128 * 1024) == 0);
  pthread_t thread;
  REQUIRE(pthread_create(
              &thread, &attr,
              [](void* arg) -> void* {
                deep_table t(20000);
                try {
                  (void)respool::detail::amqp::table_to_json(t.table());
                } catch (const respool::error& e) {
                  *static_cast<std::string*>(arg) = e.what();
                }
                return nullptr;
              },
              &result) == 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  CHECK_THAT(result, Catch::Contains("max_depth"));
}

// ---------------------------------------------------------------- messages that say what happened

TEST_CASE("amqp and redis: out of file descriptors says so, not 'connection refused'",
          "[amqp][redis][errors]") {
  // No server needed: the socket cannot even be created.
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 256);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> fds;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fds.push_back(fd);
  std::string amqp_text, redis_text;
  for (auto [url, out] :
       {std::pair<const char*, std::string*>{"amqp://guest:guest@127.0.0.1:1//", &amqp_text},
        std::pair<const char*, std::string*>{"redis://127.0.0.1:1", &redis_text}}) {
    try {
      respool::Connection c(url);
      c.connect();
    } catch (const respool::error& e) {
      if (e.code() == errc::connection_failed) *out = e.what();
    }
  }
  for (int fd : fds) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  CHECK_FALSE(fds.empty());
  CHECK_THAT(amqp_text, Catch::Contains("Too many open files"));
  CHECK_THAT(amqp_text, !Catch::Contains("refused"));
  CHECK_THAT(redis_text, Catch::Contains("Too many open files"));
}

TEST_CASE("connect errors quoted in other errors do not repeat 'connection failed'",
          "[amqp][redis][errors]") {
  for (const char* url : {"amqp://guest:guest@127.0.0.1:1//", "redis://127.0.0.1:1",
                          "amqp://guest:guest@127.0.0.1:1;amqp://guest:guest@127.0.0.1:2//"}) {
    INFO(url);
    std::string text;
    try {
      respool::Connection c(url);
      c.ensure_connection(0);
    } catch (const respool::error& e) {
      CHECK(e.code() == errc::connection_failed);
      text = e.what();
    }
    CHECK_THAT(text, Catch::Contains("after 1 attempt(s)"));
    CHECK_THAT(text, !Catch::Contains("connection failed: connection failed"));
    CHECK_THAT(text, Catch::EndsWith(": connection failed"));
  }
}
