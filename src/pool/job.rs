//! A job: what one call (`apply_async`, `map`, `imap`...) submitted, and
//! the outcome of each of its items as the supervisor delivers them.
//!
//! Results stay in the bytes of the messages that brought them (one buffer
//! per result message, items as ranges in it), and are decoded into typed
//! values by the caller that asks for them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::task::{ItemStatus, ResultView};
use super::value::TaskValue;
use crate::error::{Error, Result, Status};

/// Why one task (one item of a `map`, one `apply`) has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked in the worker; the panic message and location.
    Panicked(String),
    /// The function reported a failure (a bytes or C function), or the
    /// worker could not run it (e.g. a name not registered there).
    Failed(String),
    /// The worker running the task died (killed by a signal, or exited)
    /// before it delivered the result. `exitcode` is the worker's, negative
    /// for a signal as in Python (-9: SIGKILL).
    WorkerLost {
        /// The dead worker's pid.
        pid: i32,
        /// Its exit code (negative signal number when a signal ended it).
        exitcode: i32,
    },
    /// The result bytes did not decode as the expected type.
    Decode(String),
    /// The pool was terminated before the task finished.
    Terminated,
    /// The wait for the result timed out; the task goes on.
    Timeout,
    /// The pool refused the call (closed, bad argument...); `status` is the
    /// crate's status for it.
    Pool {
        /// The C status code of the refusal.
        status: Status,
        /// What was wrong.
        message: String,
    },
}

impl TaskError {
    /// The C status code: [`Status::Value`] for a panic, a failure or a
    /// result that does not decode; [`Status::OwnerDied`] for a lost worker
    /// (the process that held the task died); [`Status::Closed`] after
    /// terminate; [`Status::Timeout`]; the refusal's own code.
    pub fn status(&self) -> Status {
        match self {
            TaskError::Panicked(_) | TaskError::Failed(_) | TaskError::Decode(_) => Status::Value,
            TaskError::WorkerLost { .. } => Status::OwnerDied,
            TaskError::Terminated => Status::Closed,
            TaskError::Timeout => Status::Timeout,
            TaskError::Pool { status, .. } => *status,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(m) => write!(f, "the task panicked: {m}"),
            TaskError::Failed(m) => write!(f, "the task failed: {m}"),
            TaskError::WorkerLost { pid, exitcode } => write!(
                f,
                "worker {pid} died (exit code {exitcode}) before the task's result was delivered"
            ),
            TaskError::Decode(m) => write!(f, "the task's result does not decode: {m}"),
            TaskError::Terminated => {
                f.write_str("the pool was terminated before the task finished")
            }
            TaskError::Timeout => f.write_str("timed out waiting for the task's result"),
            TaskError::Pool { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for TaskError {}

impl From<Error> for TaskError {
    fn from(e: Error) -> TaskError {
        match e {
            Error::Timeout => TaskError::Timeout,
            e => TaskError::Pool {
                status: e.status(),
                message: e.to_string(),
            },
        }
    }
}

impl From<TaskError> for Error {
    fn from(e: TaskError) -> Error {
        match e.status() {
            Status::Timeout => Error::Timeout,
            Status::Closed => Error::Closed,
            Status::OwnerDied => Error::OwnerDied,
            Status::Invalid => Error::Invalid(e.to_string()),
            Status::State => Error::State(e.to_string()),
            Status::NotFound => Error::NotFound(e.to_string()),
            _ => Error::Value(e.to_string()),
        }
    }
}

/// One item's outcome, 12 bytes (a map of millions of items allocates and
/// touches this per item): the result bytes are
/// `buffers[buf][start..start + len]`; `buf` is [`PENDING`] while the item
/// is out and [`FAILED`] when its error is in `JobInner::errors`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    buf: u32,
    start: u32,
    len: u32,
}

const PENDING: u32 = u32::MAX;
const FAILED: u32 = u32::MAX - 1;

impl Outcome {
    const PENDING: Outcome = Outcome {
        buf: PENDING,
        start: 0,
        len: 0,
    };
    const FAILED: Outcome = Outcome {
        buf: FAILED,
        start: 0,
        len: 0,
    };
}

/// Runs when the last item is in: the first stage runs under the job's
/// lock (to read results), the stage it returns runs after unlocking (the
/// user's callback).
pub(crate) type OnDone = Box<dyn FnOnce(&JobInner) -> Box<dyn FnOnce() + Send> + Send>;

/// The outcomes of a job's items.
pub(crate) struct JobInner {
    outcomes: Vec<Outcome>,
    /// The errors of the items whose outcome is [`FAILED`].
    errors: BTreeMap<usize, TaskError>,
    buffers: Vec<Vec<u8>>,
    done: usize,
    /// Item indices in the order they completed (only when tracked).
    completed: Option<VecDeque<usize>>,
    /// Callers waiting for the whole job: woken only when it is done.
    all_waiters: usize,
    /// Callers waiting for one item or any item: woken at every delivery.
    item_waiters: usize,
    on_done: Option<OnDone>,
}

impl JobInner {
    pub(crate) fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done == self.outcomes.len()
    }

    /// Item `i`'s bytes, or its error. Pending items are an internal error.
    pub(crate) fn bytes(&self, i: usize) -> std::result::Result<&[u8], TaskError> {
        let o = self.outcomes[i];
        match o.buf {
            PENDING => Err(TaskError::Pool {
                status: Status::Internal,
                message: "result read before it arrived (a bug in multiproc)".into(),
            }),
            FAILED => Err(self.errors[&i].clone()),
            buf => {
                let start = o.start as usize;
                Ok(&self.buffers[buf as usize][start..start + o.len as usize])
            }
        }
    }

    /// Item `i` decoded as `R`.
    pub(crate) fn value<R: TaskValue>(&self, i: usize) -> std::result::Result<R, TaskError> {
        R::decode(self.bytes(i)?).map_err(|e| TaskError::Decode(e.to_string()))
    }

    /// Every item decoded, or the first error (in item order).
    pub(crate) fn values<R: TaskValue>(&self) -> std::result::Result<Vec<R>, TaskError> {
        (0..self.len()).map(|i| self.value(i)).collect()
    }

    /// The first error in item order, if any.
    pub(crate) fn first_error(&self) -> Option<TaskError> {
        self.errors.values().next().cloned()
    }
}

/// A job shared by the caller (waiting for results) and the supervisor
/// (delivering them).
pub(crate) struct Job {
    inner: Mutex<JobInner>,
    cond: Condvar,
}

impl Job {
    pub(crate) fn new(len: usize, track_completed: bool, on_done: Option<OnDone>) -> Job {
        let outcomes = vec![Outcome::PENDING; len];
        Job {
            inner: Mutex::new(JobInner {
                outcomes,
                errors: BTreeMap::new(),
                buffers: Vec::new(),
                done: 0,
                completed: track_completed.then(VecDeque::new),
                all_waiters: 0,
                item_waiters: 0,
                on_done,
            }),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, JobInner> {
        // Every update leaves the outcomes consistent before anything that
        // can panic; a poisoned lock holds valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Supervisor: stores the items of result message `msg` (already
    /// checked to be `view`'s bytes) for the task's items from `base`.
    pub(crate) fn deliver(&self, base: usize, view: ResultView<'_>, msg: &[u8]) -> Result<()> {
        let mut view = view;
        let mut inner = self.lock();
        let buf = inner.buffers.len() as u32;
        let first = base + view.first as usize;
        let count = view.count as usize;
        if first + count > inner.outcomes.len() {
            return Err(Error::Internal("result for items beyond the job".into()));
        }
        let mut stored = false;
        for i in first..first + count {
            let (status, range) = view.next_item()?;
            let error = match status {
                ItemStatus::Ok => {
                    stored = true;
                    inner.outcomes[i] = Outcome {
                        buf,
                        start: range.start as u32,
                        len: range.len() as u32,
                    };
                    continue;
                }
                ItemStatus::Failed => {
                    TaskError::Failed(String::from_utf8_lossy(&msg[range]).into())
                }
                ItemStatus::Panicked => {
                    TaskError::Panicked(String::from_utf8_lossy(&msg[range]).into())
                }
            };
            inner.outcomes[i] = Outcome::FAILED;
            inner.errors.insert(i, error);
        }
        if stored {
            inner.buffers.push(msg.to_vec());
        }
        self.completed(inner, first..first + count);
        Ok(())
    }

    /// Supervisor: items `range` end with `err`.
    pub(crate) fn fail(&self, range: std::ops::Range<usize>, err: &TaskError) {
        let mut inner = self.lock();
        let mut newly = Vec::new();
        for i in range.clone() {
            if i < inner.outcomes.len() && inner.outcomes[i].buf == PENDING {
                inner.outcomes[i] = Outcome::FAILED;
                inner.errors.insert(i, err.clone());
                newly.push(i);
            }
        }
        self.completed(inner, newly);
    }

    fn completed(
        &self,
        mut inner: MutexGuard<'_, JobInner>,
        items: impl IntoIterator<Item = usize> + Clone,
    ) {
        inner.done += items.clone().into_iter().count();
        if let Some(c) = &mut inner.completed {
            c.extend(items);
        }
        let callback = if inner.is_done() {
            inner.on_done.take().map(|f| f(&inner))
        } else {
            None
        };
        // A waiter for the whole job need not wake before it is done (a
        // wake-up per item would cost a syscall and a context switch each).
        if inner.item_waiters > 0 || (inner.all_waiters > 0 && inner.is_done()) {
            self.cond.notify_all();
        }
        drop(inner);
        if let Some(cb) = callback {
            cb();
        }
    }

    /// Waits until the whole job is done or `deadline` passes.
    pub(crate) fn wait_done(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<MutexGuard<'_, JobInner>, TaskError> {
        self.wait(deadline, true, |inner| inner.is_done())
    }

    /// Waits until `ready(inner)` holds (checked at every delivery) or
    /// `deadline` passes; returns the guard, or [`TaskError::Timeout`].
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        ready: impl FnMut(&mut JobInner) -> bool,
    ) -> std::result::Result<MutexGuard<'_, JobInner>, TaskError> {
        self.wait(deadline, false, ready)
    }

    fn wait(
        &self,
        deadline: Option<Instant>,
        for_all: bool,
        mut ready: impl FnMut(&mut JobInner) -> bool,
    ) -> std::result::Result<MutexGuard<'_, JobInner>, TaskError> {
        let mut inner = self.lock();
        loop {
            if ready(&mut inner) {
                return Ok(inner);
            }
            if for_all {
                inner.all_waiters += 1;
            } else {
                inner.item_waiters += 1;
            }
            let woken = match deadline {
                None => self
                    .cond
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        Self::unwait(&mut inner, for_all);
                        return Err(TaskError::Timeout);
                    }
                    self.cond
                        .wait_timeout(inner, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            inner = woken;
            Self::unwait(&mut inner, for_all);
        }
    }

    fn unwait(inner: &mut JobInner, for_all: bool) {
        if for_all {
            inner.all_waiters -= 1;
        } else {
            inner.item_waiters -= 1;
        }
    }

    /// The next completed item in completion order (imap_unordered).
    pub(crate) fn pop_completed(inner: &mut JobInner) -> Option<usize> {
        inner.completed.as_mut().and_then(|c| c.pop_front())
    }

    /// Whether item `i` is in.
    pub(crate) fn item_done(inner: &JobInner, i: usize) -> bool {
        inner.outcomes[i].buf != PENDING
    }
}
