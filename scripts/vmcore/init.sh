#!/bin/sh
# /init of the lpstack vmcore initramfs (busybox sh). See README in
# tests/fixtures/vmcore/. Kernel messages go to ttyS0 (console); everything
# this script reports goes to ttyS1 so the two streams never interleave.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp && mount -t tmpfs tmp /tmp

OUT=/dev/ttyS1
[ -c "$OUT" ] || OUT=/dev/console
exec 3>"$OUT"
say() { echo "$*" >&3; }
both() { echo "$*" >&3; echo "$*" >/dev/console; }

both "@@UNAME $(uname -r)"
echo 8 > /proc/sys/kernel/printk

# QEMU's -device vmcoreinfo only gets the guest's VMCOREINFO through the
# fw_cfg driver.
insmod /lib/lpstack/qemu_fw_cfg.ko && say "@@FW_CFG loaded"
if [ -e /sys/firmware/qemu_fw_cfg/by_name/etc/vmcoreinfo ]; then
    say "@@FW_CFG etc/vmcoreinfo present"
else
    say "@@FW_CFG etc/vmcoreinfo MISSING"
fi

echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control
echo 'file kernel/livepatch/core.c +p' > /sys/kernel/debug/dynamic_debug/control

insmod /lib/lpstack/lpstack_park.ko || both "@@ERROR insmod lpstack_park"

# Workload. parker NAME SPOT...: one thread per SPOT parks in park_here_SPOT.
/bin/parker mt a a a b b c &         # 1 process, 6 parked threads + main in futex
/bin/parker sa main-a &              # single-threaded, parks in park_here_a
/bin/parker sb main-b &              # single-threaded, parks in park_here_b
sleep 1000 &                         # nanosleep
sleep 1000 | cat &                   # cat blocked reading an empty pipe
sh -c 'while :; do :; done' &        # busy loop: running at dump time
BUSY=$!
sleep 2

say "@@PARKED_BEFORE_PATCH"
for t in /proc/[0-9]*/task/[0-9]*; do
    read -r c < "$t/comm" 2>/dev/null || continue
    case "$c" in mt*|sa*|sb*) say "@@PARKED ${t##*/} $c $(cat $t/wchan 2>/dev/null)";; esac
done

say "@@INSMOD_LP $(cat /proc/uptime)"
insmod /lib/lpstack/lpstack_lp.ko || both "@@ERROR insmod lpstack_lp"
sleep 4

gt_pass() {  # N
    say "@@GT_BEGIN $1 $(cat /proc/uptime)"
    for t in /proc/[0-9]*/task/[0-9]*; do
        tid="${t##*/}"
        pid="${t#/proc/}"; pid="${pid%%/*}"
        read -r comm < "$t/comm" 2>/dev/null || continue
        read -r ps < "$t/patch_state" 2>/dev/null || ps=?
        read -r st < "$t/stat" 2>/dev/null || st=
        st="${st##*) }"; st="${st%% *}"
        say "GT tid=$tid tgid=$pid comm=$comm patch_state=$ps stat_state=$st"
    done
    read -r tr < /sys/kernel/livepatch/lpstack_lp/transition
    read -r en < /sys/kernel/livepatch/lpstack_lp/enabled
    say "GT transition=$tr enabled=$en"
    say "@@GT_END $1"
}

gt_pass 1
say "@@BUSY_PID $BUSY"
say "@@INIT_PID $$"
say "@@CMDLINE $(cat /proc/cmdline)"
say "@@LIVEPATCH $(ls /sys/kernel/livepatch/lpstack_lp 2>&1 | tr '\n' ' ')"
say "@@MODULES_BEGIN"
cat /proc/modules >&3
say "@@MODULES_END"
say "@@CPUINFO_FLAGS $(grep -m1 '^flags' /proc/cpuinfo)"
say "@@STACKS_BEGIN"
for t in /proc/[0-9]*/task/[0-9]*; do
    read -r comm < "$t/comm" 2>/dev/null || continue
    say "@@TASK ${t##*/} $comm"
    cat "$t/stack" >&3 2>/dev/null
done
say "@@STACKS_END"
sleep 2
gt_pass 2
say "@@DMESG_BEGIN"
dmesg >&3
say "@@DMESG_END"
both "READY-FOR-DUMP"
while :; do sleep 1000; done
