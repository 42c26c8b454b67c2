# The scale-out recipe of the README ("More than one machine"): two
# ringshard-http instances behind HAProxy (roundrobin, health checks every
# 100 ms, retries and redispatch); wrk through HAProxy while one instance is
# stopped with SIGTERM: no failed request, the stopped server marked DOWN
# within the health-check window, then every request served by the other.
# Skipped (77) when io_uring is unavailable or haproxy/wrk are missing
# (scripts/bootstrap.sh installs them).
if(TARGET ringshard-http)
  set(title "samples: two ringshard-http behind haproxy, one stopped with SIGTERM under wrk, no request lost")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/haproxy_test.py $<TARGET_FILE:ringshard-http>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77 LABELS samples)
endif()
