// respool::MessageLimits and the bounded decoders: each limit's default, the
// exact boundary of each (at the limit decodes, one past it is an
// encoding_error naming it), process-wide and per-call limits, and kombu's
// content_type / content_encoding rules in Message::payload().

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "respool/connection.hpp"
#include "respool/detail/codec.hpp"
#include "respool/detail/redis_kombu.hpp"
#include "respool/message.hpp"
#include "respool/producer.hpp"

namespace {

using respool::Envelope;
using respool::errc;
using respool::Message;
using respool::MessageLimits;
using json = nlohmann::json;
namespace kr = respool::detail::redis;

Message message(std::string body, std::string content_type, std::string content_encoding = "utf-8",
                json headers = json::object()) {
  Envelope e;
  e.body = std::move(body);
  e.content_type = std::move(content_type);
  e.content_encoding = std::move(content_encoding);
  e.headers = std::move(headers);
  return Message(std::move(e), nullptr);
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// The encoding_error f throws, as its what(); FAILs if it throws nothing.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const respool::error& e) {
    CHECK(e.code() == errc::encoding_error);
    return e.what();
  }
  FAIL("no error");
  return "";
}

// Restores the process-wide limits when a test ends.
struct limits_guard {
  MessageLimits saved = respool::message_limits();
  ~limits_guard() { respool::set_message_limits(saved); }
};

std::string item_with_headers(const std::string& headers) {
  return "{\"body\": \"e30=\", \"content-encoding\": \"utf-8\", \"content-type\": \"application/json\", "
         "\"headers\": " +
         headers +
         ", \"properties\": {\"delivery_mode\": 2, \"delivery_info\": {\"exchange\": \"\", \"routing_key\": "
         "\"q\"}, \"priority\": 0, \"body_encoding\": \"base64\", \"delivery_tag\": \"t\"}}";
}

}  // namespace

TEST_CASE("MessageLimits defaults, and set_message_limits / message_limits", "[limits]") {
  MessageLimits defaults;
  CHECK(defaults.max_depth == 128);
  CHECK(defaults.max_body_size == std::size_t{64} << 20);
  CHECK(defaults.max_header_size == std::size_t{1} << 20);
  limits_guard guard;
  MessageLimits small;
  small.max_depth = 3;
  small.max_body_size = 10;
  small.max_header_size = 100;
  respool::set_message_limits(small);
  auto now = respool::message_limits();
  CHECK(now.max_depth == 3);
  CHECK(now.max_body_size == 10);
  CHECK(now.max_header_size == 100);
  // payload() uses the process-wide limits unless given its own.
  auto m = message(nested(4), "application/json");
  CHECK_THAT(error_of([&] { (void)m.payload(); }), Catch::Contains("max_depth (3 levels)"));
  CHECK(m.payload(MessageLimits{}) == json::parse(nested(4)));
}

TEST_CASE("max_depth: JSON at the limit decodes, one level more does not", "[limits]") {
  MessageLimits l;
  l.max_depth = 5;
  CHECK(message(nested(5), "application/json").payload(l) == json::parse(nested(5)));
  CHECK_THAT(error_of([&] { (void)message(nested(6), "application/json").payload(l); }),
             Catch::Contains("max_depth (5 levels)"));
  // Brackets inside strings (escaped quotes too) are not nesting.
  std::string tricky = "[\"[[[[[[\\\"[[[[[[\", {\"k[[[[[[\": \"]]]]{{{{\"}]";
  CHECK(message(tricky, "application/json").payload(l).size() == 2);
  l.max_depth = 0;
  CHECK(message("42", "application/json").payload(l) == 42);
  CHECK_THROWS_AS(message("[]", "application/json").payload(l), respool::error);
}

TEST_CASE("max_body_size bounds decompression and deserialisation exactly", "[limits]") {
  MessageLimits l;
  l.max_body_size = 100000;
  const std::string exact(100000, 'a'), over(100001, 'a');
  json zlib{{"compression", "application/x-gzip"}};
  auto at = message(respool::detail::zlib_compress(exact), "text/plain", "utf-8", zlib);
  CHECK(at.decoded_body(l) == exact);
  CHECK(at.payload(l) == exact);
  auto past = message(respool::detail::zlib_compress(over), "text/plain", "utf-8", zlib);
  CHECK_THAT(error_of([&] { (void)past.decoded_body(l); }), Catch::Contains("max_body_size (100000 bytes)"));
  CHECK_THAT(error_of([&] { (void)past.payload(l); }), Catch::Contains("max_body_size"));
  // Uncompressed bodies too.
  CHECK_THAT(error_of([&] { (void)message(over, "text/plain").payload(l); }),
             Catch::Contains("max_body_size"));
  // Corrupt, truncated, unknown compression.
  auto corrupt = message("not zlib", "application/json", "utf-8", zlib);
  CHECK_THAT(error_of([&] { (void)corrupt.payload(); }), Catch::Contains("zlib"));
  auto compressed = respool::detail::zlib_compress("{\"a\": 1}");
  auto truncated = message(compressed.substr(0, compressed.size() - 3), "application/json", "utf-8", zlib);
  CHECK_THAT(error_of([&] { (void)truncated.payload(); }), Catch::Contains("zlib"));
  auto bz2 = message("x", "application/json", "utf-8", json{{"compression", "application/x-bz2"}});
  CHECK_THAT(error_of([&] { (void)bz2.payload(); }), Catch::Contains("unknown compression"));
}

TEST_CASE("Redis items: depth, item size and header size limits", "[limits][redis]") {
  MessageLimits l;
  l.max_depth = 4;
  l.max_body_size = 1000;
  l.max_header_size = 200;
  // Headers nesting max_depth levels decode, one more does not.
  auto deep = [](std::size_t depth) {
    std::string h;
    for (std::size_t i = 0; i < depth; ++i) h += "{\"a\": ";
    return h + "1" + std::string(depth, '}');
  };
  auto got = kr::decode_envelope(item_with_headers(deep(4)), l);
  CHECK(got.envelope.headers["a"]["a"]["a"]["a"] == 1);
  CHECK(got.envelope.body == "{}");
  CHECK_THAT(error_of([&] { kr::decode_envelope(item_with_headers(deep(5)), l); }),
             Catch::Contains("max_depth"));
  // Headers over max_header_size (as JSON text).
  std::string big = "{\"x\": \"" + std::string(200, 'b') + "\"}";
  CHECK_THAT(error_of([&] { kr::decode_envelope(item_with_headers(big), l); }),
             Catch::Contains("max_header_size (200 bytes)"));
  // The whole item: 2 * max_body_size + max_header_size.
  std::string item = item_with_headers("{}");
  std::string padded = item.substr(0, item.size() - 1) + ", \"pad\": \"" + std::string(2200, 'p') + "\"}";
  CHECK_THAT(error_of([&] { kr::decode_envelope(padded, l); }), Catch::Contains("2 * max_body_size"));
  // Numbers out of int's range are clamped (no undefined conversion).
  std::string wild = item_with_headers("{}");
  wild.replace(wild.find("\"priority\": 0"), 13, "\"priority\": 1e300");
  wild.replace(wild.find("\"delivery_mode\": 2"), 18, "\"delivery_mode\": -99999999999999");
  auto w = kr::decode_envelope(wild);
  CHECK(w.envelope.priority == std::numeric_limits<int>::max());
  CHECK(w.envelope.delivery_mode == std::numeric_limits<int>::min());
  // Not JSON, not a kombu envelope.
  CHECK_THAT(error_of([&] { kr::decode_envelope("{\"body\": "); }), Catch::Contains("not valid JSON"));
  CHECK_THAT(error_of([&] { kr::decode_envelope("[]"); }), Catch::Contains("not a kombu message"));
}

TEST_CASE("payload() follows kombu's content type and content encoding rules", "[payload]") {
  // Text encodings.
  CHECK(message("caf\xc3\xa9", "text/plain", "").payload() == "caf\xc3\xa9");  // utf-8 by default
  CHECK(message("caf\xc3\xa9", "text/plain", "UTF8").payload() == "caf\xc3\xa9");
  CHECK(message("caf\xe9", "text/plain", "ISO-8859-1").payload() == "caf\xc3\xa9");
  CHECK(message(std::string("\xff\xfe\x3d\xd8\x00\xde", 6), "text/plain", "utf-16").payload() ==
        "\xf0\x9f\x98\x80");                                                               // a surrogate pair
  CHECK(message(std::string("h\x00i\x00", 4), "text/plain", "utf-16").payload() == "hi");  // no BOM: LE
  CHECK(message(std::string("\x00\x00\x00h", 4), "text/plain", "utf-32-be").payload() == "h");
  CHECK(message("\xef\xbb\xbfhi", "text/plain", "utf-8-sig").payload() == "hi");
  CHECK_THAT(error_of([&] { (void)message(std::string("h\x00i", 3), "text/plain", "utf-16").payload(); }),
             Catch::Contains("not valid utf-16"));
  CHECK_THROWS_AS(message(std::string("\x00\xdc", 2), "text/plain", "utf-16-le").payload(), respool::error);
  CHECK_THROWS_AS(message("caf\xe9", "text/plain", "ascii").payload(), respool::error);
  CHECK_THROWS_AS(message("\xed\xa0\x80", "text/plain", "utf-8").payload(), respool::error);  // a surrogate
  CHECK_THROWS_AS(message("\xc0\xaf", "text/plain", "utf-8").payload(), respool::error);      // overlong
  CHECK_THAT(error_of([&] { (void)message("x", "text/plain", "ebcdic").payload(); }),
             Catch::Contains("unsupported content encoding 'ebcdic'"));
  // No content type is kombu's application/data.
  CHECK(message("plain", "", "utf-8").payload() == "plain");
  // JSON: kombu's json decoder reads UTF-8 whatever the encoding says...
  CHECK(message("{\"a\": \"\xc3\xa9\"}", "application/json", "binary").payload() == json{{"a", "\xc3\xa9"}});
  CHECK(message("[1]", "application/json", "no-such-codec").payload() == json{1});
  // ...respool also reads JSON a producer wrote in UTF-16 / latin-1.
  CHECK(message("{\"a\": \"\xe9\"}", "application/json", "latin-1").payload() == json{{"a", "\xc3\xa9"}});
  CHECK_THAT(error_of([&] { (void)message("{", "application/json").payload(); }),
             Catch::Contains("not valid JSON"));
  // Binary bodies and kombu's other serializers: an error; body() has the bytes.
  for (const char* type : {"application/x-python-serialize", "application/x-msgpack", "application/x-yaml"}) {
    auto m = message("\x80\x04K\x01.", type, "binary");
    CHECK_THAT(error_of([&] { (void)m.payload(); }), Catch::Contains(type));
    CHECK(m.body() == "\x80\x04K\x01.");
  }
  CHECK_THAT(error_of([&] { (void)message("\x01\x02", "application/data", "binary").payload(); }),
             Catch::Contains("binary"));
  CHECK_THROWS_AS(message("x", "image/png", "ascii-8bit").payload(), respool::error);
}

TEST_CASE("memory://: a hostile message does not hold up the good one behind it", "[payload][memory]") {
  respool::Connection c("memory://message-limits-test");
  respool::Queue q{"hostile", respool::Exchange{"hostile"}, "rk"};
  c.default_channel().declare(q);
  respool::Producer p(c);
  respool::PublishOptions o;
  o.exchange = "hostile";
  o.routing_key = "rk";
  o.content_type = "application/json";
  p.publish_raw(nested(100000), o);
  respool::PublishOptions plain;
  plain.exchange = "hostile";
  plain.routing_key = "rk";
  p.publish_raw(std::string("\x80\x04K\x01.", 5), plain);
  p.publish(json{{"good", true}}, plain);
  auto deep = c.default_channel().get("hostile", false);
  REQUIRE(deep);
  CHECK_THAT(error_of([&] { (void)deep->payload(); }), Catch::Contains("max_depth"));
  deep->ack();
  auto raw = c.default_channel().get("hostile", false);
  REQUIRE(raw);
  CHECK_THAT(error_of([&] { (void)raw->payload(); }), Catch::Contains("binary"));
  CHECK(raw->body() == std::string("\x80\x04K\x01.", 5));
  raw->ack();
  auto good = c.default_channel().get("hostile", false);
  REQUIRE(good);
  CHECK(good->payload() == json{{"good", true}});
  good->ack();
}
