//! [`AsyncResult`], the iterators of `imap` / `imap_unordered`, and
//! [`Callbacks`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{Job, JobInner, OnDone, TaskError};
use super::value::TaskValue;
use crate::error::Status;

type TaskResult<T> = std::result::Result<T, TaskError>;

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async) or
/// [`Pool::map_async`](super::Pool::map_async), as Python's `AsyncResult`.
///
/// ```
/// use multiproc::pool::Pool;
/// use std::time::Duration;
///
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(double, 21)?;
/// assert!(r.wait(Some(Duration::from_secs(30))));
/// assert!(r.ready());
/// assert!(r.successful()?);
/// assert_eq!(r.get(None)?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncResult<T> {
    job: Arc<Job>,
    extract: fn(&JobInner) -> TaskResult<T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(job: Arc<Job>, extract: fn(&JobInner) -> TaskResult<T>) -> Self {
        AsyncResult { job, extract }
    }

    /// The result once it is in: the value, or the task's error (for a
    /// map, the first error in item order). [`TaskError::Timeout`] if it is
    /// not in after `timeout` (`None`: waits as long as it takes). It can
    /// be asked again.
    pub fn get(&self, timeout: Option<Duration>) -> TaskResult<T> {
        let inner = self.job.wait_done(deadline(timeout))?;
        (self.extract)(&inner)
    }

    /// Waits until the result is in or `timeout` passed; whether it is in.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.job.wait_done(deadline(timeout)).is_ok()
    }

    /// Whether the result is in.
    pub fn ready(&self) -> bool {
        self.job.lock().is_done()
    }

    /// Whether the call succeeded (every item, for a map). Before it is
    /// ready: a [`TaskError::Pool`] with [`Status::State`], as Python's
    /// `ValueError`.
    pub fn successful(&self) -> TaskResult<bool> {
        let inner = self.job.lock();
        if !inner.is_done() {
            return Err(TaskError::Pool {
                status: Status::State,
                message: "successful() called before the result is ready".into(),
            });
        }
        Ok((self.extract)(&inner).is_ok())
    }
}

pub(crate) fn extract_one<R: TaskValue>(inner: &JobInner) -> TaskResult<R> {
    inner.value(0)
}

pub(crate) fn extract_all<R: TaskValue>(inner: &JobInner) -> TaskResult<Vec<R>> {
    if let Some(e) = inner.first_error() {
        return Err(e);
    }
    inner.values()
}

/// What to run when a result is in, as Python's `callback` and
/// `error_callback`. They run in the pool's supervisor thread, as in
/// Python: keep them short, and do not wait there for other results of the
/// same pool.
pub struct Callbacks<T> {
    on_success: Option<Box<dyn FnOnce(T) + Send>>,
    on_error: Option<Box<dyn FnOnce(TaskError) + Send>>,
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }
}

impl<T: Send + 'static> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the value when the call succeeded.
    pub fn on_success(mut self, f: impl FnOnce(T) + Send + 'static) -> Self {
        self.on_success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when it failed (for a map: the first error).
    pub fn on_error(mut self, f: impl FnOnce(TaskError) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    /// The job's completion hook; `None` without callbacks.
    pub(crate) fn into_on_done(self, extract: fn(&JobInner) -> TaskResult<T>) -> Option<OnDone> {
        if self.on_success.is_none() && self.on_error.is_none() {
            return None;
        }
        let Callbacks {
            on_success,
            on_error,
        } = self;
        Some(Box::new(move |inner: &JobInner| {
            let outcome = extract(inner);
            Box::new(move || match outcome {
                Ok(v) => {
                    if let Some(f) = on_success {
                        f(v)
                    }
                }
                Err(e) => {
                    if let Some(f) = on_error {
                        f(e)
                    }
                }
            }) as Box<dyn FnOnce() + Send>
        }))
    }
}

/// The results of [`Pool::imap`](super::Pool::imap), in the order of the
/// inputs, each as soon as it (and those before it) is in.
pub struct IMap<R> {
    job: Arc<Job>,
    next: usize,
    len: usize,
    _values: PhantomData<fn() -> R>,
}

impl<R: TaskValue> IMap<R> {
    pub(crate) fn new(job: Arc<Job>, len: usize) -> Self {
        IMap {
            job,
            next: 0,
            len,
            _values: PhantomData,
        }
    }

    /// The next result, waiting at most `timeout`; `None` after the last.
    /// [`TaskError::Timeout`] leaves the result to a later call, as
    /// Python's `next(timeout)`.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<TaskResult<R>> {
        if self.next == self.len {
            return None;
        }
        let i = self.next;
        let inner = match self
            .job
            .wait_until(deadline(timeout), |inner| Job::item_done(inner, i))
        {
            Ok(inner) => inner,
            Err(e) => return Some(Err(e)),
        };
        self.next += 1;
        Some(inner.value(i))
    }
}

impl<R: TaskValue> Iterator for IMap<R> {
    type Item = TaskResult<R>;

    fn next(&mut self) -> Option<TaskResult<R>> {
        self.next_timeout(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len - self.next, Some(self.len - self.next))
    }
}

/// The results of [`Pool::imap_unordered`](super::Pool::imap_unordered),
/// in the order they come in.
pub struct IMapUnordered<R> {
    job: Arc<Job>,
    yielded: usize,
    len: usize,
    _values: PhantomData<fn() -> R>,
}

impl<R: TaskValue> IMapUnordered<R> {
    pub(crate) fn new(job: Arc<Job>, len: usize) -> Self {
        IMapUnordered {
            job,
            yielded: 0,
            len,
            _values: PhantomData,
        }
    }

    /// The next result to come in, waiting at most `timeout`; `None` after
    /// the last.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<TaskResult<R>> {
        if self.yielded == self.len {
            return None;
        }
        let mut got = None;
        let inner = match self.job.wait_until(deadline(timeout), |inner| {
            got = Job::pop_completed(inner);
            got.is_some()
        }) {
            Ok(inner) => inner,
            Err(e) => return Some(Err(e)),
        };
        self.yielded += 1;
        got.map(|i| inner.value(i))
    }
}

impl<R: TaskValue> Iterator for IMapUnordered<R> {
    type Item = TaskResult<R>;

    fn next(&mut self) -> Option<TaskResult<R>> {
        self.next_timeout(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len - self.yielded, Some(self.len - self.yielded))
    }
}

/// The results of [`Pool::map_bytes`](super::Pool::map_bytes): one outcome
/// per input, as bytes.
pub struct BytesResults {
    job: Arc<Job>,
    len: usize,
}

impl BytesResults {
    pub(crate) fn new(job: Arc<Job>, len: usize) -> Self {
        BytesResults { job, len }
    }

    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// How many inputs (and outcomes) there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there were no inputs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs `f` on item `i`'s result bytes or error. `i` must be below
    /// [`len`](Self::len).
    pub fn with<T>(&self, i: usize, f: impl FnOnce(TaskResult<&[u8]>) -> T) -> T {
        let inner = self.job.lock();
        f(inner.bytes(i))
    }

    /// Item `i`'s result bytes or error.
    pub fn get(&self, i: usize) -> TaskResult<Vec<u8>> {
        self.with(i, |r| r.map(<[u8]>::to_vec))
    }
}
