//! Typed shared arrays and values: Python's `multiprocessing.Array`,
//! `Value` and `sharedctypes.RawArray`.
//!
//! The elements live in a shared segment after an [`ArrayHeader`] that
//! records their typecode and count, so another process (or a C program)
//! attaching through a handle learns what they are. An array made "with a
//! lock" also holds a robust [`Lock`] in the same segment, reachable with
//! [`get_lock`](Array::get_lock), as Python's `Array(lock=True)`.
//!
//! # Access without a lock
//!
//! Every element is read and written through the atomic of its size (see
//! [`Element`]): a `get` is a `Relaxed` load, a `set` a `Relaxed` store,
//! which compile to plain moves but are never a data race, whatever other
//! processes do at the same time. A multi-element copy is element by
//! element, so another process may see it half done; hold the lock (or
//! another primitive) to make it look indivisible. Integer elements also
//! have atomic [`fetch_add`](Array::fetch_add) and
//! [`compare_exchange`](Array::compare_exchange), and [`cells`](Array::cells)
//! gives the std atomics themselves for everything else.

mod element;
mod typecode;
mod value;

use std::marker::PhantomData;

pub use element::{Element, IntegerElement};
pub use typecode::{NumberKind, Typecode};
pub use value::Value;

use crate::error::{Error, Result};
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};
use crate::sync::Lock;

/// The alignment of every element region: enough for the widest atomic.
const ELEMENT_ALIGN: usize = 8;

/// What an array's elements are, before them in the segment. `#[repr(C)]`,
/// 24 bytes; the elements follow in the object's trailing region, aligned
/// to 8 bytes. Written once by the creator before the array is shared;
/// read-only afterwards.
#[repr(C)]
#[derive(Debug)]
pub struct ArrayHeader {
    /// The Python typecode's ASCII character (`'d'` is 100). Must be one of
    /// [`Typecode::ACCEPTED`]; anything else is refused on attach.
    typecode: u32,
    /// Bytes per element as the creator's build saw them: must equal
    /// [`Typecode::size`] here (`'l'` is 4 bytes on 32-bit builds).
    elem_size: u32,
    /// The number of elements. The trailing region holds at least
    /// `len * elem_size` bytes.
    len: u64,
    /// Offset in the segment of the array's lock object, or 0 when the
    /// array was made without a lock.
    lock_offset: u64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<ArrayHeader>() == 24);
    assert!(align_of::<ArrayHeader>() == 8);
};

// SAFETY: repr(C) of plain integers: no pointers, no destructor, every bit
// pattern a value that `Elements::attach` checks before use.
unsafe impl ShmSafe for ArrayHeader {}

// SAFETY: the only type stored as `ObjectKind::Array`; the version changes
// with the layout.
unsafe impl ShmObject for ArrayHeader {
    const KIND: ObjectKind = ObjectKind::Array;
    const VERSION: u32 = 1;
}

/// A header that describes elements: [`ArrayHeader`] for arrays, the
/// value's header for [`Value`].
pub(crate) trait ElementsHeader: ShmObject + Sync {
    fn new(header: ArrayHeader) -> Self;
    fn header(&self) -> &ArrayHeader;
}

impl ElementsHeader for ArrayHeader {
    fn new(header: ArrayHeader) -> Self {
        header
    }
    fn header(&self) -> &ArrayHeader {
        self
    }
}

/// Shared elements of a run-time type: the common core of [`Array`],
/// [`Value`] and [`DynArray`].
#[derive(Debug)]
pub(crate) struct Elements<H: ElementsHeader> {
    shared: ShmBox<H>,
    typecode: Typecode,
    len: usize,
    lock: Option<Lock>,
}

impl<H: ElementsHeader> Clone for Elements<H> {
    fn clone(&self) -> Self {
        Elements {
            shared: self.shared.clone(),
            typecode: self.typecode,
            len: self.len,
            lock: self.lock.clone(),
        }
    }
}

impl<H: ElementsHeader> Elements<H> {
    /// `len` zeroed elements of type `typecode`, with a lock if asked, in a
    /// segment of their own.
    fn create(typecode: Typecode, len: usize, with_lock: bool) -> Result<Self> {
        let bytes = len
            .checked_mul(typecode.size())
            .filter(|b| *b <= isize::MAX as usize / 4)
            .ok_or(Error::TooLarge {
                len,
                max: isize::MAX as usize / 4 / typecode.size(),
            })?;
        // Room for the segment header, the lock and the array's object
        // headers; the rest of the page rounding is slack.
        let segment = Segment::create(crate::shm::default_backing(), bytes + 1024)?;
        Self::create_in(&segment, typecode, len, with_lock)
    }

    /// As [`create`](Self::create), placed in `segment`.
    fn create_in(
        segment: &Segment,
        typecode: Typecode,
        len: usize,
        with_lock: bool,
    ) -> Result<Self> {
        let bytes = len.checked_mul(typecode.size()).ok_or(Error::TooLarge {
            len,
            max: isize::MAX as usize / typecode.size(),
        })?;
        let lock = if with_lock {
            Some(Lock::new_in(segment)?)
        } else {
            None
        };
        let header = ArrayHeader {
            typecode: u32::from(typecode as u8),
            elem_size: typecode.size() as u32,
            len: len as u64,
            lock_offset: lock.as_ref().map_or(0, |l| l.handle().offset()),
        };
        let shared = ShmBox::with_tail_in(segment, H::new(header), bytes, ELEMENT_ALIGN)?;
        Ok(Elements {
            shared,
            typecode,
            len,
            lock,
        })
    }

    /// Attaches through a handle and checks what the header says.
    fn open(handle: &Handle) -> Result<Self> {
        let shared: ShmBox<H> = ShmBox::open(handle)?;
        let h = shared.header();
        let corrupt =
            |what: String| Error::Invalid(format!("corrupt {} header: {what}", H::KIND.name()));
        let typecode = u8::try_from(h.typecode)
            .map_err(|_| ())
            .and_then(|b| Typecode::from_byte(b).map_err(|_| ()))
            .map_err(|()| corrupt(format!("unknown typecode number {}", h.typecode)))?;
        if h.elem_size as usize != typecode.size() {
            return Err(corrupt(format!(
                "elements of {typecode} have {} bytes there and {} here (a build for another platform)",
                h.elem_size,
                typecode.size()
            )));
        }
        let len = usize::try_from(h.len).map_err(|_| corrupt(format!("length {}", h.len)))?;
        let fits = len
            .checked_mul(typecode.size())
            .is_some_and(|b| b <= shared.tail_len());
        if !fits || shared.tail().as_ptr().align_offset(ELEMENT_ALIGN) != 0 {
            return Err(corrupt(format!(
                "{len} elements of {typecode} do not fit its {} aligned bytes",
                shared.tail_len()
            )));
        }
        let lock = match h.lock_offset {
            0 => None,
            offset => {
                let offset = usize::try_from(offset).unwrap_or(usize::MAX);
                Some(Lock::open(&Handle::of(
                    shared.segment(),
                    offset,
                    ObjectKind::Lock,
                ))?)
            }
        };
        Ok(Elements {
            shared,
            typecode,
            len,
            lock,
        })
    }

    /// The elements as cells of `T`.
    ///
    /// # Safety
    ///
    /// - `T`'s layout is this array's typecode's (`same_layout`).
    unsafe fn cells<T: Element>(&self) -> &[T::Atomic] {
        debug_assert!(T::TYPECODE.same_layout(self.typecode));
        // SAFETY: the tail holds `len` elements of this typecode (checked
        // at creation or attach), aligned to 8 >= align_of::<T::Atomic>(),
        // inside the mapping `self.shared` keeps alive. `T::Atomic` has the
        // element's size (Element's contract) and T's layout is the
        // typecode's (caller). Atomics allow shared mutation, so a shared
        // slice over bytes other processes write is sound.
        unsafe {
            std::slice::from_raw_parts(self.shared.tail().as_ptr().cast::<T::Atomic>(), self.len)
        }
    }

    /// Checks that `T` matches the typecode, naming both when not.
    fn check_type<T: Element>(&self) -> Result<()> {
        if T::TYPECODE.same_layout(self.typecode) {
            Ok(())
        } else {
            Err(Error::Kind {
                expected: T::TYPECODE.array_name(),
                found: self.typecode.array_name().to_owned(),
            })
        }
    }
}

/// A shared array of `T`: Python's `multiprocessing.Array` (with a lock)
/// and `sharedctypes.RawArray` (without). Zeroed at creation; fork children
/// inherit it as it is; other processes attach with [`open`](Self::open).
/// Clones share the elements.
///
/// # Example
///
/// ```
/// use multiproc::array::Array;
///
/// let a = Array::<i64>::with_lock(4)?;
/// a.set(0, 7)?;
/// a.fetch_add(0, 3)?;
/// assert_eq!(a.get(0)?, 10);
/// {
///     let _held = a.get_lock().unwrap().acquire().unwrap();
///     a.copy_from_slice(1, &[1, 2, 3])?;
/// }
/// assert_eq!(a.to_vec(), [10, 1, 2, 3]);
/// assert!(a.get(4).is_err(), "out of bounds");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Array<T: Element> {
    elements: Elements<ArrayHeader>,
    _type: PhantomData<T>,
}

impl<T: Element> Array<T> {
    /// `len` zeroed elements without a lock, in a segment of their own.
    pub fn new(len: usize) -> Result<Self> {
        Self::wrap(Elements::create(T::TYPECODE, len, false)?)
    }

    /// `len` zeroed elements with a lock ([`get_lock`](Self::get_lock)).
    pub fn with_lock(len: usize) -> Result<Self> {
        Self::wrap(Elements::create(T::TYPECODE, len, true)?)
    }

    /// An array holding a copy of `values`, without a lock.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let a = Self::new(values.len())?;
        a.copy_from_slice(0, values)?;
        Ok(a)
    }

    /// `len` zeroed elements, with a lock if asked, placed in `segment`.
    pub fn new_in(segment: &Segment, len: usize, with_lock: bool) -> Result<Self> {
        Self::wrap(Elements::create_in(segment, T::TYPECODE, len, with_lock)?)
    }

    /// Attaches to an array by its handle. [`Error::Kind`] when it is not
    /// an array of `T` (another typecode of the same layout, such as `'l'`
    /// for `i64`, is accepted); other errors as [`ShmBox::open`].
    pub fn open(handle: &Handle) -> Result<Self> {
        Self::wrap(Elements::open(handle)?)
    }

    fn wrap(elements: Elements<ArrayHeader>) -> Result<Self> {
        elements.check_type::<T>()?;
        Ok(Array {
            elements,
            _type: PhantomData,
        })
    }

    /// The handle that names this array to another process.
    pub fn handle(&self) -> Handle {
        self.elements.shared.handle()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elements.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.len == 0
    }

    /// The typecode stored in the array (`T`'s, or one of the same layout).
    pub fn typecode(&self) -> Typecode {
        self.elements.typecode
    }

    /// The array's lock, when made with one (Python's `get_lock()`).
    pub fn get_lock(&self) -> Option<&Lock> {
        self.elements.lock.as_ref()
    }

    /// The elements as their atomics, for any atomic operation and
    /// ordering (floats are stored as their bits).
    pub fn cells(&self) -> &[T::Atomic] {
        // SAFETY: `wrap` checked that T's layout is the typecode's.
        unsafe { self.elements.cells::<T>() }
    }

    /// A raw pointer to the first element, for handing the memory to code
    /// that cannot use atomics (C, SIMD, I/O). The caller takes over the
    /// data-race question: only access the elements through it while no
    /// other process writes them (hold the lock), and for at most
    /// [`len`](Self::len) elements.
    pub fn as_ptr(&self) -> *mut T {
        self.elements.shared.tail().as_ptr().cast()
    }

    fn cell(&self, index: usize) -> Result<&T::Atomic> {
        self.cells().get(index).ok_or_else(|| {
            Error::Invalid(format!(
                "index {index} is out of bounds for an array of length {}",
                self.len()
            ))
        })
    }

    fn range(&self, start: usize, count: usize) -> Result<&[T::Atomic]> {
        start
            .checked_add(count)
            .and_then(|end| self.cells().get(start..end))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "range {start}..{start}+{count} is out of bounds for an array of length {}",
                    self.len()
                ))
            })
    }

    /// The element at `index` ([`Error::Invalid`] when out of bounds).
    pub fn get(&self, index: usize) -> Result<T> {
        Ok(T::load(self.cell(index)?))
    }

    /// Writes the element at `index` ([`Error::Invalid`] when out of bounds).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        T::store(self.cell(index)?, value);
        Ok(())
    }

    /// Copies `out.len()` elements starting at `start` into `out`
    /// (Python's slice read). [`Error::Invalid`] when the range does not
    /// fit; nothing is copied then.
    pub fn copy_to_slice(&self, start: usize, out: &mut [T]) -> Result<()> {
        let cells = self.range(start, out.len())?;
        for (o, c) in out.iter_mut().zip(cells) {
            *o = T::load(c);
        }
        Ok(())
    }

    /// Copies `values` into the elements starting at `start` (Python's
    /// slice assignment). [`Error::Invalid`] when the range does not fit;
    /// nothing is written then.
    pub fn copy_from_slice(&self, start: usize, values: &[T]) -> Result<()> {
        for (c, v) in self.range(start, values.len())?.iter().zip(values) {
            T::store(c, *v);
        }
        Ok(())
    }

    /// All elements, copied.
    pub fn to_vec(&self) -> Vec<T> {
        self.cells().iter().map(T::load).collect()
    }
}

impl<T: IntegerElement> Array<T> {
    /// Adds `value` (wrapping) to the element at `index` as one indivisible
    /// step and returns the previous value. [`Error::Invalid`] when out of
    /// bounds.
    pub fn fetch_add(&self, index: usize, value: T) -> Result<T> {
        Ok(T::fetch_add(self.cell(index)?, value))
    }

    /// Replaces the element at `index` with `new` if it is `current`, as one
    /// indivisible step: `Ok(Ok(previous))` when replaced,
    /// `Ok(Err(actual))` when not. [`Error::Invalid`] when out of bounds.
    pub fn compare_exchange(
        &self,
        index: usize,
        current: T,
        new: T,
    ) -> Result<std::result::Result<T, T>> {
        Ok(T::compare_exchange(self.cell(index)?, current, new))
    }
}

/// An array whose element type is known only at run time, by typecode: what
/// the C API hands out. Convert with [`typed`](Self::typed).
///
/// # Example
///
/// ```
/// use multiproc::array::{DynArray, Typecode};
///
/// let a = DynArray::new(Typecode::from_char('d')?, 3, false)?;
/// assert_eq!(a.len(), 3);
/// assert!(a.clone().typed::<i32>().is_err());
/// let typed = a.typed::<f64>()?;
/// typed.set(2, 0.5)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DynArray {
    elements: Elements<ArrayHeader>,
}

impl DynArray {
    /// `len` zeroed elements of `typecode`, with a lock if asked.
    pub fn new(typecode: Typecode, len: usize, with_lock: bool) -> Result<Self> {
        Ok(DynArray {
            elements: Elements::create(typecode, len, with_lock)?,
        })
    }

    /// Attaches to an array of any typecode by its handle.
    pub fn open(handle: &Handle) -> Result<Self> {
        Ok(DynArray {
            elements: Elements::open(handle)?,
        })
    }

    /// The handle that names this array to another process.
    pub fn handle(&self) -> Handle {
        self.elements.shared.handle()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elements.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.len == 0
    }

    /// The element type.
    pub fn typecode(&self) -> Typecode {
        self.elements.typecode
    }

    /// The array's lock, when made with one.
    pub fn get_lock(&self) -> Option<&Lock> {
        self.elements.lock.as_ref()
    }

    /// The first element's address; see [`Array::as_ptr`] for the rules.
    pub fn as_ptr(&self) -> *mut u8 {
        self.elements.shared.tail().as_ptr()
    }

    /// The same array seen as elements of `T`; [`Error::Kind`] when `T`
    /// does not match the typecode.
    pub fn typed<T: Element>(self) -> Result<Array<T>> {
        Array::wrap(self.elements)
    }
}

impl<T: Element> From<Array<T>> for DynArray {
    fn from(a: Array<T>) -> DynArray {
        DynArray {
            elements: a.elements,
        }
    }
}
