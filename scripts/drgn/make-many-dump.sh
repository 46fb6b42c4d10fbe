#!/usr/bin/env bash
# Make a vmcore of a Debian guest with many sleeping tasks, for timing
# lpstack against drgn (scripts/drgn/time-compare.sh).
#
# usage: scripts/drgn/make-many-dump.sh [RELEASE [NPROC]]
#        (defaults: 6.12.117+deb12-amd64, 3000)
#
# Boots the Debian kernel under QEMU TCG (2 vCPUs, KASLR on, -m $MEM) with a
# busybox initramfs whose /init loads qemu_fw_cfg.ko (so -device vmcoreinfo
# gets the guest's VMCOREINFO into the dump), starts a few blocked tasks of
# different kinds and then the many tasks, reports on ttyS1 (@@TASKS: every
# /proc/PID/task/TID, kernel threads included), and then the VM is stopped
# and dumped (paging=false, each format of FORMATS) over QMP by
# scripts/vmcore/qmp.py.
#
# MODE=procs (default): NPROC `sleep 10000` busybox processes.
# MODE=threads: one process, scripts/drgn/manythreads.c (built here with
#   gcc -static -O2 -pthread), with NPROC threads blocked in futex wait on
#   16 KiB user stacks (one mapping for all), so that 100,000 tasks fit in
#   a few GiB. With TASKS=T, NPROC is ignored and the thread count is T
#   minus the tasks already there, so that @@TASKS comes out at about T.
#   The guest's kernel.pid_max and kernel.threads-max are raised first.
#
# Output: tests/fixtures/work/drgn/$NAME/vmcore.<format> (git-ignored),
# with console.log, report.log, qmp.log and info.txt (mode, -m, @@TASKS,
# boot-to-ready seconds, dump sizes) beside it.
# vmlinuz and qemu_fw_cfg.ko come from the image .deb in
# tests/fixtures/work/debs (apt-get download if missing).
# Env: MEM (MiB, default 2048), QEMU_TIMEOUT (s, default 900), FORCE=1,
#      FORMATS (qmp.py --formats, default elf; e.g. elf,kdump-lzo),
#      NAME (output directory name, default many-RELEASE),
#      MODE (procs | threads), TASKS (threads mode: total task target).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REL="${1:-6.12.117+deb12-amd64}"
NPROC="${2:-3000}"
MEM="${MEM:-2048}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-900}"
FORMATS="${FORMATS:-elf}"
MODE="${MODE:-procs}"
TASKS="${TASKS:-}"
NAME="${NAME:-many-$REL}"
OUTDIR="$WORK/drgn/$NAME"
FIRST="vmcore.${FORMATS%%,*}"
case "$MODE" in procs|threads) ;; *) die "MODE must be procs or threads, not $MODE" ;; esac
[ -z "$TASKS" ] || [ "$MODE" = threads ] || die "TASKS= is for MODE=threads"

if [ "${FORCE:-0}" != 1 ] && [ -s "$OUTDIR/$FIRST" ]; then
    log "$OUTDIR/$FIRST exists (FORCE=1 to redo)"
    exit 0
fi

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v xz >/dev/null || missing+=(xz-utils)
if [ "$MODE" = threads ]; then
    command -v gcc >/dev/null || missing+=(gcc)
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

# vmlinuz + qemu_fw_cfg.ko from the image package.
IMG="$WORK/drgn/image-$REL"
if [ ! -s "$IMG/vmlinuz" ] || [ ! -s "$IMG/qemu_fw_cfg.ko" ]; then
    deb=$(ls "$WORK"/debs/linux-image-"$REL"-unsigned_*.deb "$WORK"/debs/linux-image-"$REL"_*.deb \
          2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        mkdir -p "$WORK/debs"
        log "apt-get download linux-image-$REL-unsigned"
        (cd "$WORK/debs" && apt-get download "linux-image-$REL-unsigned") >&2
        deb=$(ls "$WORK"/debs/linux-image-"$REL"-unsigned_*.deb | head -n1)
    fi
    rm -rf "$IMG.tmp" && mkdir -p "$IMG.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$IMG.tmp" \
        --wildcards "./boot/vmlinuz-$REL" "*/qemu_fw_cfg.ko*"
    cp "$IMG.tmp/boot/vmlinuz-$REL" "$IMG.tmp/vmlinuz"
    fw=$(find "$IMG.tmp" -name 'qemu_fw_cfg.ko*' | head -n1)
    [ -n "$fw" ] || die "no qemu_fw_cfg.ko in $deb"
    case "$fw" in
        *.xz) xz -dc "$fw" >"$IMG.tmp/qemu_fw_cfg.ko" ;;
        *.zst) zstd -dc "$fw" >"$IMG.tmp/qemu_fw_cfg.ko" ;;
        *) cp "$fw" "$IMG.tmp/qemu_fw_cfg.ko" ;;
    esac
    mkdir -p "$IMG" && mv "$IMG.tmp/vmlinuz" "$IMG.tmp/qemu_fw_cfg.ko" "$IMG/" && rm -rf "$IMG.tmp"
fi

rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
IR="$OUTDIR/initramfs"
mkdir -p "$IR"/{bin,proc,sys,dev,tmp,lib}
cp /bin/busybox "$IR/bin/busybox"
ln -s busybox "$IR/bin/sh"
cp "$IMG/qemu_fw_cfg.ko" "$IR/lib/"
if [ "$MODE" = threads ]; then
    gcc -static -O2 -pthread -Wall -o "$IR/bin/manythreads" "$ROOT/scripts/drgn/manythreads.c" \
        || die "building manythreads"
    strip "$IR/bin/manythreads" 2>/dev/null || true
    if [ -n "$TASKS" ]; then
        WHAT="threads for about $TASKS tasks"
        MANY="n=\$(( $TASKS - \$(ls -d /proc/[0-9]*/task/[0-9]* | wc -l) - 1 ))
[ \$n -ge 0 ] || n=0"
    else
        WHAT="$NPROC threads"
        MANY="n=$NPROC"
    fi
    MANY="echo $(( 4 * 1024 * 1024 )) >/proc/sys/kernel/pid_max
echo 4000000 >/proc/sys/kernel/threads-max
echo \"@@LIMITS pid_max \$(cat /proc/sys/kernel/pid_max) threads-max \$(cat /proc/sys/kernel/threads-max)\" >&3
$MANY
echo \"@@THREADS starting \$n\" >&3
/bin/manythreads \$n /tmp/threads.ready >&3 2>&3 &
while [ ! -e /tmp/threads.ready ]; do sleep 1; done"
else
    WHAT="$NPROC sleepers"
    MANY="i=0
while [ \$i -lt $NPROC ]; do
    sleep 10000 &
    i=\$((i + 1))
done"
fi
cat >"$IR/init" <<EOF
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp && mount -t tmpfs tmp /tmp
OUT=/dev/ttyS1
[ -c "\$OUT" ] || OUT=/dev/console
exec 3>"\$OUT"
echo "@@UNAME \$(uname -r)" >&3
insmod /lib/qemu_fw_cfg.ko && echo "@@FW_CFG loaded" >&3
[ -e /sys/firmware/qemu_fw_cfg/by_name/etc/vmcoreinfo ] \\
    && echo "@@FW_CFG etc/vmcoreinfo present" >&3
# A few other kinds of blocked task.
sleep 10000 | cat &
mkfifo /tmp/fifo
cat /tmp/fifo &
sh -c 'sleep 10000; echo done' &
$MANY
sleep 5
echo "@@TASKS \$(ls -d /proc/[0-9]*/task/[0-9]* | wc -l)" >&3
echo "@@LOADAVG \$(cat /proc/loadavg)" >&3
echo "@@MEMINFO \$(grep -E 'MemTotal|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' ' ')" >&3
echo READY-FOR-DUMP >&3
while :; do sleep 1000; done
EOF
chmod +x "$IR/init"
(cd "$IR" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$OUTDIR/initramfs.cpio.gz"
rm -rf "$IR"

sock="$OUTDIR/qmp.sock"
qemu=(qemu-system-x86_64 -accel tcg -cpu max,la57=off -smp 2 -m "$MEM"
      -nographic -no-reboot -kernel "$IMG/vmlinuz" -initrd "$OUTDIR/initramfs.cpio.gz"
      -append "console=ttyS0 loglevel=4 panic=-1"
      -device vmcoreinfo -qmp "unix:$sock,server=on,wait=off"
      -monitor none -serial "file:$OUTDIR/console.log" -serial "file:$OUTDIR/report.log")
echo "${qemu[*]}" >"$OUTDIR/qemu.cmd"
log "booting $REL with $WHAT (-m $MEM) -> $OUTDIR"
t0=$(date +%s)
"${qemu[@]}" </dev/null >"$OUTDIR/qemu.out" 2>&1 &
qpid=$!
# Do not leave the guest running if the dump fails.
trap 'kill "$qpid" 2>/dev/null || true' EXIT
until grep -q 'READY-FOR-DUMP' "$OUTDIR/report.log" 2>/dev/null; do
    kill -0 "$qpid" 2>/dev/null || { tail -n 30 "$OUTDIR/console.log" >&2; die "QEMU exited early"; }
    if [ $(( $(date +%s) - t0 )) -ge "$QEMU_TIMEOUT" ]; then
        kill "$qpid" 2>/dev/null || true
        tail -n 30 "$OUTDIR/console.log" >&2
        die "no READY-FOR-DUMP after ${QEMU_TIMEOUT}s"
    fi
    sleep 2
done
ready=$(( $(date +%s) - t0 ))
log "ready after $ready s: $(grep '@@TASKS' "$OUTDIR/report.log")"
python3 "$ROOT/scripts/vmcore/qmp.py" "$sock" "$OUTDIR" --formats "$FORMATS" | tee "$OUTDIR/qmp.log" >&2
chmod a+r "$OUTDIR"/vmcore.* 2>/dev/null || true
wait "$qpid" || true
rm -f "$sock"
grep -q 'etc/vmcoreinfo present' "$OUTDIR/report.log" || log "warning: no VMCOREINFO in the guest"
{
    echo "release=$REL"
    echo "mode=$MODE"
    if [ "$MODE" = threads ]; then echo "threads=$(grep -o '@@THREADS starting [0-9]*' "$OUTDIR/report.log" | awk '{print $3}')"
    else echo "nproc=$NPROC"; fi
    echo "mem_mib=$MEM"
    echo "tasks=$(grep -o '@@TASKS [0-9]*' "$OUTDIR/report.log" | awk '{print $2}')"
    echo "boot_to_ready_s=$ready"
    for f in "$OUTDIR"/vmcore.*; do [ -e "$f" ] && echo "size.$(basename "$f")=$(stat -c %s "$f")"; done
} >"$OUTDIR/info.txt"
ls "$OUTDIR"/vmcore.* >/dev/null 2>&1 || die "no dump written (see $OUTDIR/qmp.log)"
for f in "$OUTDIR"/vmcore.*; do log "wrote $f"; done
