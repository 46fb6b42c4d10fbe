#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# What lpstack and drgn say about the kdump scenario's dumps (see "The kdump
# scenario" in tests/fixtures/vmcore/README.md).
#
# usage: scripts/vmcore/kdump-check.sh [RUN]     (default 6.12.117+deb12-amd64-kdump;
#        also 6.12.117+deb12-amd64-kdump-irq, 6.12.117+deb12-amd64-kdump-nmi)
#
# Writes into tests/fixtures/vmcore/RUN/:
#   vmcore.trimmed.kdump  when absent or TRIM=1: `lpstack trim
#                      vmcore.kdump-lzo` (only the pages lpstack reads; the
#                      kdump run's committed one was cut so, by hand), plus
#                      every page of each CPU's running task's stack, hardirq
#                      stack and NMI stack (scripts/vmcore/trimmed-pages.py
#                      --write: lpstack stops at __crash_kexec on the
#                      panicking CPU and reads none of its stack pages);
#   trimmed-pages.txt  what trimmed-pages.py added and its check that the
#                      trimmed dump holds the stack pages of drgn's traces of
#                      the running tasks (written with the trimmed dump);
#   lpstack-check.txt  `lpstack check <dump>` (no set: the transition from
#                      memory) of vmcore.kdump-lzo, whether -zlib and -zstd
#                      give the same, and --all-frames of the running tasks;
#                      then the same (text, and --format json in full) of
#                      vmcore.trimmed.kdump when it exists;
#   drgn-stacks.txt    scripts/drgn/kdump-stacks.py on vmcore.kdump-lzo (every
#                      task, the CPUs, their stacks, the NMI-stopped CPU);
# and tests/fixtures/drgn/RUN-summary.txt (scripts/drgn/run-compare.sh: lpstack's
# frames against drgn's, task by task).
# Needs the DWARF vmlinux (scripts/drgn/common.sh: vmlinux_for) and drgn.
# Env: LPSTACK_NO_BUILD=1 (use target/release/lpstack as it is), TRIM=1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../drgn/common.sh"

RUN="${1:-6.12.117+deb12-amd64-kdump}"
R="$WORK/vmcore/$RUN"
F="$ROOT/tests/fixtures/vmcore/$RUN"
REL=6.12.117+deb12-amd64
KLP="$WORK/vmcore/build-$REL/klp"
[ -s "$R/vmcore.kdump-lzo" ] || die "no $R/vmcore.kdump-lzo (scripts/vmcore/make-vmcores.sh 6.12-4level:kdump)"
need_drgn
need_lpstack
VMLINUX="$(vmlinux_for "$REL")"

rel() { printf '%s' "${1#"$ROOT"/}"; }

# The test modules' unstripped builds, for drgn (lpstack_irqpanic only in
# the kdump-irq run, whose kernel loaded it).
# The run's own copies (RUN/debug/, saved by make-vmcores.sh) when there:
# the shared build directory may hold a later build with other build IDs.
if [ -d "$R/debug" ]; then
    MODS=("$R"/debug/*.ko)
else
    MODS=("$KLP/spin/lpstack_spin.ko" "$KLP/lp_spin/lpstack_lp_spin.ko" "$KLP/park_wait/lpstack_park.ko")
    case "$RUN" in *-kdump-irq) MODS+=("$KLP/irqpanic/lpstack_irqpanic.ko") ;; esac
fi

if [ ! -s "$F/vmcore.trimmed.kdump" ] || [ "${TRIM:-0}" = 1 ]; then
    "$LPSTACK" trim "$R/vmcore.kdump-lzo" -o "$R/vmcore.lpstack-trim.kdump" >"$R/lpstack-trim.log" 2>&1
    {
        echo "# How vmcore.trimmed.kdump was made (scripts/vmcore/kdump-check.sh)."
        echo "# lpstack: $(lpstack_version)"
        echo "\$ lpstack trim tests/fixtures/work/vmcore/$RUN/vmcore.kdump-lzo -o vmcore.lpstack-trim.kdump"
        cat "$R/lpstack-trim.log"
        echo "\$ scripts/vmcore/trimmed-pages.py vmcore.kdump-lzo vmcore.lpstack-trim.kdump vmlinux ${MODS[*]##*/} --write vmcore.trimmed.kdump"
        python3 "$ROOT/scripts/vmcore/trimmed-pages.py" "$R/vmcore.kdump-lzo" "$R/vmcore.lpstack-trim.kdump" \
            "$VMLINUX" "${MODS[@]}" --write "$F/vmcore.trimmed.kdump"
        echo "vmcore.trimmed.kdump: $(stat -c %s "$F/vmcore.trimmed.kdump") bytes, sha256 $(sha256sum "$F/vmcore.trimmed.kdump" | cut -c1-64)"
        if cmp -s <("$LPSTACK" check "$R/vmcore.lpstack-trim.kdump" --all-frames --format json 2>&1) \
                  <("$LPSTACK" check "$F/vmcore.trimmed.kdump" --all-frames --format json 2>&1); then
            echo "lpstack check --all-frames --format json: the same on vmcore.lpstack-trim.kdump and vmcore.trimmed.kdump"
        else
            echo "lpstack check --all-frames --format json: DIFFERENT on vmcore.lpstack-trim.kdump and vmcore.trimmed.kdump"
        fi
    } >"$F/trimmed-pages.txt"
    sed -i "s|$ROOT/||g; s|$(readlink -f "$WORK")/|tests/fixtures/work/|g" "$F/trimmed-pages.txt"
    log "wrote $(rel "$F/vmcore.trimmed.kdump") ($(stat -c %s "$F/vmcore.trimmed.kdump") bytes), $(rel "$F/trimmed-pages.txt")"
fi

# The running tasks' frames from lpstack's JSON on stdin.
running_json() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
for t in d["tasks"]:
    if t["verdict"] != "running":
        continue
    print("pid %d %s cpu %s verdict %s unreliable %s kernel_reason %s" % (
        t["pid"], t["comm"], t.get("cpu"), t["verdict"], t.get("unreliable"),
        (t.get("transition") or {}).get("kernel_reason")))
    for i, f in enumerate(t["frames"]):
        print("  #%d pc 0x%x sp 0x%x %s+0x%x kind %s reliable %s" % (
            i, f["pc"], f["sp"], f["symbol"], f["offset"], f["kind"], f["reliable"]))
'
}

{
    echo "# lpstack check of the kdump run $RUN (no --set: the transition is read"
    echo "# from the kernel's memory). Written by scripts/vmcore/kdump-check.sh."
    echo "# lpstack: $(lpstack_version)"
    for f in lzo zlib zstd; do
        echo "# vmcore.kdump-$f: $(sha256sum "$R/vmcore.kdump-$f" | cut -c1-64)"
    done
    echo
    rc=0
    "$LPSTACK" check "$R/vmcore.kdump-lzo" >"$R/lpstack-check.out" 2>&1 || rc=$?
    echo "\$ lpstack check tests/fixtures/work/vmcore/$RUN/vmcore.kdump-lzo    # exit $rc"
    cat "$R/lpstack-check.out"
    echo
    for f in zlib zstd; do
        rc2=0
        if cmp -s <("$LPSTACK" check "$R/vmcore.kdump-lzo" --all-frames --format json 2>&1) \
                  <("$LPSTACK" check "$R/vmcore.kdump-$f" --all-frames --format json 2>&1 || true); then
            echo "# vmcore.kdump-$f: the same output (--all-frames --format json compared)"
        else
            echo "# vmcore.kdump-$f: DIFFERENT output"
        fi
    done
    echo
    echo "\$ lpstack check tests/fixtures/work/vmcore/$RUN/vmcore.kdump-lzo --all-frames   # the running tasks only"
    "$LPSTACK" check "$R/vmcore.kdump-lzo" --all-frames 2>&1 \
        | awk '/^[0-9]+ .* \(running\):$/ {p=1} p && /^$/ {p=0; print ""} p' || true
    echo "\$ lpstack check ... --format json: the running tasks' frames"
    "$LPSTACK" check "$R/vmcore.kdump-lzo" --format json 2>/dev/null | running_json || true
    T="$F/vmcore.trimmed.kdump"
    if [ -s "$T" ]; then
        echo
        echo "# ---- the committed trimmed dump, $(rel "$T") ($(stat -c %s "$T") bytes, sha256 $(sha256sum "$T" | cut -c1-64))"
        echo
        rc=0
        "$LPSTACK" check "$T" >"$R/lpstack-check.out" 2>&1 || rc=$?
        echo "\$ lpstack check $(rel "$T")    # exit $rc"
        cat "$R/lpstack-check.out"
        echo
        if cmp -s <("$LPSTACK" check "$R/vmcore.kdump-lzo" --all-frames --format json 2>&1) \
                  <("$LPSTACK" check "$T" --all-frames --format json 2>&1 || true); then
            echo "# vmcore.trimmed.kdump: the same output as vmcore.kdump-lzo (--all-frames --format json compared)"
        else
            echo "# vmcore.trimmed.kdump: DIFFERENT output from vmcore.kdump-lzo (--all-frames --format json)"
        fi
        echo
        echo "\$ lpstack check $(rel "$T") --all-frames   # the running tasks only"
        "$LPSTACK" check "$T" --all-frames 2>&1 \
            | awk '/^[0-9]+ .* \(running\):$/ {p=1} p && /^$/ {p=0; print ""} p' || true
        echo "\$ lpstack check $(rel "$T") --format json: the running tasks' frames"
        "$LPSTACK" check "$T" --format json 2>/dev/null | running_json || true
        echo
        rc=0
        "$LPSTACK" check "$T" --format json >"$R/lpstack-check.out" 2>&1 || rc=$?
        echo "\$ lpstack check $(rel "$T") --format json    # exit $rc, in full"
        cat "$R/lpstack-check.out"
    fi
} >"$F/lpstack-check.txt"
rm -f "$R/lpstack-check.out"

for f in lzo zlib zstd; do
    python3 "$ROOT/scripts/drgn/kdump-stacks.py" "$R/vmcore.kdump-$f" "$VMLINUX" "${MODS[@]}" \
        >"$R/drgn-stacks-$f.txt"
done
cp "$R/drgn-stacks-lzo.txt" "$F/drgn-stacks.txt"
for f in zlib zstd; do
    # The first line names the dump file.
    if cmp -s <(tail -n +2 "$R/drgn-stacks-$f.txt") <(tail -n +2 "$R/drgn-stacks-lzo.txt"); then
        echo "# drgn on vmcore.kdump-$f: the same (every line after the first)" >>"$F/drgn-stacks.txt"
    else
        echo "# drgn on vmcore.kdump-$f: DIFFERENT (see $R/drgn-stacks-$f.txt)" >>"$F/drgn-stacks.txt"
    fi
done
log "wrote $(rel "$F/lpstack-check.txt"), $(rel "$F/drgn-stacks.txt")"

# lpstack's frames against drgn's, task by task (scripts/drgn/run-compare.sh:
# tests/fixtures/drgn/RUN-summary.txt), with the test modules' DWARF.
DMODS="$KLP"; [ ! -d "$R/debug" ] || DMODS="$R/debug"
LPSTACK_NO_BUILD=1 DRGN_MODULES="$DMODS" FUNCS="$F/funcs.txt" \
    "$ROOT/scripts/drgn/run-compare.sh" "$R/vmcore.kdump-lzo" "$REL" "$RUN" || true
# run-compare.sh names the dump by its resolved path (tests/fixtures/work may
# be a symlink): name it as the repository does.
sed -i "s|^dump: .*/vmcore.kdump-lzo |dump: tests/fixtures/work/vmcore/$RUN/vmcore.kdump-lzo |" \
    "$ROOT/tests/fixtures/drgn/$RUN-summary.txt"
