#!/usr/bin/env bash
# Compile PyInstaller's Linux bootloader from the source distribution of the locked release and put it in place of
# the prebuilt one in the build venv. Why: the prebuilt bootloader is not position-independent (lintian
# hardening-no-pie on both programs) and has no stack protector or FORTIFY; Debian's gcc builds PIE by default, and
# the flags are Debian's hardening flags, as for OpenCV (build_opencv.sh).
# The source comes from PyPI and is checked against a SHA-256 of the lock (requirements-linux.lock), as pip would.
# Usage: installer/build_bootloader.sh PYTHON   (the build venv's python). Needs gcc and zlib1g-dev.
set -euo pipefail
trap 'echo "build_bootloader.sh failed at line $LINENO" >&2' ERR
PYTHON=$(realpath -s "$1")
cd "$(dirname "$0")/.."
source installer/hardening.sh
TARGET=$("$PYTHON" -c "import PyInstaller, pathlib; print(pathlib.Path(PyInstaller.__file__).parent)")/bootloader/Linux-64bit-intel
if readelf -h "$TARGET/run" | grep -q 'Type: *DYN'; then
    exit 0  # already ours
fi
VERSION=$("$PYTHON" -c "from importlib.metadata import version; print(version('pyinstaller'))")
OUT=$PWD/build/bootloader-$VERSION
SDIST=pyinstaller-$VERSION.tar.gz
mkdir -p "$OUT"
installer/fetch_locked_sdist.sh pyinstaller "$VERSION" "$OUT/$SDIST"
rm -rf "$OUT/src"
mkdir -p "$OUT/src"
tar -xzf "$OUT/$SDIST" -C "$OUT/src" --strip-components=1
(
    cd "$OUT/src/bootloader"
    export CFLAGS="-O2 $HARDEN_CFLAGS" LDFLAGS="$HARDEN_LDFLAGS"
    "$PYTHON" ./waf all > "$OUT/waf.log" 2>&1 || { tail -30 "$OUT/waf.log" >&2; exit 1; }
)
for program in run run_d; do
    built=$OUT/src/PyInstaller/bootloader/Linux-64bit-intel/$program
    readelf -h "$built" | grep -q 'Type: *DYN' || { echo "$built is not position-independent" >&2; exit 1; }
    install -m 755 "$built" "$TARGET/$program"
done
rm -rf "$OUT/src"
