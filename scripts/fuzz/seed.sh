#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ (git-ignored) with the seeds: the committed
# fuzz/seeds/<target>/ (cut from the fixtures by tests/fuzz_seeds.rs) and
# the fixture files that are seeds as they are. Existing files are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
fx=tests/fixtures
add() {
    local t=$1
    shift
    mkdir -p "fuzz/corpus/$t"
    for f in "$@"; do
        [ -f "$f" ] && cp -n "$f" "fuzz/corpus/$t/seed-$(echo "${f#tests/fixtures/}" | tr / _)"
    done
    return 0
}
for d in fuzz/seeds/*/; do
    add "$(basename "$d")" "$d"*
done
add elf_vmcore $fx/dump/qemu-cut.elf
add kdump_compressed $fx/dump/mdf-lzo-d31-cut.kdump
add flattened $fx/dump/qemu-zlib-cut.flat
add orc_table $fx/vmcore/*/lpstack_*.ko
add btf $fx/btf/*.btf
add livepatch_ko $fx/vmcore/*/lpstack_*.ko $fx/livepatch/forms/*.o $fx/livepatch/forms/*.ko $fx/livepatch/samples/*.ko
