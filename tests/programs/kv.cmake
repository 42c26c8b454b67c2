# ringshard-kv (the Redis-protocol sample) on 2 shards against real clients:
# redis-cli for every command, redis-cli --pipe with 100,000 commands,
# redis-benchmark at -P 1 and -P 16, a 10,000-operation model check with
# python3-redis on 1 and 2 shards; then bad clients: pipelines alternating
# between shards, resets mid-pipeline, 1,000 connections dropped at once,
# malformed frames, huge declared lengths, a client that never reads, and
# SIGINT/SIGTERM. Skipped (77) when io_uring is unavailable or the Redis
# tools are missing (scripts/bootstrap.sh installs them).
#
# The Python redis module comes from Debian's python3-redis, which is
# installed for Debian's interpreter: the test runs with /usr/bin/python3
# when it is there (another python3 may come first in PATH).
if(TARGET ringshard-kv)
  if(EXISTS /usr/bin/python3)
    set(RINGSHARD_KV_PYTHON /usr/bin/python3)
  else()
    set(RINGSHARD_KV_PYTHON ${Python3_EXECUTABLE})
  endif()
  set(title "samples: ringshard-kv serves redis-cli, redis-cli --pipe, redis-benchmark and a python3-redis model check on 1 and 2 shards")
  add_test(NAME "${title}"
    COMMAND ${RINGSHARD_KV_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/kv_test.py $<TARGET_FILE:ringshard-kv> --only 1,2,3,4)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS samples)
  set(title "samples: ringshard-kv keeps cross-shard pipelines in order and survives resets, mass drops, malformed frames, huge lengths and clients that never read")
  add_test(NAME "${title}"
    COMMAND ${RINGSHARD_KV_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/kv_test.py $<TARGET_FILE:ringshard-kv> --only 5,6,7,8,9,10,11)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS samples)
endif()
