#!/usr/bin/env bash
# Time lpstack against drgn on one dump (wall clock, best of $RUNS).
#
# usage: scripts/drgn/time-compare.sh [--out FILE] DUMP VMLINUX [NAME]
#
#   lpstack: `lpstack check DUMP --set F --format json > /dev/null` (the
#            whole process: open the dump, kallsyms/BTF/ORC from it, walk
#            every task, decide, print), and the same with --all-frames.
#   drgn:    scripts/drgn/time-drgn.py in a fresh python3 per run: import,
#            debug-info load (DWARF vmlinux) and walk (stack_trace of every
#            task + idle tasks) timed separately, plus the process's wall
#            time. Walk modes: pc (unwinding only), name (+ frame.name, the
#            DWARF names drgn's bt prints), symbol (+ frame.symbol(), ELF
#            symbol names like lpstack's; slow in drgn 0.3.0, one run).
# Each figure is the best of RUNS (default 3) runs; one untimed run of each
# tool first warms the page cache, so the figures are for a cached dump.
# Ratios: each drgn figure / lpstack's whole process (without --all-frames).
#
# Prints a block of text; with --out FILE appends it to FILE (writing a
# header with the machine and versions first if FILE does not exist).
# Env: RUNS, FUNCS (lpstack --set file), LPSTACK, LPSTACK_NO_BUILD=1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

OUTFILE=
if [ "${1:-}" = --out ]; then OUTFILE="$2"; shift 2; fi
[ $# -ge 2 ] || die "usage: $0 [--out FILE] DUMP VMLINUX [NAME]"
DUMP="$(readlink -f "$1")"
VMLINUX="$(readlink -f "$2")"
NAME="${3:-$(basename "$(dirname "$DUMP")")/$(basename "$DUMP")}"
RUNS="${RUNS:-3}"

need_drgn
need_lpstack
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FUNCS="${FUNCS:-$TMP/funcs.txt}"
[ -s "$FUNCS" ] || default_set "$FUNCS"

now() { date +%s.%N; }
best() { python3 -c 'import sys; print("%.3f" % min(float(x) for x in sys.argv[1:]))' "$@"; }

time_lpstack() {  # extra args...
    local t0 t1 rc times=()
    "$LPSTACK" check "$DUMP" --set "$FUNCS" --format json "$@" >/dev/null 2>&1 || true
    for _ in $(seq "$RUNS"); do
        t0=$(now)
        rc=0
        "$LPSTACK" check "$DUMP" --set "$FUNCS" --format json "$@" >/dev/null 2>"$TMP/lp.err" || rc=$?
        t1=$(now)
        [ "$rc" -le 1 ] || { cat "$TMP/lp.err" >&2; die "lpstack exit $rc"; }
        times+=("$(python3 -c "print($t1 - $t0)")")
    done
    best "${times[@]}"
}

log "lpstack on $NAME"
LP=$(time_lpstack)
LP_ALL=$(time_lpstack --all-frames)
"$LPSTACK" check "$DUMP" --set "$FUNCS" --format json >"$TMP/lp.json" 2>/dev/null || true
LP_TASKS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["tasks"])' "$TMP/lp.json")
maxrss() {  # command... -> max RSS in KiB
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -o "$TMP/rss" -f '%M' "$@" >/dev/null 2>&1 || true
        tail -n1 "$TMP/rss"
    else
        echo '?'
    fi
}
LP_MAXRSS=$(maxrss "$LPSTACK" check "$DUMP" --set "$FUNCS" --format json)

log "drgn on $NAME"
python3 "$ROOT/scripts/drgn/time-drgn.py" "$DUMP" "$VMLINUX" pc >/dev/null  # warm-up
for mode in pc name; do
    : >"$TMP/drgn-$mode.jsonl"
    for _ in $(seq "$RUNS"); do
        t0=$(now)
        python3 "$ROOT/scripts/drgn/time-drgn.py" "$DUMP" "$VMLINUX" "$mode" >>"$TMP/drgn-$mode.jsonl"
        t1=$(now)
        python3 -c "print($t1 - $t0)" >>"$TMP/drgn-$mode.wall"
    done
done
# ELF-symbol lookups are slow in drgn 0.3.0: one run of that mode only.
python3 "$ROOT/scripts/drgn/time-drgn.py" "$DUMP" "$VMLINUX" symbol >"$TMP/drgn-symbol.jsonl"
DR_MAXRSS=$(maxrss python3 "$ROOT/scripts/drgn/time-drgn.py" "$DUMP" "$VMLINUX" pc)

BLOCK=$(python3 - "$TMP" "$LP" "$LP_ALL" "$LP_TASKS" \
    "$NAME" "$(stat -c %s "$DUMP")" "$LP_MAXRSS" "$DR_MAXRSS" "$RUNS" <<'EOF'
import json, sys
tmp = sys.argv[1]
lp, lp_all = float(sys.argv[2]), float(sys.argv[3])
tasks, name, size = sys.argv[4], sys.argv[5], int(sys.argv[6])
lp_rss, dr_rss, runs = sys.argv[7], sys.argv[8], sys.argv[9]
rows = {m: [json.loads(l) for l in open("%s/drgn-%s.jsonl" % (tmp, m))]
        for m in ("pc", "name", "symbol")}
wall = {m: min(float(l) for l in open("%s/drgn-%s.wall" % (tmp, m))) for m in ("pc", "name")}
allr = rows["pc"] + rows["name"]
imp = min(r["import"] for r in allr)
load = min(r["load"] for r in allr)
walk = {m: min(r["walk"] for r in rows[m]) for m in rows}
lw = {m: min(r["load"] + r["walk"] for r in rows[m]) for m in rows}
r0 = rows["pc"][0]
def kb(x):
    try: return "%d MiB" % (int(x) // 1024)
    except ValueError: return x
def line(label, v, ratio=True):
    if ratio:
        print("  %-50s %8.3f  %7.1fx" % (label, v, v / lp))
    else:
        print("  %-50s %8.3f" % (label, v))
print("== %s: %s tasks (lpstack), %.0f MiB dump" % (name, tasks, size / 2**20))
print("  drgn: %d tasks, %d frames (drgn's count: inline and user-space frames"
      " too), %d errors" % (r0["tasks"], r0["frames"], r0["errors"]))
print("  %-50s %8s  %8s" % ("wall seconds, best of %s (symbol: 1 run)" % runs,
                             "seconds", "/lpstack"))
line("lpstack check --format json (whole process)", lp, False)
line("lpstack check --format json --all-frames", lp_all, False)
line("drgn import", imp, False)
line("drgn debug info load (vmlinux DWARF)", load)
line("drgn walk: stack_trace + pc", walk["pc"])
line("drgn walk: stack_trace + pc + frame.name", walk["name"])
line("drgn walk: stack_trace + pc + symbol()", walk["symbol"])
line("drgn load + walk (pc)", lw["pc"])
line("drgn load + walk (name)", lw["name"])
line("drgn load + walk (symbol)", lw["symbol"])
line("drgn whole python3 process (pc)", wall["pc"])
line("drgn whole python3 process (name)", wall["name"])
print("  max RSS: lpstack %s, drgn (pc) %s" % (kb(lp_rss), kb(dr_rss)))
EOF
)
BLOCK="$BLOCK
  lpstack binary: sha256 $LPSTACK_SHA, built $LPSTACK_BUILT"
printf '%s\n' "$BLOCK"
if [ -n "$OUTFILE" ]; then
    if [ ! -s "$OUTFILE" ]; then
        {
            echo "# lpstack vs drgn timing (scripts/drgn/time-compare.sh)"
            echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
            echo "lpstack: $(lpstack_version), cargo build --release"
            echo "drgn: $(drgn_version) (PyPI wheel), python $(python3 -c 'import platform; print(platform.python_version())')"
            echo "wall clock, page cache warm, best of $RUNS"
            echo
        } >"$OUTFILE"
    fi
    { printf '%s\n\n' "$BLOCK"; } >>"$OUTFILE"
    log "appended to $OUTFILE"
fi
