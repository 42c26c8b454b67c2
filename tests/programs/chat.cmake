# ringshard-chat: 4 clients over 2 shards, each line reaches the 3 others once.
if(TARGET ringshard-chat)
  set(title "samples: ringshard-chat delivers every line to every other client across 2 shards exactly once")
  add_test(NAME "${title}" COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/chat_test.py
                                   $<TARGET_FILE:ringshard-chat>)
  set_tests_properties("${title}" PROPERTIES TIMEOUT 60 LABELS samples)
endif()
