//! `TypedQueue<T>`: values of a `ShmSafe` type, sent as their bytes.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use super::{Queue, QueueOptions};
use crate::error::Result;
use crate::shm::{Handle, ShmSafe};

/// A [`Queue`] of `T` values, copied by their bytes (no serializer).
///
/// `T` is [`ShmSafe`]: any bit pattern another process writes is a valid
/// `T`. It should also have no padding bytes (their content would be sent
/// as whatever it is).
///
/// # Example
///
/// ```
/// use multiproc::queue::TypedQueue;
///
/// let q = TypedQueue::<[u64; 2]>::new(4)?;
/// q.put(&[1, 2], true, None)?;
/// assert_eq!(q.get(true, None)?, [1, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct TypedQueue<T: ShmSafe> {
    queue: Queue,
    _values: PhantomData<fn(T) -> T>,
}

impl<T: ShmSafe> Clone for TypedQueue<T> {
    fn clone(&self) -> Self {
        TypedQueue {
            queue: self.queue.clone(),
            _values: PhantomData,
        }
    }
}

impl<T: ShmSafe> TypedQueue<T> {
    /// An MPMC queue of `capacity` values.
    pub fn new(capacity: usize) -> Result<Self> {
        Self::with_options(QueueOptions::new(capacity, size_of::<T>().max(1)))
    }

    /// A queue as `options` say; `max_msg_size` is replaced by `size_of::<T>()`.
    pub fn with_options(mut options: QueueOptions) -> Result<Self> {
        options.max_msg_size = size_of::<T>().max(1);
        Ok(TypedQueue {
            queue: Queue::with_options(options)?,
            _values: PhantomData,
        })
    }

    /// Attaches by handle; [`Error::Invalid`](crate::Error::Invalid) when
    /// the queue's maximum message is not `size_of::<T>()`.
    pub fn open(handle: &Handle) -> Result<Self> {
        let queue = Queue::open(handle)?;
        if queue.max_msg_size() != size_of::<T>().max(1) {
            return Err(crate::Error::Invalid(format!(
                "queue carries messages of {} bytes, not values of {} bytes",
                queue.max_msg_size(),
                size_of::<T>()
            )));
        }
        Ok(TypedQueue {
            queue,
            _values: PhantomData,
        })
    }

    /// Puts a copy of `value`, as [`Queue::put`].
    pub fn put(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        // SAFETY: `value` is a live T of size_of::<T>() bytes; ShmSafe types
        // are plain data (no padding expected, see the type's docs).
        let bytes =
            unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
        self.queue.put(bytes, block, timeout)
    }

    /// Takes a value, as [`Queue::get`].
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        let mut slot = MaybeUninit::<T>::zeroed();
        // SAFETY: the zeroed MaybeUninit is size_of::<T>() initialized bytes.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(slot.as_mut_ptr().cast::<u8>(), size_of::<T>())
        };
        let n = self.queue.get(buf, block, timeout)?;
        debug_assert_eq!(n, size_of::<T>());
        // SAFETY: every byte is initialized (zeroed, then overwritten), and
        // ShmSafe makes every bit pattern a valid T.
        Ok(unsafe { slot.assume_init() })
    }

    /// The byte queue underneath (qsize, close, handle...).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}
