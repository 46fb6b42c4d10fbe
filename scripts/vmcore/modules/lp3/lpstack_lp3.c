// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_lp3: atomic-replace livepatch of lpstack's "replace" scenario,
 * loaded on top of lpstack_lp1 (see tests/fixtures/vmcore/README.md).
 *
 * It patches only park_here_c() of lpstack_park. Being an atomic replace
 * (.replace = true), it takes over every function an enabled patch
 * changed: the kernel adds "nop" functions for park_here_a and park_here_b
 * (patched by lpstack_lp1), which run the originals again once the
 * transition completes. Until then the transition checks lpstack_lp1's
 * replacements (the previous entries on those functions' stacks) and the
 * original park_here_c.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/atomic.h>

static atomic_t lpstack_lp3_calls;

int lpstack_lp3_park_here_c(void);

noinline int lpstack_lp3_park_here_c(void)
{
	atomic_inc(&lpstack_lp3_calls);
	return 0;
}

static struct klp_func lpstack_lp3_park_funcs[] = {
	{
		.old_name = "park_here_c",
		.new_func = lpstack_lp3_park_here_c,
	},
	{ }
};

static struct klp_object lpstack_lp3_objs[] = {
	{
		.name = "lpstack_park",
		.funcs = lpstack_lp3_park_funcs,
	},
	{ }
};

static struct klp_patch lpstack_lp3_patch = {
	.mod = THIS_MODULE,
	.objs = lpstack_lp3_objs,
	.replace = true,
};

static int __init lpstack_lp3_init(void)
{
	return klp_enable_patch(&lpstack_lp3_patch);
}

static void __exit lpstack_lp3_exit(void)
{
}

module_init(lpstack_lp3_init);
module_exit(lpstack_lp3_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("lpstack test livepatch 3: atomic replace, park_here_c");
