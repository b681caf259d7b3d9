#!/usr/bin/env bash
# Render every icon from slidetally.svg: hicolor PNGs (Linux), slidetally.ico (Windows), slidetally.icns (macOS).
# Needs librsvg2-bin, imagemagick and icnsutils. The outputs are committed, so builds do not need these tools.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for size in 16 24 32 48 64 128 256 512; do
    rsvg-convert -w "$size" -h "$size" slidetally.svg -o "$tmp/$size.png"
done
for size in 48 64 128 256; do
    cp "$tmp/$size.png" "slidetally-$size.png"
done
convert "$tmp"/{16,24,32,48,64,128,256}.png slidetally.ico
png2icns slidetally.icns "$tmp"/{16,32,48,128,256,512}.png >/dev/null
