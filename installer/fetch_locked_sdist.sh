#!/usr/bin/env bash
# Download a package's source distribution from PyPI and keep it only if its SHA-256 is one of the package's hashes
# in installer/requirements-linux.lock, as pip --require-hashes checks the wheels (used by build_opencv.sh and
# build_bootloader.sh, which compile the locked releases' sources).
# Usage: installer/fetch_locked_sdist.sh NAME VERSION FILE   (FILE: where the .tar.gz goes; kept if already checked)
set -euo pipefail
NAME=$1 VERSION=$2 FILE=$3
LOCK=$(dirname "$0")/requirements-linux.lock
[ -f "$FILE" ] && exit 0
LOCKED=$(awk -v pkg="$NAME==$VERSION" '$1 == pkg {p = 1; next} p && !/^ +--hash/ {exit} p' "$LOCK" | grep -o 'sha256:[0-9a-f]*' | cut -d: -f2)
[ -n "$LOCKED" ] || { echo "$NAME==$VERSION is not in $LOCK" >&2; exit 1; }
SDIST=$(basename "$FILE")
link=$(curl -fsSL "https://pypi.org/simple/$NAME/" | grep -o "https://[^\"#]*/$SDIST" | head -1)
[ -n "$link" ] || { echo "$SDIST is not on PyPI" >&2; exit 1; }
curl -fsSL -o "$FILE.part" "$link"
got=$(sha256sum "$FILE.part" | cut -d' ' -f1)
grep -qx "$got" <<< "$LOCKED" || { rm -f "$FILE.part"; echo "$SDIST: sha256 $got is not in the lock" >&2; exit 1; }
mv "$FILE.part" "$FILE"
