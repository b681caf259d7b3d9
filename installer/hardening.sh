# Debian's hardening flags (dpkg-buildflags with hardening=+all, less PIE, which the compiler's default gives the
# executable and a shared module does not take), for what the build compiles itself: OpenCV with its codecs
# (build_opencv.sh) and PyInstaller's bootloader (build_bootloader.sh). Sourced by both, so they cannot drift;
# build_opencv.sh's cache key covers this file.
HARDEN_CFLAGS="-fstack-protector-strong -fstack-clash-protection -D_FORTIFY_SOURCE=2 -fcf-protection"
HARDEN_LDFLAGS="-Wl,-z,relro,-z,now"
