#!/bin/sh
# /init of the `lpstack check live` guest (busybox sh); see
# scripts/live/run-live-guest.sh. Kernel messages go to ttyS0, this
# script's report to ttyS1. /lib/lpstack/scenario, if present, names a
# scenario: "stacked" checks the system while a second livepatch's
# transition is stalled (stacked_run below) instead of the default run.
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
SCENARIO=
[ -r /lib/lpstack/scenario ] && read -r SCENARIO < /lib/lpstack/scenario

both "@@UNAME $(uname -r)"
[ -z "$SCENARIO" ] || both "@@SCENARIO $SCENARIO"
say "@@CMDLINE $(cat /proc/cmdline)"
say "@@NPROC $(nproc)"
echo 8 > /proc/sys/kernel/printk
echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control
insmod /lib/lpstack/lpstack_park.ko || both "@@ERROR insmod lpstack_park"

# Workload: threads parked in park_here_{a,b,c} (lpstack_park), MANY more
# parked in park_here_c, and ordinary sleepers and a busy loop.
workload() {
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
}

# Every patch in /sys/kernel/livepatch: enabled, transition.
klp_state() {  # TAG
    for p in /sys/kernel/livepatch/*; do
        [ -d "$p" ] || continue
        say "$1 patch=${p##*/} enabled=$(cat "$p/enabled") transition=$(cat "$p/transition")"
    done
}

# The stacked scenario: lpstack_lp1 (park_here_a, park_here_b, with
# sleeping replacements) is applied while nothing is parked, then the
# workload parks in it, then lpstack_lp2 (park_here_a, park_here_c,
# cmdline_proc_show, lpstack_absent:absent_fn) is loaded on top and its
# transition stalls. While it is stalled, three checks: from the kernel's
# memory (no set), from lpstack_lp2.ko, from funcs.txt. Then the kernel's
# next retries (markers in the kernel log around the checks) and every
# task's patch_state.
stacked_run() {
    echo 'file kernel/livepatch/core.c +p' > /sys/kernel/debug/dynamic_debug/control
    say "@@INSMOD_LP1 $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp1.ko || both "@@ERROR insmod lpstack_lp1"
    i=0
    while [ "$(cat /sys/kernel/livepatch/lpstack_lp1/transition 2>/dev/null)" != 0 ] && [ $i -lt 120 ]; do
        sleep 0.5; i=$((i + 1))
    done
    say "@@TRANSITION_DONE lpstack_lp1 $(cat /proc/uptime) after $i x 0.5 s"
    workload
    sleep 2
    say "@@THREADS $(ls -d /proc/[0-9]*/task/[0-9]* | wc -l)"
    say "@@INSMOD_LP2 $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp2.ko || both "@@ERROR insmod lpstack_lp2"
    # Let the transition stall: its first retries name the sleepers.
    sleep 3
    klp_state "@@KLP_BEFORE_RUNS"
    echo "lpstack-live: checks begin" > /dev/kmsg
    say "@@RUNS_BEGIN $(cat /proc/uptime)"
    lpstack check live --format json >/tmp/memory.json 2>/tmp/memory.err
    say "@@LPSTACK_RC memory $? $(cat /proc/uptime)"
    lpstack check live --patch /lib/lpstack/lpstack_lp2.ko --format json >/tmp/patch.json 2>/tmp/patch.err
    say "@@LPSTACK_RC patch $? $(cat /proc/uptime)"
    lpstack check live --set /lib/lpstack/funcs.txt --format json >/tmp/set.json 2>/tmp/set.err
    say "@@LPSTACK_RC set $? $(cat /proc/uptime)"
    echo "lpstack-live: checks end" > /dev/kmsg
    # At least two retries (about one a second) after the checks.
    sleep 3
    say "@@PATCH_STATE_BEGIN"
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r ps < "$t/patch_state" 2>/dev/null || continue
        read -r comm < "$t/comm" 2>/dev/null
        say "PATCH_STATE ${t##*/} $ps $comm"
    done
    say "@@PATCH_STATE_END"
    klp_state "@@KLP_AFTER_RUNS"
    say "@@CMDLINE_AFTER $(cat /proc/cmdline)"
    for run in memory patch set; do
        R=$(echo "$run" | tr a-z A-Z)
        say "@@LPSTACK_STDERR_${R}_BEGIN"
        cat "/tmp/$run.err" >&3
        say "@@LPSTACK_STDERR_${R}_END"
        say "@@LPSTACK_JSON_${R}_BEGIN"
        cat "/tmp/$run.json" >&3
        say "@@LPSTACK_JSON_${R}_END"
    done
    say "@@STACKS_BEGIN"
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r comm < "$t/comm" 2>/dev/null || continue
        say "@@TASK ${t##*/} $comm"
        cat "$t/stack" >&3 2>/dev/null
    done
    say "@@STACKS_END"
    say "@@DMESG_BEGIN"
    dmesg >&3
    say "@@DMESG_END"
    klp_state "@@KLP_FINAL"
}

if [ "$SCENARIO" = stacked ]; then
    stacked_run
    both "LIVE-GUEST-DONE"
    sync
    poweroff -f
fi

# Calibration, before the workload: the vmcore check the host also times
# (run-info.txt), to tell how much slower this emulated machine is.
for i in 1 2 3; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    lpstack check /lib/lpstack/cal.kdump --set /lib/lpstack/cal-funcs.txt >/dev/null 2>&1
    rc=$?
    say "@@CALIBRATE $i rc=$rc $t0 $(cut -d' ' -f1 /proc/uptime)"
done

# Workload (a few thousand more threads parked in park_here_c, which
# lpstack_lp does not patch).
workload
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
