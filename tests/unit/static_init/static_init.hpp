// Shared by the translation units of the static-initialisation test.
#pragma once
#include <cstddef>

namespace static_init {
inline std::size_t limit_seen = 0;  // constant-initialised: safe to write from any static constructor
inline std::size_t groups_seen = 0;

// Defined in helpers.cpp, the only TU that includes respool: starter.cpp's
// static objects reach the process-wide pools only through these.
void use_pools_at_startup();
void use_pools_at_exit();
}  // namespace static_init
