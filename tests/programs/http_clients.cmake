# ringshard-http on 2 shards against clients that are silent, slow (slowloris),
# idle between requests, never read 64 MiB responses, or keep sending a body
# that was refused with 413; and behind nginx as a reverse proxy (413 passes
# through, no 502); SIGINT with streams in progress. Skipped (77) when
# io_uring is unavailable or curl/wrk/nginx are missing (scripts/bootstrap.sh
# installs them).
if(TARGET ringshard-http)
  set(title "samples: ringshard-http closes silent, slow and idle clients, bounds clients that never read, answers 413 without a reset, also behind nginx")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/http_clients_test.py $<TARGET_FILE:ringshard-http>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
