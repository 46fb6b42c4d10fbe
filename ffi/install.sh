#!/bin/sh
# Installs the lpstack C API: header, static and shared library, pkg-config
# file.
#
#     ffi/install.sh PREFIX [LIBDIR_OF_BUILT_LIBS]
#
# Without a second argument it builds the release libraries first
# (cargo build --release -p lpstack-ffi) and takes them from the target
# directory. Installs PREFIX/include/lpstack.h, PREFIX/lib/liblpstack.a,
# PREFIX/lib/liblpstack.so.VERSION with the liblpstack.so.ABI (SONAME) and
# liblpstack.so links, and PREFIX/lib/pkgconfig/lpstack.pc.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 PREFIX [DIR_WITH_liblpstack.a_AND_.so]" >&2
    exit 2
fi
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)
major=${version%%.*}
# The ABI version, as in build.rs: MAJOR, or 0.MINOR before 1.0.
abi=$major
if [ "$major" = 0 ]; then
    rest=${version#*.}
    abi=0.${rest%%.*}
fi
if [ $# -ge 2 ]; then
    built=$2
else
    (cd "$here/.." && cargo build --release --locked -p lpstack-ffi)
    built=${CARGO_TARGET_DIR:-$here/../target}/release
fi
for f in liblpstack.a liblpstack.so; do
    [ -f "$built/$f" ] || { echo "$0: $built/$f is missing" >&2; exit 1; }
done
libdir=$prefix/lib
mkdir -p "$prefix/include" "$libdir/pkgconfig"
install -m 644 "$here/include/lpstack.h" "$prefix/include/lpstack.h"
install -m 644 "$built/liblpstack.a" "$libdir/liblpstack.a"
install -m 755 "$built/liblpstack.so" "$libdir/liblpstack.so.$version"
ln -sf "liblpstack.so.$version" "$libdir/liblpstack.so.$abi"
ln -sf "liblpstack.so.$abi" "$libdir/liblpstack.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@VERSION@|$version|" \
    "$here/lpstack.pc.in" >"$libdir/pkgconfig/lpstack.pc"
echo "installed lpstack $version under $prefix"
