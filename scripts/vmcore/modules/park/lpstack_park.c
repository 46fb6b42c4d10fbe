// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_park: test module for lpstack's vmcore fixtures.
 *
 * Creates the misc device /dev/lpstack_park. A read() of it parks the
 * calling thread in one of three functions, chosen by the file offset the
 * read starts at (use pread(2)):
 *
 *   offset 0 -> park_here_a()
 *   offset 1 -> park_here_b()
 *   offset 2 -> park_here_c()
 *
 * Each function sleeps in TASK_KILLABLE on a wait queue that is only woken
 * when the module is unloaded, so livepatch's fake signals (sent to
 * stragglers after 15 s) do not wake it. The functions are noinline and do
 * work after the sleep, so their frames stay on the stack (no tail calls).
 *
 * GPL because the companion livepatch module needs GPL-only symbols and
 * patches a function of this module.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/wait.h>
#include <linux/atomic.h>

static DECLARE_WAIT_QUEUE_HEAD(lpstack_park_wq);
static bool lpstack_park_release_all;
static atomic_t lpstack_park_sleepers = ATOMIC_INIT(0);
static atomic_t lpstack_park_visits[3];

static noinline int lpstack_park_sleep(int which)
{
	int ret;

	atomic_inc(&lpstack_park_sleepers);
	ret = wait_event_killable(lpstack_park_wq,
				  READ_ONCE(lpstack_park_release_all));
	atomic_dec(&lpstack_park_sleepers);
	atomic_inc(&lpstack_park_visits[which]);
	return ret;
}

/* Global (not exported) so that livepatch finds them through kallsyms. */
int park_here_a(void);
int park_here_b(void);
int park_here_c(void);

/*
 * The three parking places. Each one calls the sleeper (a real call, so the
 * return address into park_here_X stays on the stack while it sleeps) and
 * then does more work, so the call cannot become a tail call.
 */
noinline int park_here_a(void)
{
	int ret = lpstack_park_sleep(0);

	atomic_inc(&lpstack_park_visits[0]);
	barrier();
	return ret;
}

noinline int park_here_b(void)
{
	int ret = lpstack_park_sleep(1);

	atomic_inc(&lpstack_park_visits[1]);
	barrier();
	return ret;
}

noinline int park_here_c(void)
{
	int ret = lpstack_park_sleep(2);

	atomic_inc(&lpstack_park_visits[2]);
	barrier();
	return ret;
}

static ssize_t lpstack_park_read(struct file *file, char __user *buf,
				 size_t count, loff_t *ppos)
{
	int ret;

	switch (*ppos) {
	case 0:
		ret = park_here_a();
		break;
	case 1:
		ret = park_here_b();
		break;
	case 2:
		ret = park_here_c();
		break;
	default:
		return 0;	/* EOF */
	}
	/* Keep the calls above from being tail calls. */
	atomic_inc(&lpstack_park_visits[0]);
	return ret ? ret : 0;
}

static const struct file_operations lpstack_park_fops = {
	.owner = THIS_MODULE,
	.read = lpstack_park_read,
	.llseek = default_llseek,
};

static struct miscdevice lpstack_park_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "lpstack_park",
	.fops = &lpstack_park_fops,
	.mode = 0444,
};

static int __init lpstack_park_init(void)
{
	return misc_register(&lpstack_park_dev);
}

static void __exit lpstack_park_exit(void)
{
	misc_deregister(&lpstack_park_dev);
	WRITE_ONCE(lpstack_park_release_all, true);
	wake_up_all(&lpstack_park_wq);
}

module_init(lpstack_park_init);
module_exit(lpstack_park_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lpstack test: park threads in park_here_{a,b,c}");
