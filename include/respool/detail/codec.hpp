// respool/detail/codec.hpp — kombu's serialisers and compressors (json, raw,
// text; zlib), and the bounded decoders of broker input: every decoder here
// stops at a size limit and JSON is checked for its nesting depth before a
// tree is built (nlohmann's dump, copy and comparison recurse).
#pragma once

#include <zlib.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "respool/errors.hpp"

namespace respool::detail {

// kombu's registered name for zlib compression (the "compression" header).
inline constexpr std::string_view zlib_content_type = "application/x-gzip";

inline std::string zlib_compress(std::string_view data) {
  uLongf size = compressBound(static_cast<uLong>(data.size()));
  std::string out(size, '\0');
  int rc =
      ::compress2(reinterpret_cast<Bytef*>(out.data()), &size, reinterpret_cast<const Bytef*>(data.data()),
                  static_cast<uLong>(data.size()), Z_DEFAULT_COMPRESSION);
  if (rc != Z_OK) throw error(errc::encoding_error, "zlib compression failed");
  out.resize(size);
  return out;
}

// Inflates a zlib stream (Python's zlib.decompress). Stops and throws
// encoding_error as soon as the output would exceed `max_size` bytes, so a
// small "zlib bomb" never expands in memory.
inline std::string zlib_decompress(std::string_view data, std::size_t max_size = SIZE_MAX) {
  if (data.size() > UINT_MAX) throw error(errc::encoding_error, "zlib: compressed body larger than 4 GiB");
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) throw error(errc::encoding_error, "zlib: inflateInit failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buffer[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      throw error(errc::encoding_error, "zlib: corrupt or truncated compressed body");
    }
    const std::size_t produced = sizeof buffer - stream.avail_out;
    if (produced > max_size - out.size()) {
      inflateEnd(&stream);
      throw error(errc::encoding_error, "zlib: decompressed body larger than max_body_size (" +
                                            std::to_string(max_size) + " bytes); decompression stopped");
    }
    out.append(buffer, produced);
    if (rc == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      throw error(errc::encoding_error, "zlib: truncated compressed body");
    }
  }
  inflateEnd(&stream);
  return out;
}

// A name from a message (content type, encoding...) for an error message:
// at most 100 bytes of it, so that a hostile one cannot bloat the error.
inline std::string clipped(std::string_view name) {
  return name.size() <= 100 ? std::string(name) : std::string(name.substr(0, 100)) + "...";
}

// Compress with a kombu compression name ("zlib") or its content type.
inline std::string compress(std::string_view data, std::string_view method) {
  if (method.empty()) return std::string(data);
  if (method == "zlib" || method == zlib_content_type) return zlib_compress(data);
  throw error(errc::encoding_error, "unknown compression method '" + std::string(method) + "'");
}

// Decompress according to the "compression" header value (a content type),
// producing at most `max_size` bytes.
inline std::string decompress(std::string data, std::string_view content_type,
                              std::size_t max_size = SIZE_MAX) {
  if (content_type.empty()) return data;
  if (content_type == zlib_content_type || content_type == "zlib") return zlib_decompress(data, max_size);
  throw error(errc::encoding_error, "unknown compression '" + clipped(content_type) + "'");
}

// ---------------------------------------------------------------- bounded JSON

// Throws encoding_error if `text` nests arrays/objects deeper than
// `max_depth` ("[1]" has depth 1, a scalar 0). One pass, no recursion. Exact
// for valid JSON and for the valid prefix of invalid JSON, which is all a
// parser reads before it fails.
inline void check_json_depth(std::string_view text, std::size_t max_depth, const char* what) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth)
          throw error(errc::encoding_error, std::string(what) + " nests deeper than max_depth (" +
                                                std::to_string(max_depth) + " levels)");
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
}

// Parses JSON text of at most `max_size` bytes and `max_depth` levels.
// Throws encoding_error (naming the limit) otherwise, or if it is not JSON.
template <class BasicJson = nlohmann::json>
BasicJson parse_json(std::string_view text, std::size_t max_size, std::size_t max_depth, const char* what) {
  if (text.size() > max_size)
    throw error(errc::encoding_error, std::string(what) + " larger than its size limit (" +
                                          std::to_string(text.size()) + " > " + std::to_string(max_size) +
                                          " bytes)");
  check_json_depth(text, max_depth, what);
  BasicJson value = BasicJson::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) throw error(errc::encoding_error, std::string(what) + " is not valid JSON");
  return value;
}

// ---------------------------------------------------------------- text encodings

// The text encodings kombu (Python's codecs) is commonly given, by family.
enum class text_encoding {
  utf8,
  utf8_sig,
  utf16,
  utf16le,
  utf16be,
  utf32,
  utf32le,
  utf32be,
  latin1,
  ascii,
  binary,
  unknown
};

// Python-style lookup: case, '-', '_' and ' ' do not matter. "binary" and
// "ascii-8bit" are kombu's SKIP_DECODE (the bytes are not text).
inline text_encoding lookup_encoding(std::string_view name) {
  std::string n;
  for (char c : name) {
    if (c == '-' || c == '_' || c == ' ') continue;
    n += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  if (n.empty() || n == "utf8" || n == "u8" || n == "utf" || n == "cp65001") return text_encoding::utf8;
  if (n == "utf8sig") return text_encoding::utf8_sig;
  if (n == "utf16" || n == "u16") return text_encoding::utf16;
  if (n == "utf16le") return text_encoding::utf16le;
  if (n == "utf16be") return text_encoding::utf16be;
  if (n == "utf32" || n == "u32") return text_encoding::utf32;
  if (n == "utf32le") return text_encoding::utf32le;
  if (n == "utf32be") return text_encoding::utf32be;
  if (n == "latin1" || n == "latin" || n == "l1" || n == "iso88591" || n == "88591" || n == "cp819" ||
      n == "iso885911987")
    return text_encoding::latin1;
  if (n == "ascii" || n == "usascii" || n == "646") return text_encoding::ascii;
  if (n == "binary" || n == "ascii8bit") return text_encoding::binary;
  return text_encoding::unknown;
}

inline void append_utf8(std::uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The length of the valid UTF-8 prefix of `text` (Python's strict UTF-8:
// no overlong forms, no surrogates, nothing above U+10FFFF).
inline std::size_t valid_utf8_prefix(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    const int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : -1;
    if (extra < 0 || c > 0xF4 || text.size() - i <= static_cast<std::size_t>(extra)) return i;
    std::uint32_t cp = c & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t minimum[] = {0, 0x80, 0x800, 0x10000};
    if (cp < minimum[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return i;
}

inline bool is_valid_utf8(std::string_view text) noexcept { return valid_utf8_prefix(text) == text.size(); }

// `text` with every byte that is not part of valid UTF-8 replaced by U+FFFD
// (Python's errors="replace", one replacement per bad byte).
inline std::string utf8_replacing_invalid(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    std::size_t good = valid_utf8_prefix(text);
    out.append(text.substr(0, good));
    if (good == text.size()) break;
    out += "\xEF\xBF\xBD";
    text.remove_prefix(good + 1);
  }
  return out;
}

// Decodes `bytes` in `encoding` to UTF-8 as Python's bytes.decode(encoding)
// (strict) does. Throws encoding_error for bytes that are not valid in it
// or an encoding that is not one of lookup_encoding's.
inline std::string decode_text(std::string_view bytes, std::string_view encoding) {
  const std::string name = encoding.empty() ? std::string("utf-8") : clipped(encoding);
  auto invalid = [&](std::size_t at) {
    return error(errc::encoding_error,
                 "message body is not valid " + name + " text (at byte " + std::to_string(at) + ")");
  };
  std::string out;
  switch (lookup_encoding(encoding)) {
    case text_encoding::utf8_sig:
      if (bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
      [[fallthrough]];
    case text_encoding::utf8: {
      std::size_t good = valid_utf8_prefix(bytes);
      if (good != bytes.size()) throw invalid(good);
      return std::string(bytes);
    }
    case text_encoding::ascii:
      for (std::size_t i = 0; i < bytes.size(); ++i)
        if (static_cast<unsigned char>(bytes[i]) >= 0x80) throw invalid(i);
      return std::string(bytes);
    case text_encoding::latin1:
      out.reserve(bytes.size() * 2);
      for (char c : bytes) append_utf8(static_cast<unsigned char>(c), out);
      return out;
    case text_encoding::utf16:
    case text_encoding::utf16le:
    case text_encoding::utf16be: {
      auto kind = lookup_encoding(encoding);
      bool big = kind == text_encoding::utf16be;
      std::size_t start = 0;
      if (kind == text_encoding::utf16 && bytes.size() >= 2) {  // BOM; little-endian without one
        if (bytes.substr(0, 2) == "\xFF\xFE") start = 2;
        if (bytes.substr(0, 2) == "\xFE\xFF") start = 2, big = true;
      }
      if ((bytes.size() - start) % 2 != 0) throw invalid(bytes.size() - 1);
      out.reserve(bytes.size() * 3 / 2);
      auto unit = [&](std::size_t i) -> std::uint32_t {
        auto a = static_cast<unsigned char>(bytes[i]), b = static_cast<unsigned char>(bytes[i + 1]);
        return big ? (std::uint32_t(a) << 8 | b) : (std::uint32_t(b) << 8 | a);
      };
      for (std::size_t i = start; i < bytes.size(); i += 2) {
        std::uint32_t u = unit(i);
        if (u >= 0xD800 && u <= 0xDBFF) {
          if (i + 3 >= bytes.size()) throw invalid(i);
          std::uint32_t low = unit(i + 2);
          if (low < 0xDC00 || low > 0xDFFF) throw invalid(i);
          append_utf8(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00), out);
          i += 2;
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
          throw invalid(i);
        } else {
          append_utf8(u, out);
        }
      }
      return out;
    }
    case text_encoding::utf32:
    case text_encoding::utf32le:
    case text_encoding::utf32be: {
      auto kind = lookup_encoding(encoding);
      bool big = kind == text_encoding::utf32be;
      std::size_t start = 0;
      if (kind == text_encoding::utf32 && bytes.size() >= 4) {
        if (bytes.substr(0, 4) == std::string_view("\xFF\xFE\x00\x00", 4)) start = 4;
        if (bytes.substr(0, 4) == std::string_view("\x00\x00\xFE\xFF", 4)) start = 4, big = true;
      }
      if ((bytes.size() - start) % 4 != 0) throw invalid(bytes.size() - 1);
      out.reserve(bytes.size());
      for (std::size_t i = start; i < bytes.size(); i += 4) {
        std::uint32_t cp = 0;
        for (int k = 0; k < 4; ++k) {
          auto byte = static_cast<unsigned char>(bytes[i + static_cast<std::size_t>(big ? k : 3 - k)]);
          cp = (cp << 8) | byte;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) throw invalid(i);
        append_utf8(cp, out);
      }
      return out;
    }
    case text_encoding::binary:
      throw error(errc::encoding_error, "message body is binary (content encoding '" + name + "')");
    case text_encoding::unknown:
      break;
  }
  throw error(errc::encoding_error, "unsupported content encoding '" + name +
                                        "' (respool decodes utf-8, utf-16, utf-32, latin-1 and ascii)");
}

// ---------------------------------------------------------------- deserialise

// kombu's serializers whose content types respool does not decode.
inline const char* unsupported_serializer(std::string_view content_type) noexcept {
  if (content_type == "application/x-python-serialize") return "pickle";
  if (content_type == "application/x-msgpack") return "msgpack";
  if (content_type == "application/x-yaml") return "yaml";
  if (content_type == "application/x-bson" || content_type == "application/bson") return "bson";
  return nullptr;
}

// kombu's Registry.loads for the decoded body `data`: application/json is
// parsed (after decoding from `content_encoding`, as UTF-8 when that is
// binary or unknown: kombu's json decoder always reads UTF-8); any other
// content type is text in `content_encoding`, returned as a JSON string.
// Binary bodies (content encoding binary / ascii-8bit) and kombu's pickle,
// msgpack, yaml and bson are refused: only body() gives them. Bounded by
// max_size (bytes) and max_depth (JSON nesting). Throws encoding_error.
inline nlohmann::json deserialize(const std::string& data, std::string_view content_type,
                                  std::string_view content_encoding = {}, std::size_t max_size = SIZE_MAX,
                                  std::size_t max_depth = 128) {
  if (content_type.empty()) content_type = "application/data";  // kombu's default
  if (data.size() > max_size)
    throw error(errc::encoding_error, "message body larger than max_body_size (" +
                                          std::to_string(data.size()) + " > " + std::to_string(max_size) +
                                          " bytes)");
  const text_encoding encoding = lookup_encoding(content_encoding);
  if (content_type == "application/json") {
    if (encoding == text_encoding::binary || encoding == text_encoding::unknown ||
        encoding == text_encoding::utf8 || encoding == text_encoding::ascii)
      return parse_json(data, max_size, max_depth, "message body");
    return parse_json(decode_text(data, content_encoding), SIZE_MAX, max_depth, "message body");
  }
  if (const char* serializer = unsupported_serializer(content_type))
    throw error(errc::encoding_error, "message body of content type '" + clipped(content_type) +
                                          "' (kombu's " + serializer +
                                          " serializer) is not decoded by respool; body() has its bytes");
  if (encoding == text_encoding::binary)
    throw error(errc::encoding_error, "message body of content type '" + clipped(content_type) +
                                          "' is binary (content encoding '" + clipped(content_encoding) +
                                          "'): payload() decodes JSON and text only; body() has its bytes");
  return nlohmann::json(decode_text(data, content_encoding));
}

}  // namespace respool::detail
