//! The parent's side of a pool: the supervisor thread (dispatches tasks
//! to the workers' rings, delivers results, handles deaths, replaces
//! workers) and the watcher thread (sleeps in `poll` on the workers'
//! pidfds and posts a death notice into the inbox when one ends).
//!
//! The supervisor's only input is the inbox, an MPMC queue in shared
//! memory: results from workers, death notices from the watcher, nudges
//! (new tasks are pending) and the stop order from the pool's handle. One
//! consumer and FIFO order make deaths simple: the watcher posts a death
//! notice only after the worker is dead, so every result the worker
//! committed before dying is ahead of the notice and has been delivered
//! when the supervisor handles it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::job::{Job, TaskError};
use super::record::{self, Records};
use super::registry::{self, PoolFn, WORKER_ENTRY};
use super::task::{self, ResultView, TAG_DIED, TAG_NUDGE, TAG_RESULT, TAG_STOP};
use super::worker::{self, WorkerConfig};
use crate::error::{Error, Result};
use crate::process::{Process, StartMethod};
use crate::queue::{Queue, QueueOptions, try_once};
use crate::sys;

/// How long one blocking get of the supervisor lasts while a death notice
/// is pending (it steps over a dead worker's claim within milliseconds).
const DEATH_POLL: Duration = Duration::from_millis(50);

/// After this many workers in a row fail their initializer (no task
/// completing in between), the pool gives up instead of starting more.
const MAX_INIT_FAILURES: u32 = 3;

/// One chunk of a job's items, encoded as a task message.
pub(crate) struct Task {
    pub(crate) job: Arc<Job>,
    /// The job's index of the task's first item.
    pub(crate) base: usize,
    pub(crate) count: usize,
    pub(crate) seq: u64,
    pub(crate) msg: Vec<u8>,
}

/// Whether the pool takes new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolState {
    Running,
    /// `close`: no new work; workers exit once everything submitted is done.
    Closed,
    /// `terminate`: workers killed, unfinished tasks fail.
    Terminated,
}

pub(crate) struct Pending {
    pub(crate) tasks: VecDeque<Task>,
    pub(crate) state: PoolState,
}

/// A worker's pidfd, for the watcher.
struct Watched {
    slot: u32,
    generation: u64,
    pidfd: OwnedFd,
}

/// What the pool's handle, the supervisor and the watcher share.
pub(crate) struct Shared {
    pub(crate) inbox: Queue,
    /// The workers' records and the doorbells.
    pub(crate) records: Records,
    pending: Mutex<Pending>,
    /// Set by a submitter that posted a nudge the supervisor has not taken
    /// yet: later submitters need not post another.
    nudged: AtomicBool,
    pub(crate) next_seq: AtomicU64,
    /// Death notices the watcher posted (counted before each post).
    deaths_posted: AtomicU64,
    /// New pidfds for the watcher, and its stop flag.
    watch: Mutex<(Vec<Watched>, bool)>,
    wake: File,
}

impl Shared {
    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `tasks` for the supervisor; [`Error::Closed`] once the pool
    /// was closed or terminated.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>) -> Result<()> {
        {
            let mut p = self.pending();
            if p.state != PoolState::Running {
                return Err(Error::Closed);
            }
            p.tasks.extend(tasks);
        }
        // SeqCst: pairs with the supervisor's clearing store before it
        // takes pending tasks: either it sees our tasks, or we see the flag
        // cleared and post a new nudge.
        if !self.nudged.swap(true, Ordering::SeqCst) {
            self.post(&[TAG_NUDGE])?;
        }
        Ok(())
    }

    /// Changes the state (close or terminate) and tells the supervisor.
    pub(crate) fn set_state(&self, state: PoolState) -> Result<()> {
        {
            let mut p = self.pending();
            if p.state == PoolState::Terminated || p.state == state {
                return Ok(());
            }
            p.state = state;
        }
        let msg = if state == PoolState::Terminated {
            TAG_STOP
        } else {
            TAG_NUDGE
        };
        self.post(&[msg])
    }

    fn post(&self, msg: &[u8]) -> Result<()> {
        match self.inbox.put_until(msg, None) {
            Ok(()) => {
                self.records.inbox_bell().notify_all();
                Ok(())
            }
            Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn wake_watcher(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    fn watch(&self, w: Watched) {
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .push(w);
        self.wake_watcher();
    }

    pub(crate) fn stop_watcher(&self) {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.wake_watcher();
    }
}

/// How workers are made (the same for the first ones and replacements).
pub(crate) struct Starter {
    pub(crate) method: StartMethod,
    pub(crate) window: usize,
    pub(crate) max_msg: usize,
    pub(crate) max_tasks: u64,
    /// The initializer, as a task message of one item.
    pub(crate) initializer: Option<Vec<u8>>,
    pub(crate) started: u64,
}

/// A worker slot in the supervisor.
pub(crate) struct Slot {
    process: Option<Process>,
    ring: Queue,
    generation: u64,
    /// Tasks sent to this worker, in order, whose results are not all in.
    outstanding: VecDeque<Task>,
    /// Items of the front task already delivered (results come in parts).
    front_delivered: usize,
    /// Tasks sent to the current worker (for `maxtasksperchild`).
    sent: u64,
}

impl Starter {
    /// Starts a worker in `slot` (generation `generation`) and tells the
    /// watcher.
    pub(crate) fn start(&mut self, shared: &Shared, slot: u32, generation: u64) -> Result<Slot> {
        let ring = Queue::with_options(QueueOptions {
            capacity: self.window,
            max_msg_size: self.max_msg,
            spsc: true,
            joinable: false,
        })?;
        shared.records.reset(slot as usize);
        let config = WorkerConfig {
            ring: ring.handle(),
            inbox: shared.inbox.handle(),
            records: shared.records.handle(),
            slot,
            max_tasks: self.max_tasks,
            initializer: self.initializer.clone(),
        };
        self.started += 1;
        let name = format!("PoolWorker-{}", self.started);
        let process = match self.method {
            StartMethod::Fork => {
                let snapshot: BTreeMap<String, PoolFn> = registry::snapshot();
                let attached = worker::Attached {
                    ring: ring.clone(),
                    inbox: shared.inbox.clone(),
                    records: shared.records.clone(),
                };
                Process::new(move || {
                    registry::use_snapshot(snapshot);
                    worker::run_attached(&config, attached)
                })
            }
            method => Process::from_entry(WORKER_ENTRY, config.encode())?.start_method(method),
        };
        let process = process.daemon(true).with_name(name);
        process.start()?;
        let pidfd = sys::dup_cloexec(process.sentinel()?)
            .map_err(|e| Error::os("dup of a worker's pidfd", e))?;
        shared.watch(Watched {
            slot,
            generation,
            pidfd,
        });
        Ok(Slot {
            process: Some(process),
            ring,
            generation,
            outstanding: VecDeque::new(),
            front_delivered: 0,
            sent: 0,
        })
    }
}

/// Makes the shared part: the inbox and the watcher's wake-up pipe; returns
/// the pipe's read end for the watcher.
pub(crate) fn shared(inbox: Queue, records: Records) -> Result<(Arc<Shared>, OwnedFd)> {
    let (r, w) = sys::pipe().map_err(|e| Error::os("pipe", e))?;
    sys::set_nonblocking(r.as_fd(), true).map_err(|e| Error::os("fcntl O_NONBLOCK", e))?;
    let shared = Shared {
        inbox,
        records,
        pending: Mutex::new(Pending {
            tasks: VecDeque::new(),
            state: PoolState::Running,
        }),
        nudged: AtomicBool::new(false),
        next_seq: AtomicU64::new(1),
        deaths_posted: AtomicU64::new(0),
        watch: Mutex::new((Vec::new(), false)),
        wake: File::from(w),
    };
    Ok((Arc::new(shared), r))
}

/// The watcher thread: posts a death notice for each worker that ends.
pub(crate) fn watch(shared: Arc<Shared>, wake: OwnedFd) {
    let mut wake = File::from(wake);
    let mut watched: Vec<Watched> = Vec::new();
    loop {
        {
            let mut w = shared.watch.lock().unwrap_or_else(PoisonError::into_inner);
            if w.1 {
                return;
            }
            watched.append(&mut w.0);
        }
        let mut fds = vec![wake.as_fd()];
        fds.extend(watched.iter().map(|w| w.pidfd.as_fd()));
        let ready = match sys::poll_readable_many(&fds, None) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("multiproc pool watcher: poll: {e}");
                return;
            }
        };
        drop(fds);
        if ready[0] {
            let _ = wake.read(&mut [0u8; 64]);
        }
        let mut i = 0;
        let mut dead = Vec::new();
        watched.retain(|w| {
            i += 1;
            if ready[i] {
                dead.push((w.slot, w.generation));
            }
            !ready[i]
        });
        for (slot, generation) in dead {
            // SeqCst: before the post and its notify, so the supervisor
            // that wakes sees the count (see `Supervisor::next_message`).
            shared.deaths_posted.fetch_add(1, Ordering::SeqCst);
            if shared.post(&task::died(slot, generation)).is_err() {
                return;
            }
        }
    }
}

/// The supervisor thread's state.
pub(crate) struct Supervisor {
    pub(crate) shared: Arc<Shared>,
    pub(crate) starter: Starter,
    pub(crate) slots: Vec<Slot>,
    /// The rings were closed: workers exit when they drain them.
    rings_closed: bool,
    /// Death notices taken from the inbox.
    deaths_handled: u64,
    /// Workers whose initializer failed since a task last completed.
    init_failures: u32,
    /// Set when the pool gave up (initializers failing): the thread ends.
    broken: bool,
}

impl Supervisor {
    pub(crate) fn new(shared: Arc<Shared>, starter: Starter, slots: Vec<Slot>) -> Supervisor {
        Supervisor {
            shared,
            starter,
            slots,
            rings_closed: false,
            deaths_handled: 0,
            init_failures: 0,
            broken: false,
        }
    }

    /// The supervisor thread's life.
    pub(crate) fn run(mut self) {
        let mut buf = vec![0u8; self.shared.inbox.max_msg_size()];
        loop {
            let n = match self.next_message(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("multiproc pool supervisor: inbox: {e}");
                    self.terminate_all();
                    break;
                }
            };
            let msg = &buf[..n];
            let outcome = match msg.first() {
                Some(&TAG_RESULT) => self.on_result(msg),
                Some(&TAG_DIED) => {
                    self.deaths_handled += 1;
                    task::parse_died(msg).map(|(s, g)| self.on_death(s, g))
                }
                Some(&TAG_NUDGE) => {
                    // SeqCst: see `Shared::submit`.
                    self.shared.nudged.store(false, Ordering::SeqCst);
                    Ok(())
                }
                Some(&TAG_STOP) => {
                    self.terminate_all();
                    break;
                }
                _ => Err(Error::Internal("unknown message in the pool inbox".into())),
            };
            if let Err(e) = outcome {
                eprintln!("multiproc pool supervisor: {e}");
            }
            if self.broken {
                break;
            }
            self.dispatch();
            if self.wind_down() {
                break;
            }
        }
        self.shared.stop_watcher();
    }

    /// Waits for the next inbox message, sleeping on the inbox bell between
    /// single tries.
    ///
    /// A worker killed in the middle of a put leaves its claimed slot in
    /// the inbox, and every message behind it, its death notice included,
    /// waits there. Single tries never step over a claim; the queue's
    /// blocking get does, once it sees the claimant dead. So while a death
    /// notice was posted and not taken yet, the wait is that blocking get.
    fn next_message(&self, buf: &mut [u8]) -> Result<usize> {
        let inbox = &self.shared.inbox;
        loop {
            let got = record::poll_then_wait(self.shared.records.inbox_bell(), || {
                match inbox.get_until(buf, try_once()) {
                    Err(Error::Empty) => {
                        // SeqCst: pairs with the watcher's count before its
                        // post and notify.
                        let posted = self.shared.deaths_posted.load(Ordering::SeqCst);
                        (posted != self.deaths_handled).then_some(Err(Error::Empty))
                    }
                    other => Some(other),
                }
            });
            match got {
                Err(Error::Empty) => {
                    let deadline = Instant::now() + DEATH_POLL;
                    match inbox.get_until(buf, Some(deadline)) {
                        Err(Error::Empty) => continue,
                        other => return other,
                    }
                }
                other => return other,
            }
        }
    }

    fn on_result(&mut self, msg: &[u8]) -> Result<()> {
        let view = ResultView::parse(msg)?;
        let slot = self
            .slots
            .get_mut(view.slot as usize)
            .ok_or_else(|| Error::Internal("result from an unknown worker slot".into()))?;
        let Some(task) = slot.outstanding.front() else {
            return Err(Error::Internal(
                "result from a worker that holds no task".into(),
            ));
        };
        if task.seq != view.seq {
            return Err(Error::Internal(format!(
                "result of task {} where task {} was expected",
                view.seq, task.seq
            )));
        }
        let (count, last) = (view.count as usize, view.last);
        task.job.deliver(task.base, view, msg)?;
        slot.front_delivered += count;
        self.init_failures = 0;
        if last {
            slot.outstanding.pop_front();
            slot.front_delivered = 0;
        }
        Ok(())
    }

    fn on_death(&mut self, slot_index: u32, generation: u64) {
        let i = slot_index as usize;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        let Some(process) = slot.process.take() else {
            return;
        };
        let pid = process.pid().unwrap_or(0);
        let exitcode = process.join(None).unwrap_or(i32::MIN);
        drop(process);
        // The worker runs its ring in order: every task up to the one its
        // record names was taken (and is lost with it); the rest never
        // began and go back to the front of the pending tasks.
        let started = self.shared.records.started(i);
        let taken = slot
            .outstanding
            .iter()
            .position(|t| t.seq == started)
            .map_or(0, |p| p + 1);
        let lost = TaskError::WorkerLost { pid, exitcode };
        let mut requeue = Vec::new();
        for (k, task) in std::mem::take(&mut slot.outstanding)
            .into_iter()
            .enumerate()
        {
            if k < taken {
                let from = if k == 0 { slot.front_delivered } else { 0 };
                task.job
                    .fail(task.base + from..task.base + task.count, &lost);
            } else {
                requeue.push(task);
            }
        }
        slot.front_delivered = 0;
        let state = {
            let mut p = self.shared.pending();
            for task in requeue.into_iter().rev() {
                p.tasks.push_front(task);
            }
            p.state
        };
        if state == PoolState::Terminated || self.rings_closed {
            return;
        }
        if exitcode == worker::EXIT_INIT_FAILED {
            self.init_failures += 1;
            if self.init_failures >= MAX_INIT_FAILURES {
                self.give_up(&TaskError::Failed(format!(
                    "the pool's initializer failed in {MAX_INIT_FAILURES} workers in a row \
                     (the last: pid {pid}, exit code {exitcode}); the pool was terminated"
                )));
                return;
            }
        }
        match self.starter.start(&self.shared, slot_index, generation + 1) {
            Ok(new) => self.slots[i] = new,
            Err(e) => {
                eprintln!("multiproc pool: cannot replace worker {pid}: {e}");
                self.slots[i].generation = generation + 1;
                if self.slots.iter().all(|s| s.process.is_none()) {
                    let err = TaskError::from(e);
                    self.fail_pending(&err);
                }
            }
        }
    }

    /// Sends pending tasks to workers with room in their window.
    fn dispatch(&mut self) {
        let max_tasks = self.starter.max_tasks;
        let window = self.starter.window;
        loop {
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.process.is_some()
                        && s.outstanding.len() < window
                        && (max_tasks == 0 || s.sent < max_tasks)
                })
                .min_by_key(|(_, s)| s.outstanding.len())
                .map(|(i, _)| i);
            let Some(i) = best else { return };
            let Some(task) = self.shared.pending().tasks.pop_front() else {
                return;
            };
            let slot = &mut self.slots[i];
            match slot.ring.put_until(&task.msg, try_once()) {
                Ok(()) => {
                    slot.sent += 1;
                    slot.outstanding.push_back(task);
                    if let Ok(bell) = self.shared.records.doorbell(i) {
                        bell.notify_all();
                    }
                }
                Err(e) => {
                    // The window keeps the ring from filling up; this is a
                    // bug, reported on the task rather than lost.
                    let err = TaskError::from(Error::Internal(format!("worker ring: {e}")));
                    task.job.fail(task.base..task.base + task.count, &err);
                }
            }
        }
    }

    /// After close: once nothing is pending or outstanding, closes the
    /// rings (workers exit); true when every worker is gone.
    fn wind_down(&mut self) -> bool {
        {
            let p = self.shared.pending();
            if p.state != PoolState::Closed || !p.tasks.is_empty() {
                return false;
            }
        }
        if self.slots.iter().any(|s| !s.outstanding.is_empty()) {
            return false;
        }
        if !self.rings_closed {
            self.rings_closed = true;
            for (i, s) in self.slots.iter().enumerate() {
                s.ring.close();
                if let Ok(bell) = self.shared.records.doorbell(i) {
                    bell.notify_all();
                }
            }
        }
        self.slots.iter().all(|s| s.process.is_none())
    }

    /// Terminate: kill every worker, fail everything unfinished.
    fn terminate_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(p) = slot.process.take() {
                let _ = p.kill();
                let _ = p.join(None);
            }
            slot.ring.close();
            for task in slot.outstanding.drain(..) {
                task.job
                    .fail(task.base..task.base + task.count, &TaskError::Terminated);
            }
        }
        self.fail_pending(&TaskError::Terminated);
    }

    /// Every worker's initializer keeps failing: fails every unfinished
    /// task with `err`, kills the workers, refuses new work (as after
    /// terminate), and ends the supervisor.
    fn give_up(&mut self, err: &TaskError) {
        self.shared.pending().state = PoolState::Terminated;
        for slot in &mut self.slots {
            for task in slot.outstanding.drain(..) {
                task.job.fail(task.base..task.base + task.count, err);
            }
        }
        self.fail_pending(err);
        self.terminate_all();
        self.broken = true;
    }

    fn fail_pending(&self, err: &TaskError) {
        let tasks: Vec<Task> = self.shared.pending().tasks.drain(..).collect();
        for task in tasks {
            task.job.fail(task.base..task.base + task.count, err);
        }
    }
}
