// SPDX-License-Identifier: GPL-2.0
/*
 * lpstack_park, livepatch-scenario build: the same module as
 * ../park/lpstack_park.c (included whole, unchanged; the module name stays
 * lpstack_park, so livepatch objects named "lpstack_park" patch it) plus one
 * GPL export:
 *
 *   int lpstack_park_wait(int which);
 *
 * It sleeps exactly like park_here_{a,b,c} do (TASK_KILLABLE on the
 * module's wait queue, woken only when the module is unloaded), so that a
 * livepatch's replacement of park_here_X can itself park its caller. The
 * sleeper's stack is then lpstack_park_sleep <- lpstack_park_wait <- the
 * replacement function <- lpstack_park_read <- ...
 */
#include "../park/lpstack_park.c"

int lpstack_park_wait(int which);

noinline int lpstack_park_wait(int which)
{
	int ret;

	if (which < 0 || which > 2)
		return -EINVAL;
	ret = lpstack_park_sleep(which);
	/* Work after the call: it is no tail call, this frame stays. */
	atomic_inc(&lpstack_park_visits[which]);
	barrier();
	return ret;
}
EXPORT_SYMBOL_GPL(lpstack_park_wait);
