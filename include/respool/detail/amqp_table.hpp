// respool/detail/amqp_table.hpp — AMQP 0-9-1 field tables <-> JSON, as kombu
// (py-amqp) writes and reads them. Implementation detail of
// respool/transport/amqp.hpp.
//
// JSON -> table (what respool publishes as application headers):
//   string  -> 'S' long string        bool   -> 't'
//   integer -> 'I' signed 32-bit when it fits, else 'L' signed 64-bit
//              (py-amqp's letter for a signed 64-bit integer; rabbitmq-c and
//              RabbitMQ call it unsigned, but pass it through unchanged)
//   float   -> 'd' double              null   -> 'V' void
//   object  -> 'F' nested table        array  -> 'A' array
//   binary  -> 'x' byte array
// Table -> JSON (what respool reads back): every AMQP field type, integers as
// JSON integers ('L' read as signed, as py-amqp writes it), 'D' decimals and
// floats as JSON numbers, 'T' timestamps as seconds since the epoch, 'S' as
// a string (invalid UTF-8 replaced by U+FFFD), 'x' as a string when it is
// UTF-8, else as JSON binary. Bounded by MessageLimits (table_decoder).
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "respool/detail/amqp_c.hpp"
#include "respool/detail/codec.hpp"
#include "respool/errors.hpp"
#include "respool/message.hpp"

namespace respool::detail::amqp {

inline amqp_bytes_t bytes_of(const std::string& s) noexcept {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());
  return b;
}

inline amqp_bytes_t bytes_of(const char* data, std::size_t size) noexcept {
  amqp_bytes_t b;
  b.len = size;
  b.bytes = const_cast<char*>(data);
  return b;
}

inline std::string to_string(amqp_bytes_t b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

// Builds rabbitmq-c tables that point into a JSON value. The JSON value and
// the builder must outlive every use of the tables it returns.
class table_builder {
 public:
  // `value` must be a JSON object (or null, giving an empty table).
  amqp_table_t table(const nlohmann::json& value) {
    if (value.is_null()) return amqp_table_t{0, nullptr};
    if (!value.is_object()) throw error(errc::encoding_error, "AMQP headers must be a JSON object");
    std::vector<amqp_table_entry_t> entries;
    entries.reserve(value.size());
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string& key = it.key();
      if (key.empty() || key.size() > 255)
        throw error(errc::encoding_error, "AMQP header names must be 1 to 255 bytes long: '" + key + "'");
      amqp_table_entry_t entry;
      entry.key = bytes_of(key);
      entry.value = field(it.value());
      entries.push_back(entry);
    }
    tables_.push_back(std::move(entries));
    return amqp_table_t{static_cast<int>(tables_.back().size()), tables_.back().data()};
  }

 private:
  amqp_field_value_t field(const nlohmann::json& v) {
    amqp_field_value_t f;
    std::memset(&f, 0, sizeof f);
    using t = nlohmann::json::value_t;
    switch (v.type()) {
      case t::null:
      case t::discarded:
        f.kind = AMQP_FIELD_KIND_VOID;
        break;
      case t::boolean:
        f.kind = AMQP_FIELD_KIND_BOOLEAN;
        f.value.boolean = v.get<bool>() ? 1 : 0;
        break;
      case t::number_integer:
        set_signed(f, v.get<std::int64_t>());
        break;
      case t::number_unsigned: {
        auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          throw error(errc::encoding_error, "AMQP header integer out of range (above 2^63-1)");
        set_signed(f, static_cast<std::int64_t>(u));
        break;
      }
      case t::number_float:
        f.kind = AMQP_FIELD_KIND_F64;
        f.value.f64 = v.get<double>();
        break;
      case t::string:
        f.kind = AMQP_FIELD_KIND_UTF8;
        f.value.bytes = bytes_of(v.get_ref<const std::string&>());
        break;
      case t::binary: {
        const auto& bin = v.get_binary();
        f.kind = AMQP_FIELD_KIND_BYTES;
        f.value.bytes = bytes_of(reinterpret_cast<const char*>(bin.data()), bin.size());
        break;
      }
      case t::object:
        f.kind = AMQP_FIELD_KIND_TABLE;
        f.value.table = table(v);
        break;
      case t::array: {
        std::vector<amqp_field_value_t> items;
        items.reserve(v.size());
        for (const auto& item : v) items.push_back(field(item));
        arrays_.push_back(std::move(items));
        f.kind = AMQP_FIELD_KIND_ARRAY;
        f.value.array = amqp_array_t{static_cast<int>(arrays_.back().size()), arrays_.back().data()};
        break;
      }
    }
    return f;
  }

  static void set_signed(amqp_field_value_t& f, std::int64_t i) {
    if (i >= std::numeric_limits<std::int32_t>::min() && i <= std::numeric_limits<std::int32_t>::max()) {
      f.kind = AMQP_FIELD_KIND_I32;
      f.value.i32 = static_cast<std::int32_t>(i);
    } else {
      // py-amqp writes (and reads) 'L' as a signed 64-bit integer; rabbitmq-c's
      // name for 'L' is U64, so store the two's-complement bits there.
      f.kind = AMQP_FIELD_KIND_U64;
      f.value.u64 = static_cast<std::uint64_t>(i);
    }
  }

  // Stable storage: deque elements never move, a moved vector keeps its buffer.
  std::deque<std::vector<amqp_table_entry_t>> tables_;
  std::deque<std::vector<amqp_field_value_t>> arrays_;
};

// Decodes received tables within a MessageLimits: at most max_depth nested
// tables/arrays (the recursion is bounded by it, never by the input) and
// max_header_size bytes (keys and string values, plus 8 bytes for any
// other value). Throws error(encoding_error) naming the limit.
class table_decoder {
 public:
  explicit table_decoder(const MessageLimits& limits = message_limits()) noexcept : limits_(limits) {}

  nlohmann::json table(const amqp_table_t& table, std::size_t depth = 1) {
    enter(depth);
    nlohmann::json object = nlohmann::json::object();
    for (int i = 0; i < table.num_entries; ++i) {
      const amqp_table_entry_t& entry = table.entries[i];
      charge(entry.key.len);
      std::string key = utf8_replacing_invalid(
          std::string_view(static_cast<const char*>(entry.key.bytes), entry.key.bytes ? entry.key.len : 0));
      object[std::move(key)] = field(entry.value, depth);
    }
    return object;
  }

  // One value; `depth` is the depth of the table or array holding it.
  nlohmann::json field(const amqp_field_value_t& f, std::size_t depth = 0) {
    switch (f.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        charge(f.value.bytes.len);
        break;
      default:
        charge(8);
    }
    switch (f.kind) {
      case AMQP_FIELD_KIND_BOOLEAN:
        return f.value.boolean != 0;
      case AMQP_FIELD_KIND_I8:
        return static_cast<std::int64_t>(f.value.i8);
      case AMQP_FIELD_KIND_U8:
        return static_cast<std::uint64_t>(f.value.u8);
      case AMQP_FIELD_KIND_I16:
        return static_cast<std::int64_t>(f.value.i16);
      case AMQP_FIELD_KIND_U16:
        return static_cast<std::uint64_t>(f.value.u16);
      case AMQP_FIELD_KIND_I32:
        return static_cast<std::int64_t>(f.value.i32);
      case AMQP_FIELD_KIND_U32:
        return static_cast<std::uint64_t>(f.value.u32);
      case AMQP_FIELD_KIND_I64:
        return f.value.i64;
      // 'L': signed for py-amqp/kombu (its only writer of 64-bit integers).
      case AMQP_FIELD_KIND_U64:
        return static_cast<std::int64_t>(f.value.u64);
      case AMQP_FIELD_KIND_F32:
        return static_cast<double>(f.value.f32);
      case AMQP_FIELD_KIND_F64:
        return f.value.f64;
      case AMQP_FIELD_KIND_DECIMAL: {
        double value = static_cast<double>(static_cast<std::int32_t>(f.value.decimal.value));
        for (unsigned i = 0; i < f.value.decimal.decimals && i < 255; ++i) value /= 10.0;
        return value;
      }
      case AMQP_FIELD_KIND_UTF8: {
        // Valid UTF-8 (bad bytes become U+FFFD, as py-amqp's "replace"), so
        // that headers().dump() never throws.
        return utf8_replacing_invalid(bytes_view(f.value.bytes));
      }
      case AMQP_FIELD_KIND_BYTES: {
        // A byte array: a string when it is UTF-8 text, else JSON binary
        // (written back as 'x' by table_builder).
        std::string_view bytes = bytes_view(f.value.bytes);
        if (is_valid_utf8(bytes)) return std::string(bytes);
        return nlohmann::json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
      }
      case AMQP_FIELD_KIND_TIMESTAMP:
        return f.value.u64;
      case AMQP_FIELD_KIND_TABLE:
        return table(f.value.table, depth + 1);
      case AMQP_FIELD_KIND_ARRAY: {
        enter(depth + 1);
        nlohmann::json array = nlohmann::json::array();
        for (int i = 0; i < f.value.array.num_entries; ++i)
          array.push_back(field(f.value.array.entries[i], depth + 1));
        return array;
      }
      case AMQP_FIELD_KIND_VOID:
      default:
        return nullptr;
    }
  }

 private:
  static std::string_view bytes_view(amqp_bytes_t b) noexcept {
    return b.len == 0 || !b.bytes ? std::string_view()
                                  : std::string_view(static_cast<const char*>(b.bytes), b.len);
  }
  void enter(std::size_t depth) const {
    if (depth > limits_.max_depth)
      throw error(errc::encoding_error, "amqp: message headers nest deeper than max_depth (" +
                                            std::to_string(limits_.max_depth) + " levels)");
  }
  void charge(std::size_t bytes) {
    size_ += bytes;
    if (size_ > limits_.max_header_size)
      throw error(errc::encoding_error, "amqp: message headers larger than max_header_size (" +
                                            std::to_string(limits_.max_header_size) + " bytes)");
  }

  MessageLimits limits_;
  std::size_t size_ = 0;
};

// A received table as JSON, within `limits` (see table_decoder).
inline nlohmann::json table_to_json(const amqp_table_t& table,
                                    const MessageLimits& limits = message_limits()) {
  return table_decoder(limits).table(table);
}

inline nlohmann::json field_to_json(const amqp_field_value_t& f,
                                    const MessageLimits& limits = message_limits()) {
  return table_decoder(limits).field(f);
}

}  // namespace respool::detail::amqp
