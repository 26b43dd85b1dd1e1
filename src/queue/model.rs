//! Heap-backed queues for the loom models (`tests/loom_queue.rs`): the same
//! algorithm code as in shared memory, over loom's atomics, with threads
//! standing in for processes. Built only with `--cfg loom`.

use std::ptr::NonNull;
use std::time::Instant;

use super::mpmc::{QueueHeader, RawMpmc, Slot};
use super::spsc::{RawRing, RingHeader};
use crate::error::Result;

/// An MPMC queue in heap memory.
#[derive(Debug)]
pub struct HeapMpmc {
    raw: RawMpmc,
    header: NonNull<QueueHeader>,
    tail: NonNull<u8>,
    tail_len: usize,
}

// SAFETY: as RawMpmc; the allocations are freed only in Drop.
unsafe impl Send for HeapMpmc {}
// SAFETY: as RawMpmc.
unsafe impl Sync for HeapMpmc {}

fn tail_layout(len: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(len.max(64), 64).expect("small model sizes")
}

impl HeapMpmc {
    /// A queue of `capacity` messages of up to `max_msg` bytes (joinable if asked).
    pub fn new(capacity: usize, max_msg: usize, joinable: bool) -> Result<HeapMpmc> {
        let flags = if joinable {
            super::mpmc::QUEUE_FLAG_JOINABLE
        } else {
            0
        };
        let header = QueueHeader::new(capacity, max_msg, flags)?;
        let tail_len = header.tail_len();
        let header = NonNull::from(Box::leak(Box::new(header)));
        let layout = tail_layout(tail_len);
        // SAFETY: a non-zero size.
        let tail = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("allocation");
        for i in 0..capacity {
            // SAFETY: the tail starts with `capacity` slots, 64-aligned.
            unsafe { tail.cast::<Slot>().add(i).write(Slot::default()) };
        }
        // SAFETY: header and tail are valid until Drop, which outlives `raw`.
        let raw = unsafe { RawMpmc::new(header, tail) };
        Ok(HeapMpmc {
            raw,
            header,
            tail,
            tail_len,
        })
    }

    /// As `Queue::put_until`.
    pub fn put(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.raw.put(msg, deadline)
    }

    /// As `Queue::get_until`.
    pub fn get(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        self.raw.get(buf, deadline)
    }

    /// As `Queue::close`.
    pub fn close(&self) {
        self.raw.close()
    }

    /// As `Queue::qsize`.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As `Queue::task_done`.
    pub fn task_done(&self) -> Result<()> {
        self.raw.join_state().expect("joinable").task_done()
    }

    /// As `Queue::join`.
    pub fn join(&self, deadline: Option<Instant>) -> Result<()> {
        self.raw.join_state().expect("joinable").join(deadline)
    }
}

impl Drop for HeapMpmc {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; `raw` is not used after.
        unsafe {
            drop(Box::from_raw(self.header.as_ptr()));
            std::alloc::dealloc(self.tail.as_ptr(), tail_layout(self.tail_len));
        }
    }
}

/// An SPSC ring in heap memory.
#[derive(Debug)]
pub struct HeapRing {
    raw: RawRing,
    header: NonNull<RingHeader>,
    ring: NonNull<u8>,
    ring_len: usize,
}

// SAFETY: as RawRing; the allocations are freed only in Drop.
unsafe impl Send for HeapRing {}
// SAFETY: as RawRing.
unsafe impl Sync for HeapRing {}

impl HeapRing {
    /// A ring for at least `capacity` messages of up to `max_msg` bytes.
    pub fn new(capacity: usize, max_msg: usize) -> Result<HeapRing> {
        let header = RingHeader::new(capacity, max_msg, 0)?;
        let ring_len = header.tail_len();
        let header = NonNull::from(Box::leak(Box::new(header)));
        // SAFETY: a non-zero size.
        let ring = NonNull::new(unsafe { std::alloc::alloc_zeroed(tail_layout(ring_len)) })
            .expect("allocation");
        // SAFETY: header and ring are valid until Drop.
        let raw = unsafe { RawRing::new(header, ring) };
        Ok(HeapRing {
            raw,
            header,
            ring,
            ring_len,
        })
    }

    /// Producer side: puts `msg` (the caller is the one producer thread).
    pub fn put(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.raw.put(msg, deadline)
    }

    /// Consumer side: takes a message (the caller is the one consumer thread).
    pub fn get(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        self.raw.get(buf, deadline)
    }

    /// As `Producer::push_batch` (the caller keeps to the maximum size).
    pub fn put_batch(&self, msgs: &[&[u8]]) -> usize {
        self.raw.try_push_batch(msgs)
    }

    /// As `Consumer::pop_batch`.
    pub fn get_batch(&self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.raw.try_pop_batch(max, &mut f)
    }

    /// As `Queue::close`.
    pub fn close(&self) {
        self.raw.close()
    }
}

impl Drop for HeapRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; `raw` is not used after.
        unsafe {
            drop(Box::from_raw(self.header.as_ptr()));
            std::alloc::dealloc(self.ring.as_ptr(), tail_layout(self.ring_len));
        }
    }
}
