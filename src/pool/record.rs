//! The workers' records: one small shared block per pool in which each
//! worker says which task it started, so that after its death the
//! supervisor knows whether the tasks it held ever began; and the doorbells
//! the pool's waiters sleep on.
//!
//! # Doorbells
//!
//! A worker waiting for a task, and the supervisor waiting for a message,
//! poll their queue with single tries and sleep on an [`EventCount`] of
//! their own between tries: each worker on its record's `doorbell`, rung by
//! the supervisor after it puts a task into (or closes) that worker's ring;
//! the supervisor on the header's `inbox_bell`, rung by everyone who puts
//! into the inbox. The event count polls for about a microsecond before it
//! sleeps, where the queue's own blocking get polls for 50 us: with more
//! waiting threads than cores (two workers, the supervisor and the caller
//! on two cores), a waiter that spins long takes the core from the one it
//! waits for.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::{Handle, SharedMemory, default_backing};
use crate::sync::EventCount;

/// How long a waiter polls before it waits on its doorbell.
pub(crate) const POLL_WINDOW: Duration = Duration::from_micros(20);

/// Polls `ready` for up to [`POLL_WINDOW`], then waits on `bell` (whose
/// notifier rings it after changing what `ready` reads) until `ready`
/// gives a value.
pub(crate) fn poll_then_wait<T>(bell: &EventCount, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if let Some(v) = ready() {
            return v;
        }
        round += 1;
        if round.is_multiple_of(32) && start.elapsed() >= POLL_WINDOW {
            break;
        }
        std::hint::spin_loop();
    }
    loop {
        if let Some(v) = bell.wait_until(None, &mut ready) {
            return v;
        }
    }
}

/// One worker's record (one cache line per worker).
#[repr(C)]
pub(crate) struct WorkerRecord {
    /// The sequence number of the last task this worker began to run
    /// (0: none since the slot was (re)filled). Only grows. Written by the
    /// worker, after it took the task from its ring and before it runs the
    /// first item; reset to 0 by the supervisor before it starts a worker
    /// in the slot; read by the supervisor once the worker is dead.
    started: AtomicU64,
    /// Rung (notified) by the supervisor after it put a task into this
    /// worker's ring or closed it; the worker sleeps on it. See the module
    /// docs.
    doorbell: EventCount,
    _pad: [u32; 13],
}

/// The block's header, followed by `slots` records.
#[repr(C)]
pub(crate) struct RecordsHeader {
    /// [`RECORDS_MAGIC`]; written once by the parent.
    magic: AtomicU64,
    /// [`RECORDS_VERSION`]; written once by the parent.
    version: AtomicU32,
    /// How many records follow; written once by the parent.
    slots: AtomicU32,
    /// Rung by every process that put a message into the inbox; the
    /// supervisor sleeps on it. See the module docs.
    inbox_bell: EventCount,
    _pad: [u32; 11],
}

const RECORDS_MAGIC: u64 = u64::from_le_bytes(*b"MPPOOLRC");
const RECORDS_VERSION: u32 = 1;

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<WorkerRecord>() == 64);
    assert!(size_of::<RecordsHeader>() == 64);
    assert!(align_of::<WorkerRecord>() == 8 && align_of::<RecordsHeader>() == 8);
};

/// The records block of a pool.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    mem: SharedMemory,
    slots: usize,
}

impl Records {
    /// A block for `slots` workers, all records 0.
    pub(crate) fn new(slots: usize) -> Result<Records> {
        let len = slots
            .checked_mul(size_of::<WorkerRecord>())
            .and_then(|n| n.checked_add(size_of::<RecordsHeader>()))
            .filter(|_| u32::try_from(slots).is_ok())
            .ok_or_else(|| Error::Invalid(format!("{slots} worker records do not fit a block")))?;
        let mem = SharedMemory::new(len, default_backing())?;
        let records = Records { mem, slots };
        let h = records.header();
        // Relaxed: the block reaches workers only through fork or spawn,
        // which happen after these stores and order them.
        h.magic.store(RECORDS_MAGIC, Ordering::Relaxed);
        h.version.store(RECORDS_VERSION, Ordering::Relaxed);
        h.slots.store(slots as u32, Ordering::Relaxed);
        Ok(records)
    }

    /// Attaches to the block a handle names, checking its header.
    pub(crate) fn open(handle: &Handle) -> Result<Records> {
        let mem = SharedMemory::open(handle)?;
        if mem.len() < size_of::<RecordsHeader>() {
            return Err(Error::Invalid("pool records block too short".into()));
        }
        let mut records = Records { mem, slots: 0 };
        let h = records.header();
        // Relaxed: written before this process was started (see `new`).
        if h.magic.load(Ordering::Relaxed) != RECORDS_MAGIC {
            return Err(Error::Invalid("not a pool records block".into()));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != RECORDS_VERSION {
            return Err(Error::Version {
                expected: RECORDS_VERSION,
                found: version,
            });
        }
        let slots = h.slots.load(Ordering::Relaxed) as usize;
        if records.mem.len() < size_of::<RecordsHeader>() + slots * size_of::<WorkerRecord>() {
            return Err(Error::Invalid("pool records block too short".into()));
        }
        records.slots = slots;
        Ok(records)
    }

    pub(crate) fn handle(&self) -> Handle {
        self.mem.handle()
    }

    fn header(&self) -> &RecordsHeader {
        // SAFETY: the mapping is page-aligned, at least a header long
        // (checked in new/open), lives as long as `self`, and RecordsHeader
        // is atomics only, valid for every bit pattern.
        unsafe { &*self.mem.as_ptr().cast::<RecordsHeader>() }
    }

    fn record(&self, slot: usize) -> Result<&WorkerRecord> {
        if slot >= self.slots {
            return Err(Error::Invalid(format!(
                "worker slot {slot} of a pool of {}",
                self.slots
            )));
        }
        let offset = size_of::<RecordsHeader>() + slot * size_of::<WorkerRecord>();
        // SAFETY: `slot < slots` and the mapping holds `slots` records
        // after the header (checked in new/open); 64-byte records after a
        // 64-byte header in a page-aligned mapping are aligned; atomics
        // only, valid for every bit pattern.
        Ok(unsafe { &*self.mem.as_ptr().add(offset).cast::<WorkerRecord>() })
    }

    /// Worker: records that it begins task `seq`.
    pub(crate) fn mark_started(&self, slot: usize, seq: u64) {
        if let Ok(r) = self.record(slot) {
            // SYNC(task-started): Release pairs with the Acquire in
            // `started`; the supervisor reads it after the death.
            r.started.store(seq, Ordering::Release);
        }
    }

    /// Supervisor: the last task the (dead) worker in `slot` began.
    pub(crate) fn started(&self, slot: usize) -> u64 {
        // SYNC(task-started): pairs with the Release in `mark_started`.
        self.record(slot)
            .map_or(0, |r| r.started.load(Ordering::Acquire))
    }

    /// The doorbell of the worker in `slot` (see the module docs).
    pub(crate) fn doorbell(&self, slot: usize) -> Result<&EventCount> {
        Ok(&self.record(slot)?.doorbell)
    }

    /// The supervisor's doorbell (see the module docs).
    pub(crate) fn inbox_bell(&self) -> &EventCount {
        &self.header().inbox_bell
    }

    /// Supervisor: clears the record before a worker starts in `slot`.
    pub(crate) fn reset(&self, slot: usize) {
        if let Ok(r) = self.record(slot) {
            // Relaxed: the worker that reads it is started afterwards
            // (fork or spawn order it), and the previous one is dead.
            r.started.store(0, Ordering::Relaxed);
        }
    }
}
