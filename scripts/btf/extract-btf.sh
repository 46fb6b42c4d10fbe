#!/usr/bin/env bash
# Rebuild the BTF fixtures in tests/fixtures/btf/ from Debian kernel packages.
#
# Per kernel (6.12 and 6.1, pinned below):
#   * `apt-get download` the unsigned image package into tests/fixtures/work/
#     debs/ (git-ignored; reused when build-orc-fixtures.sh already put it
#     there). Nothing is installed.
#   * take the vmlinux out of /boot/vmlinuz (bzImage payload, same routine
#     as tests/fixtures/build-orc-fixtures.sh; reuses its extracted copy) and
#     cut its .BTF section: exactly the bytes a running kernel has between
#     __start_BTF and __stop_BTF and shows as /sys/kernel/btf/vmlinux.
#   * cut the .BTF section (split BTF) of one small module, fs/binfmt_misc.ko
#     (it has types of its own: `typedef struct {...} Node`).
#   * record pahole's view of the members lpstack needs (scripts/btf/
#     vmlinux.spec, module.spec) with scripts/btf/pahole-golden.py.
# Writes tests/fixtures/btf/:
#   vmlinux-<release>.btf.gz           gzip -9 -n of the .BTF section
#   binfmt_misc-<release>.btf          the module's .BTF section (split BTF)
#   pahole-<release>.txt               golden offsets, vmlinux
#   pahole-binfmt_misc-<release>.txt   golden offsets, module over vmlinux
#   SOURCES.txt                        packages, sha256s, sizes, tool versions
#
# Usage: scripts/btf/extract-btf.sh
# Env: KERNELS="612 61", WORK=tests/fixtures/work, OUT=tests/fixtures/btf,
#      K612_IMAGE_PKG K612_VERSION K61_IMAGE_PKG K61_VERSION, MODULE=fs/binfmt_misc
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
OUT="${OUT:-$ROOT/tests/fixtures/btf}"
KERNELS="${KERNELS:-612 61}"
MODULE="${MODULE:-fs/binfmt_misc}"

K612_IMAGE_PKG="${K612_IMAGE_PKG:-linux-image-6.12.117+deb12-amd64-unsigned}"
K612_VERSION="${K612_VERSION:-6.12.117-1~deb12u1}"
K61_IMAGE_PKG="${K61_IMAGE_PKG:-linux-image-6.1.0-57-amd64-unsigned}"
K61_VERSION="${K61_VERSION:-6.1.192-3}"

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_tools() {
    local missing=()
    command -v objcopy >/dev/null || missing+=(binutils)
    command -v pahole >/dev/null || missing+=(dwarves)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v zstd >/dev/null || missing+=(zstd)
    command -v lz4 >/dev/null || missing+=(lz4)
    command -v bzip2 >/dev/null || missing+=(bzip2)
    command -v lzop >/dev/null || missing+=(lzop)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            $(printf '%s\n' "${missing[@]}" | sort -u)
    fi
}

# --- copied from tests/fixtures/build-orc-fixtures.sh (which runs its main
# when sourced) ---------------------------------------------------------------
read_le() {
    od -An -t "u$3" -j "$2" -N "$3" --endian=little "$1" | tr -d ' \n'
}

# extract_vmlinux BZIMAGE OUT_ELF: the payload is located through the x86
# boot protocol fields setup_sects / payload_offset / payload_length.
extract_vmlinux() {
    local bz="$1" out="$2"
    local magic_hdr setup_sects payload_offset payload_length start magic tool
    magic_hdr="$(dd if="$bz" bs=1 skip=$((0x202)) count=4 status=none)"
    [ "$magic_hdr" = "HdrS" ] || die "$bz: not a bzImage (no HdrS)"
    setup_sects="$(read_le "$bz" $((0x1f1)) 1)"
    [ "$setup_sects" -ne 0 ] || setup_sects=4
    payload_offset="$(read_le "$bz" $((0x248)) 4)"
    payload_length="$(read_le "$bz" $((0x24c)) 4)"
    start=$(( (setup_sects + 1) * 512 + payload_offset ))
    magic="$(od -An -t x1 -j "$start" -N 6 "$bz" | tr -d ' \n')"
    case "$magic" in
        1f8b*)         tool="gzip -dc" ;;
        fd377a585a00)  tool="xz -dc" ;;
        28b52ffd*)     tool="zstd -dcq" ;;
        02214c18*)     tool="lz4 -dc" ;;
        425a68*)       tool="bzip2 -dc" ;;
        5d0000*)       tool="xz -dc --format=lzma" ;;
        894c5a*)       tool="lzop -dc" ;;
        *) die "$bz: unknown payload magic $magic at offset $start" ;;
    esac
    log "$(basename "$bz"): payload at $start, $payload_length bytes -> ${tool%% *}"
    # The last 4 bytes are the appended uncompressed size (size_append).
    dd if="$bz" iflag=skip_bytes,count_bytes skip="$start" \
        count="$((payload_length - 4))" bs=1M status=none | $tool >"$out.tmp"
    [ "$(head -c 4 "$out.tmp" | od -An -t x1 | tr -d ' \n')" = "7f454c46" ] \
        || die "$bz: decompressed payload is not an ELF"
    mv "$out.tmp" "$out"
}

deb_path() { printf '%s/%s_%s_%s.deb' "$1" "$2" "${3//:/%3a}" "${4:-amd64}"; }

fetch_deb() {  # DIR PKG VERSION [ARCH]
    local f
    f="$(deb_path "$@")"
    if [ ! -s "$f" ]; then
        log "apt-get download $2=$3"
        (cd "$1" && apt-get download "$2=$3")
    fi
    [ -s "$f" ] || die "download of $2=$3 did not produce $f"
}
# ------------------------------------------------------------------------------

# dump_btf ELF OUT: the .BTF section's bytes (objcopy -O binary would skip
# it in a .ko, where .BTF is not SHF_ALLOC; --dump-section works for both).
dump_btf() {
    local tmp
    tmp="$(mktemp)"
    objcopy --dump-section .BTF="$2.tmp" "$1" "$tmp"
    rm -f "$tmp"
    [ "$(od -An -t x1 -N 2 "$2.tmp" | tr -d ' \n')" = "9feb" ] || die "$1: .BTF has no BTF magic"
    mv "$2.tmp" "$2"
}

build_one() {
    local tag="$1" image_pkg version
    eval "image_pkg=\$K${tag}_IMAGE_PKG version=\$K${tag}_VERSION"
    local debs="$WORK/debs" kdir="$WORK/btf-k$tag"
    mkdir -p "$debs" "$kdir"
    fetch_deb "$debs" "$image_pkg" "$version"
    local image_deb
    image_deb="$(deb_path "$debs" "$image_pkg" "$version")"

    if [ ! -d "$kdir/image/boot" ]; then
        rm -rf "$kdir/image.tmp" && mkdir -p "$kdir/image.tmp"
        dpkg-deb --fsys-tarfile "$image_deb" | tar -x -C "$kdir/image.tmp" \
            --wildcards ./boot "./lib/modules/*/kernel/$MODULE.ko*"
        mv "$kdir/image.tmp" "$kdir/image"
    fi
    local vmlinuz release
    vmlinuz="$(ls "$kdir"/image/boot/vmlinuz-*)"
    release="${vmlinuz##*/vmlinuz-}"

    local vmlinux="$WORK/k$tag/vmlinux-$release.from-bzimage"
    if [ ! -s "$vmlinux" ]; then
        vmlinux="$kdir/vmlinux-$release"
        [ -s "$vmlinux" ] || extract_vmlinux "$vmlinuz" "$vmlinux"
    fi

    local ko modname
    ko="$(ls "$kdir"/image/lib/modules/"$release"/kernel/"$MODULE".ko*)"
    modname="$(basename "$MODULE")"
    case "$ko" in
        *.ko.xz)  xz -dc "$ko" >"$kdir/$modname.ko" ;;
        *.ko.zst) zstd -dcq "$ko" >"$kdir/$modname.ko" ;;
        *.ko.gz)  gzip -dc "$ko" >"$kdir/$modname.ko" ;;
        *.ko)     cp "$ko" "$kdir/$modname.ko" ;;
        *) die "$ko: unknown module compression" ;;
    esac

    local vbtf="$kdir/vmlinux-$release.btf" mbtf="$OUT/$modname-$release.btf"
    dump_btf "$vmlinux" "$vbtf"
    dump_btf "$kdir/$modname.ko" "$mbtf"
    # The -dbg vmlinux (if build-orc-fixtures.sh fetched it) must agree.
    local dbg="$WORK/k$tag/dbg/usr/lib/debug/boot/vmlinux-$release" dbg_same="not checked"
    if [ -s "$dbg" ]; then
        dump_btf "$dbg" "$kdir/dbg.btf"
        if cmp -s "$vbtf" "$kdir/dbg.btf"; then dbg_same=yes; else dbg_same=NO; fi
        rm -f "$kdir/dbg.btf"
    fi

    gzip -9 -n -c "$vbtf" >"$OUT/vmlinux-$release.btf.gz"
    log "pahole golden files for $release"
    python3 "$HERE/pahole-golden.py" "$HERE/vmlinux.spec" "$vbtf" >"$OUT/pahole-$release.txt"
    python3 "$HERE/pahole-golden.py" "$HERE/module.spec" "$mbtf" "$vbtf" >"$OUT/pahole-$modname-$release.txt"

    {
        echo "== $release"
        echo "deb: $(basename "$image_deb") sha256 $(sha256sum "$image_deb" | cut -d' ' -f1)"
        echo "vmlinux .BTF: $(stat -c %s "$vbtf") bytes sha256 $(sha256sum "$vbtf" | cut -d' ' -f1)" \
             "(same as -dbg vmlinux: $dbg_same)"
        echo "vmlinux-$release.btf.gz: $(stat -c %s "$OUT/vmlinux-$release.btf.gz") bytes"
        echo "$modname.ko .BTF (${ko#"$kdir"/image}): $(stat -c %s "$mbtf") bytes" \
             "sha256 $(sha256sum "$mbtf" | cut -d' ' -f1)"
    } >>"$OUT/SOURCES.txt.tmp"
}

main() {
    need_tools
    mkdir -p "$WORK" "$OUT"
    rm -f "$OUT/SOURCES.txt.tmp"
    {
        echo "# Written by scripts/btf/extract-btf.sh; do not edit."
        echo "pahole: $(pahole --version)"
    } >"$OUT/SOURCES.txt.tmp"
    for k in $KERNELS; do
        build_one "$k"
    done
    mv "$OUT/SOURCES.txt.tmp" "$OUT/SOURCES.txt"
    log "done; outputs in $OUT:"
    ls -l "$OUT" >&2
}

main "$@"
