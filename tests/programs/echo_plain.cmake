# ringshard-echo-plain end to end: exact echo under concurrency and pipelining,
# a client that stops reading, resets, scarce buffers, fd exhaustion, a full
# fixed file table, no fd or fixed-file leak, exit 0 on SIGINT. Run five times:
# with every kernel feature the server probes by default (direct descriptors,
# receive bundles, incremental buffers), with all of them switched off (the
# fallback path), with send bundles on both paths, and with the optional
# zero-copy sends and NAPI busy polling.
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
  # Send bundles: received bytes sent from the receive buffers through a send
  # ring per connection, on the default path and on the fallback (whole 4 KiB
  # buffers, plain descriptors).
  set(title "samples: ringshard-echo-plain with send bundles passes the same checks, on both receive paths")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --echo-plain
            $<TARGET_FILE:ringshard-echo-plain> --send-bundle)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  set(title "samples: ringshard-echo-plain with send bundles and no direct descriptors, receive bundles or incremental buffers passes the same checks")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --echo-plain
            $<TARGET_FILE:ringshard-echo-plain> --send-bundle --no-direct --no-bundle --no-incremental)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  # Zero-copy sends from 4 KiB (the slow reader's buffers stay untouched until
  # their notifications; a stop with a peer that never reads still exits) and
  # NAPI busy polling registered (a no-op on loopback).
  set(title "samples: ringshard-echo-plain with zero-copy sends and NAPI busy polling passes the same checks and counts copied notifications")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py --echo-plain
            $<TARGET_FILE:ringshard-echo-plain> --send-zc 4096 --napi-busy-poll-us 50)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
