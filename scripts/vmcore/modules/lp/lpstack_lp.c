// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp: test livepatch for lpstack's vmcore fixtures.
 *
 * Replaces park_here_a() of the lpstack_park module and cmdline_proc_show()
 * of vmlinux. Threads that sleep inside the old park_here_a() keep the
 * transition pending, which is the state the vmcore fixtures capture.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

static noinline int lpstack_lp_park_here_a(void)
{
	return 0;
}

static int lpstack_lp_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lpstack_lp: cmdline_proc_show is live patched\n");
	return 0;
}

static struct klp_func lpstack_lp_vmlinux_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lpstack_lp_cmdline_proc_show,
	},
	{ }
};

static struct klp_func lpstack_lp_park_funcs[] = {
	{
		.old_name = "park_here_a",
		.new_func = lpstack_lp_park_here_a,
	},
	{ }
};

static struct klp_object lpstack_lp_objs[] = {
	{
		.name = NULL,	/* vmlinux */
		.funcs = lpstack_lp_vmlinux_funcs,
	},
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp_park_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp_objs,
};

static int __init lpstack_lp_init(void)
{
	return klp_enable_patch(&lpstack_lp_patch);
}

static void __exit lpstack_lp_exit(void)
{
}

module_init(lpstack_lp_init);
module_exit(lpstack_lp_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch: park_here_a, cmdline_proc_show");
