# Consumer test, run by CTest in script mode (cmake -P):
#   MODE=find_package      cmake --install RESPOOL_BINARY_DIR into WORK_DIR/prefix,
#                          then build tests/cmake/consumer with find_package(respool)
#   MODE=add_subdirectory  build tests/cmake/consumer with add_subdirectory(RESPOOL_SOURCE_DIR)
# and run what was built. Other inputs: WORK_DIR, GENERATOR, CXX_COMPILER,
# CXX_STANDARD, COMPONENTS (the optional components the build has, comma
# separated, each required by find_package(respool COMPONENTS ...)); all may
# be empty.
cmake_minimum_required(VERSION 3.25)

foreach(_var MODE RESPOOL_SOURCE_DIR RESPOOL_BINARY_DIR WORK_DIR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "consumer_test.cmake: ${_var} is not set")
  endif()
endforeach()

function(run)
  string(REPLACE ";" " " _pretty "${ARGN}")
  message(STATUS "consumer_test: ${_pretty}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "consumer_test: failed (${_rc}): ${_pretty}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(_build ${WORK_DIR}/build)
set(_configure
  ${CMAKE_COMMAND} -S ${RESPOOL_SOURCE_DIR}/tests/cmake/consumer -B ${_build}
  -DRESPOOL_CONSUME=${MODE}
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND _configure -G ${GENERATOR})
endif()
if(CXX_COMPILER)
  list(APPEND _configure -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(CXX_STANDARD)
  list(APPEND _configure -DCMAKE_CXX_STANDARD=${CXX_STANDARD})
endif()

if(MODE STREQUAL "find_package")
  set(_prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${RESPOOL_BINARY_DIR} --prefix ${_prefix})
  foreach(_file include/respool/errors.hpp lib/cmake/respool/respoolConfig.cmake
                lib/cmake/respool/respoolConfigVersion.cmake lib/cmake/respool/respoolTargets.cmake)
    if(NOT EXISTS ${_prefix}/${_file})
      message(FATAL_ERROR "consumer_test: cmake --install did not install ${_file}")
    endif()
  endforeach()
  list(APPEND _configure -DCMAKE_PREFIX_PATH=${_prefix})
  if(COMPONENTS)
    string(REGEX REPLACE "^,+|,+$" "" _components "${COMPONENTS}")
    list(APPEND _configure -DRESPOOL_COMPONENTS=${_components})
  endif()
elseif(MODE STREQUAL "add_subdirectory")
  list(APPEND _configure -DRESPOOL_SOURCE_DIR=${RESPOOL_SOURCE_DIR})
else()
  message(FATAL_ERROR "consumer_test: MODE must be find_package or add_subdirectory, not '${MODE}'")
endif()

run(${_configure})
if(MODE STREQUAL "find_package")
  # The respool found must be the one just installed, not another on the system.
  file(STRINGS ${_build}/CMakeCache.txt _dir REGEX "^respool_DIR:")
  string(FIND "${_dir}" "${WORK_DIR}/prefix/" _pos)
  if(_pos EQUAL -1)
    message(FATAL_ERROR "consumer_test: found the wrong respool: ${_dir}")
  endif()
endif()
run(${CMAKE_COMMAND} --build ${_build})

execute_process(COMMAND ${_build}/consumer RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
message(STATUS "consumer_test: consumer printed: ${_out}")
if(NOT _rc EQUAL 0 OR NOT _out MATCHES "lease: 42")
  message(FATAL_ERROR "consumer_test: consumer failed (${_rc})")
endif()
run(${_build}/consumer_deps)
message(STATUS "consumer_test: ${MODE} OK")
