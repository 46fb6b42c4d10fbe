#!/usr/bin/env bash
# Make real crash dumps of a tiny QEMU guest in every format src/dump/ reads.
#
#   scripts/dump/make-test-dumps.sh [OUT]     (default: $LPSTACK_TEST_DUMPS or
#                                              /tmp/lpstack-dumps)
#
# Boots Debian's 6.12 kernel under TCG (-cpu max, 2 CPUs, 128 MB) with a
# busybox initramfs that loads qemu_fw_cfg (so QEMU's -device vmcoreinfo gets
# the guest's VMCOREINFO) and then idles. The VM is stopped once, and every
# dump is taken from that same stopped state, so all formats hold the same
# bytes:
#
#   qemu.elf              dump-guest-memory, ELF, paging=false (p_vaddr = 0)
#   qemu-paging.elf       dump-guest-memory, ELF, paging=true (p_vaddr set)
#   qemu-zlib.kdump       dump-guest-memory kdump-zlib   (QEMU < 8.2: flattened)
#   qemu-lzo.kdump        dump-guest-memory kdump-lzo    (flattened)   [if QEMU
#   qemu-snappy.kdump     dump-guest-memory kdump-snappy (flattened)    has them]
#   (makedumpfile reads a copy of qemu.elf with its headers fixed up, below)
#   mdf-zlib-d0.kdump     makedumpfile -c -d 0 qemu.elf   (kdump-compressed)
#   mdf-lzo-d31.kdump     makedumpfile -l -d 31 qemu.elf  (pages excluded)
#   mdf-raw-d31.kdump     makedumpfile -d 31 qemu.elf     (no compression)
#   mdf-zlib-d31.flat     makedumpfile -F -c -d 31 qemu.elf (flattened)
#   mdf-zlib-d31.kdump    makedumpfile -R of the above (reassembled)
#   mdf-d31.elf           makedumpfile -E -d 31 qemu.elf  (ELF, pages excluded)
#
# Needs: qemu-system-x86_64 makedumpfile busybox-static cpio python3 xz-utils
# (apt-get install -y qemu-system-x86 makedumpfile busybox-static cpio).
# The Debian debian kernel package is taken from tests/fixtures/work/ when
# another script already fetched it, else downloaded with apt-get download.
#
# The dumps are ~130 MB each: never commit them. Run the tests on them with
#   LPSTACK_TEST_DUMPS=OUT cargo test --test dump_formats real_dumps_agree -- --ignored
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-${LPSTACK_TEST_DUMPS:-/tmp/lpstack-dumps}}"
KREL="${KREL:-6.12.117+deb12-amd64}"
KPKG="${KPKG:-linux-image-$KREL-unsigned}"
SMP="${SMP:-2}"
MEM="${MEM:-128}"

for tool in qemu-system-x86_64 makedumpfile busybox cpio python3 xz; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

mkdir -p "$OUT/work"
OUT="$(cd "$OUT" && pwd)"
W="$OUT/work"

# The kernel image package: reuse the ORC fixture script's download if any.
DEB="$(ls "$REPO"/tests/fixtures/work/debs/"$KPKG"_*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$DEB" ]; then
    (cd "$W" && apt-get download "$KPKG")
    DEB="$(ls "$W/$KPKG"_*.deb | head -n1)"
fi
if [ ! -f "$W/pkg/boot/vmlinuz-$KREL" ]; then
    rm -rf "$W/pkg"
    dpkg-deb -x "$DEB" "$W/pkg"
fi
KERNEL="$W/pkg/boot/vmlinuz-$KREL"
FWCFG="$(find "$W/pkg/lib/modules" -name 'qemu_fw_cfg.ko*' | head -n1)"

# initramfs: busybox, qemu_fw_cfg.ko, a few sleeping tasks, then idle forever.
R="$W/initramfs"
rm -rf "$R"
mkdir -p "$R"/{bin,proc,sys,dev,tmp}
cp "$(command -v busybox)" "$R/bin/busybox"
case "$FWCFG" in
    *.xz) xz -dc "$FWCFG" > "$R/qemu_fw_cfg.ko" ;;
    *) cp "$FWCFG" "$R/qemu_fw_cfg.ko" ;;
esac
cat > "$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
# qemu_fw_cfg hands the guest's VMCOREINFO address to QEMU (-device vmcoreinfo).
insmod /qemu_fw_cfg.ko || echo "@@NO_FW_CFG"
sleep 100000 &
sleep 100000 | cat &
sh -c 'sleep 100000; echo done' &
echo "@@READY $(uname -r)"
while :; do sleep 3600; done
EOF
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/initramfs.cpio.gz"

SOCK="$W/qmp.sock"
CONSOLE="$W/console.log"
rm -f "$SOCK" "$CONSOLE"
qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m "$MEM" \
    -display none -serial "file:$CONSOLE" -no-reboot \
    -kernel "$KERNEL" -initrd "$W/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=0 quiet" \
    -device vmcoreinfo -qmp "unix:$SOCK,server=on,wait=off" &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
    grep -q '@@READY' "$CONSOLE" 2>/dev/null && break
    kill -0 $QPID 2>/dev/null || { echo "qemu exited; console:" >&2; cat "$CONSOLE" >&2; exit 1; }
    sleep 1
done
grep -q '@@READY' "$CONSOLE" || { echo "guest never got ready" >&2; tail -n 30 "$CONSOLE" >&2; exit 1; }
sleep 3   # let the sleepers block

rm -f "$OUT"/*.elf "$OUT"/*.kdump "$OUT"/*.flat
python3 - "$SOCK" "$OUT" <<'EOF'
import json, socket, sys
sock_path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
f = s.makefile("rw")
def cmd(name, **args):
    msg = {"execute": name}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            if "error" in r:
                raise SystemExit(f"{name}: {r['error']}")
            return r["return"]
json.loads(f.readline())          # greeting
cmd("qmp_capabilities")
cmd("stop")                       # every dump sees the same memory
# Debian's QEMU is built without lzo and snappy: ask which formats exist.
have = set(cmd("query-dump-guest-memory-capability")["formats"])
print("QEMU dump formats:", sorted(have))
for fmt, name, paging in [("elf", "qemu.elf", False), ("elf", "qemu-paging.elf", True),
                          ("kdump-zlib", "qemu-zlib.kdump", False),
                          ("kdump-lzo", "qemu-lzo.kdump", False),
                          ("kdump-snappy", "qemu-snappy.kdump", False)]:
    if fmt not in have:
        print("skipped", name, "(QEMU lacks", fmt + ")")
        continue
    cmd("dump-guest-memory", paging=paging, protocol=f"file:{out}/{name}", format=fmt)
    print("wrote", name)
cmd("quit")
EOF
wait $QPID || true
trap - EXIT

cd "$OUT"
# QEMU 7.2 puts section headers at offset 64 and the program headers after
# them (e_phoff = 192), and writes e_ehsize = 8; makedumpfile 1.7.2 reads
# program headers at 64 regardless of e_phoff and finds no PT_LOAD. Give it
# a copy with the program headers moved to 64 and no section headers (the
# data offsets do not change).
. "$HERE/../lib/makedumpfile.sh"
mdf_qemu_elf qemu.elf "$W/qemu-for-makedumpfile.elf"
E="$W/qemu-for-makedumpfile.elf"
makedumpfile -c -d 0 "$E" mdf-zlib-d0.kdump
makedumpfile -l -d 31 "$E" mdf-lzo-d31.kdump
makedumpfile -d 31 "$E" mdf-raw-d31.kdump
makedumpfile -F -c -d 31 "$E" > mdf-zlib-d31.flat
makedumpfile -R mdf-zlib-d31.kdump < mdf-zlib-d31.flat
makedumpfile -E -d 31 "$E" mdf-d31.elf
cp "$CONSOLE" "$OUT/console.log"
ls -l "$OUT"
