# `cmake --install` rules and the Debian package (CPack DEB): the binary, the systemd unit, a
# default configuration in /etc/turnpike, the bundled plugins, the deployment docs and LVS kit,
# and maintainer scripts that create the `turnpike` system user.
#
#   cmake --install build --prefix /usr           # onto this machine
#   cpack --config build/CPackConfig.cmake -G DEB # build/turnpike_<version>_<arch>.deb
#
# A package should be built from a Release build configured with -DCMAKE_INSTALL_PREFIX=/usr.
include(GNUInstallDirs)

install(TARGETS turnpike RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/plugins/ DESTINATION ${CMAKE_INSTALL_DATADIR}/turnpike/plugins
        FILES_MATCHING PATTERN "*.lua")
install(FILES ${PROJECT_SOURCE_DIR}/deploy/turnpike.service DESTINATION lib/systemd/system)
# The configuration lives in /etc whatever the prefix (a conffile in the package).
install(FILES ${PROJECT_SOURCE_DIR}/deploy/debian/turnpike.yaml DESTINATION /etc/turnpike)
install(FILES ${PROJECT_SOURCE_DIR}/docs/deploy.md ${PROJECT_SOURCE_DIR}/docs/configuration.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/deploy/lvs DESTINATION ${CMAKE_INSTALL_DOCDIR}
        USE_SOURCE_PERMISSIONS)

set(CPACK_PACKAGE_NAME turnpike)
set(CPACK_PACKAGE_VENDOR "Turnpike")
set(CPACK_PACKAGE_CONTACT "Turnpike maintainers <turnpike@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "L7 reverse proxy and API gateway")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
