#!/usr/bin/env bash
# Build the one-dir bundle (PyInstaller) and the Linux .deb into dist/.
# Usage: installer/build.sh
# Needs python3 with venv, and (Debian) dpkg-dev, binutils, patchelf, help2man, cmake, ninja-build, nasm and a C++
# compiler; the libraries the bundle links to must be installed for dpkg-shlibdeps to find their packages
# (see installer/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
# The Debian revision: 1 for a release's first package; a rebuild of the same release (a library fix, a packaging
# change) raises it, e.g. DEBIAN_REVISION=2 installer/build.sh gives <version>-2.
DEBIAN_REVISION=${DEBIAN_REVISION:-1}
DEBVERSION=$VERSION-$DEBIAN_REVISION
# Dates inside the package are the last commit's, so a rebuild of the same commit gives the same files.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
# The project's own addresses (role address and site, no personal data).
MAINTAINER="SlideTally developers <packaging@slidetally.org>"
HOMEPAGE=https://slidetally.org
start=$(date +%s)
# The Python runtime the bundle carries: Debian's maintained CPython 3.11 source, hardened (installer/build_python.sh).
PYTHON=$(installer/build_python.sh)
if ! grep -qs "^home = $(dirname "$PYTHON")\$" .venv-build/pyvenv.cfg; then
    rm -rf .venv-build
    # pip comes from Debian's python3-pip-whl (Debian's ensurepip takes the wheels in /usr/share/python-wheels).
    "$PYTHON" -m venv .venv-build
fi
# Exactly the locked wheels, each checked against its SHA-256 (installer/lock.sh writes the lock), then the app
# itself without dependencies (setuptools, its build backend, is in the lock).
.venv-build/bin/python -m pip install -q --require-hashes --no-deps -r installer/requirements-linux.lock
.venv-build/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# Pillow with only what openslide-python uses (its core and the system's Little CMS), from the locked source.
installer/build_pillow.sh .venv-build/bin/python
# NumPy linked to Debian's OpenBLAS (libopenblas0, a Depends) instead of the wheel's copy with its Fortran runtime
# and libquadmath, from the locked source with the same flags (cached in build/).
installer/build_numpy.sh .venv-build/bin/python
# PyInstaller's bootloader (the executable that starts both programs) compiled here from the locked release's
# source, not the prebuilt one: Debian's gcc makes it position-independent (lintian hardening-no-pie), and it gets
# the flags OpenCV gets (installer/build_opencv.sh). Done once per build venv (installer/build_bootloader.sh).
installer/build_bootloader.sh .venv-build/bin/python
.venv-build/bin/python -m pip check
# The generator of the bill of materials, in its own venv (a build tool, not bundled).
if [ ! -x .venv-tools/bin/cyclonedx-py ]; then
    python3 -m venv .venv-tools
    .venv-tools/bin/python -m pip install -q --require-hashes -r installer/requirements-tools.lock
fi
# OpenCV's Python module with only the parts the app uses, from the same release's source (cached in build/).
OPENCV=$(installer/build_opencv.sh .venv-build/bin/python)
PYTHONPATH=$OPENCV .venv-build/bin/pyinstaller --noconfirm --clean --log-level ERROR --distpath dist --workpath build/pyinstaller \
    installer/slidetally.spec
BUNDLE=dist/slidetally
# One program, two names (installer/launch.py): both share one Python archive instead of carrying one each.
ln -sfn slidetally "$BUNDLE/slidetally-cli"
# PyInstaller still links the left-out Qt libraries into _internal/; drop those dangling links.
find "$BUNDLE" -xtype l -delete
# The About box's licence list: the components the copyright file lists, i.e. what the bundle carries (OpenCV's parts
# from its build; not flatbuffers). Written once the bundle exists, into it and into resources/ (the development
# install's About box); copyright.py stops the package if the two lists differ.
.venv-build/bin/python installer/copyright.py --licenses-md resources/LICENSES.md "$(dirname "$OPENCV")/licenses" "$BUNDLE"
install -m 644 resources/LICENSES.md "$BUNDLE/_internal/resources/LICENSES.md"

# Shared objects: not executable, no symbols or debug info (Debian policy 10.1, 10.2), and no RUNPATH into the
# tree the Python runtime was compiled in (it would make the loader search e.g. /root/.pyenv on the target).
# Libraries that auditwheel rewrote with patchelf (in *.libs/, or linking to one) are left as they are:
# strip breaks their layout ("ELF load command address/offset not page-aligned").
find "$BUNDLE" -type f \( -name '*.so' -o -name '*.so.*' \) -print0 | while IFS= read -r -d '' lib; do
    chmod 644 "$lib"
    runpath=$(patchelf --print-rpath "$lib")
    if readelf -S -W "$lib" | grep -q ' \.symtab ' && [[ "$lib" != *.libs/* && "$runpath" != *.libs* ]]; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib"
    fi
    if [ -n "$runpath" ] && [[ "$runpath" != *'$ORIGIN'* ]]; then
        patchelf --remove-rpath "$lib"
    fi
done
find "$BUNDLE/_internal/resources" -type f -exec chmod 644 {} +

PKG=build/deb/slidetally_${DEBVERSION}_amd64
DOC=$PKG/usr/share/doc/slidetally
rm -rf "$PKG"
mkdir -p "$PKG/DEBIAN" "$PKG/usr/lib" "$PKG/usr/bin" "$PKG/usr/share/applications" "$PKG/usr/share/metainfo" \
         "$PKG/usr/share/icons/hicolor/scalable/apps" "$PKG/usr/share/lintian/overrides" "$DOC"
cp -a "$BUNDLE" "$PKG/usr/lib/slidetally"
ln -s ../lib/slidetally/slidetally "$PKG/usr/bin/slidetally"
ln -s ../lib/slidetally/slidetally-cli "$PKG/usr/bin/slidetally-cli"
cp installer/slidetally.desktop "$PKG/usr/share/applications/"
# "Open with SlideTally" on folders as file-manager actions (Dolphin, Nemo), never as the folder's MIME handler.
install -D -m 644 installer/filemanager/slidetally-open-folder.desktop \
    "$PKG/usr/share/kio/servicemenus/slidetally-open-folder.desktop"
install -D -m 644 installer/filemanager/slidetally.nemo_action "$PKG/usr/share/nemo/actions/slidetally.nemo_action"
sed "s/@VERSION@/$VERSION/; s/@DATE@/$DATE/" installer/slidetally.metainfo.xml \
    > "$PKG/usr/share/metainfo/org.slidetally.SlideTally.metainfo.xml"
for size in 48 64 128 256; do
    install -D -m 644 "installer/icons/slidetally-$size.png" "$PKG/usr/share/icons/hicolor/${size}x${size}/apps/slidetally.png"
done
cp installer/icons/slidetally.svg "$PKG/usr/share/icons/hicolor/scalable/apps/slidetally.svg"
cp installer/lintian-overrides "$PKG/usr/share/lintian/overrides/slidetally"
# Manual pages (Debian policy 12.1), made by help2man from the programs' own --help and --version; the CLI's page
# also carries each command's --help, as it is in this build.
mkdir -p "$PKG/usr/share/man/man1"
COMMANDS=build/slidetally-cli-commands.h2m
{
    echo "[COMMANDS]"
    for cmd in $("$BUNDLE/slidetally-cli" --help | grep -o '{[a-z,-]*}' | head -1 | tr -d '{}' | tr ',' ' '); do
        printf '.SS %s\n.nf\n' "$cmd"
        "$BUNDLE/slidetally-cli" "$cmd" --help | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
        printf '.fi\n'
    done
} > "$COMMANDS"
help2man --no-info --no-discard-stderr --name "classify microscope images and export the counts, without the GUI" \
    --include "$COMMANDS" "$BUNDLE/slidetally-cli" | gzip -9n > "$PKG/usr/share/man/man1/slidetally-cli.1.gz"
help2man --no-info --no-discard-stderr --name "CNN pre-classification of blood-cell and breast-tissue images" \
    "$BUNDLE/slidetally" | gzip -9n > "$PKG/usr/share/man/man1/slidetally.1.gz"
.venv-build/bin/python installer/copyright.py "$PKG" usr/lib/slidetally "$(dirname "$OPENCV")/licenses"
install -m 644 SECURITY.md "$DOC/SECURITY.md"  # the security contact (also in the copyright file and the AppStream data)
# Bill of materials (CycloneDX 1.6): cyclonedx-py over the build venv, completed with the native parts.
.venv-tools/bin/cyclonedx-py environment --of JSON --sv 1.6 --output-reproducible -o build/sbom-python.json \
    .venv-build/bin/python
.venv-build/bin/python installer/sbom.py build/sbom-python.json "$DOC/slidetally.cdx.json" "$(dirname "$OPENCV")" "$BUNDLE"
# Every bundled shared library named in it and every component versioned, or the build stops.
.venv-build/bin/python installer/sbom.py --check "$BUNDLE" "$DOC/slidetally.cdx.json"
cp "$DOC/slidetally.cdx.json" "dist/slidetally_${VERSION}.cdx.json"  # attached to the release
# A package with a Debian revision has its Debian changelog as changelog.Debian (Debian policy 12.7).
.venv-build/bin/python installer/changelog.py CHANGELOG.md "$VERSION" "$MAINTAINER" "$DEBIAN_REVISION" > "$DOC/changelog.Debian"
gzip -9n "$DOC/changelog.Debian"
find "$PKG" -type d -exec chmod 755 {} +

# Depends: the packages of every library the bundle links to, with the versions its symbols need
# (this is where libc6 (>= 2.xx) comes from), plus libdbus-1-3, which Qt loads with dlopen().
mkdir -p build/shlibdeps/debian
printf 'Source: slidetally\n\nPackage: slidetally\nArchitecture: amd64\n' > build/shlibdeps/debian/control
mapfile -t elves < <(find "$PWD/$PKG/usr/lib/slidetally" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) \
    -exec sh -c 'head -c 4 "$1" | grep -q ELF' _ {} \; -print)
mapfile -t private < <(find "$PWD/$PKG/usr/lib/slidetally" -type f -name '*.so*' -printf '-l%h\n' | sort -u)
shlibs=$(cd build/shlibdeps && dpkg-shlibdeps -O --ignore-missing-info "${private[@]}" "${elves[@]}" 2>warnings.txt \
         | sed -n 's/^shlibs:Depends=//p')
# Shown, not hidden: each warning (e.g. a library linked but unused) is something to look at.
if [ -s build/shlibdeps/warnings.txt ]; then
    echo "dpkg-shlibdeps: $(wc -l < build/shlibdeps/warnings.txt) warnings:" >&2
    sed 's/^/  /' build/shlibdeps/warnings.txt >&2
fi
[[ "$shlibs" == *libdbus-1-3* ]] || shlibs="$shlibs, libdbus-1-3"
SIZE_KB=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: slidetally
Version: ${DEBVERSION}
Section: science
Priority: optional
Architecture: amd64
Installed-Size: ${SIZE_KB}
Depends: ${shlibs}
Maintainer: ${MAINTAINER}
Homepage: ${HOMEPAGE}
Description: CNN pre-classification of blood-cell and breast-tissue images
 Classifies a folder of microscope images with bundled ONNX models, lets the
 technician review and correct the calls, and exports counts as CSV and PDF.
CONTROL
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
    > "$PKG/DEBIAN/md5sums"
chmod 644 "$PKG/DEBIAN/control" "$PKG/DEBIAN/md5sums"
DEB=dist/slidetally_${DEBVERSION}_amd64.deb
dpkg-deb --build --root-owner-group -Zxz "$PKG" "$DEB" >/dev/null
end=$(date +%s)
awk -F'\t' '{mb[$2] += $1 / 1048576; n[$2]++} END {for (r in mb) printf "left out: %6.1f MB, %3d files: %s\n", mb[r], n[r], r}' \
    build/excluded.tsv
echo "bundle: $BUNDLE ($(du -sm "$BUNDLE" | cut -f1) MB; installed size $((SIZE_KB / 1024)) MB)"
echo "deb:    $DEB ($(du -sm "$DEB" | cut -f1) MB)"
echo "built in $((end - start)) s"
