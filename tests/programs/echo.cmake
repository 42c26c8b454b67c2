# ringshard-echo (the sharded actor echo server) through the same end-to-end
# checks as ringshard-echo-plain, on 2 shards, once per distribution policy.
if(TARGET ringshard-echo)
  foreach(policy round-robin least-connections reuse-port)
    set(title "samples: ringshard-echo on 2 shards (${policy}) echoes exactly, survives bad clients, leaks no fd")
    add_test(NAME "${title}"
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py
              $<TARGET_FILE:ringshard-echo> --shards 2 --policy ${policy})
    set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  endforeach()
  # The other data paths of the shards: direct descriptors from a small
  # fixed file table (most connections of the checks find it full) with
  # bundles of whole 4 KiB buffers, and plain descriptors with whole buffers
  # one per completion, with batched waits (a shard waits up to 200 us for
  # as many completions as its last turn had) whose arguments the kernel
  # reads from a registered wait region.
  set(title "samples: ringshard-echo with direct descriptors (a 16-slot table) and receive bundles passes the same checks")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py
            $<TARGET_FILE:ringshard-echo> --shards 2 --fixed-files 16 --no-incremental)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  set(title "samples: ringshard-echo with whole buffers, one per completion, and batched waits in a registered wait region passes the same checks")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py
            $<TARGET_FILE:ringshard-echo> --shards 2 --no-incremental --no-bundle --min-wait-us 200 --registered-wait)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()

# ringshard-echo-co (the same server written with coroutines and Stream):
# the same checks on 2 shards for every policy, and 10,000 connections open
# at once on one shard.
if(TARGET ringshard-echo-co)
  foreach(policy round-robin least-connections reuse-port)
    set(title "samples: ringshard-echo-co on 2 shards (${policy}) echoes exactly, survives bad clients, leaks no fd")
    add_test(NAME "${title}"
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py
              $<TARGET_FILE:ringshard-echo-co> --shards 2 --policy ${policy})
    set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  endforeach()
  set(title "samples: ringshard-echo-co serves 10,000 coroutine connections open at once")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --scenarios many_connections
            $<TARGET_FILE:ringshard-echo-co> --shards 1)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS samples)
endif()
