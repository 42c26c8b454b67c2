# ringshard-tally (the coroutine line-protocol sample) on 2 shards with raw
# sockets: every command byte by byte, 8 pipelining clients against a model,
# a line too long, an idle timeout, resets with answers owed by the other
# shard, SIGTERM.
if(TARGET ringshard-tally)
  set(title "samples: ringshard-tally answers pipelined clients in order across shards and closes bad and idle ones")
  add_test(NAME "${title}" COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/tally_test.py $<TARGET_FILE:ringshard-tally>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS samples)
endif()
