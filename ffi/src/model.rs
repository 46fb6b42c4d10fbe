//! Consistency models over a snapshot of decided threads: LEAVE_{FUNCTION,
//! PATCHED_SET, KERNEL} x SWITCH_{FUNCTION, THREAD, KERNEL}, as
//! `lpstack::model`.

use std::ffi::{c_char, c_int};

use lpstack_core::model::{Leave, Model, Switch, ThreadFacts, evaluate};
use lpstack_core::verdict::PatchHit;

use crate::tables::enum_arg;
use crate::{Error, array_stride, element, guard, lpstack_result, put, string};

/// When a (thread, function) pair is clear.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_leave {
    /// That function is not on the thread's stack.
    Function = 0,
    /// No function of the set is on the thread's stack (Linux livepatch).
    PatchedSet = 1,
    /// The thread is out of the kernel (kGraft).
    Kernel = 2,
}

c_enum! {
    lpstack_leave <=> Leave, name {
        Function: c"LEAVE_FUNCTION" <=> Function,
        PatchedSet: c"LEAVE_PATCHED_SET" <=> PatchedSet,
        Kernel: c"LEAVE_KERNEL" <=> Kernel,
    }
}

/// What switches at once: the unit a ready flag is given for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_switch {
    /// One unit per function of the set.
    Function = 0,
    /// One unit per thread (Linux livepatch, kGraft).
    Thread = 1,
    /// One unit: everything (kpatch's stop_machine).
    Kernel = 2,
}

c_enum! {
    lpstack_switch <=> Switch, name {
        Function: c"SWITCH_FUNCTION" <=> Function,
        Thread: c"SWITCH_THREAD" <=> Thread,
        Kernel: c"SWITCH_KERNEL" <=> Kernel,
    }
}

/// One thread of the snapshot, for lpstack_model_evaluate. From a
/// decision: `running` = verdict RUNNING, `reliable` = SWITCHABLE or
/// BLOCKED, `hits` = the function indexes of lpstack_scratch_hits (after
/// deciding that thread), `in_kernel` = what the caller knows (for a kernel
/// unwinder: not `end == USER_REGS && frame_count == 0`; for a process:
/// has a frame in a patched object).
#[repr(C)]
pub struct lpstack_thread_facts {
    /// `sizeof(lpstack_thread_facts)`.
    pub size: usize,
    pub running: c_int,
    pub reliable: c_int,
    pub in_kernel: c_int,
    /// Indexes (into the set) of the patched functions on its stack; may be
    /// NULL when `hit_count` is 0. Repeats are allowed.
    pub hits: *const u32,
    pub hit_count: usize,
}

fn model(leave: u32, switch: u32) -> Result<Model, Error> {
    let leave = enum_arg::<lpstack_leave>(leave, "leave")?.into();
    let switch = enum_arg::<lpstack_switch>(switch, "switch")?.into();
    Ok(Model { leave, switch })
}

/// Evaluates the model (`leave`, `switch_`: lpstack_leave and
/// lpstack_switch values) over `n_threads` threads (an array stepped by
/// `threads[0].size`) and a set of `n_functions` functions. Writes one
/// flag per unit into `ready` (1 = the unit may switch now) and the
/// number of units into `*units`: n_functions for SWITCH_FUNCTION,
/// n_threads for SWITCH_THREAD, 1 for SWITCH_KERNEL. With `ready` NULL and
/// `ready_cap` 0, only `*units` is written (to size the buffer).
/// BUFFER_TOO_SMALL when `ready_cap` is below the number of units.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_model_evaluate(
    leave: u32,
    switch_: u32,
    threads: *const lpstack_thread_facts,
    n_threads: usize,
    n_functions: usize,
    ready: *mut u8,
    ready_cap: usize,
    units: *mut usize,
) -> lpstack_result {
    guard(|| {
        let m = model(leave, switch_)?;
        if units.is_null() {
            return Err(Error::null("units"));
        }
        if threads.is_null() && n_threads > 0 {
            return Err(Error::null("threads"));
        }
        let count = match m.switch {
            Switch::Function => n_functions,
            Switch::Thread => n_threads,
            Switch::Kernel => 1,
        };
        if ready.is_null() && ready_cap == 0 {
            // SAFETY: `units` was checked non-NULL above and is writable (contract).
            unsafe { put(units, count) };
            return Ok(());
        }
        if ready.is_null() {
            return Err(Error::null("ready"));
        }
        if ready_cap < count {
            return Err(Error::new(lpstack_result::BufferTooSmall, format!("{count} units, room for {ready_cap}")));
        }
        // SAFETY: `threads` holds `n_threads` sized elements (contract); `array_stride` rejects NULL.
        let stride = unsafe { array_stride(threads, n_threads, size_of::<lpstack_thread_facts>(), "threads")? };
        let mut hits: Vec<Vec<PatchHit>> = Vec::with_capacity(n_threads);
        let mut flags = Vec::with_capacity(n_threads);
        for t in 0..n_threads {
            // SAFETY: `t` < the count `array_stride` checked `stride` for.
            let f = unsafe { element(threads, t, stride, "threads")? };
            if f.hits.is_null() && f.hit_count > 0 {
                return Err(Error::null("threads[].hits"));
            }
            let list = if f.hit_count == 0 {
                &[][..]
            } else {
                // SAFETY: `hits` is non-NULL (checked above) with `hit_count` entries (contract).
                unsafe { std::slice::from_raw_parts(f.hits, f.hit_count) }
            };
            let mut h = Vec::with_capacity(list.len());
            for &func in list {
                if func as usize >= n_functions {
                    return Err(Error::invalid(format!(
                        "thread {t}: hit {func} is not below n_functions {n_functions}"
                    )));
                }
                h.push(PatchHit { func: func as usize, frame: 0, pc: 0, past_unreliable: false, inlined: false });
            }
            hits.push(h);
            flags.push((f.running != 0, f.reliable != 0, f.in_kernel != 0));
        }
        let facts: Vec<ThreadFacts<'_>> = hits
            .iter()
            .zip(&flags)
            .map(|(h, &(running, reliable, in_kernel))| ThreadFacts { running, reliable, in_kernel, hits: h })
            .collect();
        let result = evaluate(m, &facts, n_functions);
        if result.len() != count {
            return Err(Error::new(lpstack_result::Panic, "model returned an unexpected number of units"));
        }
        for (i, unit) in result.iter().enumerate() {
            // SAFETY: i < count <= ready_cap; `ready` is non-NULL and holds `ready_cap` bytes (contract).
            unsafe { ready.add(i).write(unit.ready.into()) };
        }
        // SAFETY: `units` was checked non-NULL above and is writable (contract).
        unsafe { put(units, count) };
        Ok(())
    })
}

/// Parses a model name: "LEAVE_PATCHED_SET,SWITCH_THREAD" (either order,
/// any case, `,` or `+`) or "livepatch", "kpatch", "kgraft".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_model_parse(
    name: *const c_char,
    leave: *mut u32,
    switch_: *mut u32,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let name = unsafe { string(name, "name")? };
        if leave.is_null() {
            return Err(Error::null("leave"));
        }
        if switch_.is_null() {
            return Err(Error::null("switch_"));
        }
        let m: Model = name
            .parse()
            .map_err(|e: lpstack_core::model::ModelParseError| Error::new(lpstack_result::ParseError, e.to_string()))?;
        let l = lpstack_leave::from(m.leave);
        let s = lpstack_switch::from(m.switch);
        // SAFETY: `leave` and `switch_` were checked non-NULL above; writable (contract).
        unsafe {
            put(leave, l as u32);
            put(switch_, s as u32);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::tests::check_table;

    #[test]
    fn model_tables_are_complete() {
        check_table::<lpstack_leave>();
        check_table::<lpstack_switch>();
    }

    /// The names are the model syntax lpstack_model_parse reads.
    #[test]
    fn model_names_parse_back() {
        for &l in <lpstack_leave as crate::tables::CEnum>::ALL {
            for &s in <lpstack_switch as crate::tables::CEnum>::ALL {
                let text = format!("{},{}", l.name().to_str().unwrap_or("?"), s.name().to_str().unwrap_or("?"));
                let m: Model = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!((lpstack_leave::from(m.leave), lpstack_switch::from(m.switch)), (l, s), "{text}");
                assert_eq!(m, Model { leave: l.into(), switch: s.into() });
            }
        }
    }
}
