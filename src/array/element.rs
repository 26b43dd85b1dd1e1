//! The element types of shared arrays and values, and how each is read and
//! written without a data race: through its atomic twin.
//!
//! Another process may write an element at any moment, so a plain `T` read
//! would be a data race (undefined behaviour in Rust and C alike). Every
//! element is therefore accessed as the atomic of the same size. A
//! `Relaxed` load or store of an atomic compiles to the same plain move as
//! a non-atomic access on every platform Rust supports, so this costs
//! nothing; it only forbids the compiler to tear or invent accesses.
//! Ordering between elements comes from the array's lock (or any other
//! primitive), exactly as in Python.

use std::fmt;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering,
};

use super::Typecode;

mod sealed {
    pub trait Sealed {}
}

/// A number that can be an element of a shared [`Array`](super::Array) or
/// [`Value`](super::Value): the integers, `isize`/`usize`, `f32` and `f64`.
///
/// Sealed: the crate implements it for exactly those types.
///
/// # Safety
///
/// - `Self::Atomic` has the size of `Self` and an alignment at least
///   `Self`'s, and holds `Self`'s bytes unchanged, so the shared bytes mean
///   the same to a C program reading them as `Self`.
/// - Every bit pattern is a valid `Self` (another process may write any).
pub unsafe trait Element:
    Copy + PartialEq + fmt::Debug + Send + Sync + 'static + sealed::Sealed
{
    /// The Python typecode of this type.
    const TYPECODE: Typecode;
    /// The atomic that holds one element in shared memory.
    type Atomic: Send + Sync + 'static;
    /// Reads a cell (`Relaxed`: a plain load).
    fn load(cell: &Self::Atomic) -> Self;
    /// Writes a cell (`Relaxed`: a plain store).
    fn store(cell: &Self::Atomic, value: Self);
}

/// An integer [`Element`]: its cells are the std atomic of the same type,
/// with every atomic read-modify-write operation.
pub trait IntegerElement: Element {
    /// Adds `value` (wrapping) and returns the previous value, as one
    /// indivisible step (`SeqCst`).
    fn fetch_add(cell: &Self::Atomic, value: Self) -> Self;
    /// Replaces the value with `new` if it is `current`, as one indivisible
    /// step (`SeqCst`). `Ok(previous)` on success, `Err(actual)` otherwise.
    fn compare_exchange(cell: &Self::Atomic, current: Self, new: Self) -> Result<Self, Self>;
}

macro_rules! integer_element {
    ($($t:ty => $atomic:ty, $code:ident;)*) => {$(
        impl sealed::Sealed for $t {}

        // SAFETY: the std atomic of an integer type has the same size as
        // the integer and at least its alignment; every bit pattern is an
        // integer.
        unsafe impl Element for $t {
            const TYPECODE: Typecode = Typecode::$code;
            type Atomic = $atomic;

            #[inline]
            fn load(cell: &$atomic) -> $t {
                // Relaxed: a plain load; ordering comes from the caller's
                // synchronization (the array's lock, or another primitive).
                cell.load(Ordering::Relaxed)
            }

            #[inline]
            fn store(cell: &$atomic, value: $t) {
                // Relaxed: a plain store; see `load`.
                cell.store(value, Ordering::Relaxed)
            }
        }

        impl IntegerElement for $t {
            #[inline]
            fn fetch_add(cell: &$atomic, value: $t) -> $t {
                cell.fetch_add(value, Ordering::SeqCst)
            }

            #[inline]
            fn compare_exchange(cell: &$atomic, current: $t, new: $t) -> Result<$t, $t> {
                cell.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            }
        }
    )*};
}

integer_element! {
    i8 => AtomicI8, I8;
    u8 => AtomicU8, U8;
    i16 => AtomicI16, I16;
    u16 => AtomicU16, U16;
    i32 => AtomicI32, I32;
    u32 => AtomicU32, U32;
    i64 => AtomicI64, I64;
    u64 => AtomicU64, U64;
    isize => AtomicIsize, Long;
    usize => AtomicUsize, ULong;
}

macro_rules! float_element {
    ($($t:ty => $atomic:ty, $code:ident;)*) => {$(
        impl sealed::Sealed for $t {}

        // SAFETY: the unsigned atomic of the same width has the float's
        // size and at least its alignment, and holds its bits unchanged
        // (`to_bits`/`from_bits`); every bit pattern is a float (maybe NaN).
        unsafe impl Element for $t {
            const TYPECODE: Typecode = Typecode::$code;
            type Atomic = $atomic;

            #[inline]
            fn load(cell: &$atomic) -> $t {
                // Relaxed: a plain load; see the integer impls.
                <$t>::from_bits(cell.load(Ordering::Relaxed))
            }

            #[inline]
            fn store(cell: &$atomic, value: $t) {
                // Relaxed: a plain store; see the integer impls.
                cell.store(value.to_bits(), Ordering::Relaxed)
            }
        }
    )*};
}

float_element! {
    f32 => AtomicU32, F32;
    f64 => AtomicU64, F64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_matches<T: Element>() {
        assert_eq!(size_of::<T::Atomic>(), size_of::<T>());
        assert!(align_of::<T::Atomic>() >= align_of::<T>());
        assert_eq!(size_of::<T>(), T::TYPECODE.size(), "{}", T::TYPECODE);
    }

    #[test]
    fn atomics_have_the_element_layout() {
        layout_matches::<i8>();
        layout_matches::<u8>();
        layout_matches::<i16>();
        layout_matches::<u16>();
        layout_matches::<i32>();
        layout_matches::<u32>();
        layout_matches::<i64>();
        layout_matches::<u64>();
        layout_matches::<isize>();
        layout_matches::<usize>();
        layout_matches::<f32>();
        layout_matches::<f64>();
    }

    #[test]
    fn floats_keep_their_bits() {
        let cell = AtomicU64::new(0);
        f64::store(&cell, -1.5);
        assert_eq!(f64::load(&cell), -1.5);
        assert_eq!(cell.load(Ordering::Relaxed), (-1.5f64).to_bits());
    }

    #[test]
    fn integer_rmw() {
        let cell = AtomicU8::new(250);
        assert_eq!(u8::fetch_add(&cell, 10), 250);
        assert_eq!(u8::load(&cell), 4, "wraps");
        assert_eq!(u8::compare_exchange(&cell, 4, 7), Ok(4));
        assert_eq!(u8::compare_exchange(&cell, 4, 9), Err(7));
    }
}
