// libFuzzer target for the Redis envelope decoder
// (respool::detail::redis::decode_envelope): what respool does with any
// item an RPOP returns from a kombu queue.
//
//   cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DRESPOOL_FUZZ=ON
//   cmake --build build/fuzz --target fuzz_redis_envelope_fuzz
//   build/fuzz/tests/fuzz_redis_envelope_fuzz -max_total_time=600 tests/fuzz/corpus/redis_envelope_fuzz
//
// Any input either decodes or throws respool::error(encoding_error). A
// decoded item must survive everything get() and a caller do with it: the
// unacked copy (py_dumps), headers().dump(), payload(), and re-encoding
// with encode_envelope, which must decode to the same envelope. Anything
// else (another exception, a sanitizer report, a stack overflow, a broken
// invariant) aborts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <respool/detail/redis_kombu.hpp>
#include <respool/message.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"

namespace {

using respool_fuzz::check;
using respool_fuzz::depth_of;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace kr = respool::detail::redis;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto l = respool_fuzz::small_limits();
  kr::received got;
  try {
    got = kr::decode_envelope(input, l);
  } catch (const respool::error& e) {
    check(e.code() == respool::errc::encoding_error, "decode errors are encoding_error");
    return 0;
  }
  check(got.raw.is_object(), "a decoded item is an object");
  check(got.envelope.headers.is_object(), "headers are an object");
  check(depth_of(got.envelope.headers) <= l.max_depth, "headers within max_depth");
  check(got.envelope.headers.dump().size() <= l.max_header_size, "headers within max_header_size");
  (void)got.envelope.headers.dump();  // valid UTF-8: never throws

  // The unacked copy get(no_ack=false) writes.
  nlohmann::ordered_json record =
      nlohmann::ordered_json::array({got.raw, got.envelope.exchange, got.envelope.routing_key});
  std::string text;
  try {
    text = kr::py_dumps(record);
  } catch (const respool::error&) {
    check(false, "a decoded item can be written back (py_dumps)");
  }

  // payload(): respool::error or a value that dumps.
  respool::Message m(got.envelope, nullptr);
  try {
    (void)m.payload(l).dump();
  } catch (const respool::error& e) {
    check(e.code() == respool::errc::encoding_error, "payload errors are encoding_error");
  }

  // Re-encoding and decoding gives the same envelope (routing keys with
  // kombu's separator are refused by encode_envelope).
  std::string again;
  try {
    again = kr::encode_envelope(got.envelope, got.envelope.exchange, got.envelope.routing_key,
                                got.envelope.delivery_tag);
  } catch (const respool::error& e) {
    check(got.envelope.routing_key.find(kr::sep) != std::string::npos, "only separators fail to encode");
    return 0;
  }
  respool::MessageLimits roomy = l;
  roomy.max_body_size = 1 << 20;
  auto back = kr::decode_envelope(again, roomy).envelope;
  check(back.body == got.envelope.body, "body round trip");
  check(back.content_type == got.envelope.content_type, "content type round trip");
  check(back.content_encoding == got.envelope.content_encoding, "content encoding round trip");
  check(back.headers.dump() == got.envelope.headers.dump(), "headers round trip");  // inf dumps as null
  check(back.delivery_mode == got.envelope.delivery_mode, "delivery mode round trip");
  check(back.priority == got.envelope.priority, "priority round trip");
  check(back.exchange == got.envelope.exchange && back.routing_key == got.envelope.routing_key,
        "delivery info round trip");
  check(back.delivery_tag == got.envelope.delivery_tag, "delivery tag round trip");
  return 0;
}
