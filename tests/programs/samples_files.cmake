# Whole-program tests of the file samples: ringshard-cp and ringshard-cat on a
# 5 MiB + 123 bytes random file, compared with cmp, and their error paths.
if(TARGET ringshard-cat AND TARGET ringshard-cp)
  set(RINGSHARD_FILE_SAMPLE_TESTS
    "cp|ringshard-cp copies a 5 MiB+123 bytes file byte for byte"
    "cp-options|ringshard-cp with other --qd/--bs values, empty and longer destinations"
    "cp-errors|ringshard-cp reports a missing source, bad options and copying onto itself"
    "cat|ringshard-cat writes files to stdout exactly, to a file and through a pipe"
    "cat-missing|ringshard-cat exits non-zero on a missing file and still prints the others")
  foreach(entry ${RINGSHARD_FILE_SAMPLE_TESTS})
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 mode)
    list(GET parts 1 title)
    add_test(NAME "samples: ${title}"
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cat_cp_test.sh ${mode}
        $<TARGET_FILE:ringshard-cat> $<TARGET_FILE:ringshard-cp>)
    set_tests_properties("samples: ${title}" PROPERTIES TIMEOUT 120 LABELS samples)
  endforeach()
endif()
