#!/bin/sh
# /init of the `lpstack check live` guest (busybox sh); see
# scripts/live/run-live-guest.sh. Kernel messages go to ttyS0, this
# script's report to ttyS1.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mkdir -p /tmp && mount -t tmpfs tmp /tmp

OUT=/dev/ttyS1
[ -c "$OUT" ] || OUT=/dev/console
exec 3>"$OUT"
say() { echo "$*" >&3; }
both() { echo "$*" >&3; echo "$*" >/dev/console; }
LP="lpstack check live --set /lib/lpstack/funcs.txt"

both "@@UNAME $(uname -r)"
say "@@CMDLINE $(cat /proc/cmdline)"
say "@@NPROC $(nproc)"
echo 8 > /proc/sys/kernel/printk
echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control
insmod /lib/lpstack/lpstack_park.ko || both "@@ERROR insmod lpstack_park"

# Calibration, before the workload: the vmcore check the host also times
# (run-info.txt), to tell how much slower this emulated machine is.
for i in 1 2 3; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    lpstack check /lib/lpstack/cal.kdump --set /lib/lpstack/cal-funcs.txt >/dev/null 2>&1
    rc=$?
    say "@@CALIBRATE $i rc=$rc $t0 $(cut -d' ' -f1 /proc/uptime)"
done

# Workload: threads parked in park_here_{a,b,c} (lpstack_park), a few
# thousand more parked in park_here_c (not patched), and ordinary sleepers
# and a busy loop.
/bin/parker mt a a a b b c &
/bin/parker sa main-a &
/bin/parker sb main-b &
sleep 1000 &
sleep 1000 | cat &
sh -c 'while :; do :; done' &
MANY=${MANY:-0}
[ -r /lib/lpstack/many ] && read -r MANY < /lib/lpstack/many
if [ "$MANY" -gt 0 ]; then
    ulimit -n $((MANY + 64))  # one open /dev/lpstack_park per thread
    # shellcheck disable=SC2046
    /bin/parker many $(yes c | head -n "$MANY") &
    MANYPID=$!
    tries=0
    while [ "$(ls /proc/$MANYPID/task 2>/dev/null | wc -l)" -lt $((MANY + 1)) ] && [ $tries -lt 600 ]; do
        sleep 1; tries=$((tries + 1))
    done
fi
sleep 3
say "@@THREADS $(ls -d /proc/[0-9]*/task/[0-9]* | wc -l)"

# Timing: the whole system, three times; and what reading /proc/kallsyms
# alone costs here.
for i in 1 2 3; do
    $LP --timing >/dev/null 2>/tmp/timing.err
    say "@@TIMING $i rc=$? $(grep 'timing:' /tmp/timing.err)"
    say "@@SETUP $i $(grep 'setup:' /tmp/timing.err)"
    grep -v 'timing:\|setup:' /tmp/timing.err | head -n 5 >&3
done
# The same on two threads.
for i in 1 2 3; do
    $LP --threads 2 --timing >/dev/null 2>/tmp/timing.err
    say "@@TIMING_2THREADS $i rc=$? $(grep 'timing:' /tmp/timing.err)"
    say "@@SETUP_2THREADS $i $(grep 'setup:' /tmp/timing.err)"
done
# The same with symbols from /proc/kallsyms instead of kernel memory.
$LP --symbols-from proc-kallsyms --timing >/dev/null 2>/tmp/timing.err
say "@@TIMING_PROC rc=$? $(grep 'timing:' /tmp/timing.err)"
say "@@SETUP_PROC $(grep 'setup:' /tmp/timing.err)"
t0=$(cut -d' ' -f1 /proc/uptime)
cat /proc/kallsyms >/dev/null
say "@@KALLSYMS_CAT $t0 $(cut -d' ' -f1 /proc/uptime)"

# The prediction, then at once the livepatch: the kernel's first
# transition attempt runs inside insmod.
$LP --format json >/tmp/live.json 2>/tmp/live.err
RC=$?
insmod /lib/lpstack/lpstack_lp.ko || both "@@ERROR insmod lpstack_lp"
# The prediction again with symbols from /proc/kallsyms: same verdicts.
$LP --symbols-from proc-kallsyms --format json >/tmp/live-proc.json 2>/dev/null
# And on two threads: same verdicts.
$LP --threads 2 --format json >/tmp/live-2threads.json 2>/dev/null
say "@@LPSTACK_RC $RC"
say "@@LPSTACK_STDERR_BEGIN"
cat /tmp/live.err >&3
say "@@LPSTACK_STDERR_END"
say "@@LPSTACK_JSON_BEGIN"
cat /tmp/live.json >&3
say "@@LPSTACK_JSON_END"
say "@@LPSTACK_JSON_PROC_BEGIN"
cat /tmp/live-proc.json >&3
say "@@LPSTACK_JSON_PROC_END"
say "@@LPSTACK_JSON_2THREADS_BEGIN"
cat /tmp/live-2threads.json >&3
say "@@LPSTACK_JSON_2THREADS_END"
sleep 3
say "@@PATCH_STATE_BEGIN"
for t in /proc/[0-9]*/task/[0-9]*; do
    read -r ps < "$t/patch_state" 2>/dev/null || continue
    [ "$ps" = 0 ] || continue
    read -r comm < "$t/comm" 2>/dev/null
    say "UNPATCHED ${t##*/} $comm"
done
say "@@PATCH_STATE_END"
say "@@DMESG_BEGIN"
dmesg >&3
say "@@DMESG_END"

# The refusals, each run as the guest sees it.
refusal() {  # NAME CMD...
    name=$1; shift
    "$@" >/dev/null 2>/tmp/refusal.err
    say "@@REFUSAL $name rc=$? $(cat /tmp/refusal.err)"
}
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' > /etc/passwd
echo 'nobody:x:65534:' > /etc/group
refusal not-root su -s /bin/sh nobody -c "$LP"
old=$(cat /proc/sys/kernel/kptr_restrict)
echo 2 > /proc/sys/kernel/kptr_restrict
refusal kptr-restrict $LP --symbols-from proc-kallsyms
# Symbols from memory need no kallsyms addresses: this run works.
$LP >/dev/null 2>/tmp/kptr.err
say "@@KPTR2_MEMORY rc=$? $(head -c 300 /tmp/kptr.err)"
echo "$old" > /proc/sys/kernel/kptr_restrict
mount -t tmpfs none /sys/kernel/btf
refusal no-btf $LP
umount /sys/kernel/btf
mount -t tmpfs none /proc
refusal no-kcore $LP
umount /proc
say "@@LOCKDOWN_BEFORE $(cat /sys/kernel/security/lockdown 2>&1)"
echo confidentiality > /sys/kernel/security/lockdown 2>/dev/null
refusal lockdown $LP

both "LIVE-GUEST-DONE"
sync
poweroff -f
