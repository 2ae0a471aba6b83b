# CMake toolchain file for cross-compiling to 64-bit ARM Linux with Debian's cross compiler
# (apt package g++-aarch64-linux-gnu; run the results with qemu-aarch64 -L /usr/aarch64-linux-gnu).
# It finds only the target's libraries: host header-only packages and GoogleTest are the caller's job.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Debian installs the target's libc and libstdc++ under /usr/aarch64-linux-gnu (no separate
# sysroot). Programs (cmake, python) come from the host; libraries and headers only from the
# target root or from prefixes the caller adds to CMAKE_FIND_ROOT_PATH / CMAKE_PREFIX_PATH.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Lets try_run and ctest run target programs through user-mode emulation when it is installed.
find_program(MICROLM_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(MICROLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MICROLM_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
