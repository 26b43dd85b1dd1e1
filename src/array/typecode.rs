//! Python's `array` typecodes: the element types a shared array can hold
//! when its type is chosen at run time (from C, or from a handle).

use std::fmt;

use crate::error::{Error, Result};

/// An element type named by its Python `array` typecode.
///
/// The sizes are those of the C types on this platform (`'l'` is C `long`:
/// 8 bytes on 64-bit Linux, 4 on 32-bit), as in CPython's `array` module.
///
/// # Example
///
/// ```
/// use multiproc::array::Typecode;
///
/// let t = Typecode::from_char('d').unwrap();
/// assert_eq!(t, Typecode::F64);
/// assert_eq!(t.size(), 8);
/// assert!(Typecode::from_char('x').is_err());
/// ```
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Typecode {
    /// `'b'`: signed char, `i8`.
    I8 = b'b',
    /// `'B'`: unsigned char, `u8`.
    U8 = b'B',
    /// `'h'`: short, `i16`.
    I16 = b'h',
    /// `'H'`: unsigned short, `u16`.
    U16 = b'H',
    /// `'i'`: int, `i32`.
    I32 = b'i',
    /// `'I'`: unsigned int, `u32`.
    U32 = b'I',
    /// `'l'`: long, `c_long` (`isize` on Linux).
    Long = b'l',
    /// `'L'`: unsigned long, `c_ulong` (`usize` on Linux).
    ULong = b'L',
    /// `'q'`: long long, `i64`.
    I64 = b'q',
    /// `'Q'`: unsigned long long, `u64`.
    U64 = b'Q',
    /// `'f'`: float, `f32`.
    F32 = b'f',
    /// `'d'`: double, `f64`.
    F64 = b'd',
}

/// What kind of number an element is; with the size, what decides whether
/// two typecodes describe the same bytes (`'l'` and `'q'` on 64-bit Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberKind {
    /// Two's complement signed integer.
    Signed,
    /// Unsigned integer.
    Unsigned,
    /// IEEE 754 binary floating point.
    Float,
}

impl Typecode {
    /// Every typecode, in Python's documentation order.
    pub const ALL: [Typecode; 12] = [
        Typecode::I8,
        Typecode::U8,
        Typecode::I16,
        Typecode::U16,
        Typecode::I32,
        Typecode::U32,
        Typecode::Long,
        Typecode::ULong,
        Typecode::I64,
        Typecode::U64,
        Typecode::F32,
        Typecode::F64,
    ];

    /// The accepted characters, for messages: `"b B h H i I l L q Q f d"`.
    pub const ACCEPTED: &'static str = "b B h H i I l L q Q f d";

    /// The typecode for `c`; [`Error::Invalid`] naming the accepted codes
    /// for any other character.
    pub fn from_char(c: char) -> Result<Typecode> {
        Typecode::ALL
            .into_iter()
            .find(|t| t.as_char() == c)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown typecode {c:?}: expected one of {}",
                    Typecode::ACCEPTED
                ))
            })
    }

    /// The typecode for the byte `b` (a C `char`); as [`from_char`](Self::from_char).
    pub fn from_byte(b: u8) -> Result<Typecode> {
        Typecode::from_char(char::from(b))
    }

    /// The typecode's character.
    pub fn as_char(self) -> char {
        char::from(self as u8)
    }

    /// The size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Typecode::I8 | Typecode::U8 => 1,
            Typecode::I16 | Typecode::U16 => 2,
            Typecode::I32 | Typecode::U32 | Typecode::F32 => 4,
            Typecode::Long | Typecode::ULong => size_of::<std::ffi::c_long>(),
            Typecode::I64 | Typecode::U64 | Typecode::F64 => 8,
        }
    }

    /// `"array of 'd'"` and so on, for messages about a mismatched type.
    pub const fn array_name(self) -> &'static str {
        match self {
            Typecode::I8 => "array of 'b'",
            Typecode::U8 => "array of 'B'",
            Typecode::I16 => "array of 'h'",
            Typecode::U16 => "array of 'H'",
            Typecode::I32 => "array of 'i'",
            Typecode::U32 => "array of 'I'",
            Typecode::Long => "array of 'l'",
            Typecode::ULong => "array of 'L'",
            Typecode::I64 => "array of 'q'",
            Typecode::U64 => "array of 'Q'",
            Typecode::F32 => "array of 'f'",
            Typecode::F64 => "array of 'd'",
        }
    }

    /// The kind of number.
    pub const fn kind(self) -> NumberKind {
        match self {
            Typecode::I8 | Typecode::I16 | Typecode::I32 | Typecode::Long | Typecode::I64 => {
                NumberKind::Signed
            }
            Typecode::U8 | Typecode::U16 | Typecode::U32 | Typecode::ULong | Typecode::U64 => {
                NumberKind::Unsigned
            }
            Typecode::F32 | Typecode::F64 => NumberKind::Float,
        }
    }

    /// Whether elements of `self` and `other` are the same bytes with the
    /// same meaning (same kind and size), e.g. `'l'` and `'q'` on Linux x86-64.
    pub const fn same_layout(self, other: Typecode) -> bool {
        self.size() == other.size() && self.kind() as u8 == other.kind() as u8
    }
}

impl fmt::Display for Typecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.as_char())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for t in Typecode::ALL {
            assert_eq!(Typecode::from_char(t.as_char()).unwrap(), t);
            assert_eq!(Typecode::from_byte(t as u8).unwrap(), t);
            assert!(Typecode::ACCEPTED.contains(t.as_char()));
        }
    }

    #[test]
    fn unknown_code_names_the_accepted_ones() {
        for c in ['x', 'c', 'u', '\0', 'é'] {
            let err = Typecode::from_char(c).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)));
            assert!(err.to_string().contains("b B h H i I l L q Q f d"), "{err}");
        }
    }

    #[test]
    fn long_is_the_platform_long() {
        assert_eq!(Typecode::Long.size(), size_of::<std::ffi::c_long>());
        assert!(Typecode::I64.same_layout(Typecode::I64));
        assert!(!Typecode::I64.same_layout(Typecode::U64));
        assert!(!Typecode::I32.same_layout(Typecode::F32));
        #[cfg(target_pointer_width = "64")]
        assert!(Typecode::Long.same_layout(Typecode::I64));
    }
}
