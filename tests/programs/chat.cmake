# ringshard-chat: 4 clients over 2 shards, each line reaches the 3 others once.
if(TARGET ringshard-chat)
  set(title "samples: ringshard-chat delivers every line to every other client across 2 shards exactly once")
  add_test(NAME "${title}" COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat_test.py
                                   $<TARGET_FILE:ringshard-chat>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 60 LABELS samples)
endif()

# ringshard-chat under memory pressure: a client that never reads, and a fast
# fan-out burst; RSS bounded and given back (chat_memory_test.py says how).
if(TARGET ringshard-chat)
  set(title "samples: ringshard-chat drops a client that never reads, the others get every line, RSS bounded")
  add_test(NAME "${title}" COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat_memory_test.py
                                   $<TARGET_FILE:ringshard-chat> slow-consumer)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 90 LABELS samples)
  set(title "samples: ringshard-chat after a fan-out burst to 6 clients gives memory back (RSS within 2x idle)")
  add_test(NAME "${title}" COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat_memory_test.py
                                   $<TARGET_FILE:ringshard-chat> burst)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 90 LABELS samples)
endif()
