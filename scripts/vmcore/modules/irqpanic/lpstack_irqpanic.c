// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_irqpanic: test module for lpstack's "kdump-irq" vmcore scenario
 * (see tests/fixtures/vmcore/README.md, "The kdump-irq scenario").
 *
 * Panics in hardirq context on CPU `cpu` while that CPU runs the kernel
 * thread named `comm` (lpstack_spin, spinning in lpspin_work) in kernel
 * mode, so that the panicking CPU's stack is the per-CPU hardirq stack,
 * linked to the interrupted kthread's task stack.
 *
 * On load, an IPI (smp_call_function_single) arms a pinned hard hrtimer on
 * CPU `cpu`; its callback runs in the timer interrupt (the local APIC
 * timer's sysvec, on the hardirq stack when it interrupted a task in
 * kernel mode). If the interrupted context is `comm` in kernel mode (the
 * irq regs: !user_mode), the callback panics with
 * "lpstack: panic in hardirq"; otherwise it re-arms itself `retry_us`
 * later, at most `max_tries` times.
 *
 * Written for lpstack; no kernel source. GPL because hrtimer_init and
 * hrtimer_start_range_ns are EXPORT_SYMBOL_GPL.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/preempt.h>
#include <asm/irq_regs.h>
#include <asm/ptrace.h>

static int cpu = 1;
module_param(cpu, int, 0444);
MODULE_PARM_DESC(cpu, "CPU whose timer interrupt panics");

static char *comm = "lpstack_spin";
module_param(comm, charp, 0444);
MODULE_PARM_DESC(comm, "the task the interrupt must have interrupted (in kernel mode)");

static unsigned int delay_us = 200000;
module_param(delay_us, uint, 0444);
MODULE_PARM_DESC(delay_us, "first expiry, microseconds after load");

static unsigned int retry_us = 997;
module_param(retry_us, uint, 0444);
MODULE_PARM_DESC(retry_us, "re-arm interval when another context was interrupted");

static unsigned int max_tries = 10000;
module_param(max_tries, uint, 0444);
MODULE_PARM_DESC(max_tries, "give up after this many expiries");

static unsigned long tries;
module_param(tries, ulong, 0444);
MODULE_PARM_DESC(tries, "expiries so far");

static struct hrtimer lpstack_irqpanic_timer;

static enum hrtimer_restart lpstack_irqpanic_fire(struct hrtimer *t)
{
	struct pt_regs *regs = get_irq_regs();

	tries++;
	if (in_hardirq() && !in_nmi() && regs && !user_mode(regs) &&
	    raw_smp_processor_id() == cpu && !strcmp(current->comm, comm)) {
		pr_emerg("lpstack_irqpanic: try %lu: timer interrupt on CPU %d interrupted %s:%d in kernel mode at %pS (sp 0x%lx)\n",
			 tries, raw_smp_processor_id(), current->comm,
			 task_pid_nr(current), (void *)regs->ip, regs->sp);
		panic("lpstack: panic in hardirq");
	}
	if (tries >= max_tries) {
		pr_err("lpstack_irqpanic: %s never interrupted on CPU %d in %lu tries; giving up\n",
		       comm, cpu, tries);
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(t, ns_to_ktime((u64)retry_us * NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

/* Runs on CPU `cpu` (IPI): the timer is armed there, pinned. */
static void lpstack_irqpanic_arm(void *unused)
{
	hrtimer_start(&lpstack_irqpanic_timer,
		      ns_to_ktime((u64)delay_us * NSEC_PER_USEC),
		      HRTIMER_MODE_REL_PINNED_HARD);
}

static int __init lpstack_irqpanic_init(void)
{
	int ret;

	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	hrtimer_init(&lpstack_irqpanic_timer, CLOCK_MONOTONIC,
		     HRTIMER_MODE_REL_PINNED_HARD);
	lpstack_irqpanic_timer.function = lpstack_irqpanic_fire;
	ret = smp_call_function_single(cpu, lpstack_irqpanic_arm, NULL, 1);
	if (ret)
		return ret;
	pr_info("lpstack_irqpanic: armed on CPU %d, %u us, for %s\n", cpu, delay_us, comm);
	return 0;
}

static void __exit lpstack_irqpanic_exit(void)
{
	hrtimer_cancel(&lpstack_irqpanic_timer);
}

module_init(lpstack_irqpanic_init);
module_exit(lpstack_irqpanic_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lpstack test: panic in a hard hrtimer callback on one CPU while it runs a given kthread");
