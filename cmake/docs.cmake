# Included from the top CMakeLists.txt after the executables.
# Man pages and bash completions, generated from the executables' option tables at build time
# (pndm-gen --man, --completion bash), installed with the executables.
foreach(exe pndm-gen pndm-unet)
  set(man ${CMAKE_BINARY_DIR}/man/${exe}.1)
  set(comp ${CMAKE_BINARY_DIR}/completions/${exe})
  add_custom_command(OUTPUT ${man} ${comp}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man ${CMAKE_BINARY_DIR}/completions
    COMMAND sh -c "\"$1\" --man > \"$2.tmp\" && mv \"$2.tmp\" \"$2\" && \"$1\" --completion bash > \"$3.tmp\" && mv \"$3.tmp\" \"$3\""
            sh $<TARGET_FILE:${exe}> ${man} ${comp}
    DEPENDS ${exe} VERBATIM COMMENT "man page and completion of ${exe}")
  add_custom_target(${exe}-docs ALL DEPENDS ${man} ${comp})
  install(FILES ${man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT pndm_bin)
  install(FILES ${comp} DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions COMPONENT pndm_bin)
endforeach()
