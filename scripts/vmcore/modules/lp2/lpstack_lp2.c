// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp2: second livepatch of lpstack's "stacked" scenario, loaded on
 * top of lpstack_lp1 (not an atomic replace; see
 * tests/fixtures/vmcore/README.md).
 *
 * Objects:
 *   lpstack_park:   park_here_a (already patched by lpstack_lp1, so the
 *                   transition checks lpstack_lp1's livepatch_park_here_a)
 *                   and park_here_c (unpatched so far: the original is
 *                   checked);
 *   vmlinux:        cmdline_proc_show;
 *   lpstack_absent: absent_fn, a module that is never loaded (livepatch
 *                   keeps the object and patches it if the module comes).
 *
 * The replacements do not sleep. Each body differs (its own counter), so
 * the compiler cannot fold them into one function.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>
#include <linux/atomic.h>

static atomic_t lpstack_lp2_calls[3];

int lpstack_lp2_park_here_a(void);
int lpstack_lp2_park_here_c(void);
int lpstack_lp2_absent_fn(void);

noinline int lpstack_lp2_park_here_a(void)
{
	atomic_inc(&lpstack_lp2_calls[0]);
	return 0;
}

noinline int lpstack_lp2_park_here_c(void)
{
	atomic_inc(&lpstack_lp2_calls[1]);
	return 0;
}

noinline int lpstack_lp2_absent_fn(void)
{
	atomic_inc(&lpstack_lp2_calls[2]);
	return 0;
}

static int lpstack_lp2_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "lpstack_lp2: cmdline_proc_show is live patched\n");
	return 0;
}

static struct klp_func lpstack_lp2_park_funcs[] = {
	{
		.old_name = "park_here_a",
		.new_func = lpstack_lp2_park_here_a,
	},
	{
		.old_name = "park_here_c",
		.new_func = lpstack_lp2_park_here_c,
	},
	{ }
};

static struct klp_func lpstack_lp2_vmlinux_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = lpstack_lp2_cmdline_proc_show,
	},
	{ }
};

static struct klp_func lpstack_lp2_absent_funcs[] = {
	{
		.old_name = "absent_fn",
		.new_func = lpstack_lp2_absent_fn,
	},
	{ }
};

static struct klp_object lpstack_lp2_objs[] = {
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp2_park_funcs,
	},
	{
		.name = NULL,	/* vmlinux */
		.funcs = lpstack_lp2_vmlinux_funcs,
	},
	{
		.name = "lpstack_absent",
		.funcs = lpstack_lp2_absent_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp2_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp2_objs,
};

static int __init lpstack_lp2_init(void)
{
	return klp_enable_patch(&lpstack_lp2_patch);
}

static void __exit lpstack_lp2_exit(void)
{
}

module_init(lpstack_lp2_init);
module_exit(lpstack_lp2_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch 2: park_here_a, park_here_c, cmdline_proc_show, lpstack_absent:absent_fn");
