# ringshard-load end to end: against ringshard-echo-plain it completes
# requests with no error and consistent figures (lockstep and depth 8, sizes
# from 1 B to 64 KiB); against a server that corrupts a byte or closes
# connections it reports errors and exits 1 in bounded time; a refused
# connect, bad arguments (exit 2) and SIGINT are handled. Exits 77 (skipped)
# when io_uring is unavailable.
if(TARGET ringshard-load AND TARGET ringshard-echo-plain)
  set(title "samples: ringshard-load drives an echo server, checks every byte, reports errors and bad arguments")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/load_test.py
            $<TARGET_FILE:ringshard-load> $<TARGET_FILE:ringshard-echo-plain>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
