#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# End-to-end test of `lpstack check live` inside a real kernel: boots the
# Debian 6.12 guest of the vmcore fixtures (scripts/lib/debian-guest.sh)
# with lpstack (release build, its shared libraries copied by ldd) in the
# initramfs. The guest's /init (scripts/live/init.sh) parks a workload,
# times whole-system checks, runs `lpstack check live --format json`, loads
# the livepatch lpstack_lp (park_here_a, cmdline_proc_show) with dynamic
# debug on for kernel/livepatch/transition.c, and records the kernel's
# messages and the refusals (not root, kptr_restrict, no BTF, no kcore,
# lockdown).
#
# usage: scripts/live/run-live-guest.sh [stacked]
#   stacked: instead of the default run, the guest applies lpstack_lp1,
#   parks the workload in its replacements, loads lpstack_lp2 on top and,
#   while lpstack_lp2's transition is stalled, runs `lpstack check live
#   --format json` three times: with no set (the transition from the
#   kernel's memory), with --patch lpstack_lp2.ko and with --set funcs.txt;
#   then records every task's patch_state and the kernel's retries (the
#   modules and steps of the vmcore "stacked" scenario,
#   tests/fixtures/vmcore/README.md). No calibration, timings or refusals.
# Env: MANY (extra parked threads, default 3000; 0 for stacked), MEM (MiB,
#      default 1024), ACCEL (tcg, the default, or kvm), QEMU_TIMEOUT,
#      SCENARIO (same as the argument).
# Output: target/live-guest/ (big, ignored); the committed record is
# tests/fixtures/live/<release>[-stacked]/ (guest-report.txt.gz,
# run-info.txt, funcs.txt), checked by tests/live_guest.rs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/live"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
DEBS="$WORK/debs"
# Our own outputs; the shared cache ($WORK) is only read.
VWORK="$ROOT/target/live-guest"
SCENARIO="${1:-${SCENARIO:-}}"
case "$SCENARIO" in
"") MANY="${MANY:-3000}" ;;
stacked) MANY="${MANY:-0}" ;;
*) printf 'error: unknown scenario %s (stacked)\n' "$SCENARIO" >&2; exit 1 ;;
esac
MEM="${MEM:-1024}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-900}"

# shellcheck source=../lib/debian-guest.sh
. "$ROOT/scripts/lib/debian-guest.sh"

run_params 6.12-4level
FIX="$ROOT/tests/fixtures/live/$REL${SCENARIO:+-$SCENARIO}"
mkdir -p "$VWORK" "$FIX"
# A kernel image already extracted by make-vmcores.sh is reused.
if [ ! -e "$VWORK/image-$REL" ] && [ -s "$WORK/vmcore/image-$REL/vmlinuz" ]; then
    ln -s "$WORK/vmcore/image-$REL" "$VWORK/image-$REL"
fi
install_packages
prepare_image
if [ -z "$SCENARIO" ]; then
    build_modules
    KODIR="$VWORK/build-$REL"; KOS=(lpstack_park.ko lpstack_lp.ko)
    FUNCS=$'lpstack_park:park_here_a\ncmdline_proc_show\n'
else
    build_klp_modules
    KODIR="$VWORK/build-$REL/klp"; KOS=(lpstack_park.ko lpstack_lp1.ko lpstack_lp2.ko)
    # lpstack_lp2's functions, as in the vmcore stacked scenario.
    FUNCS=$'lpstack_park:park_here_a\nlpstack_park:park_here_c\ncmdline_proc_show\nlpstack_absent:absent_fn\n'
fi
build_parker

log "cargo build --release --bin lpstack"
(cd "$ROOT" && cargo build --release --locked --bin lpstack >&2)
BIN="$ROOT/target/release/lpstack"

# TCG by default, as the vmcore fixtures: nested KVM on the CI host fails
# in the kernel's decompressor ("KVM internal error ... emulation failure").
ACCEL="${ACCEL:-tcg}"
if [ "$ACCEL" = kvm ]; then
    # -arch-capabilities: nested KVM here refuses that MSR.
    QCPU=host,-arch-capabilities
else
    QCPU=$CPU
fi

r="$VWORK/run${SCENARIO:+-$SCENARIO}"
rm -rf "$r" && mkdir -p "$r"
dir="$VWORK/initramfs-live${SCENARIO:+-$SCENARIO}"
rm -rf "$dir"
mkdir -p "$dir"/{bin,proc,sys,dev,tmp,etc,lib/lpstack}
cp /bin/busybox "$dir/bin/busybox"
ln -s busybox "$dir/bin/sh"
cp "$VWORK/parker" "$dir/bin/parker"
cp "$BIN" "$dir/bin/lpstack"
# The libraries lpstack needs, at the paths ldd names.
ldd "$BIN" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
done
cp "$HERE/init.sh" "$dir/init"
chmod +x "$dir/init"
for ko in "${KOS[@]}"; do cp "$KODIR/$ko" "$dir/lib/lpstack/"; done
printf '%s' "$FUNCS" >"$dir/lib/lpstack/funcs.txt"
echo "$MANY" >"$dir/lib/lpstack/many"
[ -z "$SCENARIO" ] || echo "$SCENARIO" >"$dir/lib/lpstack/scenario"
# Calibration: a committed vmcore check, timed in the guest and on the host.
CAL="$ROOT/tests/fixtures/vmcore/$REL/vmcore.trimmed.kdump"
CALF="$ROOT/tests/fixtures/vmcore/$REL/funcs.txt"
if [ -z "$SCENARIO" ]; then
    cp "$CAL" "$dir/lib/lpstack/cal.kdump"
    cp "$CALF" "$dir/lib/lpstack/cal-funcs.txt"
fi
(cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 -n >"$r/initramfs.cpio.gz"

qemu=(qemu-system-x86_64 -accel "$ACCEL" -cpu "$QCPU" -smp 2 -m "$MEM"
      -nographic -no-reboot -kernel "$VWORK/image-$REL/vmlinuz" -initrd "$r/initramfs.cpio.gz"
      -append "console=ttyS0 loglevel=8 panic=-1"
      -monitor none -serial "file:$r/console.log" -serial "file:$r/report.log")
log "booting: ${qemu[*]}"
t0=$(date +%s)
"${qemu[@]}" </dev/null >"$r/qemu.out" 2>&1 &
qpid=$!
until grep -q 'LIVE-GUEST-DONE' "$r/report.log" 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then
        tail -n 40 "$r/console.log" >&2 || true
        die "QEMU exited before LIVE-GUEST-DONE (see $r/console.log)"
    fi
    if [ $(($(date +%s) - t0)) -ge "$QEMU_TIMEOUT" ]; then
        kill "$qpid" 2>/dev/null || true
        die "no LIVE-GUEST-DONE after ${QEMU_TIMEOUT}s (see $r/report.log)"
    fi
    sleep 1
done
sleep 2
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
t1=$(date +%s)
if [ "$SCENARIO" = stacked ]; then
    # The whole report (serial CRLF line ends made LF), compressed: the
    # three JSON outputs in full.
    tr -d '\r' <"$r/report.log" | gzip -9 -n >"$FIX/guest-report.txt.gz"
    printf '%s' "$FUNCS" >"$FIX/funcs.txt"
    {
        echo "# lpstack check live guest run, scenario stacked ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo "kernel: $REL ($IMG_PKG $VER)"
        echo "host: $(qemu-system-x86_64 --version | head -n1); $(nproc) host cores; accel $ACCEL"
        echo "qemu: ${qemu[*]}"
        echo "lpstack: $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty') release build, libraries: $(ldd "$BIN" | awk '{print $1}' | tr '\n' ' ')"
        echo "modules: ${KOS[*]} (scripts/vmcore/modules: park_wait, lp1, lp2), debug-stripped"
        echo "workload: parker mt a a a b b c; parker sa main-a; parker sb main-b; sleeps, a pipe, a busy loop$([ "$MANY" -gt 0 ] && echo "; parker many with $MANY threads in park_here_c")"
        echo "wall time: $((t1 - t0)) s"
        grep -E '^@@(THREADS|INSMOD|TRANSITION_DONE|KLP_|RUNS_BEGIN|LPSTACK_RC)' "$r/report.log" | sed 's/^/  /'
        echo "kernel log around the checks:"
        grep -E 'lpstack-live|lpstack_lp2|signaling' "$r/console.log" | sed 's/^/  /'
    } >"$FIX/run-info.txt"
    log "done: $FIX"
    cat "$FIX/run-info.txt" >&2
    exit 0
fi
host_cal=""
for i in 1 2 3; do
    s0=$(date +%s%N)
    "$BIN" check "$CAL" --set "$CALF" >/dev/null 2>&1 || true
    s1=$(date +%s%N)
    host_cal="$host_cal $(((s1 - s0) / 1000000))"
done

# The committed record: the report with lpstack's JSON cut down to what
# the test compares (one line per task, no frames).
python3 - "$r/report.log" "$FIX/guest-report.txt.gz" <<'PY'
import gzip, json, re, sys
log = open(sys.argv[1], encoding="utf-8", errors="replace").read().replace("\r\n", "\n")
begin, end = "@@LPSTACK_JSON_BEGIN\n", "@@LPSTACK_JSON_END"
a = log.index(begin) + len(begin)
b = log.index(end, a)
j = json.loads(log[a:b])
keep = {"kernel": j["kernel"], "summary": j["summary"], "patched": j["patched"], "tasks": []}
for t in j["tasks"]:
    small = {k: t[k] for k in ("pid", "tgid", "comm", "state", "verdict", "on_cpu", "cpu", "kthread", "idle")}
    if t.get("blocking"):
        small["blocking"] = {k: t["blocking"][k] for k in ("function", "object", "frame")}
    if t.get("unreliable"):
        small["unreliable"] = t["unreliable"]
    if t["verdict"] != "switchable":
        small["frames"] = [f"{f['symbol']}+{f['offset']:#x}" if f["symbol"] else f"{f['pc']:#x}" for f in t["frames"]]
    keep["tasks"].append(small)
body = "{\n" + ",\n".join(
    f'"{k}": {json.dumps(v)}' for k, v in keep.items() if k != "tasks"
) + ',\n"tasks": [\n' + ",\n".join(json.dumps(t) for t in keep["tasks"]) + "\n]}\n"
out = log[:a] + body + log[b:]
with gzip.GzipFile(sys.argv[2], "wb", mtime=0) as f:
    f.write(out.encode())
PY
printf 'lpstack_park:park_here_a\ncmdline_proc_show\n' >"$FIX/funcs.txt"
{
    echo "# lpstack check live guest run ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo "kernel: $REL ($IMG_PKG $VER)"
    echo "host: $(qemu-system-x86_64 --version | head -n1); $(nproc) host cores; accel $ACCEL"
    echo "qemu: ${qemu[*]}"
    echo "lpstack: $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty') release build, libraries: $(ldd "$BIN" | awk '{print $1}' | tr '\n' ' ')"
    echo "workload: parker mt a a a b b c; parker sa main-a; parker sb main-b; sleeps, a pipe, a busy loop; parker many with $MANY threads in park_here_c"
    echo "wall time: $((t1 - t0)) s"
    echo "calibration: lpstack check tests/fixtures/vmcore/$REL/vmcore.trimmed.kdump on the host:$host_cal ms (guest: @@CALIBRATE, uptime before and after, s)"
    grep -E '^@@(THREADS|TIMING|SETUP|KALLSYMS_CAT|LPSTACK_RC|REFUSAL|KPTR2_MEMORY|LOCKDOWN_BEFORE|NPROC|CALIBRATE)' "$r/report.log" | sed 's/^/  /'
} >"$FIX/run-info.txt"
log "done: $FIX"
cat "$FIX/run-info.txt" >&2
