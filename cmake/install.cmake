# The installed library: libpndm.a (component pndm_static), libpndm.so.<soversion> (pndm_shared),
# the headers, pndm.pc and the CMake package (pndm_dev). Included from the top CMakeLists.txt
# after the pndm target exists. `cmake --install build [--prefix DIR] [--component C]`.
#
#   pkg-config:  cc app.c $(pkg-config --cflags --libs pndm)            (shared if installed)
#                cc app.c $(pkg-config --static --cflags --libs pndm)   (with libpndm.a only)
#   CMake:       find_package(pndm REQUIRED)  target_link_libraries(app PRIVATE pndm::pndm)
#                (pndm::pndm is the shared library when installed, else the static one;
#                 PNDM_USE_STATIC_LIBS=ON picks the static one; pndm::pndm_static and
#                 pndm::pndm_shared name each)
include(CMakePackageConfigHelpers)

# The ABI changes between 0.x minor versions (public structs grow): the soname carries both.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(PNDM_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
  set(PNDM_SOVERSION ${PROJECT_VERSION_MAJOR})
endif()
set(PNDM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pndm)
# What libpndm itself needs, for pndm.pc (Requires.private / Libs.private) and the package's
# find_dependency calls; an optional backend appends to these lists.
set(PNDM_PC_REQUIRES_PRIVATE libpng libcjson)
set(PNDM_PC_LIBS_PRIVATE -lpthread -lm)
if(PNDM_HAVE_BLAS)
  list(APPEND PNDM_PC_REQUIRES_PRIVATE openblas)
endif()

set_target_properties(pndm PROPERTIES OUTPUT_NAME pndm EXPORT_NAME pndm_static)
install(TARGETS pndm EXPORT pndmStaticTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT pndm_static)
install(EXPORT pndmStaticTargets NAMESPACE pndm:: DESTINATION ${PNDM_CMAKE_DIR} COMPONENT pndm_static)

if(PNDM_BUILD_SHARED)
  pndm_add_library(pndm_shared SHARED PRIVATE)
  # only pndm_* leaves the library: the version script backs up the hidden visibility
  target_link_options(pndm_shared PRIVATE -Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/pndm.map
                      -Wl,--no-undefined)
  set_target_properties(pndm_shared PROPERTIES OUTPUT_NAME pndm EXPORT_NAME pndm_shared
                        VERSION ${PROJECT_VERSION} SOVERSION ${PNDM_SOVERSION}
                        LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/pndm.map)
  install(TARGETS pndm_shared EXPORT pndmSharedTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT pndm_shared)
  install(EXPORT pndmSharedTargets NAMESPACE pndm:: DESTINATION ${PNDM_CMAKE_DIR} COMPONENT pndm_shared)
endif()

install(FILES ${CMAKE_SOURCE_DIR}/include/pndm.h ${CMAKE_SOURCE_DIR}/include/pndm_io.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT pndm_dev)

# pndm.pc, relocatable: the prefix is found from the file's own place
file(RELATIVE_PATH PNDM_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" PNDM_PC_TO_PREFIX "${PNDM_PC_TO_PREFIX}")
string(REPLACE ";" " " PNDM_PC_REQUIRES_PRIVATE_S "${PNDM_PC_REQUIRES_PRIVATE}")
string(REPLACE ";" " " PNDM_PC_LIBS_PRIVATE_S "${PNDM_PC_LIBS_PRIVATE}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/pndm.pc.in ${CMAKE_BINARY_DIR}/pndm.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pndm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT pndm_dev)

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/pndmConfig.cmake.in ${CMAKE_BINARY_DIR}/pndmConfig.cmake
                              INSTALL_DESTINATION ${PNDM_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/pndmConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/pndmConfig.cmake ${CMAKE_BINARY_DIR}/pndmConfigVersion.cmake
        DESTINATION ${PNDM_CMAKE_DIR} COMPONENT pndm_dev)

