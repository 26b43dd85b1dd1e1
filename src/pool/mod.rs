//! A pool of worker processes, as Python's `multiprocessing.Pool`, that
//! survives dead workers.
//!
//! ```
//! use multiproc::pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10u64, None)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! assert_eq!(pool.apply(square, 12)?, 144);
//! let mut squares: Vec<u64> = pool.imap_unordered(square, 0..4u64, None)?
//!     .collect::<Result<_, _>>()?;
//! squares.sort();
//! assert_eq!(squares, [0, 1, 4, 9]);
//! pool.close()?;
//! pool.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Functions
//!
//! A fork worker is a copy of the parent: any plain `fn(A) -> R` works,
//! with `A` and `R` [`TaskValue`]s (serde types with the `serde` feature,
//! else [`ShmSafe`](crate::shm::ShmSafe) ones). A spawn or forkserver
//! worker is another run of the program: it finds functions by name, so
//! register them ([`register_fn`], [`register_starfn`],
//! [`register_initializer`], [`register`] for functions on bytes, C's
//! `mp_pool_register`) before calling [`init`](crate::process::init) in
//! `main`; then the same `pool.map(f, ...)` call works with every start
//! method (a registered function travels by name with fork too).
//!
//! A panic in a task is that task's [`TaskError::Panicked`]; the worker
//! goes on with the next task.
//!
//! # How tasks travel, and what a dead worker loses
//!
//! The items of a call are cut into chunks (`chunksize`; by default
//! `ceil(len / (4 * processes))` for `map`, 1 for `imap`), each encoded as
//! one task message. The supervisor thread of the parent sends tasks into
//! each worker's own SPSC ring in shared memory, at most `window` tasks
//! (default 4) ahead of that worker's results, so it knows at every instant
//! which tasks each worker holds. Workers put results into one MPMC inbox,
//! which only the supervisor reads.
//!
//! Each worker also writes, in a shared record, the sequence number of the
//! task it begins, after taking it from its ring and before running it.
//! A watcher thread sleeps in `poll` on the workers' pidfds; when one ends
//! it posts a death notice into the inbox. The notice comes after every
//! result the worker committed, so when the supervisor reads it:
//!
//! - results already in were delivered, each exactly once;
//! - the tasks the worker holds up to the one its record names were taken
//!   and are lost with it: their undelivered items fail with
//!   [`TaskError::WorkerLost`] (a worker killed while putting a result, or
//!   between its record and the function, is counted here too: a task is
//!   never run twice);
//! - the tasks after it never began: they go back to the front of the
//!   queue and run on another worker;
//! - a new worker, started the same way, takes the dead one's slot.
//!
//! A chunk whose worker dies fails as a whole (the items it finished were
//! not sent yet): use `chunksize` 1 where every item counts.
//!
//! # Life
//!
//! [`close`](Pool::close) stops new work; the workers exit once everything
//! submitted is done; [`join`](Pool::join) waits for that.
//! [`terminate`](Pool::terminate) kills the workers at once: unfinished
//! tasks fail with [`TaskError::Terminated`]. Dropping the pool terminates
//! it, as leaving Python's `with Pool() as p:` block does. Callbacks run in
//! the supervisor thread, as in Python.
//!
//! Forking workers from a parent with threads (the pool's own two threads
//! included) is what Python's fork pools do too. A fork worker takes none
//! of the parent's locks that another thread could have held at the fork:
//! it gets a copy of the function registry and its queue objects from the
//! thread that forks it, and nothing else of the parent's state but what
//! the task gives it (your function is yours: see the
//! [process docs](crate::process#fork-and-threads)).

mod async_result;
mod job;
mod map;
mod record;
mod registry;
mod supervisor;
mod task;
mod value;
mod worker;

pub use async_result::{AsyncResult, BytesResults, Callbacks, IMap, IMapUnordered};
pub use job::TaskError;
pub use registry::{
    BytesFn, CPoolFn, register, register_fn, register_initializer, register_starfn,
};
pub use value::TaskValue;
#[doc(hidden)]
pub use worker::die_while_putting_a_result;

pub(crate) use registry::{PoolFn, register_pool_fn};

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use record::Records;
use supervisor::{PoolState, Shared, Starter, Supervisor};

use crate::error::{Error, Result};
use crate::process::{self, StartMethod};
use crate::queue::Queue;

/// The largest task or result message by default: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// How to make a [`Pool`]; from [`Pool::builder`].
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    initializer: Option<(PoolFn, std::result::Result<Vec<u8>, String>)>,
    max_tasks_per_child: Option<u64>,
    max_message: usize,
    window: usize,
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::process::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How workers are started (default: the process default,
    /// [`get_start_method`](crate::process::get_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(arg)` in each worker when it starts, as Python's
    /// `initializer` and `initargs`. For spawn and forkserver, register it
    /// with [`register_initializer`]. A worker whose initializer panics
    /// exits (code 70) and is replaced; after 3 such workers in a row
    /// (no task completing in between) the pool gives up: its unfinished
    /// tasks fail with [`TaskError::Failed`] and it is terminated.
    pub fn initializer<A: TaskValue>(mut self, f: fn(A), arg: A) -> Self {
        let mut bytes = Vec::new();
        // An argument that cannot be encoded is reported by `build`.
        let encoded = arg.encode(&mut bytes).map(|()| bytes);
        self.initializer = Some((registry::typed_init(f), encoded.map_err(|e| e.to_string())));
        self
    }

    /// Each worker runs at most `n` tasks (chunks), then exits and is
    /// replaced, as Python's `maxtasksperchild` (default: no limit).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// The largest task or result message in bytes (default
    /// [`DEFAULT_MAX_MESSAGE`]): chunks are cut to fit; a single argument
    /// or result that does not fit is an error.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// How many tasks the supervisor sends a worker ahead of its results
    /// (default 4). More hides the supervisor's latency for short tasks;
    /// fewer balances uneven tasks better: a task waits in its worker's
    /// ring behind the ones sent before it, even while another worker is
    /// idle (1: a worker holds only the task it runs).
    pub fn window(mut self, tasks: usize) -> Self {
        self.window = tasks;
        self
    }

    /// Starts the workers. [`Error::Invalid`] for 0 processes, a
    /// `max_tasks_per_child` or `window` of 0, a `max_message` under 64
    /// bytes; [`Error::NotFound`] for an unregistered initializer with
    /// spawn or forkserver; [`Error::State`] for spawn or forkserver
    /// without [`init`](crate::process::init).
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::Invalid(
                    "a pool needs at least 1 process, 0 were asked for".into(),
                ));
            }
            Some(n) => n,
            None => process::cpu_count()?,
        };
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::Invalid(
                "max_tasks_per_child must be at least 1 (or unset for no limit)".into(),
            ));
        }
        if self.window == 0 {
            return Err(Error::Invalid("window must be at least 1 task".into()));
        }
        if self.max_message < 64 {
            return Err(Error::Invalid(format!(
                "max_message of {} bytes: at least 64 expected",
                self.max_message
            )));
        }
        let method = self.method.unwrap_or_else(process::get_start_method);
        if method != StartMethod::Fork {
            if !process::init_ran() {
                return Err(Error::State(format!(
                    "a {method} pool needs multiproc::process::init() first thing in main"
                )));
            }
            registry::register_worker_entry()?;
        }
        let initializer = match self.initializer {
            None => None,
            Some((func, arg)) => {
                let arg = arg.map_err(|e| Error::Value(format!("initializer argument: {e}")))?;
                let fref = registry::FnRef::for_fn(func, method)?;
                let mut msg = Vec::new();
                let count_at = task::begin_task(0, &fref, &mut msg);
                let at = task::begin_item(&mut msg);
                msg.extend_from_slice(&arg);
                task::end_item(&mut msg, at)?;
                task::finish_task(&mut msg, count_at, 1);
                Some(msg)
            }
        };
        // The inbox and the worker records are sized by products of
        // `processes`: a count whose products overflow is refused here (in
        // release they used to wrap, into a record block too small for the
        // slots the workers then wrote).
        let inbox_capacity = processes
            .checked_mul(8)
            .and_then(|n| n.checked_mul(self.window))
            .filter(|_| u32::try_from(processes).is_ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "a pool of {processes} processes: too many to size its inbox and records"
                ))
            })?;
        let inbox = Queue::new(inbox_capacity.max(64), self.max_message)?;
        let (shared, wake) = supervisor::shared(inbox, Records::new(processes)?)?;
        let mut starter = Starter {
            method,
            window: self.window,
            max_msg: self.max_message,
            max_tasks: self.max_tasks_per_child.unwrap_or(0),
            initializer,
            started: 0,
        };
        let watcher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("mp-pool-watcher".into())
                .spawn(move || supervisor::watch(shared, wake))
                .map_err(|e| Error::os("spawning the pool's watcher thread", e))?
        };
        let mut slots = Vec::with_capacity(processes);
        for slot in 0..processes {
            match starter.start(&shared, slot as u32, 0) {
                Ok(s) => slots.push(s),
                Err(e) => {
                    shared.stop_watcher();
                    let _ = watcher.join();
                    return Err(e);
                }
            }
        }
        let supervisor = Supervisor::new(Arc::clone(&shared), starter, slots);
        let supervisor = std::thread::Builder::new()
            .name("mp-pool-supervisor".into())
            .spawn(move || supervisor.run())
            .map_err(|e| Error::os("spawning the pool's supervisor thread", e))?;
        Ok(Pool {
            shared,
            method,
            processes,
            max_message: self.max_message,
            threads: Mutex::new(Some((supervisor, watcher))),
        })
    }
}

/// A pool of worker processes, as Python's `multiprocessing.Pool`; see the
/// [module docs](self).
///
/// Every method takes `&self`: one thread can wait for results while
/// another submits. Dropping the pool terminates it (and joins).
pub struct Pool {
    shared: Arc<Shared>,
    method: StartMethod,
    processes: usize,
    max_message: usize,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `processes` workers started by the default start method.
    /// [`Error::Invalid`] for 0. See [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with the defaults: [`cpu_count`](crate::process::cpu_count)
    /// workers, the default start method, no initializer, no task limit.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: None,
            initializer: None,
            max_tasks_per_child: None,
            max_message: DEFAULT_MAX_MESSAGE,
            window: 4,
        }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// How the workers are started.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// Stops new work: later calls fail with [`Error::Closed`]
    /// ([`TaskError::Pool`] with `Status::Closed`); what was submitted
    /// finishes, then the workers exit.
    pub fn close(&self) -> Result<()> {
        self.shared.set_state(PoolState::Closed)
    }

    /// Kills the workers now; unfinished tasks fail with
    /// [`TaskError::Terminated`].
    pub fn terminate(&self) -> Result<()> {
        self.shared.set_state(PoolState::Terminated)
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`Error::State`] before). Joining
    /// again returns at once.
    pub fn join(&self) -> Result<()> {
        if self.shared.pending().state == PoolState::Running {
            return Err(Error::State(
                "join a pool after close() or terminate()".into(),
            ));
        }
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((supervisor, watcher)) = threads {
            let a = supervisor.join();
            let b = watcher.join();
            if a.is_err() || b.is_err() {
                return Err(Error::Internal("a pool thread panicked".into()));
            }
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.terminate();
        let _ = self.join();
    }
}
