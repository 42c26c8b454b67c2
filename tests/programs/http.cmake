# ringshard-http (the sharded HTTP/1.1 sample) on 2 shards against real
# clients: curl (keep-alive, HTTP/1.0, chunked, 100-continue, headers), raw
# pipelining, ab and wrk, bad input (431/414/413/400/404/405), resets in a
# large response, a stalled reader, 1,000 dropped connections, slow clients
# under --request-timeout, and SIGINT. Skipped (77) when io_uring is
# unavailable or curl/ab/wrk are missing (scripts/bootstrap.sh installs them).
if(TARGET ringshard-http)
  set(title "samples: ringshard-http on 2 shards serves curl, ab, wrk and pipelined clients, rejects bad input, survives bad clients")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/http_test.py $<TARGET_FILE:ringshard-http>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
