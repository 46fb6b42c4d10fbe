//! Struct layouts lpstack needs, taken from the kernel's BTF once, so that
//! the per-task code reads plain offsets. Members that moved between
//! kernel versions are looked up under each of their names.

use super::btf::{Btf, BtfError, Member};
use crate::memory::{Memory, MemoryError};

/// A scalar member: where and how wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Offset from the start of the struct, in bytes.
    pub offset: u64,
    /// Width, in bytes.
    pub size: u64,
}

impl Field {
    /// The member of the struct at `base`, zero-extended (1 to 8 bytes).
    pub fn read_uint<M: Memory + ?Sized>(self, mem: &mut M, base: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        mem.read(base.wrapping_add(self.offset), &mut b[..(self.size as usize).clamp(1, 8)])?;
        Ok(u64::from_le_bytes(b))
    }

    /// As [`Field::read_uint`], sign-extended.
    pub fn read_int<M: Memory + ?Sized>(self, mem: &mut M, base: u64) -> Result<i64, MemoryError> {
        let bits = (self.size.clamp(1, 8) * 8) as u32;
        Ok(((self.read_uint(mem, base)? << (64 - bits)) as i64) >> (64 - bits))
    }
}

impl From<Member> for Field {
    fn from(m: Member) -> Self {
        Field { offset: m.offset, size: m.size }
    }
}

/// Why a needed layout could not be taken from BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A BTF lookup failed (a required struct or member is absent).
    #[error("BTF: {0}")]
    Btf(#[from] BtfError),
    /// BTF has no struct or member under any of the names tried.
    #[error("BTF has none of {0}")]
    Missing(&'static str),
}

fn member(btf: &Btf<'_>, s: &str, path: &str) -> Result<Field, LayoutError> {
    Ok(btf.member(s, path)?.into())
}

/// The first of several names that exists.
fn member_any(btf: &Btf<'_>, s: &str, paths: &[&str], what: &'static str) -> Result<Field, LayoutError> {
    paths.iter().find_map(|p| btf.member(s, p).ok()).map(Field::from).ok_or(LayoutError::Missing(what))
}

fn optional(btf: &Btf<'_>, s: &str, path: &str) -> Option<Field> {
    btf.member(s, path).ok().map(Field::from)
}

/// `struct task_struct` and friends.
#[derive(Clone, Copy, Debug)]
pub struct TaskLayout {
    /// `sizeof(struct task_struct)`, in bytes.
    pub size: u64,
    /// `task_struct.tasks`: the process list (`list_head`).
    pub tasks: Field,
    /// `task_struct.pid`.
    pub pid: Field,
    /// `task_struct.tgid`.
    pub tgid: Field,
    /// `task_struct.comm`.
    pub comm: Field,
    /// `task_struct.stack`: the kernel stack's base.
    pub stack: Field,
    /// `task_struct.thread.sp`: a switched-out task's stack pointer.
    pub thread_sp: Field,
    /// `task_struct.on_cpu`.
    pub on_cpu: Field,
    /// `task_struct.cpu` (5.16+) or `thread_info.cpu`.
    pub cpu: Field,
    /// `__state` (5.14+) or `state`.
    pub state: Field,
    /// `task_struct.flags`.
    pub flags: Field,
    /// `task_struct.exit_state`; None when BTF lacks it.
    pub exit_state: Option<Field>,
    /// Absent without CONFIG_LIVEPATCH.
    pub patch_state: Option<Field>,
    /// `task_struct.signal` (a pointer to `struct signal_struct`).
    pub signal: Field,
    /// 6.7+: threads hang off `signal->thread_head` through `thread_node`.
    pub thread_node: Option<Field>,
    /// `signal_struct.thread_head` (6.7+).
    pub signal_thread_head: Option<Field>,
    /// Before 6.7: the circular `thread_group` list.
    pub thread_group: Option<Field>,
    /// `task_struct.nvcsw`: voluntary context switches; None when absent.
    pub nvcsw: Option<Field>,
    /// `task_struct.nivcsw`: involuntary context switches; None when absent.
    pub nivcsw: Option<Field>,
}

/// `struct inactive_task_frame`: what `__switch_to_asm` pushed.
#[derive(Clone, Copy, Debug)]
pub struct SwitchFrameLayout {
    /// `sizeof(struct inactive_task_frame)`, in bytes.
    pub size: u64,
    /// `inactive_task_frame.bp`: the saved frame pointer.
    pub bp: Field,
    /// `inactive_task_frame.ret_addr`: where the task resumes.
    pub ret_addr: Field,
}

/// `struct module` and its ORC and symbol fields.
#[derive(Clone, Copy, Debug)]
pub struct ModuleLayout {
    /// `module.list`: the link in the `modules` list.
    pub list: Field,
    /// `module.name` (a char array).
    pub name: Field,
    /// `module.state`.
    pub state: Field,
    /// `klp` (CONFIG_LIVEPATCH): a livepatch module.
    pub klp: Option<Field>,
    /// 6.4+: `mem[MOD_TEXT]` (`struct module_memory`, base and size).
    pub mem_text_base: Option<Field>,
    /// 6.4+: `mem[MOD_TEXT].size`.
    pub mem_text_size: Option<Field>,
    /// Bytes from one `module.mem[]` entry to the next; 0 before 6.4.
    pub mem_stride: u64,
    /// Before 6.4: `core_layout.base` and `.text_size`.
    pub core_base: Option<Field>,
    /// Before 6.4: `core_layout.text_size`.
    pub core_text_size: Option<Field>,
    /// `module.arch.num_orcs`; None without ORC (CONFIG_UNWINDER_ORC).
    pub num_orcs: Option<Field>,
    /// `module.arch.orc_unwind_ip`; None without ORC.
    pub orc_unwind_ip: Option<Field>,
    /// `module.arch.orc_unwind`; None without ORC.
    pub orc_unwind: Option<Field>,
    /// `mod->kallsyms` (a pointer to `struct mod_kallsyms`).
    pub kallsyms: Field,
    /// `mod_kallsyms.symtab` (a pointer to `Elf64_Sym`s).
    pub ks_symtab: Field,
    /// `mod_kallsyms.num_symtab`.
    pub ks_num_symtab: Field,
    /// `mod_kallsyms.strtab`.
    pub ks_strtab: Field,
}

/// `struct rq`, for each CPU's current and idle task.
#[derive(Clone, Copy, Debug)]
pub struct RqLayout {
    /// `rq.curr`: the task running on the CPU.
    pub curr: Field,
    /// `rq.idle`: the CPU's idle task.
    pub idle: Field,
}

/// The pid IDR (an xarray of `struct pid`), a second way to every thread
/// when the task list is broken.
#[derive(Clone, Copy, Debug)]
pub struct PidIdrLayout {
    /// `pid_namespace.idr.idr_rt.xa_head`.
    pub ns_xa_head: Field,
    /// `xa_node.shift`.
    pub node_shift: Field,
    /// `xa_node.slots`.
    pub node_slots: Field,
    /// Number of entries in `xa_node.slots` (XA_CHUNK_SIZE).
    pub node_slot_count: u64,
    /// `pid.tasks[PIDTYPE_PID].first`.
    pub pid_first_task: Field,
    /// `task_struct.pid_links[PIDTYPE_PID]`.
    pub task_pid_link: Field,
    /// `pid.numbers[0].nr`: the number, known even when the task is not.
    pub pid_nr: Field,
}

/// Livepatch's own structures (kernel/livepatch, 5.1+: patches, objects and
/// functions on lists), for the patched set the kernel itself checks.
#[derive(Clone, Copy, Debug)]
pub struct KlpLayout {
    /// `klp_patch.mod`: the patch's module.
    pub patch_mod: Field,
    /// `klp_patch.list`: the link in `klp_patches`.
    pub patch_list: Field,
    /// `klp_patch.obj_list`: its objects.
    pub patch_obj_list: Field,
    /// `klp_patch.enabled`.
    pub patch_enabled: Field,
    /// `klp_patch.replace`: an atomic-replace patch.
    pub patch_replace: Field,
    /// `klp_object.name`: the patched module's name, NULL for vmlinux.
    pub obj_name: Field,
    /// `klp_object.node`: the link in `klp_patch.obj_list`.
    pub obj_node: Field,
    /// `klp_object.func_list`: its functions.
    pub obj_func_list: Field,
    /// `klp_object.patched`.
    pub obj_patched: Field,
    /// `klp_object.dynamic`; None when BTF lacks it.
    pub obj_dynamic: Option<Field>,
    /// `klp_func.old_name`.
    pub func_old_name: Field,
    /// `klp_func.new_func`: the replacement's address.
    pub func_new_func: Field,
    /// `klp_func.old_sympos`.
    pub func_old_sympos: Field,
    /// `klp_func.old_func`: the patched function's address.
    pub func_old_func: Field,
    /// `klp_func.node`: the link in `klp_object.func_list`.
    pub func_node: Field,
    /// `klp_func.stack_node`: the link in its `klp_ops.func_stack`.
    pub func_stack_node: Field,
    /// `klp_func.old_size`, in bytes.
    pub func_old_size: Field,
    /// `klp_func.new_size`, in bytes.
    pub func_new_size: Field,
    /// `klp_func.nop`; None when BTF lacks it.
    pub func_nop: Option<Field>,
    /// `klp_func.patched`.
    pub func_patched: Field,
    /// `klp_func.transition`.
    pub func_transition: Field,
    /// `module.name`, for the patch module's name.
    pub module_name: Field,
}

/// The per-CPU stacks besides a task's own, as `get_stack_info` knows them
/// (arch/x86/kernel/dumpstack_64.c): the hardirq stack and the exception
/// (IST) stacks of `cpu_entry_area`.
#[derive(Clone, Copy, Debug)]
pub struct CpuStacksLayout {
    /// `sizeof(struct irq_stack)` (IRQ_STACK_SIZE).
    pub irq_stack_size: u64,
    /// `pcpu_hot.hardirq_stack_ptr` (6.2+); None: the per-CPU variable
    /// `hardirq_stack_ptr` itself.
    pub pcpu_hot_hardirq: Option<Field>,
    /// `struct cea_exception_stacks`: DF, NMI, DB, MCE, VC, VC2 (a VC stack
    /// of size 0 without AMD SEV).
    pub exception: [Option<Field>; 6],
    /// `cpu_entry_area.estacks` and `.entry_stack_page.stack`: the entry
    /// stack, found from the exception stacks' address.
    pub cea_estacks: Option<Field>,
    /// `cpu_entry_area.entry_stack_page.stack`; None when BTF lacks it.
    pub cea_entry_stack: Option<Field>,
}

/// Names of [`CpuStacksLayout::exception`], in order.
pub const EXCEPTION_STACKS: [&str; 6] = ["DF", "NMI", "DB", "MCE", "VC", "VC2"];

/// Every layout lpstack reads the kernel with, from its BTF.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// `struct task_struct` (required).
    pub task: TaskLayout,
    /// None when BTF lacks `struct irq_stack`.
    pub cpu_stacks: Option<CpuStacksLayout>,
    /// None without CONFIG_LIVEPATCH or before 5.1 (no `klp_patch.obj_list`).
    pub klp: Option<KlpLayout>,
    /// None when BTF lacks part of the pid IDR (no fallback listing).
    pub pid_idr: Option<PidIdrLayout>,
    /// `struct inactive_task_frame` (required).
    pub frame: SwitchFrameLayout,
    /// None when BTF lacks a required `struct module` field.
    pub module: Option<ModuleLayout>,
    /// None when BTF lacks `rq.curr` or `rq.idle`.
    pub rq: Option<RqLayout>,
    /// Offset of `list_head.next`, in bytes (`prev` follows it).
    pub list_next: u64,
}

impl Layout {
    /// Takes every layout from `btf`; fails only when a required one
    /// (`task_struct`, `inactive_task_frame`, `list_head`) is incomplete.
    pub fn from_btf(btf: &Btf<'_>) -> Result<Layout, LayoutError> {
        let t = "task_struct";
        let task_id = btf.find_struct(t).ok_or(LayoutError::Missing("struct task_struct"))?;
        let task = TaskLayout {
            size: btf.type_size(task_id)?,
            tasks: member(btf, t, "tasks")?,
            pid: member(btf, t, "pid")?,
            tgid: member(btf, t, "tgid")?,
            comm: member(btf, t, "comm")?,
            stack: member(btf, t, "stack")?,
            thread_sp: member(btf, t, "thread.sp")?,
            on_cpu: member(btf, t, "on_cpu")?,
            cpu: member_any(btf, t, &["cpu", "thread_info.cpu"], "task_struct.cpu")?,
            state: member_any(btf, t, &["__state", "state"], "task_struct.__state")?,
            flags: member(btf, t, "flags")?,
            exit_state: optional(btf, t, "exit_state"),
            patch_state: optional(btf, t, "patch_state"),
            signal: member(btf, t, "signal")?,
            thread_node: optional(btf, t, "thread_node"),
            signal_thread_head: optional(btf, "signal_struct", "thread_head"),
            thread_group: optional(btf, t, "thread_group"),
            nvcsw: optional(btf, t, "nvcsw"),
            nivcsw: optional(btf, t, "nivcsw"),
        };
        if task.thread_node.is_none() && task.thread_group.is_none() {
            return Err(LayoutError::Missing("task_struct.thread_node or thread_group"));
        }
        let f = "inactive_task_frame";
        let frame_id = btf.find_struct(f).ok_or(LayoutError::Missing("struct inactive_task_frame"))?;
        let frame = SwitchFrameLayout {
            size: btf.type_size(frame_id)?,
            bp: member(btf, f, "bp")?,
            ret_addr: member(btf, f, "ret_addr")?,
        };
        let module = Self::module(btf).ok();
        let rq = match (btf.member("rq", "curr"), btf.member("rq", "idle")) {
            (Ok(c), Ok(i)) => Some(RqLayout { curr: c.into(), idle: i.into() }),
            _ => None,
        };
        let pid_idr = Self::pid_idr(btf).ok();
        let klp = Self::klp(btf).ok();
        let cpu_stacks = Self::cpu_stacks(btf);
        Ok(Layout {
            task,
            cpu_stacks,
            klp,
            pid_idr,
            frame,
            module,
            rq,
            list_next: member(btf, "list_head", "next")?.offset,
        })
    }

    fn cpu_stacks(btf: &Btf<'_>) -> Option<CpuStacksLayout> {
        let irq = btf.find_struct("irq_stack")?;
        let exception = EXCEPTION_STACKS
            .map(|name| optional(btf, "cea_exception_stacks", &format!("{name}_stack")).filter(|f| f.size > 0));
        Some(CpuStacksLayout {
            irq_stack_size: btf.type_size(irq).ok()?,
            pcpu_hot_hardirq: optional(btf, "pcpu_hot", "hardirq_stack_ptr"),
            exception,
            cea_estacks: optional(btf, "cpu_entry_area", "estacks"),
            cea_entry_stack: optional(btf, "cpu_entry_area", "entry_stack_page.stack"),
        })
    }

    fn klp(btf: &Btf<'_>) -> Result<KlpLayout, LayoutError> {
        let (p, o, f) = ("klp_patch", "klp_object", "klp_func");
        Ok(KlpLayout {
            patch_mod: member(btf, p, "mod")?,
            patch_list: member(btf, p, "list")?,
            patch_obj_list: member(btf, p, "obj_list")?,
            patch_enabled: member(btf, p, "enabled")?,
            patch_replace: member(btf, p, "replace")?,
            obj_name: member(btf, o, "name")?,
            obj_node: member(btf, o, "node")?,
            obj_func_list: member(btf, o, "func_list")?,
            obj_patched: member(btf, o, "patched")?,
            obj_dynamic: optional(btf, o, "dynamic"),
            func_old_name: member(btf, f, "old_name")?,
            func_new_func: member(btf, f, "new_func")?,
            func_old_sympos: member(btf, f, "old_sympos")?,
            func_old_func: member(btf, f, "old_func")?,
            func_node: member(btf, f, "node")?,
            func_stack_node: member(btf, f, "stack_node")?,
            func_old_size: member(btf, f, "old_size")?,
            func_new_size: member(btf, f, "new_size")?,
            func_nop: optional(btf, f, "nop"),
            func_patched: member(btf, f, "patched")?,
            func_transition: member(btf, f, "transition")?,
            module_name: member(btf, "module", "name")?,
        })
    }

    fn pid_idr(btf: &Btf<'_>) -> Result<PidIdrLayout, LayoutError> {
        let slots = btf.member("xa_node", "slots")?;
        let count =
            btf.array_info(slots.type_id).map(|(_, n)| n as u64).ok_or(LayoutError::Missing("xa_node.slots"))?;
        Ok(PidIdrLayout {
            ns_xa_head: member(btf, "pid_namespace", "idr.idr_rt.xa_head")?,
            node_shift: member(btf, "xa_node", "shift")?,
            node_slots: slots.into(),
            node_slot_count: count,
            pid_first_task: member(btf, "pid", "tasks[0].first")?,
            task_pid_link: member(btf, "task_struct", "pid_links[0]")?,
            // `numbers` is a flexible array: its offset plus upid.nr's.
            pid_nr: {
                let (numbers, nr) = (member(btf, "pid", "numbers")?, member(btf, "upid", "nr")?);
                Field { offset: numbers.offset + nr.offset, size: nr.size }
            },
        })
    }

    fn module(btf: &Btf<'_>) -> Result<ModuleLayout, LayoutError> {
        let m = "module";
        let mem_text_base = optional(btf, m, "mem[0].base");
        let stride = match (btf.member(m, "mem[0]"), btf.member(m, "mem[1]")) {
            (Ok(a), Ok(b)) => b.offset - a.offset,
            _ => 0,
        };
        Ok(ModuleLayout {
            list: member(btf, m, "list")?,
            name: member(btf, m, "name")?,
            state: member(btf, m, "state")?,
            klp: optional(btf, m, "klp"),
            mem_text_base,
            mem_text_size: optional(btf, m, "mem[0].size"),
            mem_stride: stride,
            core_base: optional(btf, m, "core_layout.base"),
            core_text_size: optional(btf, m, "core_layout.text_size"),
            num_orcs: optional(btf, m, "arch.num_orcs"),
            orc_unwind_ip: optional(btf, m, "arch.orc_unwind_ip"),
            orc_unwind: optional(btf, m, "arch.orc_unwind"),
            kallsyms: member(btf, m, "kallsyms")?,
            ks_symtab: member(btf, "mod_kallsyms", "symtab")?,
            ks_num_symtab: member(btf, "mod_kallsyms", "num_symtab")?,
            ks_strtab: member(btf, "mod_kallsyms", "strtab")?,
        })
    }
}
