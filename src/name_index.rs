//! Names to ids by hash, for tables looked up only by equal name (BTF
//! types, symbols). Sorting ~100k names costs far more than hashing them,
//! and no caller needs names in order.

/// An open-addressing hash table (linear probing, at most half full) of
/// `(id + 1, high hash bits)`; 0 marks an empty slot. Ids are inserted in
/// increasing order, so along one probe sequence a name's ids come out in
/// that order.
#[derive(Clone, Debug, Default)]
pub struct NameIndex {
    slots: Vec<(u32, u32)>,
}

/// FNV-1a.
fn hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

impl NameIndex {
    /// Indexes `(id, name)` pairs given in increasing id order; at most
    /// `capacity` of them (more are left out of the index). Ids must be
    /// below `u32::MAX`.
    pub fn build<'n>(capacity: usize, names: impl Iterator<Item = (u32, &'n [u8])>) -> NameIndex {
        let size = capacity.saturating_mul(2).next_power_of_two().max(16);
        let mask = size - 1;
        let mut slots = vec![(0u32, 0u32); size];
        for (id, name) in names.take(capacity) {
            let h = hash(name);
            let mut slot = h as usize & mask;
            while slots[slot].0 != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = (id.saturating_add(1), (h >> 32) as u32);
        }
        NameIndex { slots }
    }

    /// The ids named `name`, in increasing order. `name_of` gives an id's
    /// name (hashes can collide).
    pub fn find<'s, 'f, F: Fn(u32) -> &'f [u8] + 'f>(
        &'s self,
        name: &'f [u8],
        name_of: F,
    ) -> impl Iterator<Item = u32> + use<'s, 'f, F> {
        let h = hash(name);
        let mask = self.slots.len().wrapping_sub(1);
        let start = h as usize & mask;
        (0..self.slots.len())
            .map(move |k| self.slots.get((start + k) & mask).copied().unwrap_or((0, 0)))
            .take_while(|&(id, _)| id != 0)
            .filter(move |&(id, high)| high == (h >> 32) as u32 && name_of(id - 1) == name)
            .map(|(id, _)| id - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_id_of_a_name_in_order() {
        let names: Vec<String> = (0..1000).map(|i| format!("n{}", i % 300)).collect();
        let index = NameIndex::build(names.len(), names.iter().enumerate().map(|(i, n)| (i as u32, n.as_bytes())));
        let name_of = |id: u32| names[id as usize].as_bytes();
        for probe in ["n0", "n7", "n299"] {
            let want: Vec<u32> = (0..1000).filter(|&i| names[i as usize] == probe).collect();
            assert_eq!(index.find(probe.as_bytes(), name_of).collect::<Vec<_>>(), want, "{probe}");
        }
        assert_eq!(index.find(b"n300", name_of).count(), 0);
        assert_eq!(NameIndex::default().find(b"x", name_of).count(), 0);
    }
}
