#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# What lpstack and drgn say about the kdump scenario's dumps (see "The kdump
# scenario" in tests/fixtures/vmcore/README.md).
#
# usage: scripts/vmcore/kdump-check.sh [RUN]     (default 6.12.117+deb12-amd64-kdump)
#
# Writes into tests/fixtures/vmcore/RUN/:
#   lpstack-check.txt  `lpstack check <dump>` (no set: the transition from
#                      memory) of vmcore.kdump-lzo, whether -zlib and -zstd
#                      give the same, and --all-frames of the running tasks;
#   drgn-stacks.txt    scripts/drgn/kdump-stacks.py on vmcore.kdump-lzo (every
#                      task, the CPUs, their stacks, the NMI-stopped CPU);
# and tests/fixtures/drgn/RUN-summary.txt (scripts/drgn/run-compare.sh: lpstack's
# frames against drgn's, task by task).
# Needs the DWARF vmlinux (scripts/drgn/common.sh: vmlinux_for) and drgn.
# Env: LPSTACK_NO_BUILD=1 (use target/release/lpstack as it is).
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
    "$LPSTACK" check "$R/vmcore.kdump-lzo" --format json 2>/dev/null | python3 -c '
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
' || true
} >"$F/lpstack-check.txt"
rm -f "$R/lpstack-check.out"

for f in lzo zlib zstd; do
    python3 "$ROOT/scripts/drgn/kdump-stacks.py" "$R/vmcore.kdump-$f" "$VMLINUX" \
        "$KLP/spin/lpstack_spin.ko" "$KLP/lp_spin/lpstack_lp_spin.ko" "$KLP/park_wait/lpstack_park.ko" \
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
LPSTACK_NO_BUILD=1 DRGN_MODULES="$KLP" FUNCS="$F/funcs.txt" \
    "$ROOT/scripts/drgn/run-compare.sh" "$R/vmcore.kdump-lzo" "$REL" "$RUN" || true
# run-compare.sh names the dump by its resolved path (tests/fixtures/work may
# be a symlink): name it as the repository does.
sed -i "s|^dump: .*/vmcore.kdump-lzo |dump: tests/fixtures/work/vmcore/$RUN/vmcore.kdump-lzo |" \
    "$ROOT/tests/fixtures/drgn/$RUN-summary.txt"
