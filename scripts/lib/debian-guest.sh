# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Shared by the QEMU guest scripts (scripts/vmcore/make-vmcores.sh,
# scripts/live/run-live-guest.sh): the Debian kernels, their packages and
# the test modules and workload built for them. Source it after setting
# ROOT (repository root), WORK, VWORK (build outputs) and DEBS (.deb cache).
# run_params RUN sets REL IMG_PKG VER HDR_PKG CPU DIR.

VMCORE_SRC="$ROOT/scripts/vmcore"

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
        rm -rf "$b/$m" && cp -r "$VMCORE_SRC/modules/$m" "$b/$m"
        make -s -C "$kdir" M="$b/$m" modules >&2
    done
    # The guest loads the debug-stripped modules (like Debian's own); the
    # same files are kept with the dumps and committed if small.
    strip --strip-debug -o "$b/lpstack_park.ko" "$b/park/lpstack_park.ko"
    strip --strip-debug -o "$b/lpstack_lp.ko" "$b/lp/lpstack_lp.ko"
}

# The livepatch scenarios' modules (scripts/vmcore/make-vmcores.sh
# 6.12:stacked etc.): lpstack_park with the export lpstack_park_wait
# (modules/park_wait, which includes modules/park/lpstack_park.c), the
# livepatches lpstack_lp1 (needs that export), lpstack_lp2, lpstack_lp3,
# for the kthread scenario lpstack_kthread (modules/kthread: kernel
# threads whose main function is lpstack_kthread_loop) and its livepatch
# lpstack_lp_kthread (modules/lp_kthread), and for the kdump scenario
# lpstack_spin (modules/spin: a kernel thread spinning in lpspin_work) and
# its livepatch lpstack_lp_spin (modules/lp_spin).
# Outputs, debug-stripped: $VWORK/build-$REL/klp/<name>.ko (the park one is
# klp/lpstack_park.ko: same module name as the default one, other build).
build_klp_modules() {
    local b="$VWORK/build-$REL" kdir="/usr/src/linux-headers-$REL" m
    [ -d "$kdir" ] || die "missing $kdir ($HDR_PKG not installed?)"
    mkdir -p "$b/klp"
    for m in park park_wait lp1 lp2 lp3 kthread lp_kthread spin lp_spin irqpanic; do
        rm -rf "$b/klp/$m" && cp -r "$VMCORE_SRC/modules/$m" "$b/klp/$m"
    done
    make -s -C "$kdir" M="$b/klp/park_wait" modules >&2
    # lpstack_lp1 links against lpstack_park_wait: modpost reads its CRC here.
    make -s -C "$kdir" M="$b/klp/lp1" KBUILD_EXTRA_SYMBOLS="$b/klp/park_wait/Module.symvers" modules >&2
    for m in lp2 lp3 kthread lp_kthread spin lp_spin irqpanic; do
        make -s -C "$kdir" M="$b/klp/$m" modules >&2
    done
    strip --strip-debug -o "$b/klp/lpstack_park.ko" "$b/klp/park_wait/lpstack_park.ko"
    for m in lp1 lp2 lp3 kthread lp_kthread spin lp_spin irqpanic; do
        strip --strip-debug -o "$b/klp/lpstack_$m.ko" "$b/klp/$m/lpstack_$m.ko"
    done
}

build_parker() {
    local out="$VWORK/parker"
    if [ ! -x "$out" ] || [ "$VMCORE_SRC/parker.c" -nt "$out" ]; then
        mkdir -p "$VWORK"
        gcc -O2 -Wall -static -pthread -o "$out" "$VMCORE_SRC/parker.c"
    fi
}

