//! The C API of lpstack: may this thread switch to live-patched code now?
//!
//! `include/lpstack.h` is generated from this crate by cbindgen (see
//! `tests/header.rs`). Conventions, as in rustls-ffi:
//!
//! - Opaque handles (`lpstack_unwinder`, `lpstack_patchset`,
//!   `lpstack_scratch`), made by `lpstack_<noun>_new*` and released by
//!   `lpstack_<noun>_free` (which accepts NULL).
//! - Every fallible call returns an `lpstack_result`; outputs are written only
//!   when it is `LPSTACK_RESULT_OK`. `lpstack_last_error` gives the text of
//!   the calling thread's last failure.
//! - Every pointer is checked for NULL; a Rust panic never crosses the
//!   boundary (`LPSTACK_RESULT_PANIC`).
//! - Every struct the caller hands in starts with `size_t size` =
//!   `sizeof(struct)`, so fields can be added at the end later; a size below
//!   the first released layout is `LPSTACK_RESULT_SIZE_TOO_SMALL`. Arrays
//!   of such structs are stepped by their first element's `size`.
//! - Enum values that come *from* C are taken as `uint32_t` and checked
//!   (an out-of-range C enum must not become an invalid Rust enum).
#![allow(non_camel_case_types)]
// The contract of every entry point is written once, in the header.
#![allow(clippy::missing_safety_doc)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
// Each unsafe block says why it is sound (a warning, so as not to break
// work in flight).
#![warn(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod tables;
mod decide;
mod model;
mod patchset;
mod unwinder;

use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use decide::*;
pub use model::*;
pub use patchset::*;
pub use unwinder::*;

/// What a call did. `LPSTACK_RESULT_OK` is 0; `lpstack_result_message`
/// names each value, `lpstack_last_error` tells the details of the last
/// failure on the calling thread.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_result {
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range or inconsistent with the others.
    InvalidArgument = 2,
    /// Input bytes or text could not be parsed (ELF, ORC tables, funcs.txt).
    ParseError = 3,
    /// The caller's buffer is too small; nothing was written.
    BufferTooSmall = 4,
    /// A bug in lpstack: a Rust panic was caught at the boundary.
    Panic = 5,
    /// A struct's `size` field is below the smallest known layout.
    SizeTooSmall = 6,
    /// The ORC layout could not be told from the file: pass it explicitly.
    UnknownFormat = 7,
    /// A funcs.txt line names an object or function the symbols lack, or
    /// one that is ambiguous.
    ResolveError = 8,
    /// A kernel-only call on a userspace unwinder, or the reverse.
    WrongKind = 9,
    /// Nothing matches (no symbol at an address, no such index).
    NotFound = 10,
    /// A string argument is not UTF-8.
    InvalidUtf8 = 11,
}

c_enum! {
    lpstack_result, message {
        Ok: c"ok",
        NullArgument: c"a required pointer argument is NULL",
        InvalidArgument: c"invalid argument",
        ParseError: c"input could not be parsed",
        BufferTooSmall: c"buffer too small",
        Panic: c"internal error (panic caught at the C API boundary)",
        SizeTooSmall: c"struct size field too small (set it to sizeof)",
        UnknownFormat: c"ORC format unknown: pass it explicitly",
        ResolveError: c"a patched function could not be resolved",
        WrongKind: c"wrong kind of unwinder for this call",
        NotFound: c"not found",
        InvalidUtf8: c"string is not UTF-8",
    }
}

/// A failure inside the crate: the code returned and the text kept for
/// `lpstack_last_error`. Built only on error paths, so the happy path never
/// allocates for it.
#[derive(Debug)]
pub(crate) struct Error {
    pub code: lpstack_result,
    pub message: String,
}

impl Error {
    pub fn new(code: lpstack_result, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn null(what: &str) -> Self {
        Error::new(lpstack_result::NullArgument, format!("argument `{what}` is NULL"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(lpstack_result::InvalidArgument, message)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn remember(message: &str) {
    LAST_ERROR.with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(message);
        }
    });
}

/// Runs an entry point's body: panics become `Panic`, errors are recorded
/// for `lpstack_last_error`.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> lpstack_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => lpstack_result::Ok,
        Ok(Err(e)) => {
            remember(&e.message);
            e.code
        }
        Err(_) => {
            remember("internal error: a panic was caught at the C API boundary");
            lpstack_result::Panic
        }
    }
}

/// For entry points that return a value rather than a result.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// `&T` from a pointer the caller promised is valid or NULL.
pub(crate) unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller promises NULL or a valid `T` for 'a.
    unsafe { p.as_ref() }.ok_or_else(|| Error::null(what))
}

/// `&mut T` from a pointer the caller promised is valid and unshared, or NULL.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller promises NULL or a valid, unshared `T` for 'a.
    unsafe { p.as_mut() }.ok_or_else(|| Error::null(what))
}

/// A caller's byte buffer; NULL is allowed only with length 0.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("`{what}` length {len} is too large")));
    }
    // SAFETY: non-NULL, len <= isize::MAX; the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A NUL-terminated UTF-8 string.
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL; the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::new(lpstack_result::InvalidUtf8, format!("`{what}` is not UTF-8")))
}

/// Writes a handle or value to an output pointer checked beforehand.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: the caller checked `out` non-NULL; it points to writable storage.
    unsafe { out.write(value) }
}

/// Reads the leading `size_t size` of a caller's struct and checks it
/// against the smallest layout lpstack knows (`min`). Returns the size.
pub(crate) unsafe fn struct_size(p: *const usize, min: usize, what: &str) -> Result<usize> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: non-NULL; the caller promises a struct that starts with `size_t size`.
    let size = unsafe { p.read() };
    if size < min {
        return Err(Error::new(
            lpstack_result::SizeTooSmall,
            format!("`{what}->size` is {size}, below the {min} bytes of this struct (set it to sizeof)"),
        ));
    }
    Ok(size)
}

/// The stride of an array of sized structs: its first element's `size`,
/// which must also keep the elements aligned.
pub(crate) unsafe fn array_stride<T>(p: *const T, n: usize, min: usize, what: &str) -> Result<usize> {
    if n == 0 {
        return Ok(min);
    }
    // SAFETY: n > 0, so the caller promises `p` NULL or an element with its `size`.
    let stride = unsafe { struct_size(p.cast(), min, what)? };
    if stride % std::mem::align_of::<T>() != 0 || n.checked_mul(stride).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("`{what}[0].size` {stride} is not a usable array stride")));
    }
    Ok(stride)
}

/// Element `i` of a strided array whose every element carries the same size.
pub(crate) unsafe fn element<'a, T>(p: *const T, i: usize, stride: usize, what: &str) -> Result<&'a T> {
    // SAFETY: the caller promises i < n elements of `stride` bytes, and
    // array_stride bounded n * stride by isize::MAX.
    let e = unsafe { p.cast::<u8>().add(i * stride).cast::<T>() };
    // SAFETY: in the array, aligned (stride is a multiple of the alignment),
    // and every element starts with its `size_t size`.
    let size = unsafe { e.cast::<usize>().read() };
    if size != stride {
        return Err(Error::invalid(format!("`{what}[{i}].size` is {size}, not {stride} as element 0")));
    }
    // SAFETY: in bounds and aligned as above, and as large as element 0.
    Ok(unsafe { &*e })
}

/// Copies `text` and a NUL into `buf` (capacity `cap`), or fails without
/// writing when it does not fit. Returns the length without the NUL.
pub(crate) unsafe fn copy_str(text: &str, buf: *mut c_char, cap: usize) -> Result<usize> {
    if buf.is_null() {
        return Err(Error::null("buf"));
    }
    if text.len() >= cap {
        return Err(Error::new(
            lpstack_result::BufferTooSmall,
            format!("{} bytes needed, the buffer holds {cap}", text.len() + 1),
        ));
    }
    // SAFETY: `buf` is non-NULL with `cap` > text.len() bytes (the caller
    // promises `cap`); a Rust `&str` does not overlap a caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), buf, text.len());
        buf.add(text.len()).write(0);
    }
    Ok(text.len())
}

/// The library version, e.g. "0.1.0". A static string.
#[unsafe(no_mangle)]
pub extern "C" fn lpstack_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A short static text for a result code (any value: unknown ones get
/// "unknown result").
#[unsafe(no_mangle)]
pub extern "C" fn lpstack_result_message(result: u32) -> *const c_char {
    lpstack_result::from_u32(result).map_or(c"unknown result", lpstack_result::message).as_ptr()
}

/// Copies the text of the calling thread's last failure (NUL-terminated)
/// into `buf`. `*len_out` receives its length without the NUL. When `cap`
/// is too small, returns BUFFER_TOO_SMALL and writes nothing; the length
/// needed is `lpstack_last_error_len() + 1`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_last_error(buf: *mut c_char, cap: usize, len_out: *mut usize) -> lpstack_result {
    guard(|| {
        if len_out.is_null() {
            return Err(Error::null("len_out"));
        }
        // Not through `guard`'s error path: that would overwrite the text.
        let text = LAST_ERROR.with(|e| e.try_borrow().map(|e| e.clone()).unwrap_or_default());
        if buf.is_null() {
            return Err(Error::null("buf"));
        }
        if text.len() >= cap {
            return Err(Error { code: lpstack_result::BufferTooSmall, message: text });
        }
        // SAFETY: `buf` holds `cap` bytes (contract); `copy_str` rejects NULL and checks the room.
        let n = unsafe { copy_str(&text, buf, cap)? };
        // SAFETY: `len_out` was checked non-NULL above and is writable (contract).
        unsafe { put(len_out, n) };
        Ok(())
    })
}

/// The length (without NUL) of the calling thread's last failure text; 0
/// when nothing failed yet.
#[unsafe(no_mangle)]
pub extern "C" fn lpstack_last_error_len() -> usize {
    guard_value(0, || LAST_ERROR.with(|e| e.try_borrow().map(|e| e.len()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_result() {
        let r = guard(|| panic!("boom"));
        assert_eq!(r, lpstack_result::Panic);
        assert!(lpstack_last_error_len() > 0);
    }

    #[test]
    fn result_table_is_complete() {
        tables::tests::check_table::<lpstack_result>();
    }

    #[test]
    fn every_result_has_a_message() {
        for v in 0..=11 {
            // SAFETY: the name functions return static NUL-terminated strings, non-NULL for known values.
            let m = unsafe { CStr::from_ptr(lpstack_result_message(v)) };
            assert_ne!(m.to_str().unwrap_or(""), "unknown result", "{v}");
        }
        // SAFETY: the name functions return static NUL-terminated strings, non-NULL for known values.
        let m = unsafe { CStr::from_ptr(lpstack_result_message(12)) };
        assert_eq!(m.to_str().unwrap_or(""), "unknown result");
    }
}
