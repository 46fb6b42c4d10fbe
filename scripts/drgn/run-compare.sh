#!/usr/bin/env bash
# Compare lpstack's frames with drgn's for every task of a dump.
#
# usage: scripts/drgn/run-compare.sh DUMP [RELEASE [NAME]]
#
#   DUMP     a vmcore (ELF or kdump-compressed) with VMCOREINFO
#   RELEASE  its kernel release (default: OSRELEASE from the dump), used to
#            find tests/fixtures/work/dbg/usr/lib/debug/boot/vmlinux-RELEASE,
#            extracted from tests/fixtures/work/debs/linux-image-RELEASE-dbg_*.deb
#            when missing
#   NAME     summary name (default: the dump's directory name when the file
#            is vmcore.*, else the file name without extension)
#
# Writes tests/fixtures/drgn/NAME-summary.txt (versions + compare.py's
# report); the two JSON outputs stay in tests/fixtures/work/drgn/NAME/.
# Module files given to drgn: tests/fixtures/work/vmcore/build-RELEASE/*/*.ko
# (unstripped test modules), *.ko beside the dump (e.g. lpstack_park.ko),
# the -dbg package's module tree if extracted under
# tests/fixtures/work/dbg/usr/lib/debug/lib/modules/RELEASE, and DRGN_MODULES
# (space-separated files/dirs). Without a module's debug file drgn unwinds
# that module's frames by its rbp fallback (a frame-pointer chain), which is
# only right by luck on these ORC kernels: the summary says which modules
# drgn had a debug file for.
#
# Env: FUNCS (lpstack --set file; frames do not depend on it), LPSTACK,
#      LPSTACK_NO_BUILD=1, OUT (summary dir).
# Exit status: compare.py's (1 if a blocked task's frames differ).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ $# -ge 1 ] || die "usage: $0 DUMP [RELEASE [NAME]]"
DUMP="$(readlink -f "$1")"
[ -r "$DUMP" ] || die "cannot read $DUMP"
REL="${2:-$(release_of "$DUMP")}"
[ -n "$REL" ] || die "no OSRELEASE in $DUMP; give RELEASE"
if [ -n "${3:-}" ]; then
    NAME="$3"
else
    base="$(basename "$DUMP")"
    case "$base" in
        vmcore.elf) NAME="$(basename "$(dirname "$DUMP")")" ;;
        vmcore.*) NAME="$(basename "$(dirname "$DUMP")")-${base#vmcore.}" ;;
        *) NAME="${base%.*}" ;;
    esac
fi
OUT="${OUT:-$ROOT/tests/fixtures/drgn}"
TMP="$WORK/drgn/$NAME"
mkdir -p "$OUT" "$TMP"

need_drgn
need_lpstack
VMLINUX="$(vmlinux_for "$REL")"

FUNCS="${FUNCS:-}"
if [ -z "$FUNCS" ]; then
    FUNCS="$TMP/funcs.txt"
    default_set "$FUNCS"
fi

mods=()
# Unstripped builds of the test modules first (DWARF CFI + ORC: drgn unwinds
# their frames with those; drgn matches files to the dump's modules by
# build ID, so a rebuilt module is just ignored), then the stripped copies
# kept beside the dump (symbols and ORC only).
for k in "$WORK/vmcore/build-$REL"/*/*.ko "$(dirname "$DUMP")"/*.ko; do
    [ -e "$k" ] && mods+=("$k")
done
[ -d "$WORK/dbg/usr/lib/debug/lib/modules/$REL" ] \
    && mods+=("$WORK/dbg/usr/lib/debug/lib/modules/$REL")
for m in ${DRGN_MODULES:-}; do mods+=("$m"); done

log "lpstack check $DUMP"
rc=0
"$LPSTACK" check "$DUMP" --set "$FUNCS" --format json --all-frames \
    >"$TMP/lpstack.json" 2>"$TMP/lpstack.err" || rc=$?
# 0: all may switch, 1: some may not (a verdict, not an error).
[ "$rc" -le 1 ] || { cat "$TMP/lpstack.err" >&2; die "lpstack exit $rc"; }

log "drgn frames.py $DUMP"
python3 "$ROOT/scripts/drgn/frames.py" "$DUMP" "$VMLINUX" "${mods[@]}" \
    >"$TMP/drgn.json" 2>"$TMP/drgn.err" || { cat "$TMP/drgn.err" >&2; die "frames.py failed"; }

SUMMARY="$OUT/$NAME-summary.txt"
crc=0
{
    echo "# lpstack vs drgn frames: $NAME"
    echo "dump: ${DUMP#"$ROOT"/} ($(stat -c %s "$DUMP") bytes)"
    echo "release: $REL"
    echo "vmlinux (DWARF): ${VMLINUX#"$ROOT"/}"
    echo "drgn: $(drgn_version) (PyPI), python $(python3 -c 'import platform; print(platform.python_version())')"
    echo "lpstack: $(lpstack_version)"
    echo "drgn module files: $(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
print(", ".join("%s=%s" % (m["name"], "yes" if m["debug_file"] else "no") for m in d.get("modules_loaded", [])))' "$TMP/drgn.json")"
    echo "command: lpstack check DUMP --set FUNCS --format json --all-frames (exit $rc)"
    echo
    python3 "$ROOT/scripts/drgn/compare.py" "$TMP/lpstack.json" "$TMP/drgn.json" || crc=$?
} >"$SUMMARY"
log "wrote ${SUMMARY#"$ROOT"/}"
tail -n 1 "$SUMMARY" >&2
exit "$crc"
