// Hostile and malformed message bodies and Redis queue items never crash the
// process, never exhaust its memory and never throw anything but a
// respool::error (issue 13). These tests use only the decoding API that
// existed before the limits (Message::payload(), decode_envelope,
// binding_member...): on that code they crash (SIGSEGV) or fail.
//
// The same inputs against real Redis / RabbitMQ, written by kombu, are in
// tests/integration/hostile_messages_test.cpp.

#include <pthread.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "respool/detail/codec.hpp"
#include "respool/detail/redis_kombu.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"

namespace {

using respool::Envelope;
using respool::errc;
using respool::Message;
using json = nlohmann::json;
namespace kr = respool::detail::redis;

std::string deep_array(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// A kombu-shaped Redis item whose headers nest `depth` objects.
std::string deep_redis_item(std::size_t depth) {
  std::string headers;
  headers.reserve(depth * 8);
  for (std::size_t i = 0; i < depth; ++i) headers += "{\"a\": ";
  headers += "1";
  headers.append(depth, '}');
  return "{\"body\": \"MQ==\", \"content-encoding\": \"utf-8\", \"content-type\": \"application/json\", "
         "\"headers\": " +
         headers +
         ", \"properties\": {\"delivery_mode\": 2, \"delivery_info\": {\"exchange\": \"\", "
         "\"routing_key\": \"q\"}, \"priority\": 0, \"body_encoding\": \"base64\", \"delivery_tag\": "
         "\"9a1c2d3e-0000-4000-8000-000000000000\"}}";
}

Message message(std::string body, std::string content_type, std::string content_encoding = "utf-8",
                json headers = json::object()) {
  Envelope e;
  e.body = std::move(body);
  e.content_type = std::move(content_type);
  e.content_encoding = std::move(content_encoding);
  e.headers = std::move(headers);
  return Message(std::move(e), nullptr);
}

// The exception payload() throws, as text: "respool:<what>" for a
// respool::error, "other:<what>" for anything else, "" for none. A payload
// that is returned is also dumped (as a caller would).
std::string outcome(const std::function<void()>& f) {
  try {
    f();
    return "";
  } catch (const respool::error& e) {
    return std::string("respool:") + e.what();
  } catch (const std::exception& e) {
    return std::string("other:") + e.what();
  }
}

// Runs f on a thread with a small stack (as in a thread pool that sets one).
void on_small_stack(std::size_t stack_bytes, std::function<void()> f) {
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, stack_bytes) == 0);
  pthread_t thread;
  auto entry = [](void* arg) -> void* {
    (*static_cast<std::function<void()>*>(arg))();
    return nullptr;
  };
  REQUIRE(pthread_create(&thread, &attr, entry, &f) == 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace

TEST_CASE("a Redis item whose headers nest 100,000 levels is an encoding_error, not a crash",
          "[hostile][redis]") {
  const std::string item = deep_redis_item(100000);
  try {
    kr::decode_envelope(item);
    FAIL("decoded a 100,000-level item");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::encoding_error);
    CHECK_THAT(e.what(), Catch::Contains("max_depth"));
  }
}

TEST_CASE("a JSON body nesting 100,000 levels is an encoding_error from payload(), not a crash",
          "[hostile][payload]") {
  auto m = message(deep_array(100000), "application/json");
  try {
    (void)m.payload();
    FAIL("decoded a 100,000-level body");
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::encoding_error);
    CHECK_THAT(e.what(), Catch::Contains("max_depth"));
  }
  CHECK(m.body().size() == 200000);  // body() still gives the bytes
}

TEST_CASE("deep input is refused on a thread with a 128 KiB stack", "[hostile][payload][redis]") {
  std::string body_result, item_result;
  on_small_stack(128 * 1024, [&] {
    body_result = outcome([] { (void)message(deep_array(20000), "application/json").payload().dump(); });
    item_result = outcome([] { (void)kr::decode_envelope(deep_redis_item(20000)); });
  });
  CHECK_THAT(body_result, Catch::StartsWith("respool:"));
  CHECK_THAT(item_result, Catch::StartsWith("respool:"));
}

TEST_CASE("a zlib bomb is stopped at the size limit, not expanded", "[hostile][payload]") {
  // 200 MiB of zeros compress to about 200 KB.
  std::string zeros(200u << 20, '\0');
  const std::string bomb = respool::detail::zlib_compress(zeros);
  zeros = std::string();
  CHECK(bomb.size() < 300000);
  auto m = message(bomb, "text/plain", "utf-8", json{{"compression", "application/x-gzip"}});
  std::string result = outcome([&] { (void)m.payload(); });
  CHECK_THAT(result, Catch::StartsWith("respool:"));
  CHECK_THAT(result, Catch::Contains("max_body_size"));
  CHECK_THAT(outcome([&] { (void)m.decoded_body(); }), Catch::Contains("max_body_size"));
}

TEST_CASE("binary and pickle bodies: payload() throws respool::error, body() has the bytes",
          "[hostile][payload]") {
  const std::string pickle("\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", 22);
  auto p = message(pickle, "application/x-python-serialize", "binary");
  std::string r = outcome([&] { (void)p.payload().dump(); });
  CHECK_THAT(r, Catch::StartsWith("respool:"));
  CHECK_THAT(r, Catch::Contains("application/x-python-serialize"));
  CHECK(p.body() == pickle);

  auto raw = message(std::string("\x00\xff\x10raw", 6), "application/data", "binary");
  CHECK_THAT(outcome([&] { (void)raw.payload().dump(); }), Catch::StartsWith("respool:"));
  CHECK(raw.body() == std::string("\x00\xff\x10raw", 6));

  // Bytes that are not UTF-8 under a text encoding: a respool::error, not
  // nlohmann's type_error from dump().
  auto bad = message("\xff\xfe\xfd", "application/data", "utf-8");
  CHECK_THAT(outcome([&] { (void)bad.payload().dump(); }), Catch::StartsWith("respool:"));
  auto bad_json = message("\"\xff\"", "application/json", "utf-8");
  CHECK_THAT(outcome([&] { (void)bad_json.payload().dump(); }), Catch::StartsWith("respool:"));
}

TEST_CASE("content_encoding is honoured as kombu honours it", "[hostile][payload]") {
  // "héllo" in UTF-16 with a BOM (Python: "héllo".encode("utf-16")), latin-1, UTF-16-BE.
  auto utf16 = message(std::string("\xff\xfeh\x00\xe9\x00l\x00l\x00o\x00", 12), "text/plain", "utf-16");
  CHECK(utf16.payload() == "h\xc3\xa9llo");
  auto latin1 = message("h\xe9llo", "text/plain", "latin-1");
  CHECK(latin1.payload() == "h\xc3\xa9llo");
  auto be = message(std::string("\x00h\x00\xe9\x00l\x00l\x00o", 10), "text/plain", "utf-16-be");
  CHECK(be.payload() == "h\xc3\xa9llo");
  // JSON in UTF-16 (a producer that honours its content_encoding).
  auto json16 = message(std::string("\xff\xfe{\x00}\x00", 6), "application/json", "utf-16");
  CHECK(json16.payload() == json::object());
}

TEST_CASE("kombu's binding separator in a Redis routing key or queue name is refused", "[hostile][redis]") {
  const std::string sep = "\x06\x16";
  CHECK_THROWS_AS(kr::binding_member("a" + sep + "b", "", "q"), respool::error);
  CHECK_THROWS_AS(kr::binding_member("rk", "", "q" + sep + "3"), respool::error);
  CHECK_THROWS_AS(kr::priority_queue("q" + sep + "3", 0), respool::error);
  Envelope e;
  e.body = "1";
  CHECK_THROWS_AS(kr::encode_envelope(e, "", "a" + sep + "b", "tag"), respool::error);
  try {
    kr::binding_member("a" + sep + "b", "", "q");
  } catch (const respool::error& err) {
    CHECK(err.code() == errc::encoding_error);
    CHECK_THAT(err.what(), Catch::Contains("\\x06\\x16"));
    CHECK_THAT(err.what(), Catch::Contains("routing key"));
  }
}
