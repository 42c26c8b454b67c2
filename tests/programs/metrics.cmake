# The Prometheus metrics (net/http/metrics.hpp) of ringshard-echo, -http,
# -kv and -chat, scraped with curl, parsed with python3-prometheus-client and
# checked against the traffic sent. The prometheus_client module comes from
# Debian's python3-prometheus-client, installed for Debian's interpreter: the
# test runs with /usr/bin/python3 when it is there.
if(TARGET ringshard-echo AND TARGET ringshard-http AND TARGET ringshard-kv AND TARGET ringshard-chat)
  set(RINGSHARD_METRICS_PYTHON ${Python3_EXECUTABLE})
  if(EXISTS /usr/bin/python3)
    set(RINGSHARD_METRICS_PYTHON /usr/bin/python3)
  endif()
  set(title "samples: /metrics of echo, http, kv and chat parse as Prometheus text and count the traffic sent")
  add_test(NAME "${title}"
    COMMAND ${RINGSHARD_METRICS_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/metrics_test.py ${CMAKE_RUNTIME_OUTPUT_DIRECTORY})
  set_tests_properties("${title}" PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS samples)
endif()
