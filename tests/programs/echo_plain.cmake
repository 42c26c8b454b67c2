# ringshard-echo-plain end to end: exact echo under concurrency and pipelining,
# a client that stops reading, resets, scarce buffers, fd exhaustion, a full
# fixed file table, no fd or fixed-file leak, exit 0 on SIGINT. Run twice: with
# every kernel feature the server probes (direct descriptors, receive bundles,
# incremental buffers) and with all of them switched off (the fallback path).
# Exits 77 (skipped) when io_uring is unavailable.
if(TARGET ringshard-echo-plain)
  set(title "samples: ringshard-echo-plain echoes exactly, survives bad clients, leaks no fd, exits 0 on SIGINT")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --echo-plain
            $<TARGET_FILE:ringshard-echo-plain>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  set(title "samples: ringshard-echo-plain without direct descriptors, bundles or incremental buffers (the fallback) passes the same checks")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --echo-plain
            $<TARGET_FILE:ringshard-echo-plain> --no-direct --no-bundle --no-incremental)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
