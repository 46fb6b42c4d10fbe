//! `lpstack_patchset`: the patched functions whose ranges a stack must not
//! hold, from funcs.txt (resolved against an unwinder's symbols) or from
//! raw ranges.

use std::ffi::{CString, c_char};

use lpstack_core::patchset::{PatchSet, PatchSetError, parse_funcs};
use lpstack_core::symbols::Symbolizer;

use crate::{Error, arg, array_stride, element, guard, lpstack_result, lpstack_unwinder, put, string, struct_size};

/// The patched functions, in the order given: indexes in decisions and
/// hits refer to this order.
pub struct lpstack_patchset {
    pub(crate) set: PatchSet,
    /// NUL-terminated copies of each function's object and name, for
    /// `lpstack_patchset_get`.
    names: Vec<(CString, CString)>,
}

/// One patched function: `[address, address + size_bytes)` is checked.
/// In: for lpstack_patchset_new_from_ranges. Out: lpstack_patchset_get
/// (the strings then belong to the set).
#[repr(C)]
pub struct lpstack_range {
    /// `sizeof(lpstack_range)`.
    pub size: usize,
    /// The object it lives in ("vmlinux", a module, "libc.so.6").
    pub object: *const c_char,
    pub function: *const c_char,
    pub address: u64,
    /// Must not be 0.
    pub size_bytes: u64,
}

fn new_set(set: PatchSet) -> Box<lpstack_patchset> {
    let names = set
        .funcs()
        .iter()
        .map(|f| {
            // The names came from C strings or symbol tables: no inner NUL.
            (CString::new(f.object.as_str()).unwrap_or_default(), CString::new(f.function.as_str()).unwrap_or_default())
        })
        .collect();
    Box::new(lpstack_patchset { set, names })
}

fn set_error(e: PatchSetError) -> Error {
    let code = match e {
        PatchSetError::Unparsable { .. } | PatchSetError::BadSympos { .. } | PatchSetError::Duplicate { .. } => {
            lpstack_result::ParseError
        }
        PatchSetError::ZeroSizeRange { .. } => lpstack_result::InvalidArgument,
        _ => lpstack_result::ResolveError,
    };
    Error::new(code, e.to_string())
}

/// Parses a funcs.txt (`[object:]function[,sympos]` per line, `#`
/// comments) and resolves each line like livepatch's
/// `klp_find_object_symbol` against the symbols of `symbols_source` (may be
/// NULL: then only an empty list resolves). `default_object` is the object
/// of lines without one (NULL = "vmlinux"; for a process, its executable's
/// name as given to lpstack_unwinder_add_elf).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_patchset_new_from_text(
    funcs_txt: *const c_char,
    default_object: *const c_char,
    symbols_source: *const lpstack_unwinder,
    out: *mut *mut lpstack_patchset,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `funcs_txt` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let text = unsafe { string(funcs_txt, "funcs_txt")? };
        let default_object =
            // SAFETY: `default_object` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
            if default_object.is_null() { "vmlinux" } else { unsafe { string(default_object, "default_object")? } };
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let empty = Symbolizer::new();
        // SAFETY: `symbols_source` is NULL or a valid unwinder (contract).
        let symbols = match unsafe { symbols_source.as_ref() } {
            Some(u) => &u.symbols,
            None => &empty,
        };
        let specs = parse_funcs(text, default_object).map_err(set_error)?;
        let set = PatchSet::resolve(&specs, symbols).map_err(set_error)?;
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(new_set(set))) };
        Ok(())
    })
}

/// A set from `n` raw ranges (an array stepped by `ranges[0].size`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_patchset_new_from_ranges(
    ranges: *const lpstack_range,
    n: usize,
    out: *mut *mut lpstack_patchset,
) -> lpstack_result {
    guard(|| {
        if ranges.is_null() && n > 0 {
            return Err(Error::null("ranges"));
        }
        if out.is_null() {
            return Err(Error::null("out"));
        }
        // SAFETY: `ranges` holds `n` sized elements (contract); `array_stride` rejects NULL.
        let stride = unsafe { array_stride(ranges, n, size_of::<lpstack_range>(), "ranges")? };
        let mut list = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `i` < the count `array_stride` checked `stride` for.
            let r = unsafe { element(ranges, i, stride, "ranges")? };
            // SAFETY: `r.object` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
            let object = unsafe { string(r.object, "ranges[].object")? };
            // SAFETY: `r.function` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
            let function = unsafe { string(r.function, "ranges[].function")? };
            list.push((object, function, r.address, r.size_bytes));
        }
        let set = PatchSet::from_ranges(list).map_err(set_error)?;
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(new_set(set))) };
        Ok(())
    })
}

/// The number of functions in the set (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_patchset_len(set: *const lpstack_patchset) -> usize {
    // SAFETY: `set` is NULL or a valid set (contract).
    crate::guard_value(0, || unsafe { set.as_ref() }.map_or(0, |s| s.set.len()))
}

/// Function `index` of the set, as resolved: fills `out` (whose `size`
/// the caller sets); its strings live as long as the set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_patchset_get(
    set: *const lpstack_patchset,
    index: usize,
    out: *mut lpstack_range,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `set` is NULL or a valid handle (contract); `arg` rejects NULL.
        let s = unsafe { arg(set, "set")? };
        // SAFETY: `out` is NULL or a struct starting with `size` (contract); `struct_size` rejects NULL.
        let size = unsafe { struct_size(out.cast(), size_of::<lpstack_range>(), "out")? };
        let (f, (object, function)) = s.set.funcs().get(index).zip(s.names.get(index)).ok_or_else(|| {
            Error::new(lpstack_result::NotFound, format!("index {index} is past the set's {} functions", s.set.len()))
        })?;
        let r = lpstack_range {
            size,
            object: object.as_ptr(),
            function: function.as_ptr(),
            address: f.address,
            size_bytes: f.size,
        };
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, r) };
        Ok(())
    })
}

/// Releases a set; NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_patchset_free(set: *mut lpstack_patchset) {
    if !set.is_null() {
        // SAFETY: non-NULL and, by the contract, from its `_new` call and not yet freed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unsafe { Box::from_raw(set) })));
    }
}
