// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_spin: test module for lpstack's "kdump" vmcore scenario (see
 * tests/fixtures/vmcore/README.md, "The kdump scenario").
 *
 * Starts one kernel thread, lpstack_spin, bound to CPU `cpu` (default 1),
 * that busy-loops inside lpspin_work(), the function the livepatch
 * lpstack_lp_spin replaces:
 *
 *   lpstack_spin_loop()            main loop, until kthread_stop()
 *     lpspin_work(batch)           spins `batch` rounds, then returns
 *
 * lpspin_work() gives the CPU away only from inside itself (schedule()
 * when need_resched() is set: the kernel runs with voluntary preemption,
 * so a plain busy loop would never let the CPU's kworkers, RCU or the
 * watchdog run). So whenever the thread is off its CPU, lpspin_work is on
 * its stack, and when it is on its CPU the transition says "is running":
 * the thread is never switched while the patch is in transition, and a
 * crash catches it on its CPU inside the original lpspin_work. No
 * cond_resched(): with a transition pending, cond_resched() runs
 * klp_try_switch_task(current), which would print a debug line on every
 * call (dynamic debug is on for transition.c).
 *
 * Counters (read-only parameters): rounds (returns from lpspin_work),
 * yields (schedule() calls inside it), last_cpu (where it last ran).
 *
 * GPL because a livepatch (lpstack_lp_spin) patches this module.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/err.h>

static int cpu = 1;
module_param(cpu, int, 0444);
MODULE_PARM_DESC(cpu, "CPU the spinning thread is bound to");

static unsigned long batch = 1UL << 24;
module_param(batch, ulong, 0444);
MODULE_PARM_DESC(batch, "spin rounds per call of lpspin_work");

static unsigned long rounds;
module_param(rounds, ulong, 0444);
MODULE_PARM_DESC(rounds, "returns from lpspin_work");

static unsigned long yields;
module_param(yields, ulong, 0444);
MODULE_PARM_DESC(yields, "schedule() calls inside lpspin_work");

static int last_cpu = -1;
module_param(last_cpu, int, 0444);
MODULE_PARM_DESC(last_cpu, "CPU of the last round");

static struct task_struct *lpstack_spin_task;
static unsigned long lpspin_sink;

/* Global and noinline: livepatch finds it by name, and it has a frame. */
unsigned long lpspin_work(unsigned long n);

noinline unsigned long lpspin_work(unsigned long n)
{
	unsigned long i, yielded = 0;

	for (i = 0; i < n && !kthread_should_stop(); i++) {
		WRITE_ONCE(lpspin_sink, READ_ONCE(lpspin_sink) + i);
		cpu_relax();
		if (need_resched()) {
			schedule();
			yielded++;
		}
	}
	/* Work after the loop: the caller's use of the result keeps this a
	 * real call with its own frame. */
	WRITE_ONCE(last_cpu, raw_smp_processor_id());
	return yielded;
}

static int lpstack_spin_loop(void *data)
{
	while (!kthread_should_stop()) {
		unsigned long y = lpspin_work(READ_ONCE(batch));

		WRITE_ONCE(yields, READ_ONCE(yields) + y);
		WRITE_ONCE(rounds, READ_ONCE(rounds) + 1);
	}
	return 0;
}

static int __init lpstack_spin_init(void)
{
	struct task_struct *t;

	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	t = kthread_create(lpstack_spin_loop, NULL, "lpstack_spin");
	if (IS_ERR(t))
		return PTR_ERR(t);
	kthread_bind(t, cpu);
	lpstack_spin_task = t;
	wake_up_process(t);
	return 0;
}

static void __exit lpstack_spin_exit(void)
{
	kthread_stop(lpstack_spin_task);
}

module_init(lpstack_spin_init);
module_exit(lpstack_spin_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lpstack test: a kernel thread bound to one CPU that spins in lpspin_work");
