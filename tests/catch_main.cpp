// The Catch2 main, compiled once into respool_catch_main and linked into every
// test executable whose first line is not "// respool-test: own-main".
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
