// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp1: first livepatch of lpstack's livepatch scenarios (stacked,
 * replace, unpatch; see tests/fixtures/vmcore/README.md).
 *
 * Replaces park_here_a() and park_here_b() of the lpstack_park module
 * (the park_wait build, which exports lpstack_park_wait()) with
 * livepatch_park_here_a() and livepatch_park_here_b(). The replacements
 * park their caller like the originals do: they call lpstack_park_wait()
 * and do work after it, so a thread sleeps with the replacement's frame on
 * its stack. Once this patch is fully applied, a pread() of
 * /dev/lpstack_park at offset 0 or 1 sleeps inside this module's code.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/atomic.h>

/* Exported by lpstack_park (scripts/vmcore/modules/park_wait). */
int lpstack_park_wait(int which);

static atomic_t lpstack_lp1_visits[2];

/* Global, so that they carry these names in kallsyms and the dump. */
int livepatch_park_here_a(void);
int livepatch_park_here_b(void);

noinline int livepatch_park_here_a(void)
{
	int ret = lpstack_park_wait(0);

	atomic_inc(&lpstack_lp1_visits[0]);
	barrier();
	return ret;
}

noinline int livepatch_park_here_b(void)
{
	int ret = lpstack_park_wait(1);

	atomic_inc(&lpstack_lp1_visits[1]);
	barrier();
	return ret;
}

static struct klp_func lpstack_lp1_park_funcs[] = {
	{
		.old_name = "park_here_a",
		.new_func = livepatch_park_here_a,
	},
	{
		.old_name = "park_here_b",
		.new_func = livepatch_park_here_b,
	},
	{ }
};

static struct klp_object lpstack_lp1_objs[] = {
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp1_park_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp1_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp1_objs,
};

static int __init lpstack_lp1_init(void)
{
	return klp_enable_patch(&lpstack_lp1_patch);
}

static void __exit lpstack_lp1_exit(void)
{
}

module_init(lpstack_lp1_init);
module_exit(lpstack_lp1_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch 1: park_here_a, park_here_b (sleeping replacements)");
