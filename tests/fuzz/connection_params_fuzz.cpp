// libFuzzer target for respool::ConnectionParams::parse.
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -I include \
//       tests/fuzz/connection_params_fuzz.cpp -o fuzz_params && ./fuzz_params -max_total_time=60
//
// Any input either parses or throws respool::invalid_url /
// respool::unknown_transport; anything else (another exception, a sanitizer
// report, a broken invariant) is a bug and aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <respool/connection_params.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

bool is_scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

// The entry alone (without its alternates).
respool::ConnectionParams alone(const respool::ConnectionParams& p) {
  return respool::ConnectionParams(p.transport(), p.hostname(), p.port(), p.userid(), p.password(),
                                   p.virtual_host(), p.options());
}

void check_entry(const respool::ConnectionParams& p) {
  check(!p.hostname().empty(), "hostname never empty");
  check(!p.virtual_host().empty(), "virtual host never empty");
  check(p.transport() == "amqp" || p.transport() == "amqps" || p.transport() == "redis" ||
            p.transport() == "rediss" || p.transport() == "memory",
        "transport is a known name");
  for (char c : p.hostname()) check(!(c >= 'A' && c <= 'Z'), "hostname lowercase");
  for (const auto& [name, value] : p.options()) check(!name.empty() && !value.empty(), "no blank options");

  // Masking replaces exactly the password: as_uri(false) is as_uri(true)
  // with ":<encoded password>@" replaced by ":**@".
  auto single = alone(p);
  check(single == alone(single), "normalisation is idempotent");
  std::string full = single.as_uri(true);
  std::string masked = single.as_uri(false);
  if (p.password().empty()) {
    check(full == masked, "nothing to mask");
  } else {
    using respool::detail::url::percent_encode;
    std::string prefix = p.transport() + "://" + percent_encode(p.userid()) + ":";
    std::string secret = percent_encode(p.password()) + "@";
    check(full.compare(0, prefix.size() + secret.size(), prefix + secret) == 0, "full URI has the password");
    check(masked == prefix + "**@" + full.substr(prefix.size() + secret.size()),
          "masked URI masks the password");
    auto reparsed = respool::ConnectionParams::parse(masked);
    check(reparsed.password() == "**", "masked password parses as **");
    check(alone(respool::ConnectionParams(p.transport(), p.hostname(), p.port(), p.userid(), "**",
                                          p.virtual_host(), p.options())) == reparsed,
          "masked URI differs only in the password");
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
    check(std::string_view(e.what()).size() < 160, "invalid_url messages do not echo the input");
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
