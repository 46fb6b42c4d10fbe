//! The stacks a thread may use, and the kernel's rule that a walk visits
//! each stack at most once (the `stack_mask` of unwind_orc.c).

/// Which kind of stack a range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackKind {
    /// A kernel task's own stack.
    Task,
    /// A CPU's hard-IRQ stack.
    Irq,
    /// One of a CPU's exception stacks (NMI, #DB, #MC, #DF...) in its `cpu_entry_area`.
    Exception,
    /// A CPU's entry stack (`cpu_entry_stack`) in its `cpu_entry_area`.
    Entry,
    /// A userspace thread stack.
    User,
}

/// [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackRange {
    /// Lowest address of the stack.
    pub start: u64,
    /// One past the highest address of the stack.
    pub end: u64,
    /// Which stack it is.
    pub kind: StackKind,
}

impl StackRange {
    /// True when [addr, addr + len) lies wholly inside the range.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end)
    }
}

/// Up to 8 stacks, held inline so a walk never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackBounds {
    ranges: [StackRange; Self::MAX],
    len: usize,
}

impl StackBounds {
    /// How many stacks fit.
    pub const MAX: usize = 8;

    /// No stacks.
    pub fn new() -> Self {
        StackBounds { ranges: [StackRange { start: 0, end: 0, kind: StackKind::Task }; Self::MAX], len: 0 }
    }

    /// A blocked kernel task: only its own stack.
    pub fn task(start: u64, end: u64) -> Self {
        let mut b = StackBounds::new();
        b.push(StackRange { start, end, kind: StackKind::Task });
        b
    }

    /// Adds a stack; returns false when full or empty.
    pub fn push(&mut self, range: StackRange) -> bool {
        if self.len == Self::MAX || range.start >= range.end {
            return false;
        }
        self.ranges[self.len] = range;
        self.len += 1;
        true
    }

    /// The stacks, in `push` order.
    #[inline]
    pub fn ranges(&self) -> &[StackRange] {
        &self.ranges[..self.len]
    }

    /// Index of the stack holding [addr, addr+len).
    pub fn find(&self, addr: u64, len: u64) -> Option<usize> {
        self.ranges().iter().position(|r| r.contains(addr, len))
    }
}

impl Default for StackBounds {
    fn default() -> Self {
        StackBounds::new()
    }
}

/// The walk's position among the stacks: the current one and those seen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackCursor {
    pub current: usize,
    visited: u8,
}

impl StackCursor {
    #[inline]
    pub fn start(bounds: &StackBounds, sp: u64) -> Option<Self> {
        let i = bounds.find(sp, 8)?;
        Some(StackCursor { current: i, visited: 1 << i })
    }

    /// May [addr, addr+len) be read? Moving to another stack is allowed once
    /// per stack, as in the kernel's `stack_access_ok`.
    #[inline]
    pub fn access(&mut self, bounds: &StackBounds, addr: u64, len: u64) -> bool {
        if bounds.ranges().get(self.current).is_some_and(|r| r.contains(addr, len)) {
            return true;
        }
        self.switch(bounds, addr, len)
    }

    /// The access leaves the current stack: allowed onto a stack not yet
    /// visited.
    #[cold]
    fn switch(&mut self, bounds: &StackBounds, addr: u64, len: u64) -> bool {
        match bounds.find(addr, len) {
            Some(i) if self.visited & (1 << i) == 0 => {
                self.visited |= 1 << i;
                self.current = i;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stack_once() {
        let mut b = StackBounds::task(0x1000, 0x2000);
        assert!(b.push(StackRange { start: 0x8000, end: 0x9000, kind: StackKind::Irq }));
        assert!(!b.push(StackRange { start: 5, end: 5, kind: StackKind::Irq }));
        let mut c = StackCursor::start(&b, 0x8100).unwrap();
        assert_eq!(c.current, 1);
        assert!(c.access(&b, 0x8ff8, 8));
        assert!(!c.access(&b, 0x8ffc, 8), "straddles the end");
        assert!(c.access(&b, 0x1ff0, 8), "irq stack to task stack");
        assert_eq!(c.current, 0);
        assert!(!c.access(&b, 0x8100, 8), "no going back to a visited stack");
        assert!(!c.access(&b, 0x3000, 8));
        assert!(StackCursor::start(&b, 0x3000).is_none());
        assert!(!b.ranges()[0].contains(u64::MAX - 2, 8));
    }
}
