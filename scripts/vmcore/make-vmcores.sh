#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Make real vmcores of Debian kernels taken while a livepatch transition is
# stalled, with the kernel's own per-task verdicts as ground truth.
#
# usage: scripts/vmcore/make-vmcores.sh [RUN|GROUP]...
#   RUN:   6.12-4level | 6.12-la57 | 6.1           (the default scenario)
#          BASE:SCENARIO, SCENARIO one of stacked, replace, unpatch, kthread
#          (the livepatch scenarios, e.g. 6.12-4level:stacked; directory
#          <release>-<scenario>, e.g. 6.12.117+deb12-amd64-stacked; kthread
#          is made for 6.12-4level only, not part of a group)
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
    *) die "unknown scenario $SCENARIO (stacked, replace, unpatch, kthread)" ;;
    esac
}

build_initramfs() {  # OUT
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
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$1"
}

run_done() {
    local r="$VWORK/$DIR" f="$FIX/$DIR"
    [ -s "$r/vmcore.elf" ] && [ -s "$r/vmcore.kdump-zlib" ] && [ -s "$f/ground-truth.txt" ] \
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
    rm -rf "$r" && mkdir -p "$r" "$f"
    # Only our own files: others may keep derived files here (never touched).
    rm -f "$f"/{ground-truth.txt,console-tail.txt,guest-report.txt,stacks.txt} \
          "$f"/{vmcoreinfo.txt,funcs.txt,run-info.txt,lpstack_park.ko,lpstack_lp.ko}
    [ -z "$SCENARIO" ] || rm -f "$f"/lpstack_lp{1,2,3}.ko "$f"/lpstack_{kthread,lp_kthread}.ko
    build_initramfs "$r/initramfs.cpio.gz"
    cp "$VWORK/image-$REL/vmlinuz" "$r/vmlinuz"
    local ko
    for ko in "${KOS[@]}"; do cp "$KODIR/$ko" "$r/"; done
    [ -z "$FUNCS" ] || printf '%s' "$FUNCS" >"$r/funcs.txt"

    local sock="$r/qmp.sock"
    local qemu=(qemu-system-x86_64 -accel tcg -cpu "$CPU" -smp 2 -m "$MEM"
                -nographic -no-reboot -kernel "$r/vmlinuz" -initrd "$r/initramfs.cpio.gz"
                -append "console=ttyS0 loglevel=8 panic=-1"
                -device vmcoreinfo -qmp "unix:$sock,server=on,wait=off"
                -monitor none -serial "file:$r/console.log" -serial "file:$r/report.log")
    {
        echo "# lpstack vmcore run $1 ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo "kernel: $REL ($IMG_PKG $VER)"
        [ -z "$SCENARIO" ] || echo "scenario: $SCENARIO (/init: scripts/vmcore/$INIT; modules loaded: ${KOS[*]})"
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
        case "${a#*:}" in stacked|replace|unpatch|kthread) runs+=("$a") ;;
        *) die "unknown scenario in $a (stacked, replace, unpatch, kthread)" ;; esac ;;
    *) die "usage: $0 [6.12|6.12-4level|6.12-la57|6.1|all|klp|klp-6.12|klp-6.1|BASE:SCENARIO]..." ;;
    esac
done
install_packages
for run in "${runs[@]}"; do
    run_one "$run"
done
