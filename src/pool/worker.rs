//! A worker process: takes tasks from its own SPSC ring, runs each item,
//! puts the results into the supervisor's inbox.
//!
//! The same loop runs in fork, spawn and forkserver workers: it is given
//! its configuration as bytes (the handles of its ring, of the inbox and of
//! the records block, its slot, `maxtasksperchild`, the initializer) and
//! opens everything by handle.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::record::{self, Records};
use super::registry::PoolFn;
use super::task::{self, FnView, ItemStatus, RESULT_HEADER, RESULT_ITEM_HEADER, TaskView};
use crate::error::{Error, Result};
use crate::queue::{Queue, try_once};
use crate::shm::Handle;

const CONFIG_MAGIC: &[u8; 8] = b"MPPOOLW1";

/// What a worker is told at start.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) ring: Handle,
    pub(crate) inbox: Handle,
    pub(crate) records: Handle,
    pub(crate) slot: u32,
    /// Tasks to run before exiting (0: no limit), Python's `maxtasksperchild`.
    pub(crate) max_tasks: u64,
    /// The initializer as a task message of one item (its argument).
    pub(crate) initializer: Option<Vec<u8>>,
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

impl WorkerConfig {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = CONFIG_MAGIC.to_vec();
        put_str(&mut out, self.ring.to_string().as_bytes());
        put_str(&mut out, self.inbox.to_string().as_bytes());
        put_str(&mut out, self.records.to_string().as_bytes());
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.max_tasks.to_le_bytes());
        if let Some(init) = &self.initializer {
            put_str(&mut out, init);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<WorkerConfig> {
        let bad = || Error::Invalid("malformed pool worker configuration".into());
        let rest = bytes.strip_prefix(CONFIG_MAGIC).ok_or_else(bad)?;
        let mut r = ConfigReader { bytes: rest, at: 0 };
        let ring = r.handle()?;
        let inbox = r.handle()?;
        let records = r.handle()?;
        let slot = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| bad())?);
        let max_tasks = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| bad())?);
        let initializer = if r.at < r.bytes.len() {
            Some(r.string()?.to_vec())
        } else {
            None
        };
        Ok(WorkerConfig {
            ring,
            inbox,
            records,
            slot,
            max_tasks,
            initializer,
        })
    }
}

struct ConfigReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ConfigReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| Error::Invalid("malformed pool worker configuration".into()))?;
        self.at += n;
        Ok(s)
    }
    fn string(&mut self) -> Result<&'a [u8]> {
        let len = self.take(4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        self.take(len as usize)
    }
    fn handle(&mut self) -> Result<Handle> {
        std::str::from_utf8(self.string()?)
            .map_err(|_| Error::Invalid("pool worker configuration: handle is not UTF-8".into()))?
            .parse()
    }
}

/// This worker's inbox, for [`die_while_putting_a_result`].
static INBOX: std::sync::OnceLock<Queue> = std::sync::OnceLock::new();

/// Test hook, for a pool function: claims a slot of the pool's inbox as a
/// put of a result would, then kills this worker (SIGKILL), as a worker
/// killed in the middle of putting its result. Outside a worker: returns.
#[doc(hidden)]
pub fn die_while_putting_a_result() {
    if let Some(inbox) = INBOX.get()
        && inbox.claim_slot_and_stop()
    {
        let _ = crate::sys::kill(crate::sys::getpid(), libc::SIGKILL);
    }
}

/// The spawn/forkserver entry (registered as `WORKER_ENTRY`).
pub(crate) fn entry(arg: &[u8]) -> i32 {
    match WorkerConfig::decode(arg) {
        Ok(config) => run(&config),
        Err(e) => {
            eprintln!("multiproc pool worker: {e}");
            EXIT_ATTACH_FAILED
        }
    }
}

thread_local! {
    /// The message of the last panic in this thread, set by the worker's
    /// panic hook (which prints nothing: the panic is the task's error).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}

/// The exit code of a worker whose initializer failed (panicked, or could
/// not be found or decoded).
pub(crate) const EXIT_INIT_FAILED: i32 = 70;
/// The exit code of a worker that could not attach to its queues or read
/// its configuration.
pub(crate) const EXIT_ATTACH_FAILED: i32 = 71;

/// What a worker works with, attached.
pub(crate) struct Attached {
    pub(crate) ring: Queue,
    pub(crate) inbox: Queue,
    pub(crate) records: Records,
}

/// The worker's life when it starts from its configuration alone (spawn,
/// forkserver): attaches by handle, then [`run_attached`].
pub(crate) fn run(config: &WorkerConfig) -> i32 {
    match (
        Queue::open(&config.ring),
        Queue::open(&config.inbox),
        Records::open(&config.records),
    ) {
        (Ok(ring), Ok(inbox), Ok(records)) => run_attached(
            config,
            Attached {
                ring,
                inbox,
                records,
            },
        ),
        (r, i, rec) => {
            let e = [r.err(), i.err(), rec.err()].into_iter().flatten().next();
            eprintln!("multiproc pool worker: cannot attach: {e:?}");
            EXIT_ATTACH_FAILED
        }
    }
}

/// The worker's life: returns its exit code (0: closed or retired
/// normally; [`EXIT_INIT_FAILED`], [`EXIT_ATTACH_FAILED`]). A fork worker
/// starts here with the parent's own queue objects, so it takes no lock of
/// the segment registry that another thread of the parent might have held
/// at the instant of the fork.
pub(crate) fn run_attached(config: &WorkerConfig, attached: Attached) -> i32 {
    quiet_panics();
    let Attached {
        ring,
        inbox,
        records,
    } = attached;
    let _ = INBOX.set(inbox.clone());
    if let Some(init) = &config.initializer
        && let Err(e) = run_initializer(init)
    {
        eprintln!("multiproc pool worker: initializer failed: {e}");
        return EXIT_INIT_FAILED;
    }
    let mut worker = Worker {
        slot: config.slot,
        inbox: &inbox,
        records: &records,
        max_msg: inbox.max_msg_size(),
        out: Vec::with_capacity(inbox.max_msg_size()),
        cached: None,
    };
    let mut buf = vec![0u8; ring.max_msg_size()];
    let mut done = 0u64;
    loop {
        let Ok(doorbell) = records.doorbell(config.slot as usize) else {
            eprintln!("multiproc pool worker: slot {} out of range", config.slot);
            return EXIT_ATTACH_FAILED;
        };
        let got = record::poll_then_wait(doorbell, || match ring.get_until(&mut buf, try_once()) {
            Err(Error::Empty) => None,
            other => Some(other),
        });
        let n = match got {
            Ok(n) => n,
            Err(Error::Closed) => return 0,
            Err(e) => {
                eprintln!("multiproc pool worker: task ring: {e}");
                return EXIT_ATTACH_FAILED;
            }
        };
        let task = match TaskView::parse(&buf[..n]) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("multiproc pool worker: {e}");
                return EXIT_ATTACH_FAILED;
            }
        };
        records.mark_started(config.slot as usize, task.seq);
        match worker.run_task(task) {
            Ok(()) => {}
            Err(Error::Closed) => return 0,
            Err(e) => {
                eprintln!("multiproc pool worker: inbox: {e}");
                return EXIT_ATTACH_FAILED;
            }
        }
        done += 1;
        if config.max_tasks != 0 && done >= config.max_tasks {
            return 0;
        }
    }
}

fn run_initializer(init: &[u8]) -> std::result::Result<(), String> {
    let mut task = TaskView::parse(init).map_err(|e| e.to_string())?;
    let func = resolve(task.func)?;
    let arg = task.next_item().map_err(|e| e.to_string())?;
    let mut sink = Vec::new();
    catch_unwind(AssertUnwindSafe(|| func.call(arg, &mut sink, 0)))
        .map_err(panic_message)
        .and_then(|r| r)
}

fn resolve(func: FnView<'_>) -> std::result::Result<PoolFn, String> {
    let func = func.to_owned().map_err(|e| e.to_string())?;
    // SAFETY: addresses only come from the fork parent, which made them
    // with FnRef::for_fn (it sends names to spawn/forkserver workers).
    unsafe { func.resolve() }
}

struct Worker<'a> {
    slot: u32,
    inbox: &'a Queue,
    records: &'a Records,
    max_msg: usize,
    out: Vec<u8>,
    /// The last function resolved, by its reference's bytes.
    cached: Option<(Vec<u8>, std::result::Result<PoolFn, String>)>,
}

impl Worker<'_> {
    fn function(&mut self, view: FnView<'_>) -> std::result::Result<PoolFn, String> {
        let key: Vec<u8> = match view {
            FnView::Named(n) => n.to_vec(),
            FnView::Address { call, f } => [call.to_le_bytes(), f.to_le_bytes()].concat(),
        };
        if let Some((k, f)) = &self.cached
            && *k == key
        {
            return f.clone();
        }
        let f = resolve(view);
        self.cached = Some((key, f.clone()));
        f
    }

    /// Runs every item of `task` and puts its results (in as many parts as
    /// they need).
    fn run_task(&mut self, mut task: TaskView<'_>) -> Result<()> {
        let func = self.function(task.func);
        let seq = task.seq;
        let mut out = std::mem::take(&mut self.out);
        task::begin_result(self.slot, seq, 0, &mut out);
        let mut in_part = 0u32;
        let max_out = self
            .max_msg
            .saturating_sub(RESULT_HEADER + RESULT_ITEM_HEADER);
        for index in 0..task.count {
            let at = task::begin_result_item(&mut out);
            let status = match (&func, task.next_item()) {
                (Err(msg), _) => {
                    out.extend_from_slice(msg.as_bytes());
                    ItemStatus::Failed
                }
                (_, Err(e)) => {
                    out.extend_from_slice(e.to_string().as_bytes());
                    ItemStatus::Failed
                }
                (Ok(f), Ok(item)) => {
                    let f = *f;
                    match catch_unwind(AssertUnwindSafe(|| f.call(item, &mut out, max_out))) {
                        Ok(Ok(())) => ItemStatus::Ok,
                        Ok(Err(msg)) => {
                            out.truncate(at + RESULT_ITEM_HEADER);
                            out.extend_from_slice(msg.as_bytes());
                            ItemStatus::Failed
                        }
                        Err(payload) => {
                            out.truncate(at + RESULT_ITEM_HEADER);
                            out.extend_from_slice(panic_message(payload).as_bytes());
                            ItemStatus::Panicked
                        }
                    }
                }
            };
            task::end_result_item(&mut out, at, status);
            if out.len() > self.max_msg {
                // This item does not fit the part: send the part without it
                // and start the next part with it.
                let item = out[at..].to_vec();
                out.truncate(at);
                if in_part > 0 {
                    task::finish_result(&mut out, in_part, false);
                    self.put(&out)?;
                    task::begin_result(self.slot, seq, index, &mut out);
                    in_part = 0;
                }
                if RESULT_HEADER + item.len() > self.max_msg {
                    let at = task::begin_result_item(&mut out);
                    let msg = format!(
                        "the result of {} bytes exceeds the pool's max_message of {} bytes",
                        item.len() - RESULT_ITEM_HEADER,
                        self.max_msg
                    );
                    out.extend_from_slice(msg.as_bytes());
                    task::end_result_item(&mut out, at, ItemStatus::Failed);
                } else {
                    out.extend_from_slice(&item);
                }
            }
            in_part += 1;
        }
        task::finish_result(&mut out, in_part, true);
        let put = self.put(&out);
        self.out = out;
        put
    }

    fn put(&self, msg: &[u8]) -> Result<()> {
        self.inbox.put_until(msg, None)?;
        self.records.inbox_bell().notify_all();
        Ok(())
    }
}
