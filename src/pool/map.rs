//! The calls that submit work: `apply`, `map`, `imap`, `imap_unordered`,
//! `starmap` (and their `_async` forms), typed or on bytes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Pool;
use super::async_result::{self, AsyncResult, BytesResults, Callbacks, IMap, IMapUnordered};
use super::job::{Job, OnDone, TaskError};
use super::registry::{self, FnRef, PoolFn};
use super::supervisor::Task;
use super::task::{self, TASK_ITEM_HEADER};
use super::value::TaskValue;
use crate::error::{Error, Status};

type TaskResult<T> = std::result::Result<T, TaskError>;

/// Tasks handed to the supervisor at once while a call encodes its items.
const SUBMIT_BATCH_TASKS: usize = 256;
/// Encoded bytes handed to the supervisor at once.
const SUBMIT_BATCH_BYTES: usize = 128 * 1024;

fn invalid(message: String) -> TaskError {
    TaskError::Pool {
        status: Status::Invalid,
        message,
    }
}

impl Pool {
    /// Python's chunk size for `map`: `ceil(len / (4 * processes))`.
    fn default_chunksize(&self, len: usize) -> usize {
        len.div_ceil(4 * self.processes).max(1)
    }

    fn chunksize(&self, asked: Option<usize>, len: usize) -> TaskResult<usize> {
        match asked {
            Some(0) => Err(invalid(
                "chunksize must be at least 1 (or None for the default)".into(),
            )),
            Some(n) => Ok(n),
            None => Ok(self.default_chunksize(len)),
        }
    }

    /// Cuts items `0..len` into tasks of at most `chunksize` items and at
    /// most `max_message` bytes, encoding item `i` with `encode`, and
    /// queues them as one job.
    fn submit_job(
        &self,
        func: &FnRef,
        len: usize,
        chunksize: usize,
        track_completed: bool,
        on_done: Option<OnDone>,
        mut encode: impl FnMut(usize, &mut Vec<u8>) -> crate::Result<()>,
    ) -> TaskResult<Arc<Job>> {
        let job = Arc::new(Job::new(len, track_completed, on_done));
        if len == 0 {
            // Complete at once (runs the callbacks).
            job.fail(0..0, &TaskError::Terminated);
            return Ok(job);
        }
        // Tasks go to the supervisor in batches as they are encoded, so the
        // workers start on the first while the rest are being encoded.
        let mut batch: Vec<Task> = Vec::new();
        let mut batch_bytes = 0;
        // Items before this one were handed to the supervisor.
        let mut submitted = 0;
        let mut i = 0;
        let outcome = loop {
            if i < len {
                match self.encode_task(func, &job, &mut i, len, chunksize, &mut encode) {
                    Ok(task) => {
                        batch_bytes += task.msg.len();
                        batch.push(task);
                    }
                    Err(e) => break Err(e),
                }
            }
            let full = batch.len() >= SUBMIT_BATCH_TASKS || batch_bytes >= SUBMIT_BATCH_BYTES;
            if i == len || full {
                if let Err(e) = self.shared.submit(batch.drain(..)) {
                    break Err(e.into());
                }
                submitted = i;
                batch_bytes = 0;
            }
            if i == len {
                break Ok(());
            }
        };
        if let Err(e) = outcome {
            // Nobody will wait for this job: what was not submitted fails.
            job.fail(submitted..len, &e);
            return Err(e);
        }
        Ok(job)
    }

    /// Encodes the task of the items from `*i`, at most `chunksize` of
    /// them and at most `max_message` bytes, and moves `*i` past them.
    fn encode_task(
        &self,
        func: &FnRef,
        job: &Arc<Job>,
        i: &mut usize,
        len: usize,
        chunksize: usize,
        encode: &mut impl FnMut(usize, &mut Vec<u8>) -> crate::Result<()>,
    ) -> TaskResult<Task> {
        let max = self.max_message;
        // Relaxed: a unique number is all that is needed.
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut msg = Vec::new();
        let count_at = task::begin_task(seq, func, &mut msg);
        let base = *i;
        while *i < len && *i - base < chunksize {
            let at = task::begin_item(&mut msg);
            encode(*i, &mut msg)?;
            task::end_item(&mut msg, at)?;
            if msg.len() > max {
                if *i == base {
                    return Err(Error::TooLarge {
                        len: msg.len() - at - TASK_ITEM_HEADER,
                        max: max - at - TASK_ITEM_HEADER,
                    }
                    .into());
                }
                // Item i starts the next chunk.
                msg.truncate(at);
                break;
            }
            *i += 1;
        }
        task::finish_task(&mut msg, count_at, (*i - base) as u32);
        Ok(Task {
            job: Arc::clone(job),
            base,
            count: *i - base,
            seq,
            msg,
        })
    }

    fn fn_ref(&self, func: PoolFn) -> TaskResult<FnRef> {
        Ok(FnRef::for_fn(func, self.method)?)
    }

    fn submit_typed<A: TaskValue>(
        &self,
        func: PoolFn,
        items: Vec<A>,
        chunksize: usize,
        track_completed: bool,
        on_done: Option<OnDone>,
    ) -> TaskResult<Arc<Job>> {
        let fref = self.fn_ref(func)?;
        self.submit_job(
            &fref,
            items.len(),
            chunksize,
            track_completed,
            on_done,
            |i, out| items[i].encode(out),
        )
    }

    /// Runs `f(arg)` in a worker and returns its result, as Python's
    /// `apply`.
    pub fn apply<A: TaskValue, R: TaskValue>(&self, f: fn(A) -> R, arg: A) -> TaskResult<R> {
        self.apply_async(f, arg)?.get(None)
    }

    /// Starts `f(arg)` in a worker, as Python's `apply_async`.
    pub fn apply_async<A: TaskValue, R: TaskValue>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> TaskResult<AsyncResult<R>> {
        let extract = async_result::extract_one::<R>;
        let job = self.submit_typed(registry::typed(f), vec![arg], 1, false, None)?;
        Ok(AsyncResult::new(job, extract))
    }

    /// [`apply_async`](Self::apply_async) with callbacks (run in the
    /// supervisor thread when the result is in).
    ///
    /// ```
    /// use multiproc::pool::{Callbacks, Pool};
    /// use std::sync::mpsc;
    ///
    /// fn negate(x: i64) -> i64 {
    ///     -x
    /// }
    ///
    /// let pool = Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let r = pool.apply_async_with(negate, 5, Callbacks::new().on_success(move |v| tx.send(v).unwrap()))?;
    /// assert_eq!(rx.recv()?, -5);
    /// assert_eq!(r.get(None)?, -5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_async_with<A: TaskValue, R: TaskValue + Send + 'static>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> TaskResult<AsyncResult<R>> {
        let extract = async_result::extract_one::<R>;
        let job = self.submit_typed(
            registry::typed(f),
            vec![arg],
            1,
            false,
            callbacks.into_on_done(extract),
        )?;
        Ok(AsyncResult::new(job, extract))
    }

    /// `f` applied to every item, results in order, as Python's `map`: the
    /// first error (in item order) if any item failed. `chunksize`: items
    /// per task (`None`: `ceil(len / (4 * processes))`; `Some(0)` is a
    /// [`TaskError::Pool`] with [`Status::Invalid`]).
    pub fn map<A: TaskValue, R: TaskValue>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> TaskResult<Vec<R>> {
        self.map_async(f, items, chunksize)?.get(None)
    }

    /// [`map`](Self::map) without waiting, as Python's `map_async`.
    pub fn map_async<A: TaskValue, R: TaskValue>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> TaskResult<AsyncResult<Vec<R>>> {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = self.chunksize(chunksize, items.len())?;
        let extract = async_result::extract_all::<R>;
        let job = self.submit_typed(registry::typed(f), items, chunksize, false, None)?;
        Ok(AsyncResult::new(job, extract))
    }

    /// [`map_async`](Self::map_async) with callbacks: `on_success` gets
    /// every result, `on_error` the first error.
    pub fn map_async_with<A: TaskValue, R: TaskValue + Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> TaskResult<AsyncResult<Vec<R>>> {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = self.chunksize(chunksize, items.len())?;
        let extract = async_result::extract_all::<R>;
        let on_done = callbacks.into_on_done(extract);
        let job = self.submit_typed(registry::typed(f), items, chunksize, false, on_done)?;
        Ok(AsyncResult::new(job, extract))
    }

    /// `f` applied to every item; the results in order, each as soon as it
    /// and those before it are in, as Python's `imap`. The items are
    /// submitted at once (as Python does); `chunksize` defaults to 1.
    pub fn imap<A: TaskValue, R: TaskValue>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> TaskResult<IMap<R>> {
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        let chunksize = self.chunksize(Some(chunksize.unwrap_or(1)), len)?;
        let job = self.submit_typed(registry::typed(f), items, chunksize, false, None)?;
        Ok(IMap::new(job, len))
    }

    /// As [`imap`](Self::imap), but each result as soon as it is in,
    /// whatever its place, as Python's `imap_unordered`.
    pub fn imap_unordered<A: TaskValue, R: TaskValue>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> TaskResult<IMapUnordered<R>> {
        let items: Vec<A> = items.into_iter().collect();
        let len = items.len();
        let chunksize = self.chunksize(Some(chunksize.unwrap_or(1)), len)?;
        let job = self.submit_typed(registry::typed(f), items, chunksize, true, None)?;
        Ok(IMapUnordered::new(job, len))
    }

    /// `f(a, b)` for every pair, as Python's `starmap` (register `f` with
    /// [`register_starfn`](super::register_starfn) for spawn).
    ///
    /// ```
    /// use multiproc::pool::Pool;
    ///
    /// fn power(base: u64, exp: u32) -> u64 {
    ///     base.pow(exp)
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(power, [(2, 10), (3, 3)], None)?, [1024, 27]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap<A: TaskValue, B: TaskValue, R: TaskValue>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> TaskResult<Vec<R>> {
        self.starmap_async(f, items, chunksize)?.get(None)
    }

    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<A: TaskValue, B: TaskValue, R: TaskValue>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> TaskResult<AsyncResult<Vec<R>>> {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let chunksize = self.chunksize(chunksize, items.len())?;
        let fref = self.fn_ref(registry::typed_star(f))?;
        let job = self.submit_job(&fref, items.len(), chunksize, false, None, |i, out| {
            registry::encode_pair(&items[i].0, &items[i].1, out)
        })?;
        Ok(AsyncResult::new(job, async_result::extract_all::<R>))
    }

    fn named(&self, name: &str) -> TaskResult<FnRef> {
        registry::lookup(name)?;
        Ok(FnRef::Named(name.to_owned()))
    }

    /// Runs the function registered under `name` (with [`register`](super::register)
    /// or C's `mp_pool_register`) on `arg` in a worker; its result bytes.
    pub fn apply_bytes(&self, name: &str, arg: &[u8]) -> TaskResult<Vec<u8>> {
        let r = self.map_bytes_async(name, &[arg], Some(1))?;
        r.wait(None);
        r.get(0)
    }

    /// Runs the function registered under `name` on every input and waits
    /// for all; one outcome per input, in order.
    pub fn map_bytes<T: AsRef<[u8]>>(
        &self,
        name: &str,
        inputs: &[T],
        chunksize: Option<usize>,
    ) -> TaskResult<BytesResults> {
        let r = self.map_bytes_async(name, inputs, chunksize)?;
        r.wait(None);
        Ok(r)
    }

    /// [`map_bytes`](Self::map_bytes) without waiting: see
    /// [`BytesResults::wait`].
    pub fn map_bytes_async<T: AsRef<[u8]>>(
        &self,
        name: &str,
        inputs: &[T],
        chunksize: Option<usize>,
    ) -> TaskResult<BytesResults> {
        let fref = self.named(name)?;
        let chunksize = self.chunksize(chunksize, inputs.len())?;
        let job = self.submit_job(&fref, inputs.len(), chunksize, false, None, |i, out| {
            out.extend_from_slice(inputs[i].as_ref());
            Ok(())
        })?;
        Ok(BytesResults::new(job, inputs.len()))
    }
}

impl BytesResults {
    /// Waits until every outcome is in or `timeout` passed; whether they
    /// are all in.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.job()
            .wait_done(timeout.map(|t| std::time::Instant::now() + t))
            .is_ok()
    }
}
