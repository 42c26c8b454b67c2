# ringshard-links (the URL shortener sample) on 2 shards: create, redirect,
# stats, delete with a bearer token, JSON errors, SIGTERM. Skipped (77) when
# io_uring is unavailable.
if(TARGET ringshard-links)
  set(title "samples: ringshard-links on 2 shards creates, redirects, counts and deletes links, errors in JSON")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/links_test.py $<TARGET_FILE:ringshard-links>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77 LABELS samples)
endif()
