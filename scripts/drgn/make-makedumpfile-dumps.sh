#!/usr/bin/env bash
# Make real makedumpfile kdump-compressed files (what kdump leaves an SRE)
# from one of QEMU's ELF dumps, beside it, for speed measurements:
#
#   DIR/vmcore.kdump-lzo-d31      makedumpfile -l -d 31   (LZO)
#   DIR/vmcore.kdump-zstd-d31     makedumpfile -z -d 31   (zstd)
#   DIR/vmcore.kdump-snappy-d31   makedumpfile -p -d 31   (snappy)
#   DIR/vmcore.kdump-zlib-d31     makedumpfile -c -d 31   (zlib)
#
# usage: scripts/drgn/make-makedumpfile-dumps.sh DUMP.elf [METHOD...]
#        METHOD: lzo zstd snappy zlib (default: all four)
#
# makedumpfile is upstream's (scripts/lib/makedumpfile.sh: Debian 12's 1.7.2
# drops task_struct pages of 6.12 with -d 31), built once in
# tests/fixtures/work/tools/makedumpfile/ (git-ignored). It reads a
# temporary copy of DUMP.elf with the program headers moved to offset 64
# (DIR/.vmcore-for-makedumpfile.tmp, removed at exit; as big as the dump).
# Filtering (-d 31: zero, cache, cache-private, user and free pages) uses
# the dump's VMCOREINFO note; no vmlinux is needed. --message-level 22
# (no progress bar, plus the page report: how many pages each -d bit
# excluded) goes to DIR/makedumpfile.log; it does not change the output.
# Appends sizes and command lines to DIR/info.txt when there is one.
# Env: MAKEDUMPFILE (a makedumpfile binary to use instead of building one),
#      FORCE=1 (redo existing outputs), MAKEDUMPFILE_TARBALL (the source).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
. "$ROOT/scripts/lib/makedumpfile.sh"

[ $# -ge 1 ] || die "usage: $0 DUMP.elf [lzo|zstd|snappy|zlib...]"
ELF="$1"; shift
[ -s "$ELF" ] || die "no $ELF"
head -c 4 "$ELF" | grep -q $'^\x7fELF' || die "$ELF is not an ELF file"
DIR="$(cd "$(dirname "$ELF")" && pwd)"
BASE="$(basename "$ELF" .elf)"
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(lzo zstd snappy zlib)
for m in "${METHODS[@]}"; do
    case "$m" in lzo|zstd|snappy|zlib) ;; *) die "unknown method $m (lzo zstd snappy zlib)" ;; esac
done

if [ -n "${MAKEDUMPFILE:-}" ]; then
    MDF="$MAKEDUMPFILE"
else
    MDF="$(mdf_build "$WORK/tools")" || die "building makedumpfile failed"
fi
[ -x "$MDF" ] || die "no $MDF"
MDF_VERSION="$("$MDF" -v 2>&1 | head -n1 | sed 's/^makedumpfile: //; s/^version //')"
log "makedumpfile $MDF_VERSION ($MDF)"

TMP="$DIR/.$BASE-for-makedumpfile.tmp"
trap 'rm -f "$TMP"' EXIT
LOG="$DIR/makedumpfile.log"

for m in "${METHODS[@]}"; do
    case "$m" in lzo) flag=-l ;; zstd) flag=-z ;; snappy) flag=-p ;; zlib) flag=-c ;; esac
    out="$DIR/$BASE.kdump-$m-d31"
    if [ -s "$out" ] && [ "${FORCE:-0}" != 1 ]; then
        log "$out exists (FORCE=1 redoes it)"; continue
    fi
    if [ ! -s "$TMP" ]; then
        log "copying $ELF with its program headers at offset 64"
        mdf_qemu_elf "$ELF" "$TMP" || die "rewriting $ELF failed"
    fi
    rm -f "$out" "$out.part"
    log "makedumpfile $flag -d 31 $ELF -> $out"
    start=$(date +%s.%N)
    { echo "== $(date -u +%FT%TZ) makedumpfile $flag -d 31 $(basename "$ELF") $(basename "$out")"
      "$MDF" "$flag" -d 31 --message-level 22 "$TMP" "$out.part"; } >>"$LOG" 2>&1 \
        || { tail -n 20 "$LOG" >&2; die "makedumpfile $flag failed (log: $LOG)"; }
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    mv "$out.part" "$out"
    chmod 444 "$out"
    size=$(stat -c %s "$out")
    log "$(basename "$out"): $size bytes, ${secs}s"
    if [ -f "$DIR/info.txt" ]; then
        sed -i "/^size\.$(basename "$out")=/d; /^makedumpfile\.$m=/d" "$DIR/info.txt"
        {
            echo "size.$(basename "$out")=$size"
            echo "makedumpfile.$m=makedumpfile $flag -d 31 (version $MDF_VERSION)"
        } >>"$DIR/info.txt"
    fi
done
ls -l "$DIR"/"$BASE".kdump-*-d31 >&2
