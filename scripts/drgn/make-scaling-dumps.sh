#!/usr/bin/env bash
# Make the set of many-task dumps used for lpstack-vs-drgn speed and memory
# measurements, each in tests/fixtures/work/drgn/NAME/ (git-ignored), with
# scripts/drgn/make-many-dump.sh:
#
#   many-1800      NPROC=1800 sleep processes,  -m 512   (~1,865 tasks)
#   many-14450     NPROC=14450 sleep processes, -m 3072  (~14,516 tasks)
#   threads-T      MODE=threads TASKS=T, for T = 100 1000 10000 30000 100000,
#                  -m 256 256 768 2048 5632
#
# usage: scripts/drgn/make-scaling-dumps.sh [NAME...]   (default: all)
# Env: FORMATS (default elf,kdump-zlib: drgn 0.3.0 opens only the ELF ones;
#      Debian's QEMU 7.2 offers elf, kdump-zlib and win-dmp, no lzo/snappy),
#      FORCE=1 (redo existing dumps), RELEASE.
# Guest memory measured per task: sleep process ~140 KiB, thread ~46 KiB.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export FORMATS="${FORMATS:-elf,kdump-zlib}"
REL="${RELEASE:-6.12.117+deb12-amd64}"
ALL="many-1800 many-14450 threads-100 threads-1000 threads-10000 threads-30000 threads-100000"
MAKE="$ROOT/scripts/drgn/make-many-dump.sh"
failed=()
for name in ${@:-$ALL}; do
    case "$name" in
        many-1800) env NAME=$name MEM=512 QEMU_TIMEOUT=3600 "$MAKE" "$REL" 1800 ;;
        many-14450) env NAME=$name MEM=3072 QEMU_TIMEOUT=3600 "$MAKE" "$REL" 14450 ;;
        threads-100|threads-1000) env NAME=$name MODE=threads TASKS=${name#threads-} MEM=256 "$MAKE" "$REL" ;;
        threads-10000) env NAME=$name MODE=threads TASKS=10000 MEM=768 "$MAKE" "$REL" ;;
        threads-30000) env NAME=$name MODE=threads TASKS=30000 MEM=2048 QEMU_TIMEOUT=1800 "$MAKE" "$REL" ;;
        threads-100000) env NAME=$name MODE=threads TASKS=100000 MEM=5632 QEMU_TIMEOUT=3600 "$MAKE" "$REL" ;;
        *) die "unknown dump name $name (one of: $ALL)" ;;
    esac || { log "$name failed"; failed+=("$name"); }
done
for name in ${@:-$ALL}; do
    [ -s "$WORK/drgn/$name/info.txt" ] && echo "== $name" && cat "$WORK/drgn/$name/info.txt"
done
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
