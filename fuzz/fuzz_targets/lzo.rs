//! LZO1X blocks: lpstack's decoder against the `lzo` crate's. Both must
//! accept the same blocks and write the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the output room: a page, or less.
    let Some((&room, block)) = data.split_first() else { return };
    let room = if room == 0 { 4096 } else { room as usize * 16 };
    let (mut ours, mut theirs) = (vec![0u8; room], vec![0u8; room]);
    let a = lpstack::dump::lzo::decompress_into(block, &mut ours);
    let b = lzo::decompress_into(block, &mut theirs);
    assert_eq!(a.is_ok(), b.is_ok(), "{a:?} vs {b:?}");
    if let (Ok(n), Ok(m)) = (a, b) {
        assert_eq!(n, m);
        assert_eq!(ours[..n], theirs[..m]);
    }
});
