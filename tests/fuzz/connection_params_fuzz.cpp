// libFuzzer target for respool::ConnectionParams::parse.
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -I include \
//       tests/fuzz/connection_params_fuzz.cpp -o fuzz_params && ./fuzz_params -max_total_time=60
//
// Any input either parses or throws respool::invalid_url /
// respool::unknown_transport; anything else (another exception, a sanitizer
// report, a broken invariant) is a bug and aborts. The oracle for an accepted
// URL: parse(as_uri(true)) equals it, and the masked as_uri() reads back as
// it with the password and every secret option value replaced by "**" (so it
// never contains them).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <respool/connection_params.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"

namespace {

using respool_fuzz::check;

bool is_scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

// The entry alone (without its alternates).
respool::ConnectionParams alone(const respool::ConnectionParams& p) {
  return respool::ConnectionParams(p.transport(), p.hostname(), p.port(), p.userid(), p.password(),
                                   p.virtual_host(), p.options());
}

// What the masked URI must read back as: the password and every secret
// option value replaced by "**" (in the alternates too).
respool::ConnectionParams masked_copy(const respool::ConnectionParams& p, bool with_alternates) {
  auto options = p.options();
  for (auto& [name, value] : options)
    if (respool::detail::url::is_secret_option(p.transport(), name)) value = "**";
  std::vector<respool::ConnectionParams> alternates;
  if (with_alternates)
    for (const auto& alternate : p.alternates()) alternates.push_back(masked_copy(alternate, false));
  return respool::ConnectionParams(p.transport(), p.hostname(), p.port(), p.userid(),
                                   p.password().empty() ? std::string() : std::string("**"), p.virtual_host(),
                                   options, alternates);
}

bool has_secret(const respool::ConnectionParams& p) {
  if (!p.password().empty()) return true;
  for (const auto& [name, value] : p.options())
    if (respool::detail::url::is_secret_option(p.transport(), name)) return true;
  return false;
}

void check_entry(const respool::ConnectionParams& p) {
  check(!p.hostname().empty(), "hostname never empty");
  check(!p.virtual_host().empty(), "virtual host never empty");
  check(p.transport() == "amqp" || p.transport() == "amqps" || p.transport() == "redis" ||
            p.transport() == "rediss" || p.transport() == "memory" || p.transport() == "sentinel" ||
            p.transport() == "redis+socket",
        "transport is a known name");
  if (p.transport() != "redis+socket")
    for (char c : p.hostname()) check(!(c >= 'A' && c <= 'Z'), "hostname lowercase");
  for (const auto& [name, value] : p.options()) {
    check(!name.empty() && !value.empty(), "no blank options");
    check(name != "ssl", "ssl is folded into the transport");
  }

  auto single = alone(p);
  check(single == alone(single), "normalisation is idempotent");
  std::string full = single.as_uri(true);
  std::string masked = single.as_uri(false);
  if (!has_secret(p)) {
    check(full == masked, "nothing to mask");
  } else {
    check(full != masked, "something masked");
    // Masking replaces exactly the secrets: the masked URI reads back as the
    // params with each secret replaced by "**".
    auto reparsed = respool::ConnectionParams::parse(masked);
    check(reparsed == masked_copy(single, false), "masked URI differs only in the secrets");
  }
}

void check_params(const respool::ConnectionParams& p) {
  // Round trip through the URL with the password.
  std::string full = p.as_uri(true);
  auto again = respool::ConnectionParams::parse(full);
  check(again == p, "parse(as_uri(true)) == params");
  check(!(again != p), "!= is the negation of ==");
  check(again.hash() == p.hash(), "equal params hash equal");
  check(std::hash<respool::ConnectionParams>{}(again) == p.hash(), "std::hash is hash()");
  check(again.as_uri(true) == full, "as_uri is canonical");

  // The constructor normalises as parse does.
  respool::ConnectionParams built(p.transport(), p.hostname(), p.port(), p.userid(), p.password(),
                                  p.virtual_host(), p.options(), p.alternates());
  check(built == p && built.hash() == p.hash(), "constructor from the fields == params");

  // The whole masked list (alternates written after the primary) reads back masked.
  check(respool::ConnectionParams::parse(p.as_uri()) == masked_copy(p, true),
        "masked list reads back masked");

  check_entry(p);
  for (const auto& alternate : p.alternates()) {
    check(alternate.alternates().empty(), "alternates are flat");
    check_entry(alternate);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::optional<respool::ConnectionParams> params;
  try {
    params = respool::ConnectionParams::parse(input);
  } catch (const respool::invalid_url& e) {
    check(e.position() <= input.size() || e.position() == respool::ConnectionParams::max_url_length,
          "error position inside the input");
    // Messages name at most a refused option (a plain identifier of 40
    // characters or fewer) and the options the scheme knows; never the input.
    check(std::string_view(e.what()).size() < 480, "invalid_url messages do not echo the input");
    return 0;
  } catch (const respool::unknown_transport& e) {
    check(!e.scheme().empty(), "unknown scheme not empty");
    for (char c : e.scheme()) check(is_scheme_char(c), "unknown scheme is a well-formed, lowercased scheme");
    return 0;
  }
  // Deterministic: parsing twice gives equal params.
  auto twice = respool::ConnectionParams::parse(input);
  check(twice == *params && twice.hash() == params->hash(), "parse is deterministic");
  check_params(*params);
  return 0;
}
