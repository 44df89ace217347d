// libFuzzer target for the AMQP field-table decoder: the basic properties
// of a content header frame as the broker sends them (flags, then the
// properties; the headers are a field table), decoded by rabbitmq-c's
// amqp_decode_properties and turned into JSON by respool's table_decoder
// (respool/detail/amqp_table.hpp), as amqp_connection::get() does.
//
//   cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DRESPOOL_FUZZ=ON
//   cmake --build build/fuzz --target fuzz_amqp_table_fuzz
//   build/fuzz/tests/fuzz_amqp_table_fuzz -max_total_time=600 tests/fuzz/corpus/amqp_table_fuzz
//
// Any table either decodes or throws respool::error(encoding_error) naming a
// limit. Decoded headers dump (valid UTF-8, bounded depth), and writing them
// back with table_builder and decoding again gives the same JSON. Anything
// else aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <respool/detail/amqp_table.hpp>
#include <respool/message.hpp>
#include <string>
#include <vector>

#include "fuzz_support.hpp"

namespace {

using respool_fuzz::check;

respool::MessageLimits limits() {
  respool::MessageLimits l;
  l.max_depth = 16;
  l.max_header_size = 1 << 12;
  return l;
}

struct pool {
  amqp_pool_t p;
  pool() { init_amqp_pool(&p, 4096); }
  ~pool() { empty_amqp_pool(&p); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace amqp = respool::detail::amqp;
  // rabbitmq-c decodes nested tables recursively: its depth is bounded by
  // the frame size (frame_max), here by the input size (-max_len).
  if (size > 1 << 16) return 0;
  std::string input(reinterpret_cast<const char*>(data), size);
  pool decode_pool;
  void* decoded = nullptr;
  amqp_bytes_t encoded{input.size(), input.data()};
  if (amqp_decode_properties(AMQP_BASIC_CLASS, &decode_pool.p, encoded, &decoded) != AMQP_STATUS_OK) return 0;
  const auto* props = static_cast<const amqp_basic_properties_t*>(decoded);
  if (!(props->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;

  const auto l = limits();
  nlohmann::json headers;
  try {
    headers = amqp::table_to_json(props->headers, l);
  } catch (const respool::error& e) {
    check(e.code() == respool::errc::encoding_error, "decode errors are encoding_error");
    const std::string what = e.what();
    check(what.find("max_depth") != std::string::npos || what.find("max_header_size") != std::string::npos,
          "decode errors name the limit");
    return 0;
  }
  check(headers.is_object(), "headers are an object");
  const std::string text = headers.dump();  // never throws: valid UTF-8

  // Round trip: JSON -> table -> wire -> table -> JSON gives the same JSON.
  amqp::table_builder builder;
  amqp_table_t table;
  try {
    table = builder.table(headers);
  } catch (const respool::error& e) {
    return 0;  // e.g. an empty or over-long key, which respool does not publish
  }
  amqp_basic_properties_t out{};
  out._flags = AMQP_BASIC_HEADERS_FLAG;
  out.headers = table;
  std::vector<char> buffer(1 << 16);
  int written = amqp_encode_properties(AMQP_BASIC_CLASS, &out, amqp_bytes_t{buffer.size(), buffer.data()});
  check(written >= 0, "decoded headers can be encoded");
  pool again_pool;
  void* again = nullptr;
  check(amqp_decode_properties(AMQP_BASIC_CLASS, &again_pool.p,
                               amqp_bytes_t{static_cast<std::size_t>(written), buffer.data()},
                               &again) == AMQP_STATUS_OK,
        "encoded headers decode");
  respool::MessageLimits roomy = l;
  roomy.max_header_size = 1 << 20;  // U8/I16... become 8-byte values; depth stays
  auto back = amqp::table_to_json(static_cast<const amqp_basic_properties_t*>(again)->headers, roomy);
  check(back.dump() == text, "headers round trip");
  return 0;
}
