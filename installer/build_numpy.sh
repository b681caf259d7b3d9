#!/usr/bin/env bash
# NumPy for the bundle linked to Debian's OpenBLAS (libopenblas0, a Depends of the .deb, not a copy): compiled from
# the locked release's source in place of the wheel, whose numpy.libs carries its own OpenBLAS with the Fortran
# runtime and libquadmath (27.8 MB, three more libraries to track and patch, one of them LGPL). Linked to the
# system's library, NumPy's matrix products and LAPACK calls go through the OpenBLAS that Debian maintains and
# updates (without BLAS, NumPy's own loops made site adaptation's fit 8.4x slower).
# The source comes from PyPI and is checked against the lock's SHA-256 (fetch_locked_sdist.sh); its build
# requirements (meson-python, meson, Cython, pyproject-metadata) come from requirements-build.lock, ninja is the
# system's, OpenBLAS's headers and pkg-config file are libopenblas-dev's. Compiled with Debian's hardening flags
# (hardening.sh), otherwise with NumPy's own release options (its CPU baseline and run-time dispatch, as the
# wheel's). The wheel is cached in build/numpy-<version>-<hash of this script, hardening.sh and the build lock>/
# (a changed option or flag builds again); a venv that has that wheel installed is left as it is.
# Usage: installer/build_numpy.sh PYTHON   (the build venv's python). Needs gcc, g++, ninja-build, pkg-config and
# libopenblas-dev.
set -euo pipefail
trap 'echo "build_numpy.sh failed at line $LINENO; the logs are in ${OUT:-build}/" >&2' ERR
PYTHON=$(realpath -s "$1")  # -s: a venv's python is a symlink, and the venv is what counts
HERE=$(dirname "$0")
KEY=$(cat "$0" "$HERE/hardening.sh" "$HERE/requirements-build.lock" | sha256sum | cut -c1-12)
source "$HERE/hardening.sh"
cd "$HERE/.."
VERSION=$("$PYTHON" -c "from importlib.metadata import version; print(version('numpy'))")
OUT=$PWD/build/numpy-$VERSION-$KEY
# Installed from this cache already: pip records the wheel's URL (direct_url.json).
if "$PYTHON" - "$OUT" <<'CHECK' 2>/dev/null; then
import sys
from importlib.metadata import distribution
sys.exit(f"file://{sys.argv[1]}/" not in (distribution("numpy").read_text("direct_url.json") or ""))
CHECK
    exit 0
fi
if ! ls "$OUT"/numpy-"$VERSION"-*.whl >/dev/null 2>&1; then
    pkg-config --exists openblas || { echo "build_numpy.sh: no OpenBLAS pkg-config file: apt-get install libopenblas-dev" >&2; exit 1; }
    mkdir -p "$OUT"
    installer/fetch_locked_sdist.sh numpy "$VERSION" "$OUT/numpy-$VERSION.tar.gz"
    "$PYTHON" -m pip install -q --require-hashes --no-deps -r installer/requirements-build.lock
    rm -rf "$OUT/src"
    mkdir -p "$OUT/src"
    tar -xzf "$OUT/numpy-$VERSION.tar.gz" -C "$OUT/src" --strip-components=1
    # BLAS and LAPACK from Debian's OpenBLAS (pkg-config openblas; LP64, NumPy's default), never NumPy's slow
    # fallback loops (allow-noblas=false stops the build if OpenBLAS is not found). The wheel is made by calling the
    # build backend itself: this pip (Debian's 22.3) passes one value per config setting, meson-python takes a list.
    # The flags go after meson's release flags (-O3, NDEBUG), as the wheel's do; meson finds cython on PATH.
    (
        cd "$OUT/src"
        export PATH="$(dirname "$PYTHON"):$PATH"
        export CFLAGS="$HARDEN_CFLAGS" CXXFLAGS="$HARDEN_CFLAGS" LDFLAGS="$HARDEN_LDFLAGS"
        "$PYTHON" -c 'import sys, mesonpy; mesonpy.build_wheel(sys.argv[1], {"setup-args": sys.argv[2:]})' "$OUT" \
            -Dallow-noblas=false -Dblas=openblas -Dlapack=openblas
    ) > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log" >&2; exit 1; }
    rm -rf "$OUT/src"
fi
"$PYTHON" -m pip install -q --no-deps --force-reinstall "$OUT"/numpy-"$VERSION"-*.whl
"$PYTHON" - <<'CHECK'
import subprocess
from pathlib import Path
import numpy
import numpy._core._multiarray_umath as core
deps = numpy.show_config(mode="dicts")["Build Dependencies"]
assert deps["blas"]["name"] == "openblas" and deps["lapack"]["name"] == "openblas", deps
assert not (Path(numpy.__file__).parent.parent / "numpy.libs").exists(), "the wheel's numpy.libs is still installed"
# Linked to the system's OpenBLAS (build.sh removes any RUNPATH; the loader finds Debian's libopenblas.so.0).
ldd = subprocess.run(["ldd", core.__file__], capture_output=True, text=True, check=True).stdout
blas = [line.split() for line in ldd.splitlines() if "libopenblas" in line]
assert blas and blas[0][2].startswith("/usr/lib/"), ldd
a = numpy.arange(12.0).reshape(3, 4)
assert (a @ a.T)[2, 2] == 366.0 and abs(numpy.linalg.det(numpy.eye(3) * 2) - 8) < 1e-12
CHECK
