#!/usr/bin/env bash
# Build the one-dir bundle (PyInstaller) and the Linux .deb into dist/.
# Usage: installer/build.sh        (needs python3 with venv; dpkg-deb for the .deb)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
start=$(date +%s)
if [ ! -x .venv-build/bin/python ]; then
    python3 -m venv .venv-build
fi
.venv-build/bin/python -m pip install -q --upgrade pip
.venv-build/bin/python -m pip install -q -e ".[installer]"
.venv-build/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    installer/slidetally.spec

PKG=build/deb/slidetally_${VERSION}_amd64
rm -rf "$PKG"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
         "$PKG/usr/share/icons/hicolor/256x256/apps"
cp -a dist/slidetally "$PKG/opt/slidetally"
ln -s /opt/slidetally/slidetally "$PKG/usr/bin/slidetally"
ln -s /opt/slidetally/slidetally-cli "$PKG/usr/bin/slidetally-cli"
cp installer/slidetally.desktop "$PKG/usr/share/applications/slidetally.desktop"
cp resources/icons/slidetally.png "$PKG/usr/share/icons/hicolor/256x256/apps/slidetally.png"
SIZE_KB=$(du -sk "$PKG" | cut -f1)
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: slidetally
Version: ${VERSION}
Section: science
Priority: optional
Architecture: amd64
Installed-Size: ${SIZE_KB}
Depends: libegl1, libgl1, libfontconfig1, libxkbcommon0, libxkbcommon-x11-0, libdbus-1-3, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-shape0, libxcb-render-util0, libxcb-image0
Maintainer: SlideTally developers <slidetally@localhost>
Description: CNN pre-classification of blood-cell and breast-tissue images
 Classifies a folder of microscope images with bundled ONNX models, lets the
 technician review and correct the calls, and exports counts as CSV and PDF.
CONTROL
cat > "$PKG/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q /usr/share/icons/hicolor || true
exit 0
POST
cp "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/postrm"
chmod 755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/postrm"
dpkg-deb --build --root-owner-group -Zxz "$PKG" "dist/slidetally_${VERSION}_amd64.deb" >/dev/null
end=$(date +%s)
echo "bundle: dist/slidetally ($(du -sh dist/slidetally | cut -f1))"
echo "deb:    dist/slidetally_${VERSION}_amd64.deb ($(du -sh "dist/slidetally_${VERSION}_amd64.deb" | cut -f1))"
echo "built in $((end - start)) s"
