#!/usr/bin/env bash
# Build OpenCV's Python module with only what the app uses (core, imgproc, imgcodecs with JPEG, PNG, TIFF and
# BMP) from the same release's source as the installed opencv-python-headless wheel, for the Linux bundle.
# Why: the wheel's cv2 links FFmpeg, libvpx, libaom, OpenSSL and OpenBLAS (81 MB of libraries, 71 MB module)
# that `import cv2` loads although the app never opens a video or calls LAPACK; this module is 19 MB and
# links only the system's zlib, libstdc++, libgcc and libc.
# Usage: installer/build_opencv.sh PYTHON   (the build venv's python; prints the folder to put on PYTHONPATH)
# The source is the wheel's own sdist from PyPI, checked against the lock's SHA-256 (fetch_locked_sdist.sh). The result is cached in
# build/opencv-<version>-<hash of this script>/ (a changed option builds again); a second run only prints the
# folder. 6.5 min on 2 cores.
set -euo pipefail
trap 'echo "build_opencv.sh failed at line $LINENO; the logs are in ${OUT:-build}/" >&2' ERR
PYTHON=$(realpath -s "$1")  # -s: a venv's python is a symlink, and the venv is what counts
HERE=$(dirname "$0")
KEY=$(cat "$0" "$HERE/hardening.sh" | sha256sum | cut -c1-12)  # a changed option or flag builds again
source "$HERE/hardening.sh"
cd "$(dirname "$0")/.."
VERSION=$("$PYTHON" -c "from importlib.metadata import version; print(version('opencv-python-headless'))")
OUT=$PWD/build/opencv-$VERSION-$KEY
if [ -f "$OUT/python/cv2/__init__.py" ]; then
    echo "$OUT/python"
    exit 0
fi
SDIST=opencv_python_headless-$VERSION.tar.gz
mkdir -p "$OUT/src"
installer/fetch_locked_sdist.sh opencv-python-headless "$VERSION" "$OUT/$SDIST"
tar -xzf "$OUT/$SDIST" -C "$OUT/src" --strip-components=1
# OpenCV and the codecs compiled into it (libjpeg-turbo, libpng, libtiff) get stack protection, checked libc calls
# and a read-only relocation table bound at load (hardening.sh); the code generated is otherwise the same.
NUMPY_INCLUDE=$("$PYTHON" -c "import numpy; print(numpy.get_include())")
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PY_LIBRARY=$("$PYTHON" -c "import os, sysconfig as s; print(os.path.join(s.get_config_var('LIBDIR'), s.get_config_var('LDLIBRARY')))")
# Options as the wheel's build (Release, static, limited API, SSE3 baseline with run-time dispatch up to
# AVX-512), minus every module, codec and back end the app does not use (HarfBuzz and the built-in Rubik font
# serve putText, which the app never calls). IPP is off: it is downloaded from
# GitHub at configure time, and the build machine reaches only package registries.
cmake -S "$OUT/src/opencv" -B "$OUT/cmake" -G Ninja -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$OUT/install" \
    -DBUILD_LIST=core,imgproc,imgcodecs,python3,python_bindings_generator -DBUILD_SHARED_LIBS=OFF \
    -DPYTHON3_EXECUTABLE="$PYTHON" -DPYTHON3_INCLUDE_DIR="$PY_INCLUDE" -DPYTHON3_LIBRARY="$PY_LIBRARY" \
    -DPYTHON3_NUMPY_INCLUDE_DIRS="$NUMPY_INCLUDE" -DPYTHON3_LIMITED_API=ON \
    -DOPENCV_PYTHON3_INSTALL_PATH=python -DBUILD_opencv_python2=OFF \
    -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_DOCS=OFF -DBUILD_JAVA=OFF \
    -DBUILD_opencv_apps=OFF -DOPENCV_GENERATE_PKGCONFIG=OFF -DCPU_BASELINE=SSE3 \
    -DWITH_JPEG=ON -DBUILD_JPEG=ON -DWITH_PNG=ON -DBUILD_PNG=ON -DWITH_TIFF=ON -DBUILD_TIFF=ON -DBUILD_ZLIB=OFF \
    -DWITH_WEBP=OFF -DWITH_OPENJPEG=OFF -DWITH_JASPER=OFF -DWITH_AVIF=OFF -DWITH_OPENEXR=OFF -DWITH_SPNG=OFF \
    -DWITH_IMGCODEC_HDR=OFF -DWITH_IMGCODEC_SUNRASTER=OFF -DWITH_IMGCODEC_PXM=OFF -DWITH_IMGCODEC_PFM=OFF \
    -DWITH_IMGCODEC_GIF=OFF -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_V4L=OFF -DWITH_1394=OFF \
    -DWITH_OBSENSOR=OFF -DWITH_IPP=OFF -DWITH_ITT=OFF -DWITH_OPENCL=OFF -DWITH_VA=OFF -DWITH_VA_INTEL=OFF \
    -DWITH_LAPACK=OFF -DWITH_EIGEN=OFF -DWITH_PROTOBUF=OFF -DWITH_FLATBUFFERS=OFF -DWITH_TBB=OFF \
    -DWITH_HARFBUZZ=OFF -DWITH_GTK=OFF -DWITH_QT=OFF -DWITH_VTK=OFF -DWITH_ADE=OFF -DWITH_CAROTENE=OFF -DWITH_KLEIDICV=OFF \
    -DCV_TRACE=OFF -DENABLE_PRECOMPILED_HEADERS=OFF \
    -DCMAKE_CXX_FLAGS="$HARDEN_CFLAGS -ffunction-sections -fdata-sections" -DCMAKE_C_FLAGS="$HARDEN_CFLAGS -ffunction-sections -fdata-sections" \
    -DCMAKE_SHARED_LINKER_FLAGS="$HARDEN_LDFLAGS -Wl,--gc-sections -Wl,--as-needed -Wl,--strip-all" \
    -DCMAKE_MODULE_LINKER_FLAGS="$HARDEN_LDFLAGS -Wl,--gc-sections -Wl,--as-needed -Wl,--strip-all" \
    > "$OUT/configure.log"
cmake --build "$OUT/cmake" --parallel "$(nproc)" > "$OUT/build.log"
cmake --install "$OUT/cmake" > "$OUT/install.log"
rm -rf "$OUT/python"
cp -a "$OUT/install/python" "$OUT/python"
# The licence texts of what is compiled in, for installer/copyright.py (licenses/opencv/ in the .deb): OpenCV's, and
# the ones its build installs for every third-party part it compiled in (libjpeg-turbo, libpng, libtiff, SoftFloat...).
rm -rf "$OUT/licenses"
mkdir -p "$OUT/licenses/3rdparty"
cp "$OUT/src/opencv/LICENSE" "$OUT/licenses/LICENSE"
cp "$OUT"/install/share/licenses/opencv*/* "$OUT/licenses/3rdparty/"
rm -rf "$OUT/src" "$OUT/cmake" "$OUT/install"
echo "$OUT/python"
