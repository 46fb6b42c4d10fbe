//! One table per C enum: every variant once, with its static text and,
//! where lpstack has one, its core counterpart.
//!
//! The `#[repr(u32)]` enums themselves stay written out next to their
//! tables: cbindgen reads the sources without expanding macros, so an
//! enum made by a macro would vanish from the header. `c_enum!` makes the
//! rest from the table: `CEnum` (every variant, u32 <-> enum, the text),
//! `TryFrom<u32>`, an inherent accessor for the text (`name`, or `message`
//! for lpstack_result), and the core conversions. Each of those is an
//! exhaustive match over the variants, without `_`, so a variant added to
//! the C enum or to its core type but not to the table does not compile,
//! and a row given twice is an unreachable pattern, denied.

use std::ffi::CStr;

use crate::{Error, Result};

/// A C enum and its table.
pub(crate) trait CEnum: Copy + Eq + std::fmt::Debug + 'static {
    /// The C type's name, for error messages.
    const C_NAME: &'static str;
    /// Every variant, in table order.
    const ALL: &'static [Self];
    fn to_u32(self) -> u32;
    /// The static text of the variant: its name, or lpstack_result's message.
    fn text(self) -> &'static CStr;
    fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.to_u32() == v)
    }
}

/// A C enum value passed as `uint32_t`, checked (`what` names the argument).
pub(crate) fn enum_arg<T: CEnum>(v: u32, what: &str) -> Result<T> {
    T::from_u32(v).ok_or_else(|| Error::invalid(format!("{what} {v} is not an {}", T::C_NAME)))
}

/// The two words a decision keeps a core reason's fields in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReasonWords {
    /// `reason_addr`.
    pub addr: u64,
    /// `reason_detail`.
    pub detail: u64,
}

/// A core reason's field as a decision word, and back (None: out of range).
pub(crate) trait Word: Sized {
    fn to_word(self) -> u64;
    fn from_word(w: u64) -> Option<Self>;
}

impl Word for u64 {
    fn to_word(self) -> u64 {
        self
    }
    fn from_word(w: u64) -> Option<Self> {
        Some(w)
    }
}

impl Word for u32 {
    fn to_word(self) -> u64 {
        self.into()
    }
    fn from_word(w: u64) -> Option<Self> {
        w.try_into().ok()
    }
}

impl Word for u8 {
    fn to_word(self) -> u64 {
        self.into()
    }
    fn from_word(w: u64) -> Option<Self> {
        w.try_into().ok()
    }
}

/// Rows are `Variant: c"text"`, then, by form:
/// - `C_ENUM, accessor { rows }`: no core type;
/// - `C_ENUM <=> Core, accessor { rows <=> CoreVariant }`: one to one,
///   `From` both ways;
/// - `C_ENUM from Core, accessor { rows [<=> CoreVariant] }`: C variants
///   without a core one (e.g. "none"); `From<Core>` only;
/// - `C_ENUM <=> Core { fields }, accessor { rows [<=> CoreVariant { field:
///   addr|detail, ... }] }`: a core enum with fields kept in the
///   `ReasonWords`; `from_core` and `to_core`.
macro_rules! c_enum {
    ($ty:ident, $text_fn:ident { $($v:ident: $text:literal),* $(,)? }) => {
        impl $crate::tables::CEnum for $ty {
            const C_NAME: &'static str = stringify!($ty);
            const ALL: &'static [Self] = &[$($ty::$v),*];
            fn to_u32(self) -> u32 {
                self as u32
            }
            #[deny(unreachable_patterns)]
            fn text(self) -> &'static ::std::ffi::CStr {
                match self {
                    $($ty::$v => $text,)*
                }
            }
        }

        impl $ty {
            /// Its entry in the table (`c_enum!`).
            pub fn $text_fn(self) -> &'static ::std::ffi::CStr {
                $crate::tables::CEnum::text(self)
            }
            /// The variant of value `v`, if any.
            pub fn from_u32(v: u32) -> Option<Self> {
                $crate::tables::CEnum::from_u32(v)
            }
        }

        impl TryFrom<u32> for $ty {
            /// The value that is no variant.
            type Error = u32;
            fn try_from(v: u32) -> ::std::result::Result<Self, u32> {
                Self::from_u32(v).ok_or(v)
            }
        }
    };

    ($ty:ident <=> $core:ident, $text_fn:ident { $($v:ident: $text:literal <=> $cv:ident),* $(,)? }) => {
        c_enum!($ty, $text_fn { $($v: $text),* });

        impl From<$core> for $ty {
            #[deny(unreachable_patterns)]
            fn from(c: $core) -> Self {
                match c {
                    $($core::$cv => $ty::$v,)*
                }
            }
        }

        impl From<$ty> for $core {
            #[deny(unreachable_patterns)]
            fn from(c: $ty) -> Self {
                match c {
                    $($ty::$v => $core::$cv,)*
                }
            }
        }
    };

    ($ty:ident from $core:ident, $text_fn:ident { $($v:ident: $text:literal $(<=> $cv:ident)?),* $(,)? }) => {
        c_enum!($ty, $text_fn { $($v: $text),* });

        impl From<$core> for $ty {
            #[deny(unreachable_patterns)]
            fn from(c: $core) -> Self {
                match c {
                    $($($core::$cv => $ty::$v,)?)*
                }
            }
        }
    };

    ($ty:ident <=> $core:ident { fields }, $text_fn:ident {
        $($v:ident: $text:literal $(<=> $cv:ident { $($field:ident: $word:ident),* $(,)? })?),* $(,)?
    }) => {
        c_enum!($ty, $text_fn { $($v: $text),* });

        impl $ty {
            /// The variant of a core value, its fields in words.
            #[deny(unreachable_patterns)]
            pub(crate) fn from_core(c: &$core) -> (Self, $crate::tables::ReasonWords) {
                match *c {
                    $($(
                        $core::$cv { $($field),* } => {
                            #[allow(unused_mut)]
                            let mut w = $crate::tables::ReasonWords::default();
                            $(w.$word = $crate::tables::Word::to_word($field);)*
                            ($ty::$v, w)
                        }
                    )?)*
                }
            }

            /// The core value this variant and words describe: None for a
            /// variant without one, or a word out of its field's range.
            #[deny(unreachable_patterns)]
            pub(crate) fn to_core(self, w: $crate::tables::ReasonWords) -> Option<$core> {
                match self {
                    $($ty::$v => c_enum!(@to_core w, $core $(, $cv { $($field: $word),* })?),)*
                }
            }
        }
    };

    (@to_core $w:ident, $core:ident) => {
        None
    };
    (@to_core $w:ident, $core:ident, $cv:ident { $($field:ident: $word:ident),* }) => {
        Some($core::$cv { $($field: $crate::tables::Word::from_word($w.$word)?),* })
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The table of `T` is complete and consistent: dense values from 0,
    /// each round-tripping, non-empty unique texts, nothing past the last.
    pub(crate) fn check_table<T: CEnum + TryFrom<u32, Error = u32>>() {
        let name = T::C_NAME;
        assert!(!T::ALL.is_empty(), "{name}");
        for (i, &e) in T::ALL.iter().enumerate() {
            let v = e.to_u32();
            assert_eq!(v as usize, i, "{name}: {e:?} out of order or values not dense");
            assert_eq!(T::from_u32(v), Some(e), "{name}: {v}");
            assert_eq!(T::try_from(v), Ok(e), "{name}: {v}");
            assert!(!e.text().is_empty(), "{name}: {e:?} has an empty text");
        }
        let mut texts: Vec<&CStr> = T::ALL.iter().map(|e| e.text()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), T::ALL.len(), "{name}: texts not unique");
        let past = T::ALL.len() as u32;
        assert_eq!(T::from_u32(past), None, "{name}: {past}");
        assert_eq!(T::try_from(past), Err(past), "{name}: {past}");
        assert_eq!(T::from_u32(u32::MAX), None, "{name}");
        assert!(enum_arg::<T>(past, "x").is_err(), "{name}");
    }

    #[test]
    fn words_round_trip_and_reject_what_does_not_fit() {
        assert_eq!(u8::from_word(255u8.to_word()), Some(255));
        assert_eq!(u8::from_word(256), None);
        assert_eq!(u32::from_word(u64::from(u32::MAX) + 1), None);
        assert_eq!(u64::from_word(u64::MAX), Some(u64::MAX));
    }
}
