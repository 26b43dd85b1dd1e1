//! `SerdeQueue<T>`: any serializable type, encoded with postcard.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Queue, QueueOptions};
use crate::error::{Error, Result};
use crate::shm::Handle;

/// A [`Queue`] of `T` values encoded with postcard (a compact binary
/// format). Encoding errors, and encodings longer than the queue's maximum
/// message, are reported by `put`; nothing is sent then.
///
/// # Example
///
/// ```
/// use multiproc::queue::SerdeQueue;
///
/// let q = SerdeQueue::<(u32, String)>::new(4, 64)?;
/// q.put(&(7, "seven".to_string()), true, None)?;
/// assert_eq!(q.get(true, None)?, (7, "seven".to_string()));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct SerdeQueue<T> {
    queue: Queue,
    _values: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SerdeQueue<T> {
    fn clone(&self) -> Self {
        SerdeQueue {
            queue: self.queue.clone(),
            _values: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> SerdeQueue<T> {
    /// An MPMC queue of `capacity` encoded values of up to `max_encoded` bytes.
    pub fn new(capacity: usize, max_encoded: usize) -> Result<Self> {
        Self::with_options(QueueOptions::new(capacity, max_encoded))
    }

    /// A queue as `options` say.
    pub fn with_options(options: QueueOptions) -> Result<Self> {
        Ok(SerdeQueue {
            queue: Queue::with_options(options)?,
            _values: PhantomData,
        })
    }

    /// Attaches by handle.
    pub fn open(handle: &Handle) -> Result<Self> {
        Ok(SerdeQueue {
            queue: Queue::open(handle)?,
            _values: PhantomData,
        })
    }

    /// Encodes and puts `value`, as [`Queue::put`]. [`Error::Value`] when
    /// it cannot be encoded, [`Error::TooLarge`] when its encoding is over
    /// the maximum.
    pub fn put(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
        let bytes = postcard::to_allocvec(value)
            .map_err(|e| Error::Value(format!("cannot encode the value: {e}")))?;
        self.queue.put(&bytes, block, timeout)
    }

    /// Takes and decodes a value, as [`Queue::get`]. [`Error::Value`] when
    /// the message does not decode as a `T`.
    pub fn get(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
        let bytes = self.queue.get_vec(block, timeout)?;
        postcard::from_bytes(&bytes)
            .map_err(|e| Error::Value(format!("message does not decode: {e}")))
    }

    /// The byte queue underneath.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}
