# The install tree works for a project outside this one: cmake --install into
# a temporary prefix, then find_package(ringshard) and ringshard::framework
# from tests/install_consumer, built and run.
add_test(NAME "install: an outside project finds the installed ringshard and runs a NOP"
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${CMAKE_BINARY_DIR}
          ${PROJECT_SOURCE_DIR}/tests/install_consumer ${CMAKE_CXX_COMPILER} "${RINGSHARD_SANITIZE}")
set_tests_properties("install: an outside project finds the installed ringshard and runs a NOP"
  PROPERTIES TIMEOUT 300 LABELS install)
