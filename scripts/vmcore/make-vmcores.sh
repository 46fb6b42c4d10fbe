#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Make real vmcores of Debian kernels taken while a livepatch transition is
# stalled, with the kernel's own per-task verdicts as ground truth.
#
# usage: scripts/vmcore/make-vmcores.sh [RUN|GROUP]...
#   RUN:   6.12-4level | 6.12-la57 | 6.1           (the default scenario)
#          BASE:SCENARIO, SCENARIO one of stacked, replace, unpatch, kthread,
#          kdump, kdump-irq, kdump-nmi (the livepatch scenarios, e.g.
#          6.12-4level:stacked; directory <release>-<scenario>, e.g.
#          6.12.117+deb12-amd64-stacked; kthread and the kdump ones are made
#          for 6.12-4level only, not part of a group)
#   GROUP: all = 6.12-4level 6.12-la57 6.1 (the default when no argument);
#          6.12 = 6.12-4level 6.12-la57;
#          klp = klp-6.12 klp-6.1; klp-6.12 = 6.12-4level:{stacked,replace,unpatch};
#          klp-6.1 = 6.1:{stacked,replace,unpatch}
#
# Per run (see tests/fixtures/vmcore/README.md):
#   - builds lpstack_park.ko and lpstack_lp.ko (scripts/vmcore/modules/)
#     against the Debian linux-headers package, and the static parker;
#   - boots the Debian kernel under QEMU TCG (KASLR on) with a busybox
#     initramfs whose /init (scripts/vmcore/init.sh) parks threads in
#     park_here_{a,b,c}, loads the livepatch, waits, and reports per-task
#     patch_state on the guest's ttyS1;
#   - a livepatch scenario (stacked, replace, unpatch) instead builds
#     lpstack_park with an export (modules/park_wait) and the livepatches
#     lpstack_lp1/2/3, and boots with scripts/vmcore/init-klp.sh as /init:
#     lpstack_lp1 is applied first, then the parkers start, then a second
#     transition (lpstack_lp2 on top, lpstack_lp3 atomic replace, or
#     lpstack_lp1 disabled) stalls on them;
#   - the kthread scenario (same /init) loads lpstack_kthread (kernel
#     threads whose main function is lpstack_kthread_loop) instead of
#     lpstack_lp1, then lpstack_lp_kthread, which patches that function and
#     park_here_a; the dump waits until ~22 s after the transition started,
#     past the fake signals (15 retries);
#   - the kdump scenario (same /init) is a real kdump: the guest boots with
#     crashkernel=, loads a capture kernel with Debian's kexec -p, starts
#     lpstack_spin (a kthread spinning in lpspin_work on CPU 1) and the
#     parkers, loads lpstack_lp_spin (patches lpspin_work and park_here_a),
#     records the ground truth and panics (sysrq c); the capture kernel
#     (/init: scripts/vmcore/init-kdump-capture.sh) saves /proc/vmcore with
#     upstream makedumpfile (-l, -c, -z; -d 31) onto a raw virtio disk and
#     powers off; scripts/vmcore/kdump-disk.py reads the files back;
#   - kdump-irq: the same, but the panic is in hardirq context on the
#     spinner's CPU: lpstack_irqpanic (modules/irqpanic) arms a pinned hard
#     hrtimer there whose callback panics when it interrupted lpstack_spin in
#     kernel mode; kdump-nmi: the spinner runs on CPU 0, the guest sets
#     kernel.unknown_nmi_panic=1 and prints @@NMI_REQUEST, and this script
#     sends QMP inject-nmi (qmp.py --inject-nmi): CPU 0 panics in the NMI
#     handler ("NMI: Not continuing"). The unstripped modules of a kdump run
#     are kept in its work directory (debug/) for drgn (kdump-check.sh);
#   - otherwise stops the VM over QMP and dumps its memory (ELF and kdump-*)
#     with scripts/vmcore/qmp.py; then scripts/vmcore/extract.py writes the
#     committed text fixtures.
# Big outputs: tests/fixtures/work/vmcore/<run>/ (git-ignored).
# Small text:  tests/fixtures/vmcore/<run>/ (committed).
#
# A run whose outputs are complete is skipped; FORCE=1 redoes it (that
# makes new dumps AND new ground truth: KASLR differs on every boot).
# Env: QEMU_TIMEOUT (seconds to wait for READY-FOR-DUMP, or in the kdump
#      scenario for the capture kernel's poweroff; default 600, kdump 1200),
#      MEM (guest MiB, default 512; kdump 1024), CRASHKERNEL (kdump: the
#      crashkernel= value, default 256M), MAKEDUMPFILE_TARBALL (kdump:
#      upstream makedumpfile source, default ../shared/tools/
#      makedumpfile-upstream.tar.gz next to the repository), FORCE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/vmcore"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
VWORK="$WORK/vmcore"
FIX="$ROOT/tests/fixtures/vmcore"
DEBS="$WORK/debs"
QEMU_TIMEOUT_SET="${QEMU_TIMEOUT:-}"
MEM_SET="${MEM:-}"
CRASHKERNEL="${CRASHKERNEL:-256M}"
MAKEDUMPFILE_TARBALL="${MAKEDUMPFILE_TARBALL:-$(cd "$ROOT/.." && pwd)/shared/tools/makedumpfile-upstream.tar.gz}"
KDTOOLS="$VWORK/kdump-tools"
FORCE="${FORCE:-0}"

# shellcheck source=../lib/debian-guest.sh
. "$ROOT/scripts/lib/debian-guest.sh"

# SCENARIO (empty = the default one) -> INIT (the guest's /init), KOS (the
# modules the guest loads, file names), KODIR (where they were built),
# FUNCS (funcs.txt of the patch in transition; empty: extract.py's default).
scenario_params() {
    case "$SCENARIO" in
    "")
        INIT=init.sh; KODIR="$VWORK/build-$REL"; FUNCS=""
        KOS=(lpstack_park.ko lpstack_lp.ko) ;;
    stacked)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_lp1.ko lpstack_lp2.ko)
        FUNCS=$'lpstack_park:park_here_a\nlpstack_park:park_here_c\ncmdline_proc_show\nlpstack_absent:absent_fn\n' ;;
    replace)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_lp1.ko lpstack_lp3.ko)
        FUNCS=$'lpstack_park:park_here_c\n' ;;
    unpatch)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_lp1.ko)
        FUNCS=$'lpstack_park:park_here_a\nlpstack_park:park_here_b\n' ;;
    kthread)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_kthread.ko lpstack_lp_kthread.ko)
        FUNCS=$'lpstack_kthread:lpstack_kthread_loop\nlpstack_park:park_here_a\ncmdline_proc_show\n' ;;
    kdump|kdump-nmi)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_spin.ko lpstack_lp_spin.ko)
        FUNCS=$'lpstack_spin:lpspin_work\nlpstack_park:park_here_a\ncmdline_proc_show\n' ;;
    kdump-irq)
        INIT=init-klp.sh; KODIR="$VWORK/build-$REL/klp"
        KOS=(lpstack_park.ko lpstack_spin.ko lpstack_lp_spin.ko lpstack_irqpanic.ko)
        FUNCS=$'lpstack_spin:lpspin_work\nlpstack_park:park_here_a\ncmdline_proc_show\n' ;;
    *) die "unknown scenario $SCENARIO (stacked, replace, unpatch, kthread, kdump, kdump-irq, kdump-nmi)" ;;
    esac
    if is_kdump; then
        MEM="${MEM_SET:-1024}"; QEMU_TIMEOUT="${QEMU_TIMEOUT_SET:-1200}"
    else
        MEM="${MEM_SET:-512}"; QEMU_TIMEOUT="${QEMU_TIMEOUT_SET:-600}"
    fi
}

# The kdump scenarios: kdump (sysrq c from a task), kdump-irq (panic in a
# timer interrupt), kdump-nmi (panic in an NMI injected over QMP).
is_kdump() { case "$SCENARIO" in kdump|kdump-irq|kdump-nmi) return 0 ;; esac; return 1; }

# --- the kdump scenario's tools -------------------------------------------

KEXEC_PKGS=(kexec-tools libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1
            libxenforeignmemory1 libxengnttab1 libxentoolcore1 libxentoollog1)

# copy_with_libs ROOT LIBDIR BIN...: BIN into ROOT at the same path, and
# every shared library ldd names (searched in LIBDIR first) into ROOT's
# /lib/x86_64-linux-gnu, the dynamic loader to /lib64.
copy_with_libs() {
    local root="$1" libdir="$2" bin lib
    shift 2
    mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64"
    for bin in "$@"; do
        for lib in $(LD_LIBRARY_PATH="$libdir" ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/lib64\//{print $1}'); do
            case "$lib" in
            /lib64/*) cp -L "$lib" "$root/lib64/" ;;
            *) cp -L "$lib" "$root/lib/x86_64-linux-gnu/" ;;
            esac
        done
        if LD_LIBRARY_PATH="$libdir" ldd "$bin" | grep -q 'not found'; then
            die "$bin: a library is missing: $(LD_LIBRARY_PATH="$libdir" ldd "$bin" | grep 'not found')"
        fi
    done
}

# Upstream makedumpfile (Debian bookworm's 1.7.2 drops task pages of 6.12
# with -d 31), Debian's kexec-tools and the Xen libraries its kexec links,
# virtio_blk.ko from the image .deb.
prepare_kdump() {
    local pkgs=(libelf-dev libdw-dev liblzo2-dev libsnappy-dev libzstd-dev libbz2-dev zlib1g-dev)
    local missing=() p deb
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
    mkdir -p "$KDTOOLS"
    if [ ! -x "$KDTOOLS/makedumpfile/makedumpfile" ]; then
        [ -s "$MAKEDUMPFILE_TARBALL" ] || die "no $MAKEDUMPFILE_TARBALL"
        log "building makedumpfile from $MAKEDUMPFILE_TARBALL"
        rm -rf "$KDTOOLS/makedumpfile"
        tar -xzf "$MAKEDUMPFILE_TARBALL" -C "$KDTOOLS"
        [ -d "$KDTOOLS/makedumpfile" ] || die "$MAKEDUMPFILE_TARBALL has no makedumpfile/"
        make -s -C "$KDTOOLS/makedumpfile" LINKTYPE=dynamic USELZO=on USESNAPPY=on USEZSTD=on >&2
    fi
    if [ ! -x "$KDTOOLS/kexec-root/sbin/kexec" ]; then
        mkdir -p "$DEBS"
        for p in "${KEXEC_PKGS[@]}"; do
            ls "$DEBS/${p}"_*.deb >/dev/null 2>&1 || (cd "$DEBS" && apt-get download "$p") >&2
        done
        rm -rf "$KDTOOLS/kexec-root"
        for p in "${KEXEC_PKGS[@]}"; do
            deb=$(ls "$DEBS/${p}"_*.deb | sort -V | tail -n1)
            dpkg-deb -x "$deb" "$KDTOOLS/kexec-root"
        done
    fi
    local img="$VWORK/image-$REL"
    if [ ! -s "$img/virtio_blk.ko" ]; then
        local ideb="$DEBS/${IMG_PKG}_${VER//:/%3a}_amd64.deb" tmp="$VWORK/vblk.tmp.$$" ko
        rm -rf "$tmp" && mkdir -p "$tmp"
        dpkg-deb --fsys-tarfile "$ideb" | tar -x -C "$tmp" --wildcards './lib/modules/*/virtio_blk.ko*'
        ko="$(find "$tmp" -name 'virtio_blk.ko*' | head -n1)"
        [ -n "$ko" ] || die "no virtio_blk.ko in $ideb"
        case "$ko" in
        *.xz) xz -dc "$ko" >"$tmp/virtio_blk.ko.new" ;;
        *.zst) zstd -dc "$ko" >"$tmp/virtio_blk.ko.new" ;;
        *) cp "$ko" "$tmp/virtio_blk.ko.new" ;;
        esac
        mv "$tmp/virtio_blk.ko.new" "$img/virtio_blk.ko"
        rm -rf "$tmp"
    fi
}

# The capture kernel's initramfs: busybox, makedumpfile and its libraries,
# virtio_blk.ko, /init = init-kdump-capture.sh.
build_capture_initramfs() {  # OUT
    local dir="$VWORK/initramfs-$REL-capture"
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,usr/sbin,proc,sys,dev,tmp,lib/lpstack}
    cp /bin/busybox "$dir/bin/busybox"
    ln -s busybox "$dir/bin/sh"
    cp "$KDTOOLS/makedumpfile/makedumpfile" "$dir/usr/sbin/makedumpfile"
    copy_with_libs "$dir" "" "$KDTOOLS/makedumpfile/makedumpfile"
    cp "$HERE/init-kdump-capture.sh" "$dir/init"
    chmod +x "$dir/init"
    cp "$VWORK/image-$REL/virtio_blk.ko" "$dir/lib/lpstack/"
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$1"
}

build_initramfs() {  # OUT [CAPTURE_INITRAMFS (kdump)]
    local dir="$VWORK/initramfs-$REL" ko
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,proc,sys,dev,tmp,lib/lpstack}
    cp /bin/busybox "$dir/bin/busybox"
    ln -s busybox "$dir/bin/sh"
    cp "$VWORK/parker" "$dir/bin/parker"
    cp "$HERE/$INIT" "$dir/init"
    chmod +x "$dir/init"
    cp "$VWORK/image-$REL/qemu_fw_cfg.ko" "$dir/lib/lpstack/"
    for ko in "${KOS[@]}"; do cp "$KODIR/$ko" "$dir/lib/lpstack/"; done
    [ -z "$SCENARIO" ] || echo "$SCENARIO" >"$dir/lib/lpstack/scenario"
    if is_kdump; then
        # kexec and what it loads: the same vmlinuz, the capture initramfs.
        mkdir -p "$dir/sbin" "$dir/boot"
        cp "$KDTOOLS/kexec-root/sbin/kexec" "$dir/sbin/kexec"
        copy_with_libs "$dir" "$KDTOOLS/kexec-root/usr/lib/x86_64-linux-gnu" "$dir/sbin/kexec"
        cp "$VWORK/image-$REL/vmlinuz" "$dir/boot/vmlinuz"
        cp "$2" "$dir/boot/capture.cpio.gz"
    fi
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$1"
}

run_done() {
    local r="$VWORK/$DIR" f="$FIX/$DIR"
    if is_kdump; then
        [ -s "$r/vmcore.kdump-lzo" ] || return 1
    else
        [ -s "$r/vmcore.elf" ] || return 1
    fi
    [ -s "$r/vmcore.kdump-zlib" ] && [ -s "$f/ground-truth.txt" ] \
        && [ -s "$f/vmcoreinfo.txt" ] && [ -s "$f/run-info.txt" ]
}

run_one() {
    SCENARIO=""
    case "$1" in *:*) SCENARIO="${1#*:}" ;; esac
    run_params "${1%%:*}"
    scenario_params
    [ -z "$SCENARIO" ] || DIR="$DIR-$SCENARIO"
    if [ "$FORCE" != 1 ] && run_done; then
        log "$1: complete in $VWORK/$DIR (FORCE=1 to redo)"
        return
    fi
    local r="$VWORK/$DIR" f="$FIX/$DIR" t0 t1 t2 t3
    log "$1: kernel $REL, -cpu $CPU${SCENARIO:+, scenario $SCENARIO} -> $r"
    prepare_image
    grep -q '^CONFIG_LIVEPATCH=y' "$VWORK/image-$REL/config" \
        || die "$REL: CONFIG_LIVEPATCH is not y: no livepatch possible"
    if [ -z "$SCENARIO" ]; then build_modules; else build_klp_modules; fi
    build_parker
    ! is_kdump || prepare_kdump
    rm -rf "$r" && mkdir -p "$r" "$f"
    # Only our own files: others may keep derived files here (never touched).
    rm -f "$f"/{ground-truth.txt,console-tail.txt,guest-report.txt,stacks.txt} \
          "$f"/{vmcoreinfo.txt,funcs.txt,run-info.txt,lpstack_park.ko,lpstack_lp.ko}
    [ -z "$SCENARIO" ] || rm -f "$f"/lpstack_lp{1,2,3}.ko "$f"/lpstack_{kthread,lp_kthread,spin,lp_spin}.ko
    ! is_kdump || rm -f "$f"/{capture-console.txt,vmcore-dmesg.txt,kernel-panic-trace.txt,lpstack_irqpanic.ko}
    if is_kdump; then
        build_capture_initramfs "$r/capture.cpio.gz"
        build_initramfs "$r/initramfs.cpio.gz" "$r/capture.cpio.gz"
        # The capture kernel writes its files here (raw, see
        # init-kdump-capture.sh); sparse, 2 GiB.
        truncate -s 2G "$r/dumpdisk.img"
    else
        build_initramfs "$r/initramfs.cpio.gz"
    fi
    cp "$VWORK/image-$REL/vmlinuz" "$r/vmlinuz"
    local ko
    for ko in "${KOS[@]}"; do cp "$KODIR/$ko" "$r/"; done
    if is_kdump; then
        # The unstripped builds of the loaded modules, for drgn
        # (kdump-check.sh): the shared build directory is rebuilt by every
        # run, and a build's ID depends on the path it was built under.
        mkdir -p "$r/debug"
        for ko in "${KOS[@]}"; do
            local sub="${ko#lpstack_}"; sub="${sub%.ko}"
            [ "$sub" != park ] || sub=park_wait
            cp "$KODIR/$sub/$ko" "$r/debug/$ko"
        done
    fi
    [ -z "$FUNCS" ] || printf '%s' "$FUNCS" >"$r/funcs.txt"

    local sock="$r/qmp.sock" append="console=ttyS0 loglevel=8 panic=-1" extra=()
    if is_kdump; then
        append+=" crashkernel=$CRASHKERNEL"
        extra=(-drive "file=$r/dumpdisk.img,if=virtio,format=raw")
    fi
    local qemu=(qemu-system-x86_64 -accel tcg -cpu "$CPU" -smp 2 -m "$MEM"
                -nographic -no-reboot -kernel "$r/vmlinuz" -initrd "$r/initramfs.cpio.gz"
                -append "$append" "${extra[@]}"
                -device vmcoreinfo -qmp "unix:$sock,server=on,wait=off"
                -monitor none -serial "file:$r/console.log" -serial "file:$r/report.log")
    {
        echo "# lpstack vmcore run $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo "kernel: $REL ($IMG_PKG $VER)"
        [ -z "$SCENARIO" ] || echo "scenario: $SCENARIO (/init: scripts/vmcore/$INIT; modules loaded: ${KOS[*]})"
        echo "host: $(qemu-system-x86_64 --version | head -n1); $(nproc) host cores"
        echo "qemu: ${qemu[*]}"
        echo "modules: built with make -C /usr/src/linux-headers-$REL M=...; gcc: $(gcc-12 --version | head -n1)"
        if is_kdump; then
            echo "makedumpfile: $("$KDTOOLS/makedumpfile/makedumpfile" -v 2>&1 | head -n1 | sed 's/^makedumpfile: //'), built from $(basename "$MAKEDUMPFILE_TARBALL") (sha256 $(sha256sum "$MAKEDUMPFILE_TARBALL" | cut -c1-64)) with make LINKTYPE=dynamic USELZO=on USESNAPPY=on USEZSTD=on"
            echo "kexec: Debian $(cd "$DEBS" && ls kexec-tools_*.deb | sort -V | tail -n1 | sed 's/%3a/:/')"
            echo "capture initramfs: $(stat -c %s "$r/capture.cpio.gz") bytes; first kernel's initramfs: $(stat -c %s "$r/initramfs.cpio.gz") bytes"
        fi
        echo "config:"
        config_facts | sed 's/^/  /'
    } >"$f/run-info.txt"

    t0=$(date +%s.%N)
    "${qemu[@]}" </dev/null >"$r/qemu.out" 2>&1 &
    local qpid=$!
    local waited=0
    if is_kdump; then
        kdump_wait_and_extract "$1" "$qpid" "$r" "$f" "$t0"
        return
    fi
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
    python3 "$HERE/extract.py" "$r" "$f" "$REL" ${FUNCS:+"$r/funcs.txt"}
    for ko in "${KOS[@]}"; do
        if [ "$(stat -c %s "$r/$ko")" -lt 204800 ]; then
            cp "$r/$ko" "$f/$ko"
        else
            echo "$ko: $(stat -c %s "$r/$ko") bytes, not committed" >>"$f/run-info.txt"
        fi
    done
    log "$1: done"
}

# The kdump scenario after QEMU started: wait for the panic and for the
# capture kernel's poweroff, read the files back from the disk, write the
# fixtures.
kdump_wait_and_extract() {  # RUNNAME QEMU_PID RUNDIR FIXDIR T0
    local name="$1" qpid="$2" r="$3" f="$4" t0="$5" t1="" waited=0 t2 ko nmi=""
    while kill -0 "$qpid" 2>/dev/null; do
        # kdump-nmi: the guest asks for the NMI (it set unknown_nmi_panic);
        # QEMU's inject-nmi raises LINT1 of every CPU, which Linux leaves
        # unmasked (NMI) on CPU 0 only.
        if [ "$SCENARIO" = kdump-nmi ] && [ -z "$nmi" ] && grep -q '@@NMI_REQUEST' "$r/report.log" 2>/dev/null; then
            nmi=1
            log "$name: the guest asks for an NMI; QMP inject-nmi"
            python3 "$HERE/qmp.py" "$r/qmp.sock" --inject-nmi | tee "$r/qmp.log" >&2 \
                || die "$name: QMP inject-nmi failed"
        fi
        if [ -z "$t1" ] && grep -q '@@PANIC ' "$r/report.log" 2>/dev/null; then
            t1=$(date +%s.%N)
            log "$name: panic after $(python3 -c "print(f'{$t1-$t0:.0f}')") s; waiting for the capture kernel"
        fi
        if [ "$waited" -ge "$QEMU_TIMEOUT" ]; then
            kill "$qpid" 2>/dev/null || true
            tail -n 40 "$r/console.log" >&2 || true
            die "$name: QEMU still running after ${QEMU_TIMEOUT}s (see $r/console.log, $r/report.log)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    wait "$qpid" || true
    rm -f "$r/qmp.sock"
    t2=$(date +%s.%N)
    [ -n "$t1" ] || { tail -n 40 "$r/console.log" >&2; die "$name: QEMU exited without a panic"; }
    grep -q '@@CAPTURE_POWEROFF' "$r/report.log" \
        || { tail -n 40 "$r/console.log" >&2; die "$name: the capture kernel did not finish (see $r/console.log)"; }
    python3 "$HERE/kdump-disk.py" "$r/dumpdisk.img" "$r" | tee "$r/kdump-disk.log" >&2
    {
        echo "timing: boot to panic $(python3 -c "print(f'{$t1-$t0:.1f}')") s; panic to capture kernel poweroff $(python3 -c "print(f'{$t2-$t1:.1f}')") s"
        if [ -s "$r/qmp.log" ]; then
            echo "qmp.py --inject-nmi (sent when report.log showed @@NMI_REQUEST):"
            sed 's/^/  /' "$r/qmp.log"
        fi
        echo "dump disk (raw, virtio): files read back by kdump-disk.py:"
        sed 's/^/  /' "$r/kdump-disk.log"
    } >>"$f/run-info.txt"
    rm -f "$r/dumpdisk.img"
    python3 "$HERE/extract.py" "$r" "$f" "$REL" "$r/funcs.txt"
    for ko in "${KOS[@]}"; do
        if [ "$(stat -c %s "$r/$ko")" -lt 204800 ]; then
            cp "$r/$ko" "$f/$ko"
        else
            echo "$ko: $(stat -c %s "$r/$ko") bytes, not committed" >>"$f/run-info.txt"
        fi
    done
    log "$name: done"
}

runs=()
[ $# -gt 0 ] || set -- all
for a in "$@"; do
    case "$a" in
    all) runs+=(6.12-4level 6.12-la57 6.1) ;;
    6.12) runs+=(6.12-4level 6.12-la57) ;;
    6.12-4level|6.12-la57|6.1) runs+=("$a") ;;
    klp) runs+=(6.12-4level:{stacked,replace,unpatch} 6.1:{stacked,replace,unpatch}) ;;
    klp-6.12) runs+=(6.12-4level:{stacked,replace,unpatch}) ;;
    klp-6.1) runs+=(6.1:{stacked,replace,unpatch}) ;;
    6.12-4level:*|6.12-la57:*|6.1:*)
        case "${a#*:}" in stacked|replace|unpatch|kthread|kdump|kdump-irq|kdump-nmi) runs+=("$a") ;;
        *) die "unknown scenario in $a (stacked, replace, unpatch, kthread, kdump, kdump-irq, kdump-nmi)" ;; esac ;;
    *) die "usage: $0 [6.12|6.12-4level|6.12-la57|6.1|all|klp|klp-6.12|klp-6.1|BASE:SCENARIO]..." ;;
    esac
done
install_packages
for run in "${runs[@]}"; do
    run_one "$run"
done
