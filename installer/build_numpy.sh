#!/usr/bin/env bash
# NumPy for the bundle without BLAS or LAPACK: compiled from the locked release's source in place of the wheel, whose
# numpy.libs carries OpenBLAS with the Fortran runtime and libquadmath (27.8 MB, three more libraries to track, one
# of them LGPL). The app multiplies small matrices only (the models' heads, the colour guard, site adaptation's
# fit), which NumPy's own loops do; it calls no LAPACK routine on a large array.
# The source comes from PyPI and is checked against the lock's SHA-256 (fetch_locked_sdist.sh); its build
# requirements (meson-python, meson, Cython, pyproject-metadata) come from requirements-build.lock, ninja is the
# system's. Compiled with Debian's hardening flags (hardening.sh), otherwise with NumPy's own release options (its CPU
# baseline and run-time dispatch, as the wheel's). The wheel is cached in build/numpy-<version>-<hash of this script,
# hardening.sh and the build lock>/ (a changed option or flag builds again); a venv that has that wheel installed
# is left as it is.
# Usage: installer/build_numpy.sh PYTHON   (the build venv's python). Needs gcc, g++ and ninja-build.
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
    mkdir -p "$OUT"
    installer/fetch_locked_sdist.sh numpy "$VERSION" "$OUT/numpy-$VERSION.tar.gz"
    "$PYTHON" -m pip install -q --require-hashes --no-deps -r installer/requirements-build.lock
    rm -rf "$OUT/src"
    mkdir -p "$OUT/src"
    tar -xzf "$OUT/numpy-$VERSION.tar.gz" -C "$OUT/src" --strip-components=1
    # Without BLAS and LAPACK (NumPy's own loops and its bundled lapack_lite). The wheel is made by calling the build
    # backend itself: this pip (Debian's 22.3) passes one value per config setting, meson-python takes a list. The
    # flags go after meson's release flags (-O3, NDEBUG), as the wheel's do; meson finds cython on PATH.
    (
        cd "$OUT/src"
        export PATH="$(dirname "$PYTHON"):$PATH"
        export CFLAGS="$HARDEN_CFLAGS" CXXFLAGS="$HARDEN_CFLAGS" LDFLAGS="$HARDEN_LDFLAGS"
        "$PYTHON" -c 'import sys, mesonpy; mesonpy.build_wheel(sys.argv[1], {"setup-args": sys.argv[2:]})' "$OUT" \
            -Dallow-noblas=true -Dblas=none -Dlapack=none
    ) > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log" >&2; exit 1; }
    rm -rf "$OUT/src"
fi
"$PYTHON" -m pip install -q --no-deps --force-reinstall "$OUT"/numpy-"$VERSION"-*.whl
"$PYTHON" - <<'CHECK'
from pathlib import Path
import numpy
deps = numpy.show_config(mode="dicts")["Build Dependencies"]
assert deps["blas"]["name"] == "none" and deps["lapack"]["name"] == "none", deps
assert not (Path(numpy.__file__).parent.parent / "numpy.libs").exists(), "the wheel's numpy.libs is still installed"
a = numpy.arange(12.0).reshape(3, 4)
assert (a @ a.T)[2, 2] == 366.0 and abs(numpy.linalg.det(numpy.eye(3) * 2) - 8) < 1e-12
CHECK
