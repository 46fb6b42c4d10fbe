//! The kernel's own livepatch state, read from memory with BTF offsets: the
//! registered patches (`klp_patches`, oldest first), their objects and
//! functions (the `obj_list` / `func_list` lists, so the nop functions an
//! atomic replace adds are seen too), each function's place on its
//! `klp_ops.func_stack`, and the transition in progress
//! (`klp_transition_patch`, `klp_target_state`).
//!
//! Plain data: which range a task is checked against is decided in
//! [`crate::patchset::klp`].

use std::collections::HashSet;

use super::layout::{Field, KlpLayout};
use crate::memory::{Memory, MemoryError, read_c_string};

/// At most this many patches, objects per patch and functions per object:
/// beyond is a corrupt list.
const MAX_PATCHES: usize = 4096;
const MAX_OBJECTS: usize = 4096;
const MAX_FUNCS: usize = 65536;
/// `KSYM_NAME_LEN` (512 since 6.1).
const MAX_NAME: usize = 512;

/// Why the kernel's livepatch state could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KlpError {
    /// A read failed.
    #[error("livepatch state: {what}: {err}")]
    Memory {
        /// The variable or field being read (e.g. `klp_func.old_name`).
        what: &'static str,
        /// The failed read.
        err: MemoryError,
    },
    /// A list loops or is longer than any real one.
    #[error("livepatch state: {what} at {addr:#x} loops or is longer than {limit} entries")]
    BadList {
        /// Which list (e.g. `klp_patch.obj_list`).
        what: &'static str,
        /// Address of the list's head.
        addr: u64,
        /// Most entries accepted.
        limit: usize,
    },
    /// `klp_transition_patch` points to no registered patch.
    #[error("livepatch state: klp_transition_patch {addr:#x} is not on the klp_patches list")]
    UnknownTransitionPatch {
        /// Its value.
        addr: u64,
    },
    /// `klp_patches` exists, but BTF lacks the 5.1+ layout or a
    /// transition symbol is missing.
    #[error(
        "livepatch state: the kernel has klp_patches, but not the 5.1+ layout in BTF (klp_patch.obj_list...) or not klp_transition_patch / klp_target_state"
    )]
    NoLayout,
    /// `klp_target_state` is neither 0 nor 1 during a transition.
    #[error("livepatch state: klp_target_state is {value}, neither patched (1) nor unpatched (0)")]
    BadTargetState {
        /// Its value.
        value: i64,
    },
}

/// One `struct klp_func`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlpFunc {
    /// Address of the `klp_func`.
    pub addr: u64,
    /// `old_name`: the patched function's name.
    pub old_name: String,
    /// `old_sympos`: which of several same-named symbols (0: the only one).
    pub old_sympos: u64,
    /// `old_func`: the patched function's address.
    pub old_func: u64,
    /// `old_size`: the patched function's size, in bytes.
    pub old_size: u64,
    /// For a nop function the kernel sets this to `old_func`.
    pub new_func: u64,
    /// `new_size`: the replacement's size, in bytes.
    pub new_size: u64,
    /// Added by an atomic replace for a function an older patch replaced
    /// and this one does not: it "patches" back to the original.
    pub nop: bool,
    /// On its `klp_ops.func_stack` (the ftrace handler sees it).
    pub patched: bool,
    /// `transition`: the function is being applied or reverted.
    pub transition: bool,
    /// Address of `stack_node`, and its links: `next` is the entry pushed
    /// before this one (or the list head), `prev` the one after.
    pub stack_node: u64,
    /// `stack_node.next`.
    pub stack_next: u64,
    /// `stack_node.prev`.
    pub stack_prev: u64,
}

/// One `struct klp_object`: vmlinux (`name` None) or a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlpObject {
    /// Address of the `klp_object`.
    pub addr: u64,
    /// The patched module's name; None for vmlinux (a NULL `name`).
    pub name: Option<String>,
    /// Its functions are on their func stacks: the object is loaded.
    pub patched: bool,
    /// `dynamic`: made by an atomic replace (it holds nops); false when
    /// BTF lacks the field.
    pub dynamic: bool,
    /// Its functions, in `func_list` order.
    pub funcs: Vec<KlpFunc>,
}

impl KlpObject {
    /// The object's name as lpstack's sets write it.
    pub fn object_name(&self) -> &str {
        self.name.as_deref().unwrap_or("vmlinux")
    }
}

/// One `struct klp_patch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlpPatch {
    /// Address of the `klp_patch`.
    pub addr: u64,
    /// The livepatch module's name (`patch->mod->name`).
    pub module: String,
    /// `enabled`: the patch is enabled (its transition may be incomplete).
    pub enabled: bool,
    /// `replace`: an atomic-replace (cumulative) patch.
    pub replace: bool,
    /// Its objects, in `obj_list` order.
    pub objects: Vec<KlpObject>,
}

/// Where a transition goes (`klp_target_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum KlpTarget {
    /// `KLP_UNPATCHED` (0): the patch is being disabled.
    Unpatched,
    /// `KLP_PATCHED` (1): the patch is being enabled.
    Patched,
}

impl KlpTarget {
    /// The `task_struct.patch_state` of a task that has switched.
    pub fn patch_state(self) -> i64 {
        match self {
            KlpTarget::Unpatched => 0,
            KlpTarget::Patched => 1,
        }
    }
}

/// The transition in progress: which patch, which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KlpTransition {
    /// Index into [`KlpState::patches`].
    pub patch: usize,
    /// Which way it goes.
    pub target: KlpTarget,
}

/// Every registered livepatch, oldest first, and the transition if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KlpState {
    /// The `klp_patches` list, oldest first.
    pub patches: Vec<KlpPatch>,
    /// None when no transition is in progress (`klp_transition_patch` NULL).
    pub transition: Option<KlpTransition>,
}

/// Where a function sits: patch, object and function index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncRef {
    /// Index into [`KlpState::patches`].
    pub patch: usize,
    /// Index into that patch's [`KlpPatch::objects`].
    pub object: usize,
    /// Index into that object's [`KlpObject::funcs`].
    pub func: usize,
}

impl KlpState {
    /// The patch `r` is in; None when `r` is out of range.
    pub fn patch(&self, r: FuncRef) -> Option<&KlpPatch> {
        self.patches.get(r.patch)
    }

    /// The object `r` is in; None when `r` is out of range.
    pub fn object(&self, r: FuncRef) -> Option<&KlpObject> {
        self.patch(r)?.objects.get(r.object)
    }

    /// The function `r` names; None when `r` is out of range.
    pub fn func(&self, r: FuncRef) -> Option<&KlpFunc> {
        self.object(r)?.funcs.get(r.func)
    }

    /// Every function of every patch.
    pub fn funcs(&self) -> impl Iterator<Item = (FuncRef, &KlpFunc)> + '_ {
        self.patches.iter().enumerate().flat_map(|(p, patch)| {
            patch.objects.iter().enumerate().flat_map(move |(o, obj)| {
                obj.funcs.iter().enumerate().map(move |(f, func)| (FuncRef { patch: p, object: o, func: f }, func))
            })
        })
    }

    /// The function whose `stack_node` is at `node`.
    fn by_stack_node(&self, node: u64) -> Option<FuncRef> {
        self.funcs().find(|(_, f)| f.patched && f.stack_node == node).map(|(r, _)| r)
    }

    /// The entry pushed on the func stack before `r` (`list_next_entry`),
    /// or None when `r` is the only one: the previous patch's function.
    pub fn below(&self, r: FuncRef) -> Option<FuncRef> {
        let f = self.func(r)?;
        self.by_stack_node(f.stack_next)
    }

    /// The entry on top of the func stack of `old_func` (what the ftrace
    /// handler runs for a task that has no transition pending), if any
    /// patch replaces it.
    pub fn top(&self, old_func: u64) -> Option<FuncRef> {
        self.funcs().find(|(r, f)| f.old_func == old_func && self.is_top(*r)).map(|(r, _)| r)
    }

    /// `r` is on its func stack and nothing was pushed after it.
    pub fn is_top(&self, r: FuncRef) -> bool {
        self.func(r).is_some_and(|f| f.patched && self.by_stack_node(f.stack_prev).is_none())
    }

    /// The patch in transition.
    pub fn transition_patch(&self) -> Option<&KlpPatch> {
        self.patches.get(self.transition?.patch)
    }
}

/// The globals livepatch keeps its state in.
#[derive(Clone, Copy, Debug)]
pub struct KlpSymbols {
    /// `klp_patches` (a `list_head`).
    pub patches: u64,
    /// `klp_transition_patch` (a pointer, NULL when idle).
    pub transition_patch: u64,
    /// `klp_target_state` (an int).
    pub target_state: u64,
}

fn mem(what: &'static str) -> impl Fn(MemoryError) -> KlpError {
    move |err| KlpError::Memory { what, err }
}

/// The entries of the `list_head` at `head`: the address of each node.
fn list_nodes<M: Memory + ?Sized>(
    mem: &mut M,
    head: u64,
    list_next: u64,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u64>, KlpError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut node = mem.read_u64(head + list_next).map_err(self::mem(what))?;
    while node != head {
        if out.len() >= limit || !seen.insert(node) {
            return Err(KlpError::BadList { what, addr: head, limit });
        }
        out.push(node);
        node = mem.read_u64(node + list_next).map_err(self::mem(what))?;
    }
    Ok(out)
}

fn flag<M: Memory + ?Sized>(mem: &mut M, f: Field, base: u64, what: &'static str) -> Result<bool, KlpError> {
    Ok(f.read_uint(mem, base).map_err(self::mem(what))? != 0)
}

fn word<M: Memory + ?Sized>(mem: &mut M, f: Field, base: u64, what: &'static str) -> Result<u64, KlpError> {
    f.read_uint(mem, base).map_err(self::mem(what))
}

/// Reads every registered patch and the transition in progress.
pub fn read_klp_state<M: Memory + ?Sized>(
    mem: &mut M,
    l: &KlpLayout,
    list_next: u64,
    syms: KlpSymbols,
) -> Result<KlpState, KlpError> {
    let mut patches = Vec::new();
    for node in list_nodes(mem, syms.patches, list_next, MAX_PATCHES, "klp_patches")? {
        patches.push(read_patch(mem, l, list_next, node.wrapping_sub(l.patch_list.offset))?);
    }
    let tp = mem.read_u64(syms.transition_patch).map_err(self::mem("klp_transition_patch"))?;
    let transition = if tp == 0 {
        None
    } else {
        let patch = patches.iter().position(|p| p.addr == tp).ok_or(KlpError::UnknownTransitionPatch { addr: tp })?;
        let value =
            Field { offset: 0, size: 4 }.read_int(mem, syms.target_state).map_err(self::mem("klp_target_state"))?;
        let target = match value {
            0 => KlpTarget::Unpatched,
            1 => KlpTarget::Patched,
            value => return Err(KlpError::BadTargetState { value }),
        };
        Some(KlpTransition { patch, target })
    };
    Ok(KlpState { patches, transition })
}

fn read_patch<M: Memory + ?Sized>(mem: &mut M, l: &KlpLayout, list_next: u64, addr: u64) -> Result<KlpPatch, KlpError> {
    let module_addr = word(mem, l.patch_mod, addr, "klp_patch.mod")?;
    let module = if module_addr == 0 {
        String::new()
    } else {
        let max = (l.module_name.size as usize).clamp(1, MAX_NAME);
        read_c_string(mem, module_addr.wrapping_add(l.module_name.offset), max).map_err(self::mem("module.name"))?
    };
    let enabled = flag(mem, l.patch_enabled, addr, "klp_patch.enabled")?;
    let replace = flag(mem, l.patch_replace, addr, "klp_patch.replace")?;
    let mut objects = Vec::new();
    let head = addr.wrapping_add(l.patch_obj_list.offset);
    for node in list_nodes(mem, head, list_next, MAX_OBJECTS, "klp_patch.obj_list")? {
        objects.push(read_object(mem, l, list_next, node.wrapping_sub(l.obj_node.offset))?);
    }
    Ok(KlpPatch { addr, module, enabled, replace, objects })
}

fn read_object<M: Memory + ?Sized>(
    mem: &mut M,
    l: &KlpLayout,
    list_next: u64,
    addr: u64,
) -> Result<KlpObject, KlpError> {
    let name_addr = word(mem, l.obj_name, addr, "klp_object.name")?;
    let name = if name_addr == 0 {
        None
    } else {
        Some(read_c_string(mem, name_addr, MAX_NAME).map_err(self::mem("klp_object.name"))?)
    };
    let patched = flag(mem, l.obj_patched, addr, "klp_object.patched")?;
    let dynamic = match l.obj_dynamic {
        Some(f) => flag(mem, f, addr, "klp_object.dynamic")?,
        None => false,
    };
    let mut funcs = Vec::new();
    let head = addr.wrapping_add(l.obj_func_list.offset);
    for node in list_nodes(mem, head, list_next, MAX_FUNCS, "klp_object.func_list")? {
        funcs.push(read_func(mem, l, list_next, node.wrapping_sub(l.func_node.offset))?);
    }
    Ok(KlpObject { addr, name, patched, dynamic, funcs })
}

fn read_func<M: Memory + ?Sized>(mem: &mut M, l: &KlpLayout, list_next: u64, addr: u64) -> Result<KlpFunc, KlpError> {
    let name_addr = word(mem, l.func_old_name, addr, "klp_func.old_name")?;
    let old_name = read_c_string(mem, name_addr, MAX_NAME).map_err(self::mem("klp_func.old_name"))?;
    let stack_node = addr.wrapping_add(l.func_stack_node.offset);
    // list_head is { next, prev }.
    let prev_offset = if list_next == 0 { 8 } else { 0 };
    Ok(KlpFunc {
        addr,
        old_name,
        old_sympos: word(mem, l.func_old_sympos, addr, "klp_func.old_sympos")?,
        old_func: word(mem, l.func_old_func, addr, "klp_func.old_func")?,
        old_size: word(mem, l.func_old_size, addr, "klp_func.old_size")?,
        new_func: word(mem, l.func_new_func, addr, "klp_func.new_func")?,
        new_size: word(mem, l.func_new_size, addr, "klp_func.new_size")?,
        nop: match l.func_nop {
            Some(f) => flag(mem, f, addr, "klp_func.nop")?,
            None => false,
        },
        patched: flag(mem, l.func_patched, addr, "klp_func.patched")?,
        transition: flag(mem, l.func_transition, addr, "klp_func.transition")?,
        stack_node,
        stack_next: mem.read_u64(stack_node.wrapping_add(list_next)).map_err(self::mem("klp_func.stack_node"))?,
        stack_prev: mem.read_u64(stack_node.wrapping_add(prev_offset)).map_err(self::mem("klp_func.stack_node"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    const BASE: u64 = 0x1000;
    const HEAD: u64 = 0x1000;
    const PATCH: u64 = 0x1100;
    const OBJ: u64 = 0x1200;
    const FUNC: u64 = 0x1300;
    const MODULE: u64 = 0x1800;
    const TP: u64 = 0x1b00;
    const TARGET: u64 = 0x1b08;

    fn f(offset: u64, size: u64) -> Field {
        Field { offset, size }
    }

    fn layout() -> KlpLayout {
        KlpLayout {
            patch_mod: f(0, 8),
            patch_list: f(0x10, 16),
            patch_obj_list: f(0x20, 16),
            patch_enabled: f(0x30, 1),
            patch_replace: f(0x31, 1),
            obj_name: f(0, 8),
            obj_node: f(0x8, 16),
            obj_func_list: f(0x18, 16),
            obj_patched: f(0x28, 1),
            obj_dynamic: None,
            func_old_name: f(0, 8),
            func_new_func: f(0x8, 8),
            func_old_sympos: f(0x10, 8),
            func_old_func: f(0x18, 8),
            func_node: f(0x20, 16),
            func_stack_node: f(0x30, 16),
            func_old_size: f(0x40, 8),
            func_new_size: f(0x48, 8),
            func_nop: Some(f(0x50, 1)),
            func_patched: f(0x51, 1),
            func_transition: f(0x52, 1),
            module_name: f(0x18, 56),
        }
    }

    struct Img(Vec<u8>);
    impl Img {
        fn put(&mut self, addr: u64, v: u64) {
            let o = (addr - BASE) as usize;
            self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn byte(&mut self, addr: u64, v: u8) {
            self.0[(addr - BASE) as usize] = v;
        }
        fn text(&mut self, addr: u64, s: &str) {
            let o = (addr - BASE) as usize;
            self.0[o..o + s.len()].copy_from_slice(s.as_bytes());
        }
        /// A one-entry circular list: `head` <-> `node`.
        fn link(&mut self, head: u64, node: u64) {
            self.put(head, node);
            self.put(head + 8, node);
            self.put(node, head);
            self.put(node + 8, head);
        }
    }

    /// One patch (module "lp1", in transition to `target`) with a vmlinux
    /// object and one function on a func stack of its own.
    fn image(target: u64) -> Img {
        let mut m = Img(vec![0; 0x1000]);
        m.link(HEAD, PATCH + 0x10);
        m.put(PATCH, MODULE);
        m.text(MODULE + 0x18, "lp1");
        m.byte(PATCH + 0x30, 1);
        m.link(PATCH + 0x20, OBJ + 0x8);
        m.byte(OBJ + 0x28, 1);
        m.link(OBJ + 0x18, FUNC + 0x20);
        m.put(FUNC, 0x1a00);
        m.text(0x1a00, "cmdline_proc_show");
        m.put(FUNC + 0x8, 0xc000);
        m.put(FUNC + 0x18, 0x8100);
        m.put(FUNC + 0x40, 0x80);
        m.put(FUNC + 0x48, 0x20);
        m.byte(FUNC + 0x51, 1);
        m.link(0x1c00, FUNC + 0x30); // the klp_ops func_stack head
        m.put(TP, PATCH);
        m.put(TARGET, target);
        m
    }

    fn read(m: &Img) -> Result<KlpState, KlpError> {
        let mut mem = SliceMemory::new(BASE, &m.0);
        read_klp_state(&mut mem, &layout(), 0, KlpSymbols { patches: HEAD, transition_patch: TP, target_state: TARGET })
    }

    #[test]
    fn reads_patches_objects_functions_and_the_transition() {
        let state = read(&image(1)).unwrap();
        assert_eq!(state.transition, Some(KlpTransition { patch: 0, target: KlpTarget::Patched }));
        let p = &state.patches[0];
        assert_eq!((p.module.as_str(), p.enabled, p.replace, p.objects.len()), ("lp1", true, false, 1));
        let o = &p.objects[0];
        assert_eq!((o.object_name(), o.patched), ("vmlinux", true));
        let func = &o.funcs[0];
        assert_eq!(func.old_name, "cmdline_proc_show");
        assert_eq!((func.old_func, func.old_size, func.new_func, func.new_size), (0x8100, 0x80, 0xc000, 0x20));
        assert_eq!((func.stack_node, func.stack_next, func.stack_prev), (FUNC + 0x30, 0x1c00, 0x1c00));
        let r = FuncRef { patch: 0, object: 0, func: 0 };
        assert_eq!((state.below(r), state.top(0x8100)), (None, Some(r)));
        // Unpatching; and -1 (idle) with a stale pointer is refused.
        assert_eq!(read(&image(0)).unwrap().transition.map(|t| t.target), Some(KlpTarget::Unpatched));
        assert_eq!(read(&image(0xffff_ffff)), Err(KlpError::BadTargetState { value: -1 }));
    }

    #[test]
    fn idle_and_corrupt_states() {
        let mut m = image(1);
        m.put(TP, 0);
        assert_eq!(read(&m).unwrap().transition, None);
        m.put(TP, 0x1700);
        assert_eq!(read(&m), Err(KlpError::UnknownTransitionPatch { addr: 0x1700 }));
        // A function list that loops back to its first node, not the head.
        let mut m = image(1);
        m.put(FUNC + 0x20, FUNC + 0x20);
        assert!(matches!(read(&m), Err(KlpError::BadList { what: "klp_object.func_list", .. })));
        // A name pointer out of memory names the field.
        let mut m = image(1);
        m.put(FUNC, 0x9000);
        assert!(matches!(read(&m), Err(KlpError::Memory { what: "klp_func.old_name", .. })));
    }
}
