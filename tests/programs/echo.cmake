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
endif()
