#!/bin/sh
# /init of the lpstack vmcore initramfs for the livepatch scenarios
# (busybox sh): stacked, replace, unpatch, kthread, kdump, kdump-irq,
# kdump-nmi; the name is in
# /lib/lpstack/scenario. The default scenario has its own /init (init.sh),
# which this one follows step by step. See "Livepatch scenarios" in
# tests/fixtures/vmcore/README.md. Kernel messages go to ttyS0 (console);
# everything this script reports goes to ttyS1.
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

read -r SCENARIO < /lib/lpstack/scenario
LP=/sys/kernel/livepatch
case "$SCENARIO" in
stacked) TP=lpstack_lp2; TARGET=1 ;;   # lpstack_lp2 on top of lpstack_lp1
replace) TP=lpstack_lp3; TARGET=1 ;;   # atomic replace of lpstack_lp1
unpatch) TP=lpstack_lp1; TARGET=0 ;;   # lpstack_lp1 disabled
kthread) TP=lpstack_lp_kthread; TARGET=1 ;;  # patches a kthread's main function
kdump|kdump-irq|kdump-nmi) TP=lpstack_lp_spin; TARGET=1 ;;  # a kthread spins in lpspin_work; then a panic
*) TP=?; TARGET=? ;;
esac
# The kdump scenarios: a capture kernel is loaded, lpstack_spin spins on
# SPIN_CPU, /init and all it starts stay on the other CPU (taskset mask
# INIT_MASK). kdump-nmi swaps them: the NMI QEMU injects is taken by CPU 0
# only (Linux unmasks LINT1 on the boot CPU only), and it must interrupt
# the spinner.
KDUMP=0; SPIN_CPU=1; INIT_MASK=1
case "$SCENARIO" in kdump|kdump-irq|kdump-nmi) KDUMP=1 ;; esac
[ "$SCENARIO" != kdump-nmi ] || { SPIN_CPU=0; INIT_MASK=2; }

both "@@UNAME $(uname -r)"
both "@@SCENARIO $SCENARIO"
say "@@TRANSITION_PATCH $TP"
say "@@TARGET_STATE $TARGET"
echo 8 > /proc/sys/kernel/printk

# QEMU's -device vmcoreinfo only gets the guest's VMCOREINFO through the
# fw_cfg driver.
insmod /lib/lpstack/qemu_fw_cfg.ko && say "@@FW_CFG loaded"
if [ -e /sys/firmware/qemu_fw_cfg/by_name/etc/vmcoreinfo ]; then
    say "@@FW_CFG etc/vmcoreinfo present"
else
    say "@@FW_CFG etc/vmcoreinfo MISSING"
fi

if [ "$KDUMP" = 1 ]; then
    # The capture kernel, as kdump-tools loads it: the same vmlinuz, its own
    # initramfs (/init = scripts/vmcore/init-kdump-capture.sh), this
    # command line without crashkernel= plus kdump-tools' default
    # KDUMP_CMDLINE_APPEND. kexec is Debian's (kexec-tools, with the Xen
    # libraries it links in /lib/x86_64-linux-gnu).
    say "@@CRASHKERNEL size=$(cat /sys/kernel/kexec_crash_size) iomem=$(grep -i 'crash kernel' /proc/iomem | tr -s ' ' | tr '\n' ';')"
    CAP_CMDLINE="$(sed -e 's/crashkernel=[^ ]*//' -e 's/  */ /g' -e 's/ *$//' /proc/cmdline) reset_devices nr_cpus=1 irqpoll nousb"
    say "@@KEXEC_CMD /sbin/kexec -p --command-line=\"$CAP_CMDLINE\" --initrd=/boot/capture.cpio.gz /boot/vmlinuz"
    /sbin/kexec -p --command-line="$CAP_CMDLINE" --initrd=/boot/capture.cpio.gz /boot/vmlinuz >&3 2>&1
    say "@@KEXEC rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded) $(/sbin/kexec --version 2>&1)"
    [ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || both "@@ERROR no capture kernel loaded"
fi

echo 'file kernel/livepatch/transition.c +p' > /sys/kernel/debug/dynamic_debug/control
echo 'file kernel/livepatch/core.c +p' > /sys/kernel/debug/dynamic_debug/control

# klp_enable_patch refuses while another transition runs: wait for it.
wait_transition() {  # PATCH
    i=0
    while [ "$i" -lt 120 ]; do
        read -r tr < "$LP/$1/transition" 2>/dev/null || tr=?
        if [ "$tr" = 0 ]; then
            say "@@TRANSITION_DONE $1 $(cat /proc/uptime) after $i x 0.5 s"
            return 0
        fi
        sleep 0.5
        i=$((i + 1))
    done
    both "@@ERROR $1 still in transition (transition=$tr) after 60 s"
    return 1
}

klp_state() {  # TAG: every patch in /sys/kernel/livepatch, and its objects
    for p in "$LP"/*; do
        [ -d "$p" ] || continue
        read -r en < "$p/enabled"
        read -r tr < "$p/transition"
        rp=$(cat "$p/replace" 2>/dev/null || echo ?)
        say "$1 patch=${p##*/} enabled=$en transition=$tr replace=$rp"
        for o in "$p"/*/; do
            [ -e "$o/patched" ] || continue
            o=${o%/}
            say "$1   object=${o##*/} patched=$(cat "$o/patched")"
        done
    done
}

insmod /lib/lpstack/lpstack_park.ko || both "@@ERROR insmod lpstack_park"

kthread_wakeups() {  # TAG: the kthreads' returns from schedule() (<s>,<d>)
    say "$1 $(cat /sys/module/lpstack_kthread/parameters/wakeups) $(cat /proc/uptime)"
}

spin_state() {  # TAG: the spinning kthread: tid, state and CPU (stat), counters
    tag=$1
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r c < "$t/comm" 2>/dev/null || continue
        [ "$c" = lpstack_spin ] || continue
        read -r st < "$t/stat"
        set -- ${st##*) }   # stat from field 3 on: $1 = state, ${37} = processor (field 39)
        SPIN_TID=${t##*/}
        say "$tag tid=$SPIN_TID state=$1 cpu=${37} rounds=$(cat /sys/module/lpstack_spin/parameters/rounds)" \
            "yields=$(cat /sys/module/lpstack_spin/parameters/yields)" \
            "last_cpu=$(cat /sys/module/lpstack_spin/parameters/last_cpu) $(cut -d' ' -f1 /proc/uptime)"
    done
}

if [ "$SCENARIO" = kthread ]; then
    # No first patch: two kernel threads whose main function is
    # lpstack_kthread_loop (lpstack_kt_s TASK_INTERRUPTIBLE, lpstack_kt_d
    # TASK_KILLABLE).
    insmod /lib/lpstack/lpstack_kthread.ko || both "@@ERROR insmod lpstack_kthread"
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r c < "$t/comm" 2>/dev/null || continue
        case "$c" in lpstack_kt*) say "@@KTHREAD ${t##*/} $c $(cat $t/wchan 2>/dev/null)";; esac
    done
    kthread_wakeups "@@KTHREAD_WAKEUPS before_patch"
elif [ "$KDUMP" = 1 ]; then
    # No first patch: one kernel thread, lpstack_spin, bound to CPU 1
    # (kdump-nmi: CPU 0), busy-looping in lpspin_work (which
    # lpstack_lp_spin patches). /init and everything it starts stay on the
    # other CPU.
    taskset -p "$INIT_MASK" $$ >/dev/null || both "@@ERROR taskset"
    [ "$SCENARIO" = kdump ] || say "@@CPUS spin_cpu=$SPIN_CPU init_mask=$INIT_MASK"
    insmod /lib/lpstack/lpstack_spin.ko cpu="$SPIN_CPU" || both "@@ERROR insmod lpstack_spin"
    sleep 1
    spin_state "@@SPIN before_patch"
else
    # lpstack_lp1 first, while nothing is parked: its transition completes.
    say "@@INSMOD_LP1 $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp1.ko || both "@@ERROR insmod lpstack_lp1"
    wait_transition lpstack_lp1
    klp_state "@@KLP_AFTER_LP1"
fi

# Workload, as in init.sh; now park_here_a/b run lpstack_lp1's
# livepatch_park_here_a/b, which park the thread in turn.
/bin/parker mt a a a b b c &         # 1 process, 6 parked threads + main in futex
/bin/parker sa main-a &              # single-threaded, parks in park_here_a
/bin/parker sb main-b &              # single-threaded, parks in park_here_b
sleep 1000 &                         # nanosleep
sleep 1000 | cat &                   # cat blocked reading an empty pipe
if [ "$KDUMP" = 1 ]; then
    BUSY=none                        # one CPU is lpstack_spin's, the other stays free
else
    sh -c 'while :; do :; done' &    # busy loop: running at dump time
    BUSY=$!
fi
sleep 2

say "@@PARKED_BEFORE_PATCH"
for t in /proc/[0-9]*/task/[0-9]*; do
    read -r c < "$t/comm" 2>/dev/null || continue
    case "$c" in mt*|sa*|sb*) say "@@PARKED ${t##*/} $c $(cat $t/wchan 2>/dev/null)";; esac
done

case "$SCENARIO" in
stacked)
    say "@@INSMOD_LP2 $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp2.ko || both "@@ERROR insmod lpstack_lp2" ;;
replace)
    say "@@INSMOD_LP3 $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp3.ko || both "@@ERROR insmod lpstack_lp3" ;;
unpatch)
    say "@@DISABLE_LP1 $(cat /proc/uptime)"
    echo 0 > "$LP/lpstack_lp1/enabled" || both "@@ERROR disable lpstack_lp1" ;;
kthread)
    say "@@INSMOD_LP_KTHREAD $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp_kthread.ko || both "@@ERROR insmod lpstack_lp_kthread" ;;
kdump|kdump-irq|kdump-nmi)
    say "@@INSMOD_LP_SPIN $(cat /proc/uptime)"
    insmod /lib/lpstack/lpstack_lp_spin.ko || both "@@ERROR insmod lpstack_lp_spin" ;;
*)
    both "@@ERROR unknown scenario '$SCENARIO'" ;;
esac
T_SECOND=$(cut -d. -f1 /proc/uptime)
sleep 4

gt_pass() {  # N
    say "@@GT_BEGIN $1 $(cat /proc/uptime)"
    say "GT target_state=$TARGET transition_patch=$TP"
    for p in "$LP"/*; do
        [ -d "$p" ] || continue
        read -r en < "$p/enabled"
        read -r tr < "$p/transition"
        say "GT patch=${p##*/} enabled=$en transition=$tr"
    done
    for t in /proc/[0-9]*/task/[0-9]*; do
        tid="${t##*/}"
        pid="${t#/proc/}"; pid="${pid%%/*}"
        read -r comm < "$t/comm" 2>/dev/null || continue
        read -r ps < "$t/patch_state" 2>/dev/null || ps=?
        read -r st < "$t/stat" 2>/dev/null || st=
        st="${st##*) }"; st="${st%% *}"
        say "GT tid=$tid tgid=$pid comm=$comm patch_state=$ps stat_state=$st"
    done
    read -r tr < "$LP/$TP/transition"
    read -r en < "$LP/$TP/enabled"
    say "GT transition=$tr enabled=$en"
    say "@@GT_END $1"
}

gt_pass 1
[ "$SCENARIO" != kthread ] || kthread_wakeups "@@KTHREAD_WAKEUPS pass1"
[ "$KDUMP" != 1 ] || spin_state "@@SPIN pass1"
say "@@BUSY_PID $BUSY"
say "@@INIT_PID $$"
say "@@CMDLINE $(cat /proc/cmdline)"
klp_state "@@KLP_STATE"
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
if [ "$SCENARIO" = kthread ]; then
    # Past livepatch's fake signals (sent after 15 retries, about one a
    # second): pass 2 at least 22 s after the transition started.
    while [ "$(cut -d. -f1 /proc/uptime)" -lt $((T_SECOND + 22)) ]; do sleep 1; done
    say "@@KTHREAD_STACKS_BEGIN"
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r c < "$t/comm" 2>/dev/null || continue
        case "$c" in lpstack_kt*) say "@@TASK ${t##*/} $c"; cat "$t/stack" >&3 2>/dev/null;; esac
    done
    say "@@KTHREAD_STACKS_END"
fi
gt_pass 2
[ "$SCENARIO" != kthread ] || kthread_wakeups "@@KTHREAD_WAKEUPS pass2"
[ "$KDUMP" != 1 ] || spin_state "@@SPIN pass2"
say "@@DMESG_BEGIN"
dmesg >&3
say "@@DMESG_END"
# The last look before the dump: the transition must still be stalled.
klp_state "@@KLP_FINAL"
read -r tr < "$LP/$TP/transition"
if [ "$tr" = 1 ]; then
    say "@@STALLED yes $TP transition=1 $(cat /proc/uptime)"
else
    both "@@STALLED NO $TP transition=$tr"
fi
both "READY-FOR-DUMP"
if [ "$KDUMP" = 1 ]; then
    spin_state "@@SPIN before_panic"
fi
case "$SCENARIO" in
kdump)
    # The crash: sysrq 'c' (panic("sysrq triggered crash")) from a shell on
    # CPU 0 while lpstack_spin spins on CPU 1; the panic kexecs into the
    # capture kernel, which saves /proc/vmcore and powers off.
    echo 1 > /proc/sys/kernel/sysrq
    say "@@SYSRQ $(cat /proc/sys/kernel/sysrq) kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    both "@@PANIC $(cut -d' ' -f1 /proc/uptime)"
    taskset 1 sh -c 'read -r c < /proc/$$/comm; echo "@@PANIC_TASK pid=$$ comm=$c" >&3; echo c > /proc/sysrq-trigger'
    both "@@ERROR still alive after sysrq c" ;;
kdump-irq)
    # The crash in hardirq context: lpstack_irqpanic arms a pinned hard
    # hrtimer on CPU 1 (by IPI); its callback panics ("lpstack: panic in
    # hardirq") in the timer interrupt that interrupted lpstack_spin in
    # kernel mode (else it re-arms 1 ms later).
    both "@@PANIC $(cut -d' ' -f1 /proc/uptime)"
    say "@@PANIC_HOW hardirq: insmod lpstack_irqpanic.ko cpu=$SPIN_CPU comm=lpstack_spin"
    insmod /lib/lpstack/lpstack_irqpanic.ko cpu="$SPIN_CPU" comm=lpstack_spin \
        || both "@@ERROR insmod lpstack_irqpanic"
    sleep 10
    both "@@ERROR still alive 10 s after lpstack_irqpanic (tries=$(cat /sys/module/lpstack_irqpanic/parameters/tries 2>/dev/null))" ;;
kdump-nmi)
    # The crash in NMI context: unknown_nmi_panic=1, then the host injects
    # an NMI over QMP (inject-nmi) when it sees @@NMI_REQUEST; CPU 0, where
    # lpstack_spin spins, takes it: "NMI received for unknown reason",
    # panic("NMI: Not continuing").
    echo 1 > /proc/sys/kernel/unknown_nmi_panic
    say "@@UNKNOWN_NMI_PANIC $(cat /proc/sys/kernel/unknown_nmi_panic) kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    say "@@NMI_BEFORE $(grep '^ *NMI:' /proc/interrupts | tr -s ' ')"
    both "@@PANIC $(cut -d' ' -f1 /proc/uptime)"
    say "@@PANIC_HOW nmi: unknown_nmi_panic=1, QMP inject-nmi from the host"
    say "@@NMI_REQUEST $(cut -d' ' -f1 /proc/uptime)"
    sleep 30
    both "@@ERROR still alive 30 s after @@NMI_REQUEST ($(grep '^ *NMI:' /proc/interrupts | tr -s ' '))" ;;
esac
while :; do sleep 1000; done
