#!/bin/sh
# Builds the 64 KiB flat -bios image from dirty.S with GNU binutils.
#   usage: build.sh [OUTDIR]     (default: the directory of this script)
# Writes OUTDIR/dirty.bin (65536 bytes); intermediates go to a temporary directory.
set -eu

SRC_DIR=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:-$SRC_DIR}
AS=${AS:-as}
LD=${LD:-ld}

mkdir -p "$OUT_DIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dirty-guest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

"$AS" --32 -o "$TMP/dirty.o" "$SRC_DIR/dirty.S"
"$LD" -m elf_i386 -Ttext=0 --oformat binary -e _start -o "$TMP/dirty.bin" "$TMP/dirty.o"

SIZE=$(wc -c < "$TMP/dirty.bin" | tr -d ' ')
if [ "$SIZE" -ne 65536 ]; then
    echo "build.sh: dirty.bin is $SIZE bytes, expected 65536" >&2
    exit 1
fi
chmod 644 "$TMP/dirty.bin"
mv -f "$TMP/dirty.bin" "$OUT_DIR/dirty.bin.tmp.$$"
mv -f "$OUT_DIR/dirty.bin.tmp.$$" "$OUT_DIR/dirty.bin"
