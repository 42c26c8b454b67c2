# Every sample's command line (samples/common/cli.hpp, CLI11): --help exits 0
# and lists the options, a bad number or an unknown option exits 2 with one
# line naming the option.
if(TARGET ringshard-echo AND TARGET ringshard-load)
  set(title "samples: every sample's --help exits 0, a bad number or unknown option exits 2 naming it")
  add_test(NAME "${title}"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/cli_test.py ${CMAKE_RUNTIME_OUTPUT_DIRECTORY})
  set_tests_properties("${title}" PROPERTIES TIMEOUT 60 LABELS samples)
endif()
