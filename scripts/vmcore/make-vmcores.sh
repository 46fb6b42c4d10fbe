#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Make real vmcores of Debian kernels taken while a livepatch transition is
# stalled, with the kernel's own per-task verdicts as ground truth.
#
# usage: scripts/vmcore/make-vmcores.sh [6.12|6.12-4level|6.12-la57|6.1|all]...
#        (default: all = 6.12-4level 6.12-la57 6.1; "6.12" = both 6.12 runs)
#
# Per run (see tests/fixtures/vmcore/README.md):
#   - builds lpstack_park.ko and lpstack_lp.ko (scripts/vmcore/modules/)
#     against the Debian linux-headers package, and the static parker;
#   - boots the Debian kernel under QEMU TCG (KASLR on) with a busybox
#     initramfs whose /init (scripts/vmcore/init.sh) parks threads in
#     park_here_{a,b,c}, loads the livepatch, waits, and reports per-task
#     patch_state on the guest's ttyS1;
#   - stops the VM over QMP and dumps its memory (ELF and kdump-*) with
#     scripts/vmcore/qmp.py; then scripts/vmcore/extract.py writes the
#     committed text fixtures.
# Big outputs: tests/fixtures/work/vmcore/<run>/ (git-ignored).
# Small text:  tests/fixtures/vmcore/<run>/ (committed).
#
# A run whose outputs are complete is skipped; FORCE=1 redoes it (that
# makes new dumps AND new ground truth: KASLR differs on every boot).
# Env: QEMU_TIMEOUT (seconds to wait for READY-FOR-DUMP, default 600),
#      MEM (guest MiB, default 512), FORCE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/vmcore"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
VWORK="$WORK/vmcore"
FIX="$ROOT/tests/fixtures/vmcore"
DEBS="$WORK/debs"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-600}"
MEM="${MEM:-512}"
FORCE="${FORCE:-0}"

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run name -> release, image package, version, headers package, -cpu
run_params() {
    case "$1" in
    6.12-4level)
        REL=6.12.117+deb12-amd64; IMG_PKG=linux-image-6.12.117+deb12-amd64-unsigned
        VER=6.12.117-1~deb12u1; HDR_PKG=linux-headers-6.12.117+deb12-amd64
        CPU=max,la57=off; DIR=$REL ;;
    6.12-la57)
        REL=6.12.117+deb12-amd64; IMG_PKG=linux-image-6.12.117+deb12-amd64-unsigned
        VER=6.12.117-1~deb12u1; HDR_PKG=linux-headers-6.12.117+deb12-amd64
        CPU=max; DIR=$REL-la57 ;;
    6.1)
        REL=6.1.0-57-amd64; IMG_PKG=linux-image-6.1.0-57-amd64-unsigned
        VER=6.1.192-3; HDR_PKG=linux-headers-6.1.0-57-amd64
        CPU=max,la57=off; DIR=$REL ;;
    *) die "unknown run $1" ;;
    esac
}

install_packages() {
    local pkgs=(qemu-system-x86 busybox-static cpio python3 xz-utils gcc make libc6-dev
                binutils linux-headers-6.12.117+deb12-amd64 linux-headers-6.1.0-57-amd64)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        # --no-install-recommends: linux-headers-* recommends the matching
        # linux-image, which we do not want installed on the host.
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# Extract vmlinuz, config and qemu_fw_cfg.ko from the image .deb (its
# System.map is a stub: the real one is in the -dbg package).
prepare_image() {
    local img="$VWORK/image-$REL"
    if [ -s "$img/vmlinuz" ] && [ -s "$img/config" ] && [ -s "$img/qemu_fw_cfg.ko" ]; then
        return
    fi
    local deb="$DEBS/${IMG_PKG}_${VER//:/%3a}_amd64.deb"
    mkdir -p "$DEBS"
    if [ ! -s "$deb" ]; then
        log "apt-get download $IMG_PKG=$VER"
        (cd "$DEBS" && apt-get download "$IMG_PKG=$VER") >&2
    fi
    rm -rf "$img.tmp" && mkdir -p "$img.tmp/x"
    dpkg-deb -x "$deb" "$img.tmp/x"
    cp "$img.tmp/x/boot/vmlinuz-$REL" "$img.tmp/vmlinuz"
    cp "$img.tmp/x/boot/config-$REL" "$img.tmp/config"
    local fw
    fw="$(find "$img.tmp/x/lib/modules/$REL" -name 'qemu_fw_cfg.ko*' | head -n1)"
    [ -n "$fw" ] || die "no qemu_fw_cfg.ko in $deb"
    case "$fw" in
    *.xz) xz -dc "$fw" >"$img.tmp/qemu_fw_cfg.ko" ;;
    *.zst) zstd -dc "$fw" >"$img.tmp/qemu_fw_cfg.ko" ;;
    *.gz) gzip -dc "$fw" >"$img.tmp/qemu_fw_cfg.ko" ;;
    *) cp "$fw" "$img.tmp/qemu_fw_cfg.ko" ;;
    esac
    rm -rf "$img.tmp/x" "$img"
    mv "$img.tmp" "$img"
}

config_facts() {  # -> stdout
    local cfg="$VWORK/image-$REL/config" k
    for k in LIVEPATCH HAVE_RELIABLE_STACKTRACE UNWINDER_ORC UNWINDER_FRAME_POINTER \
             RANDOMIZE_BASE RANDOMIZE_MEMORY X86_5LEVEL PGTABLE_LEVELS DYNAMIC_DEBUG \
             MODULE_SIG_FORCE MODULE_COMPRESS_XZ PREEMPT_DYNAMIC PREEMPT_VOLUNTARY \
             FW_CFG_SYSFS PROC_KCORE CRASH_DUMP; do
        grep -E "^(CONFIG_$k=|# CONFIG_$k is not set)" "$cfg" || echo "CONFIG_$k absent"
    done
}

build_modules() {
    local b="$VWORK/build-$REL" kdir="/usr/src/linux-headers-$REL" m
    [ -d "$kdir" ] || die "missing $kdir ($HDR_PKG not installed?)"
    mkdir -p "$b"
    for m in park lp; do
        rm -rf "$b/$m" && cp -r "$HERE/modules/$m" "$b/$m"
        make -s -C "$kdir" M="$b/$m" modules >&2
    done
    # The guest loads the debug-stripped modules (like Debian's own); the
    # same files are kept with the dumps and committed if small.
    strip --strip-debug -o "$b/lpstack_park.ko" "$b/park/lpstack_park.ko"
    strip --strip-debug -o "$b/lpstack_lp.ko" "$b/lp/lpstack_lp.ko"
}

build_parker() {
    local out="$VWORK/parker"
    if [ ! -x "$out" ] || [ "$HERE/parker.c" -nt "$out" ]; then
        mkdir -p "$VWORK"
        gcc -O2 -Wall -static -pthread -o "$out" "$HERE/parker.c"
    fi
}

build_initramfs() {  # OUT
    local dir="$VWORK/initramfs-$REL"
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,proc,sys,dev,tmp,lib/lpstack}
    cp /bin/busybox "$dir/bin/busybox"
    ln -s busybox "$dir/bin/sh"
    cp "$VWORK/parker" "$dir/bin/parker"
    cp "$HERE/init.sh" "$dir/init"
    chmod +x "$dir/init"
    cp "$VWORK/image-$REL/qemu_fw_cfg.ko" "$VWORK/build-$REL/lpstack_park.ko" \
       "$VWORK/build-$REL/lpstack_lp.ko" "$dir/lib/lpstack/"
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$1"
}

run_done() {
    local r="$VWORK/$DIR" f="$FIX/$DIR"
    [ -s "$r/vmcore.elf" ] && [ -s "$r/vmcore.kdump-zlib" ] && [ -s "$f/ground-truth.txt" ] \
        && [ -s "$f/vmcoreinfo.txt" ] && [ -s "$f/run-info.txt" ]
}

run_one() {
    run_params "$1"
    if [ "$FORCE" != 1 ] && run_done; then
        log "$1: complete in $VWORK/$DIR (FORCE=1 to redo)"
        return
    fi
    local r="$VWORK/$DIR" f="$FIX/$DIR" t0 t1 t2 t3
    log "$1: kernel $REL, -cpu $CPU -> $r"
    prepare_image
    grep -q '^CONFIG_LIVEPATCH=y' "$VWORK/image-$REL/config" \
        || die "$REL: CONFIG_LIVEPATCH is not y: no livepatch possible"
    build_modules
    build_parker
    rm -rf "$r" && mkdir -p "$r" "$f"
    # Only our own files: others may keep derived files here (never touched).
    rm -f "$f"/{ground-truth.txt,console-tail.txt,guest-report.txt,stacks.txt} \
          "$f"/{vmcoreinfo.txt,funcs.txt,run-info.txt,lpstack_park.ko,lpstack_lp.ko}
    build_initramfs "$r/initramfs.cpio.gz"
    cp "$VWORK/image-$REL/vmlinuz" "$r/vmlinuz"
    cp "$VWORK/build-$REL/lpstack_park.ko" "$VWORK/build-$REL/lpstack_lp.ko" "$r/"

    local sock="$r/qmp.sock"
    local qemu=(qemu-system-x86_64 -accel tcg -cpu "$CPU" -smp 2 -m "$MEM"
                -nographic -no-reboot -kernel "$r/vmlinuz" -initrd "$r/initramfs.cpio.gz"
                -append "console=ttyS0 loglevel=8 panic=-1"
                -device vmcoreinfo -qmp "unix:$sock,server=on,wait=off"
                -monitor none -serial "file:$r/console.log" -serial "file:$r/report.log")
    {
        echo "# lpstack vmcore run $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo "kernel: $REL ($IMG_PKG $VER)"
        echo "host: $(qemu-system-x86_64 --version | head -n1); $(nproc) host cores"
        echo "qemu: ${qemu[*]}"
        echo "modules: built with make -C /usr/src/linux-headers-$REL M=...; gcc: $(gcc-12 --version | head -n1)"
        echo "config:"
        config_facts | sed 's/^/  /'
    } >"$f/run-info.txt"

    t0=$(date +%s.%N)
    "${qemu[@]}" </dev/null >"$r/qemu.out" 2>&1 &
    local qpid=$!
    local waited=0
    until grep -q 'READY-FOR-DUMP' "$r/report.log" 2>/dev/null; do
        if ! kill -0 "$qpid" 2>/dev/null; then
            tail -n 40 "$r/console.log" >&2 || true
            die "$1: QEMU exited before READY-FOR-DUMP (see $r/console.log)"
        fi
        if [ "$waited" -ge "$QEMU_TIMEOUT" ]; then
            kill "$qpid" 2>/dev/null || true
            tail -n 40 "$r/console.log" >&2 || true
            die "$1: no READY-FOR-DUMP after ${QEMU_TIMEOUT}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    t1=$(date +%s.%N)
    log "$1: READY-FOR-DUMP after $(python3 -c "print(f'{$t1-$t0:.0f}')") s; dumping"
    python3 "$HERE/qmp.py" "$sock" "$r" | tee "$r/qmp.log" >&2
    t2=$(date +%s.%N)
    chmod a+r "$r"/vmcore.*  # QEMU creates them 0400
    wait "$qpid" || true
    rm -f "$sock"
    {
        echo "timing: boot to READY-FOR-DUMP $(python3 -c "print(f'{$t1-$t0:.1f}')") s; all dumps $(python3 -c "print(f'{$t2-$t1:.1f}')") s"
        echo "qmp.py:"
        sed 's/^/  /' "$r/qmp.log"
    } >>"$f/run-info.txt"
    python3 "$HERE/extract.py" "$r" "$f" "$REL"
    local ko
    for ko in lpstack_park.ko lpstack_lp.ko; do
        if [ "$(stat -c %s "$r/$ko")" -lt 204800 ]; then
            cp "$r/$ko" "$f/$ko"
        else
            echo "$ko: $(stat -c %s "$r/$ko") bytes, not committed" >>"$f/run-info.txt"
        fi
    done
    log "$1: done"
}

runs=()
[ $# -gt 0 ] || set -- all
for a in "$@"; do
    case "$a" in
    all) runs+=(6.12-4level 6.12-la57 6.1) ;;
    6.12) runs+=(6.12-4level 6.12-la57) ;;
    6.12-4level|6.12-la57|6.1) runs+=("$a") ;;
    *) die "usage: $0 [6.12|6.12-4level|6.12-la57|6.1|all]..." ;;
    esac
done
install_packages
for run in "${runs[@]}"; do
    run_one "$run"
done
