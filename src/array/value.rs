//! One shared number: Python's `multiprocessing.Value` and
//! `sharedctypes.RawValue`.

use std::marker::PhantomData;

use super::{ArrayHeader, Element, Elements, ElementsHeader, IntegerElement, Typecode};
use crate::error::Result;
use crate::shm::{Handle, ObjectKind, Segment, ShmObject, ShmSafe};
use crate::sync::Lock;

/// The header of a value: an [`ArrayHeader`] of length 1, stored under its
/// own kind so that a value's handle is not taken for an array's.
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct ValueHeader(ArrayHeader);

// SAFETY: a transparent wrapper of ArrayHeader, which is ShmSafe.
unsafe impl ShmSafe for ValueHeader {}

// SAFETY: the only type stored as `ObjectKind::Value`; the version changes
// with the layout.
unsafe impl ShmObject for ValueHeader {
    const KIND: ObjectKind = ObjectKind::Value;
    const VERSION: u32 = 1;
}

impl ElementsHeader for ValueHeader {
    fn new(header: ArrayHeader) -> Self {
        ValueHeader(header)
    }
    fn header(&self) -> &ArrayHeader {
        &self.0
    }
}

/// One shared `T`: Python's `multiprocessing.Value` (with a lock) and
/// `sharedctypes.RawValue` (without). Fork children inherit it as it is;
/// other processes attach with [`open`](Self::open). Clones share it.
///
/// Reads and writes are atomic (never torn, never a data race); see the
/// [module documentation](super) for what that does and does not order.
///
/// # Example
///
/// ```
/// use multiproc::array::Value;
///
/// let counter = Value::<u64>::new(5)?;
/// assert_eq!(counter.fetch_add(2), 5);
/// assert_eq!(counter.get(), 7);
/// assert_eq!(counter.compare_exchange(7, 0), Ok(7));
/// let again = Value::<u64>::open(&counter.handle())?;
/// assert_eq!(again.get(), 0);
///
/// let ratio = Value::<f64>::with_lock(0.5)?;
/// let _held = ratio.get_lock().unwrap().acquire().unwrap();
/// ratio.set(ratio.get() * 2.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Value<T: Element> {
    elements: Elements<ValueHeader>,
    _type: PhantomData<T>,
}

impl<T: Element> Value<T> {
    /// A value holding `initial`, without a lock, in a segment of its own.
    pub fn new(initial: T) -> Result<Self> {
        Self::wrap(Elements::create(T::TYPECODE, 1, false)?, initial)
    }

    /// A value holding `initial`, with a lock ([`get_lock`](Self::get_lock)).
    pub fn with_lock(initial: T) -> Result<Self> {
        Self::wrap(Elements::create(T::TYPECODE, 1, true)?, initial)
    }

    /// A value holding `initial`, with a lock if asked, placed in `segment`.
    pub fn new_in(segment: &Segment, initial: T, with_lock: bool) -> Result<Self> {
        Self::wrap(
            Elements::create_in(segment, T::TYPECODE, 1, with_lock)?,
            initial,
        )
    }

    fn wrap(elements: Elements<ValueHeader>, initial: T) -> Result<Self> {
        let v = Value {
            elements,
            _type: PhantomData,
        };
        v.set(initial);
        Ok(v)
    }

    /// Attaches to a value by its handle. [`Error::Kind`](crate::Error::Kind)
    /// when it does not hold a `T` (or a type of the same layout); other
    /// errors as [`ShmBox::open`](crate::shm::ShmBox::open).
    pub fn open(handle: &Handle) -> Result<Self> {
        let elements = Elements::<ValueHeader>::open(handle)?;
        elements.check_type::<T>()?;
        if elements.len != 1 {
            return Err(crate::Error::Invalid(format!(
                "corrupt value header: {} elements instead of 1",
                elements.len
            )));
        }
        Ok(Value {
            elements,
            _type: PhantomData,
        })
    }

    /// The handle that names this value to another process.
    pub fn handle(&self) -> Handle {
        self.elements.shared.handle()
    }

    /// The typecode stored with the value.
    pub fn typecode(&self) -> Typecode {
        self.elements.typecode
    }

    /// The value's lock, when made with one (Python's `get_lock()`).
    pub fn get_lock(&self) -> Option<&Lock> {
        self.elements.lock.as_ref()
    }

    /// The value's atomic, for any atomic operation and ordering.
    pub fn cell(&self) -> &T::Atomic {
        // SAFETY: `wrap`'s callers and `open` checked T against the
        // typecode; `create` and `open` made sure there is one element.
        unsafe { &self.elements.cells::<T>()[0] }
    }

    /// The value now (Python's `.value`).
    pub fn get(&self) -> T {
        T::load(self.cell())
    }

    /// Replaces the value (Python's `.value = x`).
    pub fn set(&self, value: T) {
        T::store(self.cell(), value)
    }
}

impl<T: IntegerElement> Value<T> {
    /// Adds `value` (wrapping) as one indivisible step; returns the
    /// previous value.
    pub fn fetch_add(&self, value: T) -> T {
        T::fetch_add(self.cell(), value)
    }

    /// Replaces the value with `new` if it is `current`, as one indivisible
    /// step: `Ok(previous)` when replaced, `Err(actual)` when not.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        T::compare_exchange(self.cell(), current, new)
    }
}
