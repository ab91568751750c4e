#!/usr/bin/env bash
# Provision QEMU 11.1 (Debian sid's qemu-system-x86) next to the host's own QEMU,
# without root-only tricks and without changing the host's apt state.
#
# How: a private apt configuration/state under $BASE/apt resolves the package and
# its complete dependency closure (the private dpkg status is empty, so glibc and
# friends are part of it), downloads the .debs, and `dpkg -x` unpacks them into
# $BASE/root.  QEMU is then started through sid's own dynamic loader, so none of
# the host's (older) libraries are used.  A wrapper $BASE/bin/qemu-system-x86_64
# `exec`s that command line, so the wrapper's PID is QEMU's PID.
#
# Idempotent: when the stamp matches the request and the binary answers
# `--version` with the expected version, nothing is downloaded (~0.1 s).
#
# Environment (all optional):
#   QEMU11_BASE     target directory                       default /opt/qemu11
#   QEMU11_VERSION  package version to pin                 default 1:11.1.3+ds-1
#                   ("" = whatever the suite offers)
#   QEMU11_SUITE    Debian suite                           default sid
#   QEMU11_MIRROR   Debian mirror                          default http://deb.debian.org/debian
#   QEMU11_EXPECT   required "QEMU emulator version X"     default 11.1 ("" = no check)
#   QEMU11_REFRESH  1 = ignore the stamp and provision again
#   QEMU11_OFFLINE  1 = no network: unpack again from the .debs kept in $BASE/apt
#   QEMU11_TRUSTED  1 = do not verify the suite's signature (only if the host
#                   keyring is too old to verify it)
#   QEMU11_QUIET    1 = no progress messages on stderr
#
# Output: stderr gets progress; stdout gets one line, the wrapper's path.
set -euo pipefail

DEFAULT_PIN='1:11.1.3+ds-1'
BASE=${QEMU11_BASE:-/opt/qemu11}
PIN=${QEMU11_VERSION-$DEFAULT_PIN}
SUITE=${QEMU11_SUITE:-sid}
MIRROR=${QEMU11_MIRROR:-http://deb.debian.org/debian}
EXPECT=${QEMU11_EXPECT-11.1}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PKG=qemu-system-x86

say() { [[ ${QEMU11_QUIET:-0} == 1 ]] || printf 'get-qemu11: %s\n' "$*" >&2; }
die() { printf 'get-qemu11: ERROR: %s\n' "$*" >&2; exit 1; }

for tool in apt-get dpkg flock; do
    command -v "$tool" >/dev/null || die "'$tool' is required (Debian/Ubuntu host expected)"
done

mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd -P)
A=$BASE/apt
ROOT=$BASE/root
WRAPPER=$BASE/bin/qemu-system-x86_64
STAMP=$BASE/.qemu11.stamp
LIBDIR=$ROOT/usr/lib/x86_64-linux-gnu
LDSO=$LIBDIR/ld-linux-x86-64.so.2
QEMU_BIN=$ROOT/usr/bin/qemu-system-x86_64

# What was asked for; the stamp is only valid for the same request.
REQUEST="pkg=$PKG pin=${PIN:-candidate} suite=$SUITE mirror=$MIRROR"

# Serialise concurrent runs on the same base (two builds starting at once).
exec 9>"$BASE/.lock"
flock 9

version_ok() {  # $1 = first line of --version
    [[ -z $EXPECT || $1 == "QEMU emulator version $EXPECT"* ]]
}

# ---- fast path -------------------------------------------------------------
if [[ ${QEMU11_REFRESH:-0} != 1 && -f $STAMP && -x $WRAPPER ]] \
   && [[ $(sed -n 1p "$STAMP") == "$REQUEST" ]] \
   && line=$("$WRAPPER" --version 2>/dev/null | head -n 1) && version_ok "$line"; then
    say "up to date: $line"
    echo "$WRAPPER"
    exit 0
fi

# ---- private apt -----------------------------------------------------------
t_start=$SECONDS
mkdir -p "$A/conf.d" "$A/state/lists/partial" "$A/debs/partial" "$A/none/partial"
# APT_CONFIG is read before anything else; pointing the parts dir at an empty
# directory keeps every host apt.conf.d snippet (and its hooks) out.
printf 'Dir::Etc::main "/dev/null";\nDir::Etc::parts "%s/conf.d";\n' "$A" > "$A/apt.conf"
export APT_CONFIG=$A/apt.conf
if [[ ${QEMU11_TRUSTED:-0} == 1 ]]; then
    src_opts='[trusted=yes]'
else
    [[ -r $KEYRING ]] || die "$KEYRING missing (install debian-archive-keyring, or set QEMU11_TRUSTED=1)"
    src_opts="[signed-by=$KEYRING]"
fi
echo "deb $src_opts $MIRROR $SUITE main" > "$A/sources.list"

apt_private=(
    -o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State=$A/state" -o "Dir::State::Lists=$A/state/lists"
    -o Dir::State::status=/dev/null             # "nothing installed" => full closure
    -o "Dir::Cache=$A" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o "Dir::Cache::Archives=$A/debs/"
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    -o Acquire::Check-Valid-Until=false         # the mirror is a snapshot past Valid-Until
    -o Acquire::Check-Date=false
    -o Acquire::Languages=none -o Acquire::GzipIndexes=true
    -o APT::Install-Recommends=false -o APT::Install-Suggests=false
)
apt_q() { apt-get -q "${apt_private[@]}" "$@"; }

CLOSURE=$A/closure.list   # one line per .deb: <file name> <size>
if [[ ${QEMU11_OFFLINE:-0} == 1 ]]; then
    [[ -s $CLOSURE ]] || die "QEMU11_OFFLINE=1 but no recorded closure in $CLOSURE"
    say "offline: unpacking the recorded closure again"
else
    say "refreshing the $SUITE index (private apt state in $A)"
    apt_q update > "$A/update.log" 2>&1 || { cat "$A/update.log" >&2; die "apt-get update failed"; }

    target=$PKG
    if [[ -n $PIN ]]; then
        if apt-cache "${apt_private[@]}" madison "$PKG" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' \
                | grep -qxF -- "$PIN"; then
            target="$PKG=$PIN"
        elif [[ -n ${QEMU11_VERSION+set} ]]; then
            die "$PKG $PIN is not in $SUITE at $MIRROR (available: $(apt-cache "${apt_private[@]}" madison "$PKG" | awk -F'|' '{printf "%s", $2}'))"
        else
            say "WARNING: default pin $PIN is no longer in $SUITE; using the suite's current $PKG (the version check still applies)"
        fi
    fi

    # --print-uris only lists what is not in the archive dir yet: point it at an empty one.
    apt_q -o "Dir::Cache::Archives=$A/none/" install --print-uris -y "$target" > "$A/resolve.log" 2>&1 \
        || { cat "$A/resolve.log" >&2; die "could not resolve $target"; }
    sed -n "s/^'[^']*' \([^ ]*\.deb\) \([0-9]*\) .*/\1 \2/p" "$A/resolve.log" > "$CLOSURE.new"
    [[ -s $CLOSURE.new ]] || { cat "$A/resolve.log" >&2; die "empty dependency closure for $target"; }
    mv "$CLOSURE.new" "$CLOSURE"
    say "closure: $(wc -l < "$CLOSURE") packages, $(awk '{s+=$2} END {printf "%.1f MB", s/1e6}' "$CLOSURE"); downloading what is not cached"
    apt_q install --download-only -y "$target" > "$A/download.log" 2>&1 \
        || { cat "$A/download.log" >&2; die "download failed"; }
fi
t_fetched=$SECONDS

# ---- unpack into a fresh tree, then swap it in -----------------------------
staging=$BASE/.root.new.$$
trap 'rm -rf "$staging" "$BASE/.root.old.$$"' EXIT
rm -rf "$staging"
mkdir -p "$staging"
while read -r deb _size; do
    [[ -f $A/debs/$deb ]] || die "missing $A/debs/$deb (run again without QEMU11_OFFLINE)"
    dpkg -x "$A/debs/$deb" "$staging"
done < "$CLOSURE"
rm -rf "$staging/usr/share/doc" "$staging/usr/share/man" "$staging/usr/share/locale"
[[ -x $staging/usr/bin/qemu-system-x86_64 ]] || die "the unpacked tree has no usr/bin/qemu-system-x86_64"
if [[ -d $ROOT ]]; then mv "$ROOT" "$BASE/.root.old.$$"; fi
mv "$staging" "$ROOT"
rm -rf "$BASE/.root.old.$$"
t_unpacked=$SECONDS

# ---- wrapper -------------------------------------------------------------------
[[ -e $LDSO ]] || LDSO=$ROOT/usr/lib64/ld-linux-x86-64.so.2
[[ -e $LDSO ]] || die "no ld-linux-x86-64.so.2 in the unpacked tree"
# Firmware must come from the unpacked tree, or QEMU silently uses the host's.
fw_args=()
for d in "$ROOT/usr/share/qemu" "$ROOT/usr/share/seabios" "$ROOT/usr/lib/ipxe/qemu"; do
    if [[ -d $d ]]; then fw_args+=(-L "$d"); fi
done
mkdir -p "$BASE/bin"
{
    echo '#!/bin/sh'
    echo "# Written by get-qemu11.sh ($REQUEST)."
    echo '# QEMU 11.1 from the unpacked Debian tree, run by its own dynamic loader;'
    echo '# QEMU_MODULE_DIR is needed because /proc/self/exe is the loader, not QEMU.'
    printf 'QEMU_MODULE_DIR=%q\nexport QEMU_MODULE_DIR\n' "$LIBDIR/qemu"
    printf 'exec %q --library-path %q %q' "$LDSO" "$LIBDIR" "$QEMU_BIN"
    printf ' %q' "${fw_args[@]}"
    printf ' "$@"\n'
} > "$WRAPPER.new"
chmod 755 "$WRAPPER.new"
mv "$WRAPPER.new" "$WRAPPER"

line=$("$WRAPPER" --version | head -n 1) || die "the new QEMU does not start"
version_ok "$line" || die "expected QEMU $EXPECT, got: $line"
{ echo "$REQUEST"; echo "$line"; echo "$(date -u +%FT%TZ)"; cat "$CLOSURE"; } > "$STAMP"
say "$line (fetch $((t_fetched - t_start)) s, unpack $((t_unpacked - t_fetched)) s, $(du -sh "$ROOT" | cut -f1))"
echo "$WRAPPER"
