// A translation unit whose static objects use the process-wide pools through
// another one (helpers.cpp) in their constructors and destructors. It does
// not include respool itself, so nothing orders respool's own static
// initialisation before these objects: the pools must work all the same.
#include "static_init.hpp"

namespace {

struct uses_pools {
  uses_pools() { static_init::use_pools_at_startup(); }
  ~uses_pools() { static_init::use_pools_at_exit(); }
};

uses_pools instance;

}  // namespace
