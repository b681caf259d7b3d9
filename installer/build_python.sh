#!/usr/bin/env bash
# Build the Python runtime the bundle carries, from Debian's maintained source of CPython 3.11 (the security-patched
# release Debian 12 ships), with Debian's hardening flags, and print its interpreter's path.
# Why: PyInstaller bundles the interpreter of the build venv. The build machine's own (a pyenv 3.11.7 of December 2023)
# was unhardened (no stack protector, no BIND_NOW) and carried its own expat 2.5.0. This one:
#   - is Debian's python3.11 source with every Debian patch applied (CVE fixes up to the version pinned below);
#   - gets dpkg-buildflags with hardening=+all (stack protector, FORTIFY, RELRO, BIND_NOW);
#   - links the system's expat, SQLite, OpenSSL, libffi, zlib, bzip2 and xz, so the .deb depends on their packages
#     (dpkg-shlibdeps) and they get Debian's security updates instead of being copied;
#   - has no readline, curses, dbm, tkinter or nis module (the app uses none; readline would pull in GPL-3 libreadline).
# The three source files are checked against installer/python-source.lock (sha256), as pip checks wheels.
# Usage: installer/build_python.sh   (prints the interpreter; cached in build/python-<version>-<hash of this script>/)
# Needs dpkg-dev, gcc, make, and libssl-dev libffi-dev libsqlite3-dev libbz2-dev liblzma-dev uuid-dev libexpat1-dev
# zlib1g-dev. About 5 min on 2 cores (no profile-guided optimisation: the work is in NumPy, ONNX Runtime and OpenCV).
set -euo pipefail
trap 'echo "build_python.sh failed at line $LINENO; the logs are in ${OUT:-build}/" >&2' ERR
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."
LOCK=installer/python-source.lock
DEBVERSION=$(sed -n 's/^# version: //p' "$LOCK")
POOL=$(sed -n 's/^# pool: //p' "$LOCK")
KEY=$(cat "$0" "$LOCK" | sha256sum | cut -c1-12)
OUT=$PWD/build/python-$DEBVERSION-$KEY
PREFIX=$OUT/install
if [ -x "$PREFIX/bin/python3.11" ]; then
    echo "$PREFIX/bin/python3.11"
    exit 0
fi
mkdir -p "$OUT/download"
grep -v '^#' "$LOCK" | while read -r sha file; do
    if [ ! -f "$OUT/download/$file" ]; then
        curl -fsSL -o "$OUT/download/$file.part" "$POOL/$file"
        mv "$OUT/download/$file.part" "$OUT/download/$file"
    fi
done
(cd "$OUT/download" && grep -v '^#' "$HERE/python-source.lock" | sed 's/ /  /' | sha256sum -c --quiet)
rm -rf "$OUT/src"
dpkg-source --no-check -x "$OUT/download/python3.11_$DEBVERSION.dsc" "$OUT/src" > "$OUT/unpack.log"
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
source "$HERE/hardening.sh"  # plus the flags OpenCV and the bootloader get (stack clash, control-flow protection)
CFLAGS="$(dpkg-buildflags --get CFLAGS) $HARDEN_CFLAGS"
CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS)
LDFLAGS="$(dpkg-buildflags --get LDFLAGS) -Wl,-rpath,$PREFIX/lib"
export CFLAGS CPPFLAGS LDFLAGS
# Modules the app does not use and whose libraries it should not carry: py_cv_module_<name>=n/a is CPython 3.11's
# switch for a module built from Modules/Setup.stdlib; readline and curses are still built by setup.py, so they are
# removed after the install.
for module in readline _curses _curses_panel _dbm _gdbm nis _tkinter ossaudiodev spwd _crypt; do
    export "py_cv_module_$module=n/a"
done
# pyexpat and _elementtree compiled into libpython, as Debian builds them: Debian's pyexpat fix for CVE-2026-4224
# uses CPython's internal headers, which only a built-in module may include.
printf '*static*\npyexpat pyexpat.c -lexpat\n_elementtree _elementtree.c\n' > "$OUT/src/Modules/Setup.local"
(
    cd "$OUT/src"
    ./configure --prefix="$PREFIX" --enable-shared --with-system-expat --with-ensurepip=no \
        --without-static-libpython > "$OUT/configure.log" 2>&1
    make -j"$(nproc)" > "$OUT/build.log" 2>&1
    make install > "$OUT/install.log" 2>&1
)
rm -f "$PREFIX"/lib/python3.11/lib-dynload/{readline,_curses,_curses_panel}.cpython-*.so
# The texts of what CPython compiles in (libmpdec, Mersenne Twister, ...) are in Doc/license.rst; copyright.py takes them.
mkdir -p "$OUT/licenses"
cp "$OUT/src/LICENSE" "$OUT/licenses/LICENSE"
cp "$OUT/src/Doc/license.rst" "$OUT/licenses/license.rst"
cp "$OUT/src/debian/copyright" "$OUT/licenses/debian-copyright"
"$PREFIX/bin/python3.11" -c "import _decimal, pyexpat, sqlite3, ssl, ctypes, lzma, bz2, zlib, uuid" \
    || { echo "the built Python lacks a module the app needs" >&2; exit 1; }
rm -rf "$OUT/src"
echo "$PREFIX/bin/python3.11"
