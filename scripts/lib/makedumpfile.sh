# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Upstream makedumpfile for making kdump-compressed fixtures (sourced).
# Debian bookworm's makedumpfile 1.7.2 predates 6.12: its -d 31 drops the
# pages holding task_structs. The upstream source (GPL-2.0, for fixtures
# only, nothing of it goes into lpstack) is ../shared/tools/
# makedumpfile-upstream.tar.gz next to the repository unless
# MAKEDUMPFILE_TARBALL says otherwise; see ../shared/tools/README.md.
#
#   mdf_build DIR          build DIR/makedumpfile/makedumpfile (LZO, snappy,
#                          zstd, zlib; dynamic) unless it is there already;
#                          installs the -dev packages it needs; prints the path
#   mdf_qemu_elf SRC DST   DST = copy of QEMU's ELF dump SRC that makedumpfile
#                          accepts (program headers moved to offset 64)
#
# scripts/vmcore/make-vmcores.sh (prepare_kdump) and scripts/dump/
# make-test-dumps.sh carry their own copies of the same two steps.

MAKEDUMPFILE_TARBALL="${MAKEDUMPFILE_TARBALL:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/tools/makedumpfile-upstream.tar.gz}"
MDF_DEV_PKGS=(libelf-dev libdw-dev liblzo2-dev libsnappy-dev libzstd-dev libbz2-dev zlib1g-dev gcc make)

mdf_build() {
    local dir="$1" missing=() p
    local bin="$dir/makedumpfile/makedumpfile"
    if [ ! -x "$bin" ]; then
        for p in "${MDF_DEV_PKGS[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
                || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            printf '>>> apt-get install %s\n' "${missing[*]}" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${missing[@]}" >&2 || return 1
        fi
        [ -s "$MAKEDUMPFILE_TARBALL" ] || { echo "error: no $MAKEDUMPFILE_TARBALL" >&2; return 1; }
        printf '>>> building makedumpfile from %s in %s\n' "$MAKEDUMPFILE_TARBALL" "$dir" >&2
        mkdir -p "$dir"
        rm -rf "$dir/makedumpfile"
        tar -xzf "$MAKEDUMPFILE_TARBALL" -C "$dir" || return 1
        [ -d "$dir/makedumpfile" ] || { echo "error: $MAKEDUMPFILE_TARBALL has no makedumpfile/" >&2; return 1; }
        make -s -C "$dir/makedumpfile" LINKTYPE=dynamic USELZO=on USESNAPPY=on USEZSTD=on >&2 \
            || return 1
        [ -x "$bin" ] || { echo "error: the build made no $bin" >&2; return 1; }
    fi
    printf '%s\n' "$bin"
}

# QEMU's dump-guest-memory puts the section headers at offset 64 and the
# program headers after them (e_phoff = 192) and writes e_ehsize = 8;
# makedumpfile reads program headers at offset 64 whatever e_phoff says
# ("Can't get the number of PT_LOAD"). The copy gets its program headers at
# 64 and no section headers; segment data offsets do not change.
mdf_qemu_elf() {
    local src="$1" dst="$2"
    cp --reflink=auto "$src" "$dst" && chmod u+w "$dst" || return 1
    python3 - "$dst" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    eh = bytearray(f.read(64))
    assert eh[:4] == b"\x7fELF" and eh[4] == 2 and eh[5] == 1, "not a little-endian ELF64 file"
    phoff, = struct.unpack_from("<Q", eh, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
    f.seek(phoff)
    ph = f.read(phentsize * phnum)
    struct.pack_into("<QQ", eh, 0x20, 64, 0)         # e_phoff, e_shoff
    struct.pack_into("<H", eh, 0x34, 64)              # e_ehsize
    struct.pack_into("<HH", eh, 0x3c, 0, 0)           # e_shnum, e_shstrndx
    first_data = min(struct.unpack_from("<Q", ph, i * phentsize + 8)[0] for i in range(phnum))
    assert 64 + len(ph) <= first_data, "no room for the program headers"
    f.seek(0); f.write(eh); f.write(ph)
PY
}
