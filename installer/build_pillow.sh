#!/usr/bin/env bash
# Pillow for the bundle with only what openslide-python needs: its core module (Image.frombuffer of the regions
# OpenSlide decodes) and ImageCms (the slides' colour profiles, through the system's Little CMS). Compiled from the
# locked release's source in place of the wheel, whose core module links its own JPEG, JPEG 2000, TIFF, xz, zstd,
# xcb and Xau libraries (6 MB in pillow.libs, seven more libraries to track) that SlideTally never uses: OpenSlide
# decodes the slides itself, and the app reads images with OpenCV.
# The source comes from PyPI and is checked against the lock's SHA-256 (fetch_locked_sdist.sh). Done once per build
# venv; its build requirement pybind11 comes from requirements-build.lock. Usage: installer/build_pillow.sh PYTHON   (the build venv's python). Needs gcc, zlib1g-dev and liblcms2-dev.
set -euo pipefail
trap 'echo "build_pillow.sh failed at line $LINENO" >&2' ERR
PYTHON=$(realpath -s "$1")
cd "$(dirname "$0")/.."
source installer/hardening.sh
if "$PYTHON" -c "from PIL import features, ImageCms; raise SystemExit(features.check('jpg') or not features.check('littlecms2'))" 2>/dev/null; then
    exit 0  # already ours: no JPEG codec, Little CMS present
fi
VERSION=$("$PYTHON" -c "from importlib.metadata import version; print(version('pillow'))")
OUT=$PWD/build/pillow-$VERSION
mkdir -p "$OUT"
installer/fetch_locked_sdist.sh pillow "$VERSION" "$OUT/pillow-$VERSION.tar.gz"
"$PYTHON" -m pip install -q --require-hashes --no-deps -r installer/requirements-build.lock
CFLAGS="-O2 $HARDEN_CFLAGS" LDFLAGS="$HARDEN_LDFLAGS" "$PYTHON" -m pip install -q --no-deps --no-build-isolation \
    --force-reinstall --no-binary pillow "$OUT/pillow-$VERSION.tar.gz" \
    --config-settings zlib=enable --config-settings lcms=enable --config-settings jpeg=disable --config-settings tiff=disable --config-settings jpeg2000=disable --config-settings webp=disable \
    --config-settings avif=disable --config-settings freetype=disable --config-settings raqm=disable --config-settings imagequant=disable --config-settings xcb=disable > "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log" >&2; exit 1; }
"$PYTHON" -c "from PIL import Image, ImageCms, features; assert not features.check('jpg') and features.check('littlecms2')"
