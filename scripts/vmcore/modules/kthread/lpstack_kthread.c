// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_kthread: test module for lpstack's "kthread" vmcore scenario (see
 * tests/fixtures/vmcore/README.md).
 *
 * Starts two kernel threads whose thread function is itself the function a
 * livepatch replaces:
 *
 *   lpstack_kt_s  lpstack_kthread_loop(0): sleeps in TASK_INTERRUPTIBLE
 *   lpstack_kt_d  lpstack_kthread_loop(1): sleeps in TASK_KILLABLE
 *
 * lpstack_kthread_loop() loops until kthread_stop() and never returns
 * before, so its frame sits right under kthread() on the thread's stack
 * for the thread's whole life: a transition that patches it can never
 * switch these threads. Livepatch's fake signal (after 15 retries) wakes
 * the TASK_INTERRUPTIBLE one (wake_up_state(task, TASK_INTERRUPTIBLE) for
 * a kthread), which goes round the loop and sleeps again in the same
 * function; the TASK_KILLABLE one is not even woken. Each return from
 * schedule() is counted in the read-only parameter
 * /sys/module/lpstack_kthread/parameters/wakeups ("<s>,<d>").
 *
 * GPL because a livepatch (lpstack_lp_kthread) patches this module.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/err.h>

static unsigned int wakeups[2];
module_param_array(wakeups, uint, NULL, 0444);
MODULE_PARM_DESC(wakeups, "returns from schedule() of lpstack_kt_s, lpstack_kt_d");

static struct task_struct *lpstack_kthreads[2];

/* Global and noinline: livepatch finds it by name, and it has a frame. */
int lpstack_kthread_loop(void *data);

noinline int lpstack_kthread_loop(void *data)
{
	long which = (long)data;
	unsigned int state = which ? TASK_KILLABLE : TASK_INTERRUPTIBLE;

	while (!kthread_should_stop()) {
		set_current_state(state);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
		/* Only this thread writes its counter. */
		WRITE_ONCE(wakeups[which], READ_ONCE(wakeups[which]) + 1);
	}
	return 0;
}

static void lpstack_kthread_stop_all(void)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (lpstack_kthreads[i])
			kthread_stop(lpstack_kthreads[i]);
		lpstack_kthreads[i] = NULL;
	}
}

static int __init lpstack_kthread_init(void)
{
	static const char *const names[2] = { "lpstack_kt_s", "lpstack_kt_d" };
	struct task_struct *t;
	long i;

	for (i = 0; i < 2; i++) {
		t = kthread_run(lpstack_kthread_loop, (void *)i, "%s", names[i]);
		if (IS_ERR(t)) {
			lpstack_kthread_stop_all();
			return PTR_ERR(t);
		}
		lpstack_kthreads[i] = t;
	}
	return 0;
}

static void __exit lpstack_kthread_exit(void)
{
	lpstack_kthread_stop_all();
}

module_init(lpstack_kthread_init);
module_exit(lpstack_kthread_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lpstack test: kernel threads whose main function is lpstack_kthread_loop");
