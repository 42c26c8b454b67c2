# ringshard-pingpong smoke test: 4 pairs of actors on 2 shards bounce 10,000
# messages each; the program must exit 0 and print its total line.
#
# This file does two jobs: include()d from tests/CMakeLists.txt it registers
# the test; run as `cmake -DPINGPONG=<program> -P pingpong.cmake` it is the
# test (exit status and output both checked, which PASS_REGULAR_EXPRESSION
# alone would not do: it ignores the exit status).
if(CMAKE_SCRIPT_MODE_FILE)
  execute_process(
    COMMAND ${PINGPONG} --shards 2 --actors 4 --messages 10000
    RESULT_VARIABLE status
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    TIMEOUT 100)
  message("${out}")
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "ringshard-pingpong exited with '${status}':\n${err}")
  endif()
  if(NOT out MATCHES "(^|\n)total: 40000 messages in [0-9.]+ s, [0-9]+ messages/s\n")
    message(FATAL_ERROR "no 'total: 40000 messages ...' line in the output")
  endif()
  if(NOT out MATCHES "(^|\n)shard 0: [0-9]+ messages" OR NOT out MATCHES "(^|\n)shard 1: [0-9]+ messages")
    message(FATAL_ERROR "a per-shard line is missing")
  endif()
  return()
endif()

if(TARGET ringshard-pingpong)
  set(title "samples: ringshard-pingpong bounces 4 x 10000 messages across 2 shards and prints its totals")
  add_test(NAME "${title}"
    COMMAND ${CMAKE_COMMAND} -DPINGPONG=$<TARGET_FILE:ringshard-pingpong> -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 LABELS samples)
endif()
