# Runtime::run() and signals, on a whole program: ringshard-echo on 2 shards
# gets two SIGTERMs back to back (kill -TERM pid; kill -TERM pid, as timeout(1)
# sends), 20 times; each run must exit 0, never 143 (killed by the second).
if(TARGET ringshard-echo)
  set(title "signals: ringshard-echo exits 0 on two SIGTERMs back to back (20 runs), on one, and on SIGINT+SIGTERM")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/signals_test.py --tries 20
            $<TARGET_FILE:ringshard-echo> --shards 2)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS samples)
endif()
