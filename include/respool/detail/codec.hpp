// respool/detail/codec.hpp — kombu's serialisers and compressors (json, raw; zlib).
#pragma once

#include <zlib.h>

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

inline std::string zlib_decompress(std::string_view data) {
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
    out.append(buffer, sizeof buffer - stream.avail_out);
    if (rc == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      throw error(errc::encoding_error, "zlib: truncated compressed body");
    }
  }
  inflateEnd(&stream);
  return out;
}

// Compress with a kombu compression name ("zlib") or its content type.
inline std::string compress(std::string_view data, std::string_view method) {
  if (method.empty()) return std::string(data);
  if (method == "zlib" || method == zlib_content_type) return zlib_compress(data);
  throw error(errc::encoding_error, "unknown compression method '" + std::string(method) + "'");
}

// Decompress according to the "compression" header value (a content type).
inline std::string decompress(std::string data, std::string_view content_type) {
  if (content_type.empty()) return data;
  if (content_type == zlib_content_type || content_type == "zlib") return zlib_decompress(data);
  throw error(errc::encoding_error, "unknown compression '" + std::string(content_type) + "'");
}

inline nlohmann::json deserialize(const std::string& data, std::string_view content_type) {
  if (content_type == "application/json") {
    auto value = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) throw error(errc::encoding_error, "message body is not valid JSON");
    return value;
  }
  return nlohmann::json(data);
}

}  // namespace respool::detail
