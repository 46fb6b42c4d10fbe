#!/bin/sh
# /init of the capture (kdump) kernel's initramfs in the vmcore "kdump"
# scenario (busybox sh; see "The kdump scenario" in
# tests/fixtures/vmcore/README.md). The crashed kernel loaded this kernel
# with `kexec -p`; this saves /proc/vmcore as kdump-tools would, with
# makedumpfile (upstream build, in /usr/sbin), onto the raw virtio disk
# /dev/vda, then powers off.
#
# Disk layout (read back on the host by scripts/vmcore/kdump-disk.py):
#   offset 0:      a text header, one 4 KiB block, NUL-padded:
#                    LPSTACK-KDUMP-DISK 1
#                    FILE <name> offset=<bytes> size=<bytes> sha256=<hex> rc=<exit code> secs=<s>
#                    ...
#                    END
#   offset 1 MiB:  the files, each at a MiB boundary, raw.
# Kernel messages go to ttyS0 (the console); this script's report to ttyS1.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp && mount -t tmpfs -o size=90% tmp /tmp

OUT=/dev/ttyS1
[ -c "$OUT" ] || OUT=/dev/console
exec 3>"$OUT"
say() { echo "$*" >&3; }
both() { echo "$*" >&3; echo "$*" >/dev/console; }
off() { sync; both "@@CAPTURE_POWEROFF $(cat /proc/uptime)"; poweroff -f; sleep 1000; }

both "@@CAPTURE_BEGIN $(uname -r) $(cat /proc/uptime)"
say "@@CAPTURE_CMDLINE $(cat /proc/cmdline)"
say "@@CAPTURE_MEMINFO $(grep -E '^(MemTotal|MemFree)' /proc/meminfo | tr -s ' \n' ' ')"
say "@@CAPTURE_VMCORE $(ls -l /proc/vmcore)"
say "@@MAKEDUMPFILE_VERSION $(makedumpfile -v 2>&1 | head -n1)"
[ -e /proc/vmcore ] || { both "@@ERROR no /proc/vmcore"; off; }

insmod /lib/lpstack/virtio_blk.ko || both "@@ERROR insmod virtio_blk"
DISK=/dev/vda
i=0
while [ ! -b "$DISK" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$DISK" ] || { both "@@ERROR no $DISK"; off; }
say "@@CAPTURE_DISK $DISK $(cat /sys/block/vda/size) sectors"

HDR=/tmp/header
echo "LPSTACK-KDUMP-DISK 1" >"$HDR"
MB=1   # next free MiB on the disk

put() {  # NAME FILE RC SECS: copy FILE to the disk, add its header line
    size=$(stat -c %s "$2")
    sha=$(sha256sum "$2" | cut -d' ' -f1)
    dd if="$2" of="$DISK" bs=1M seek="$MB" conv=notrunc 2>/dev/null \
        || both "@@ERROR dd $1"
    echo "FILE $1 offset=$((MB * 1048576)) size=$size sha256=$sha rc=$3 secs=$4" >>"$HDR"
    say "@@CAPTURE_SAVED $1 size=$size sha256=$sha rc=$3 secs=$4 at MiB $MB"
    MB=$((MB + (size + 1048575) / 1048576 + 1))
}

now() { cut -d' ' -f1 /proc/uptime; }

# As kdump-tools: makedumpfile $MAKEDUMP_ARGS /proc/vmcore <file>; its
# default MAKEDUMP_ARGS is "-c -d 31" (zlib). -l is lzo, -z zstd.
for spec in "-l lzo" "-c zlib" "-z zstd"; do
    set -- $spec
    f=/tmp/vmcore.kdump-$2
    say "@@MAKEDUMPFILE_CMD makedumpfile $1 -d 31 /proc/vmcore vmcore.kdump-$2"
    t0=$(now)
    makedumpfile "$1" -d 31 /proc/vmcore "$f" >/tmp/makedumpfile-$2.log 2>&1
    rc=$?
    t1=$(now)
    secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
    tr '\r' '\n' </tmp/makedumpfile-$2.log | grep -v '^$' | sed "s/^/@@MDF-$2 /" >&3
    if [ -s "$f" ]; then
        put "vmcore.kdump-$2" "$f" "$rc" "$secs"
    else
        both "@@ERROR makedumpfile $1 rc=$rc: no output"
    fi
    put "makedumpfile-$2.log" /tmp/makedumpfile-$2.log 0 0
    rm -f "$f"
done

# kdump-tools also saves the crashed kernel's log (dmesg.<stamp>).
t0=$(now)
makedumpfile --dump-dmesg /proc/vmcore /tmp/vmcore-dmesg.txt >/tmp/makedumpfile-dmesg.log 2>&1
rc=$?
[ -s /tmp/vmcore-dmesg.txt ] && put vmcore-dmesg.txt /tmp/vmcore-dmesg.txt "$rc" \
    "$(awk "BEGIN { printf \"%.1f\", $(now) - $t0 }")"

echo "END" >>"$HDR"
dd if="$HDR" of="$DISK" bs=4096 count=1 conv=sync,notrunc 2>/dev/null || both "@@ERROR header"
sed 's/^/@@CAPTURE_HEADER /' "$HDR" >&3
off
