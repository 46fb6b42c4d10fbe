// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp_kthread: livepatch of lpstack's "kthread" scenario (see
 * tests/fixtures/vmcore/README.md).
 *
 * Objects:
 *   lpstack_kthread: lpstack_kthread_loop, the main function of the kernel
 *                    threads lpstack_kt_s and lpstack_kt_d (it never
 *                    returns, so the transition never switches them);
 *   lpstack_park:    park_here_a (the usual parked user threads);
 *   vmlinux:         cmdline_proc_show.
 *
 * livepatch_lpstack_kthread_loop() is what a kernel thread started after
 * the patch would run: the same loop, always TASK_INTERRUPTIBLE. The other
 * replacements do not sleep.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/atomic.h>

static atomic_t lpstack_lp_kthread_calls[2];

int livepatch_lpstack_kthread_loop(void *data);
int livepatch_kt_park_here_a(void);

noinline int livepatch_lpstack_kthread_loop(void *data)
{
	atomic_inc(&lpstack_lp_kthread_calls[0]);
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

noinline int livepatch_kt_park_here_a(void)
{
	atomic_inc(&lpstack_lp_kthread_calls[1]);
	return 0;
}

static int livepatch_kt_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lpstack_lp_kthread: cmdline_proc_show is live patched\n");
	return 0;
}

static struct klp_func lpstack_lp_kthread_kt_funcs[] = {
	{
		.old_name = "lpstack_kthread_loop",
		.new_func = livepatch_lpstack_kthread_loop,
	},
	{ }
};

static struct klp_func lpstack_lp_kthread_park_funcs[] = {
	{
		.old_name = "park_here_a",
		.new_func = livepatch_kt_park_here_a,
	},
	{ }
};

static struct klp_func lpstack_lp_kthread_vmlinux_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_kt_cmdline_proc_show,
	},
	{ }
};

static struct klp_object lpstack_lp_kthread_objs[] = {
	{
		.name = "lpstack_kthread",
		.funcs = lpstack_lp_kthread_kt_funcs,
	},
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp_kthread_park_funcs,
	},
	{
		.name = NULL,	/* vmlinux */
		.funcs = lpstack_lp_kthread_vmlinux_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp_kthread_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp_kthread_objs,
};

static int __init lpstack_lp_kthread_init(void)
{
	return klp_enable_patch(&lpstack_lp_kthread_patch);
}

static void __exit lpstack_lp_kthread_exit(void)
{
}

module_init(lpstack_lp_kthread_init);
module_exit(lpstack_lp_kthread_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch: lpstack_kthread_loop (a kthread's main function), park_here_a, cmdline_proc_show");
