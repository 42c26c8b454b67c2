# Finds moodycamel's ConcurrentQueue, a header-only library, as Debian's
# libconcurrentqueue-dev ships it (<concurrentqueue/concurrentqueue.h>, no
# CMake package of its own), and provides the imported target
# concurrentqueue::concurrentqueue. Installed next to ringshardConfig.cmake:
# ringshard's public headers include it.
#   concurrentqueue_ROOT or CMAKE_PREFIX_PATH: where to look first
#   concurrentqueue_INCLUDE_DIR: the directory that holds concurrentqueue/ (cached)
find_path(concurrentqueue_INCLUDE_DIR NAMES concurrentqueue/concurrentqueue.h
  DOC "Directory holding concurrentqueue/concurrentqueue.h (moodycamel)")
mark_as_advanced(concurrentqueue_INCLUDE_DIR)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(concurrentqueue REQUIRED_VARS concurrentqueue_INCLUDE_DIR)

if(concurrentqueue_FOUND AND NOT TARGET concurrentqueue::concurrentqueue)
  add_library(concurrentqueue::concurrentqueue INTERFACE IMPORTED)
  set_target_properties(concurrentqueue::concurrentqueue PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${concurrentqueue_INCLUDE_DIR}")
endif()
