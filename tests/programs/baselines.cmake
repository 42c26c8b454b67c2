# The C baselines (perf/baselines) through the end-to-end checks of
# ringshard-echo-plain that need no server option: exact echo under
# concurrency and pipelining, a client that stops reading, closes and resets,
# no fd leak, exit 0 on SIGINT, and pausing accepts while out of descriptors.
# (The scarce-buffers scenario needs --buffers, which the baselines lack.)
# Exits 77 (skipped) when io_uring is unavailable.
foreach(baseline liburing epoll)
  if(TARGET ringshard-${baseline}-echo)
    set(title "samples: baseline ringshard-${baseline}-echo echoes exactly, survives bad clients, leaks no fd, exits 0 on SIGINT")
    add_test(NAME "${title}"
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/echo_plain_test.py
              --scenarios concurrent_pipelined,slow_reader,closes_and_resets,fd_exhaustion
              $<TARGET_FILE:ringshard-${baseline}-echo>)
    set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
  endif()
endforeach()
