// libFuzzer target for Message::payload() and decoded_body(): every body a
// queue may hold, with every content type, content encoding and
// compression respool knows (none, zlib, an unknown one).
//
//   cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DRESPOOL_FUZZ=ON
//   cmake --build build/fuzz --target fuzz_payload_fuzz
//   build/fuzz/tests/fuzz_payload_fuzz -max_total_time=600 tests/fuzz/corpus/payload_fuzz
//
// Input: "<content type>\t<content encoding>\t<compression header>\n" and
// then the body as on the wire (the seeds are kombu messages read back from
// Redis and RabbitMQ). The body is also tried zlib-compressed by respool,
// which must give the same outcome as uncompressed. payload() throws
// nothing but respool::error(encoding_error); what it returns dumps (valid
// UTF-8) and nests at most max_depth; decoded_body() is at most
// max_body_size. Anything else aborts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <respool/detail/codec.hpp>
#include <respool/message.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"

namespace {

using respool_fuzz::check;
using respool_fuzz::depth_of;

// The outcome of payload(): the value's dump, or the error.
struct outcome {
  bool ok = false;
  std::string text;
};

outcome decode(const respool::Envelope& e, const respool::MessageLimits& l) {
  respool::Message m(e, nullptr);
  outcome out;
  try {
    auto body = m.decoded_body(l);
    check(body.size() <= l.max_body_size, "decoded_body() within max_body_size");
  } catch (const respool::error& err) {
    check(err.code() == respool::errc::encoding_error, "decoded_body() errors are encoding_error");
  }
  try {
    auto value = m.payload(l);
    check(depth_of(value) <= l.max_depth, "payload within max_depth");
    out.text = value.dump();  // throws nlohmann::type_error for invalid UTF-8: caught below as a bug
    out.ok = true;
  } catch (const respool::error& err) {
    check(err.code() == respool::errc::encoding_error, "payload() errors are encoding_error");
    out.text = err.what();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  respool::Envelope e;
  auto newline = input.find('\n');
  std::string_view meta = newline == std::string_view::npos ? std::string_view() : input.substr(0, newline);
  e.body = std::string(newline == std::string_view::npos ? input : input.substr(newline + 1));
  auto tab1 = meta.find('\t');
  auto tab2 = tab1 == std::string_view::npos ? tab1 : meta.find('\t', tab1 + 1);
  e.content_type = std::string(meta.substr(0, tab1));
  if (tab1 != std::string_view::npos)
    e.content_encoding = std::string(meta.substr(tab1 + 1, tab2 - tab1 - 1));
  if (tab2 != std::string_view::npos) e.headers["compression"] = std::string(meta.substr(tab2 + 1));

  respool::MessageLimits l;
  l.max_depth = 32;
  l.max_body_size = 1 << 16;  // zlib output is cut there

  try {
    outcome as_is = decode(e, l);
    (void)as_is;
    // The same body zlib-compressed by respool: the same outcome.
    if (!e.headers.contains("compression")) {
      respool::Envelope z = e;
      z.body = respool::detail::zlib_compress(e.body);
      z.headers["compression"] = "application/x-gzip";
      outcome zipped = decode(z, l);
      check(zipped.ok == as_is.ok, "compression does not change whether payload() succeeds");
      if (as_is.ok) check(zipped.text == as_is.text, "compression does not change the payload");
    }
  } catch (const respool::error&) {
    check(false, "only payload() and decoded_body() may throw");
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "unexpected exception: %s\n", ex.what());
    std::abort();
  }
  return 0;
}
