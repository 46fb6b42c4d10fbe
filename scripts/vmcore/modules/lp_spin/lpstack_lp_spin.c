// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp_spin: livepatch of lpstack's "kdump" scenario (see
 * tests/fixtures/vmcore/README.md, "The kdump scenario").
 *
 * Objects:
 *   lpstack_spin: lpspin_work, the busy loop the kernel thread
 *                 lpstack_spin spins in (never switched: on its CPU it
 *                 "is running", off it lpspin_work is on its stack);
 *   lpstack_park: park_here_a (the usual parked user threads);
 *   vmlinux:      cmdline_proc_show.
 *
 * livepatch_lpspin_work() would spin the same way; nothing runs it while
 * the transition is stalled (the only caller is never switched).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/atomic.h>

static atomic_t lpstack_lp_spin_calls[2];

unsigned long livepatch_lpspin_work(unsigned long n);
int livepatch_spin_park_here_a(void);

noinline unsigned long livepatch_lpspin_work(unsigned long n)
{
	unsigned long i, yielded = 0;

	atomic_inc(&lpstack_lp_spin_calls[0]);
	for (i = 0; i < n && !kthread_should_stop(); i++) {
		cpu_relax();
		if (need_resched()) {
			schedule();
			yielded++;
		}
	}
	return yielded;
}

noinline int livepatch_spin_park_here_a(void)
{
	atomic_inc(&lpstack_lp_spin_calls[1]);
	return 0;
}

static int livepatch_spin_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lpstack_lp_spin: cmdline_proc_show is live patched\n");
	return 0;
}

static struct klp_func lpstack_lp_spin_spin_funcs[] = {
	{
		.old_name = "lpspin_work",
		.new_func = livepatch_lpspin_work,
	},
	{ }
};

static struct klp_func lpstack_lp_spin_park_funcs[] = {
	{
		.old_name = "park_here_a",
		.new_func = livepatch_spin_park_here_a,
	},
	{ }
};

static struct klp_func lpstack_lp_spin_vmlinux_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_spin_cmdline_proc_show,
	},
	{ }
};

static struct klp_object lpstack_lp_spin_objs[] = {
	{
		.name = "lpstack_spin",
		.funcs = lpstack_lp_spin_spin_funcs,
	},
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp_spin_park_funcs,
	},
	{
		.name = NULL,	/* vmlinux */
		.funcs = lpstack_lp_spin_vmlinux_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp_spin_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp_spin_objs,
};

static int __init lpstack_lp_spin_init(void)
{
	return klp_enable_patch(&lpstack_lp_spin_patch);
}

static void __exit lpstack_lp_spin_exit(void)
{
}

module_init(lpstack_lp_spin_init);
module_exit(lpstack_lp_spin_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch: lpspin_work (a spinning kthread's busy loop), park_here_a, cmdline_proc_show");
