//! The `lpstack` command. Each subcommand lives in `cli/`.

mod cli;

fn main() {
    keep_freed_memory();
    std::process::exit(cli::run());
}

/// Has glibc's malloc serve large blocks from its heap and keep what is
/// freed, rather than map fresh zeroed pages for each large block and give
/// them back on free. A dump check frees megabytes of setup tables (name
/// order, offsets, BTF) and then allocates as much again for tasks; every
/// page mapped anew costs a fault (1.5-2.5 us each on the VMs measured), and
/// a 1,865-task check took 4,600 of them. Peak memory is what was in use at
/// once either way.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists and takes no pointers.
    unsafe {
        // 32 MiB is the largest threshold glibc accepts on 64-bit.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
