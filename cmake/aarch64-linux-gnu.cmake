# CMake toolchain file: cross-compile for 64-bit ARM (aarch64) Linux with
# Debian's cross compiler (g++-aarch64-linux-gnu), against the arm64 libraries
# that Debian multiarch installs beside the host's (libfftw3-dev:arm64 in
# /usr/lib/aarch64-linux-gnu, libpython3.11-dev:arm64 headers in
# /usr/include/aarch64-linux-gnu). Eigen is header-only and arch-independent.
#
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake ...
#
# scripts/test_aarch64.sh installs all of it and uses this file. No -march:
# GCC's aarch64 default is the ARMv8-A baseline, NEON included, which is what a
# wheel for every 64-bit ARM core must assume.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# find_library / find_path look in the multiarch directories of this triplet.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# pkg-config sees only the arm64 .pc files and the arch-independent ones, never
# the host's x86-64 FFTW.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
# Target programs run through user-mode emulation (try_run, tests).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
