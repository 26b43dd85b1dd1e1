//! Python's `Queue`, `SimpleQueue` and `JoinableQueue` over the two layouts.

use std::time::{Duration, Instant};

use super::common::{self, JoinState};
use super::mpmc::{QUEUE_FLAG_JOINABLE, QueueHeader, RawMpmc};
use super::spsc::{RawRing, RingHeader};
use crate::error::{Error, Result};
use crate::shm::{Handle, ObjectKind, Segment, ShmBox};

/// How to make a [`Queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Messages the queue holds (at least 1). An SPSC queue holds at least
    /// this many messages of the maximum size (more when they are shorter).
    pub capacity: usize,
    /// The largest message in bytes (at least 1). Larger puts fail with
    /// [`Error::TooLarge`].
    pub max_msg_size: usize,
    /// One producer thread and one consumer thread at a time: the faster
    /// byte ring. A second producer (or consumer) gets [`Error::State`].
    pub spsc: bool,
    /// Count messages for [`Queue::task_done`] and [`Queue::join`].
    pub joinable: bool,
}

impl QueueOptions {
    /// An MPMC, non-joinable queue of `capacity` messages of up to
    /// `max_msg_size` bytes.
    pub fn new(capacity: usize, max_msg_size: usize) -> QueueOptions {
        QueueOptions {
            capacity,
            max_msg_size,
            spsc: false,
            joinable: false,
        }
    }
}

#[derive(Debug)]
enum Layout {
    Mpmc {
        raw: RawMpmc,
        obj: ShmBox<QueueHeader>,
    },
    Spsc {
        raw: RawRing,
        obj: ShmBox<RingHeader>,
    },
}

/// A bounded queue of byte messages in shared memory, as Python's
/// `multiprocessing.Queue`: any process that inherited it (fork) or opened
/// its [`Handle`] can put and get.
///
/// Blocking calls spin briefly, then sleep on a futex; a timeout gives
/// [`Error::Full`] (put) or [`Error::Empty`] (get). After [`close`](Self::close)
/// puts fail with [`Error::Closed`], gets drain what is left and then fail
/// with [`Error::Closed`]. A put racing with `close` may still succeed; its
/// message then stays gettable.
///
/// # Death of a peer
///
/// A process killed in the middle of a put or get never blocks the others
/// for good: a waiter stuck behind its claim sees (through `/proc`) that it
/// died and steps over it. Every message whose put returned `Ok` is
/// delivered exactly once, except the one message a consumer was copying out
/// when it was killed (MPMC: lost; SPSC: delivered again to the next
/// consumer). For a joinable queue, a producer killed in the middle of a put
/// may leave the `join` count one too high.
///
/// # Example
///
/// ```
/// use multiproc::process::Process;
/// use multiproc::queue::Queue;
///
/// let q = Queue::new(16, 64)?;
/// let child = {
///     let q = q.clone();
///     Process::new(move || q.put(b"hello from the child", true, None).is_ok() as i32)
/// };
/// child.start()?;
/// let mut buf = [0u8; 64];
/// let n = q.get(&mut buf, true, None)?;
/// assert_eq!(&buf[..n], b"hello from the child");
/// assert_eq!(child.join(None)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Queue {
    layout: Layout,
}

impl Clone for Queue {
    fn clone(&self) -> Self {
        match &self.layout {
            Layout::Mpmc { obj, .. } => Queue::from_mpmc(obj.clone()),
            Layout::Spsc { obj, .. } => Queue::from_ring(obj.clone()),
        }
    }
}

impl Queue {
    /// An MPMC queue of `capacity` messages of up to `max_msg_size` bytes,
    /// in a segment of its own. [`Error::Invalid`] for a zero capacity or
    /// size, [`Error::TooLarge`] when they do not fit a segment.
    pub fn new(capacity: usize, max_msg_size: usize) -> Result<Queue> {
        Queue::with_options(QueueOptions::new(capacity, max_msg_size))
    }

    /// A queue made as `options` say, in a segment of its own.
    pub fn with_options(options: QueueOptions) -> Result<Queue> {
        Queue::create(None, options)
    }

    /// A queue made as `options` say, inside `segment`.
    pub fn new_in(segment: &Segment, options: QueueOptions) -> Result<Queue> {
        Queue::create(Some(segment), options)
    }

    fn create(segment: Option<&Segment>, o: QueueOptions) -> Result<Queue> {
        let flags = if o.joinable { QUEUE_FLAG_JOINABLE } else { 0 };
        if o.spsc {
            let header = RingHeader::new(o.capacity, o.max_msg_size, flags)?;
            let len = header.tail_len();
            let obj = match segment {
                Some(s) => ShmBox::with_tail_in(s, header, len, 64)?,
                None => ShmBox::with_tail(header, len, 64)?,
            };
            Ok(Queue::from_ring(obj))
        } else {
            let header = QueueHeader::new(o.capacity, o.max_msg_size, flags)?;
            let len = header.tail_len();
            let obj = match segment {
                Some(s) => ShmBox::with_tail_in(s, header, len, 64)?,
                None => ShmBox::with_tail(header, len, 64)?,
            };
            Ok(Queue::from_mpmc(obj))
        }
    }

    fn from_mpmc(obj: ShmBox<QueueHeader>) -> Queue {
        // SAFETY: the box keeps the header (checked at creation or open) and
        // its tail (slots then data, 64-aligned) mapped while `obj` lives
        // beside `raw` in this Queue.
        let raw = unsafe { RawMpmc::new(std::ptr::NonNull::from(&*obj), obj.tail()) };
        Queue {
            layout: Layout::Mpmc { raw, obj },
        }
    }

    fn from_ring(obj: ShmBox<RingHeader>) -> Queue {
        // SAFETY: as in `from_mpmc`: header checked, ring bytes in the tail,
        // 64-aligned, mapped while `obj` lives beside `raw`.
        let raw = unsafe { RawRing::new(std::ptr::NonNull::from(&*obj), obj.tail()) };
        Queue {
            layout: Layout::Spsc { raw, obj },
        }
    }

    /// Attaches to the queue a handle names (from [`handle`](Self::handle)
    /// in this or another process). [`Error::Kind`] for a handle of another
    /// kind of object; see [`ShmBox::open`] for the rest.
    pub fn open(handle: &Handle) -> Result<Queue> {
        match handle.kind() {
            ObjectKind::SpscRing => {
                let obj = ShmBox::<RingHeader>::open(handle)?;
                obj.check(obj.tail_len())?;
                Ok(Queue::from_ring(obj))
            }
            _ => {
                let obj = ShmBox::<QueueHeader>::open(handle)?;
                obj.check(obj.tail_len())?;
                Ok(Queue::from_mpmc(obj))
            }
        }
    }

    /// The handle that names this queue to another process.
    pub fn handle(&self) -> Handle {
        match &self.layout {
            Layout::Mpmc { obj, .. } => obj.handle(),
            Layout::Spsc { obj, .. } => obj.handle(),
        }
    }

    /// Puts `msg`. With `block` false, or once `timeout` passed, a full
    /// queue gives [`Error::Full`]. [`Error::TooLarge`] for a message over
    /// [`max_msg_size`](Self::max_msg_size); [`Error::Closed`] after close.
    #[inline]
    pub fn put(&self, msg: &[u8], block: bool, timeout: Option<Duration>) -> Result<()> {
        if let Layout::Spsc { raw, .. } = &self.layout
            && raw.put_fast(msg)
        {
            return Ok(());
        }
        self.put_slow(msg, block, timeout)
    }

    #[cold]
    #[inline(never)]
    fn put_slow(&self, msg: &[u8], block: bool, timeout: Option<Duration>) -> Result<()> {
        if block && timeout.is_some() {
            // Try once first: a put that finds room never reads the clock.
            match self.put_until(msg, common::try_once()) {
                Err(Error::Full) => {}
                done => return done,
            }
        }
        self.put_until(msg, common::deadline_of(block, timeout))
    }

    /// Puts `msg` without waiting: [`Error::Full`] when there is no room.
    pub fn put_nowait(&self, msg: &[u8]) -> Result<()> {
        self.put(msg, false, None)
    }

    /// Puts `msg`, waiting until `deadline` (`None`: forever).
    pub fn put_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.put(msg, deadline),
            Layout::Spsc { raw, .. } => {
                if raw.put_fast(msg) {
                    return Ok(());
                }
                raw.take_role(true)?;
                raw.put(msg, deadline)
            }
        }
    }

    /// Takes the oldest message into `buf` and returns its length. With
    /// `block` false, or once `timeout` passed, an empty queue gives
    /// [`Error::Empty`]; a closed and drained one [`Error::Closed`]. When
    /// `buf` is too short: [`Error::TooLarge`] with the needed length in
    /// `len`, and the message stays queued.
    #[inline]
    pub fn get(&self, buf: &mut [u8], block: bool, timeout: Option<Duration>) -> Result<usize> {
        if let Layout::Spsc { raw, .. } = &self.layout
            && let Some(n) = raw.get_fast(buf)
        {
            return Ok(n);
        }
        self.get_slow(buf, block, timeout)
    }

    #[cold]
    #[inline(never)]
    fn get_slow(&self, buf: &mut [u8], block: bool, timeout: Option<Duration>) -> Result<usize> {
        if block && timeout.is_some() {
            // Try once first: a get that finds a message never reads the clock.
            match self.get_until(buf, common::try_once()) {
                Err(Error::Empty) => {}
                done => return done,
            }
        }
        self.get_until(buf, common::deadline_of(block, timeout))
    }

    /// Takes a message without waiting: [`Error::Empty`] when there is none.
    pub fn get_nowait(&self, buf: &mut [u8]) -> Result<usize> {
        self.get(buf, false, None)
    }

    /// Takes a message, waiting until `deadline` (`None`: forever).
    pub fn get_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.get(buf, deadline),
            Layout::Spsc { raw, .. } => {
                if let Some(n) = raw.get_fast(buf) {
                    return Ok(n);
                }
                raw.take_role(false)?;
                raw.get(buf, deadline)
            }
        }
    }

    /// Takes a message into a new vector.
    pub fn get_vec(&self, block: bool, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.max_msg_size()];
        let n = self.get(&mut buf, block, timeout)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Messages in the queue. Approximate, as in Python: other processes
    /// may put or get between this reading and its use.
    pub fn qsize(&self) -> usize {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.len(),
            Layout::Spsc { raw, .. } => raw.len(),
        }
    }

    /// `qsize() == 0` (approximate).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// `qsize() >= capacity()` (approximate).
    pub fn full(&self) -> bool {
        self.qsize() >= self.capacity()
    }

    /// Messages of the maximum size the queue holds.
    pub fn capacity(&self) -> usize {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.capacity(),
            Layout::Spsc { raw, .. } => raw.capacity(),
        }
    }

    /// The largest message in bytes.
    pub fn max_msg_size(&self) -> usize {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.max_msg(),
            Layout::Spsc { raw, .. } => raw.max_msg(),
        }
    }

    /// Closes the queue for every process: puts fail from now on, gets
    /// drain what is left, then fail with [`Error::Closed`]. Sleepers wake.
    pub fn close(&self) {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.close(),
            Layout::Spsc { raw, .. } => raw.close(),
        }
    }

    /// Whether [`close`](Self::close) was called (by any process).
    pub fn is_closed(&self) -> bool {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.is_closed(),
            Layout::Spsc { raw, .. } => raw.is_closed(),
        }
    }

    /// Whether this is the single-producer single-consumer ring.
    pub fn is_spsc(&self) -> bool {
        matches!(self.layout, Layout::Spsc { .. })
    }

    fn join_state(&self) -> Result<&JoinState> {
        let js = match &self.layout {
            Layout::Mpmc { raw, .. } => raw.join_state(),
            Layout::Spsc { raw, .. } => raw.join_state(),
        };
        js.ok_or_else(|| Error::State("the queue was not made joinable".into()))
    }

    /// Whether the queue counts messages for `task_done`/`join`.
    pub fn is_joinable(&self) -> bool {
        self.join_state().is_ok()
    }

    /// Marks one message taken from the queue as processed.
    /// [`Error::Value`] when called more times than messages were put,
    /// [`Error::State`] when the queue is not joinable.
    pub fn task_done(&self) -> Result<()> {
        self.join_state()?.task_done()
    }

    /// Waits until every message put was marked done; [`Error::Timeout`].
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.join_state()?.join(common::deadline_of(true, timeout))
    }

    /// Messages put and not yet marked done (0 for a non-joinable queue).
    pub fn unfinished_tasks(&self) -> u64 {
        self.join_state().map_or(0, |j| j.unfinished())
    }

    pub(crate) fn ring(&self) -> Option<&RawRing> {
        match &self.layout {
            Layout::Spsc { raw, .. } => Some(raw),
            Layout::Mpmc { .. } => None,
        }
    }

    /// Test hook: claims a slot of an MPMC queue as a put would, then
    /// stops, as a producer killed right after its claim. The calling
    /// process is expected to die next. False when the queue is full or
    /// SPSC.
    #[doc(hidden)]
    pub fn claim_slot_and_stop(&self) -> bool {
        match &self.layout {
            Layout::Mpmc { raw, .. } => raw.claim_and_stop(),
            Layout::Spsc { .. } => false,
        }
    }
}

/// Python's `JoinableQueue`: a [`Queue`] whose consumers call
/// [`task_done`](Queue::task_done) per message and whose producers can
/// [`join`](Queue::join) until all were processed.
///
/// # Example
///
/// ```
/// use multiproc::queue::JoinableQueue;
///
/// let q = JoinableQueue::new(4, 16)?;
/// q.put(b"job", true, None)?;
/// assert_eq!(q.get_vec(true, None)?, b"job");
/// q.task_done()?;
/// q.join(None)?;
/// assert!(q.task_done().is_err(), "called too often");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct JoinableQueue(Queue);

impl JoinableQueue {
    /// A joinable MPMC queue of `capacity` messages of up to `max_msg_size` bytes.
    pub fn new(capacity: usize, max_msg_size: usize) -> Result<JoinableQueue> {
        let mut o = QueueOptions::new(capacity, max_msg_size);
        o.joinable = true;
        Ok(JoinableQueue(Queue::with_options(o)?))
    }

    /// Attaches to a joinable queue by handle; [`Error::State`] if the
    /// queue is not joinable.
    pub fn open(handle: &Handle) -> Result<JoinableQueue> {
        let q = Queue::open(handle)?;
        q.join_state()?;
        Ok(JoinableQueue(q))
    }

    /// The queue underneath.
    pub fn queue(&self) -> &Queue {
        &self.0
    }
}

impl std::ops::Deref for JoinableQueue {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.0
    }
}

/// Python's `SimpleQueue`: put, get, empty, close; puts and gets block.
/// (Unlike Python's it is bounded: a put waits while it is full.)
///
/// # Example
///
/// ```
/// use multiproc::queue::SimpleQueue;
///
/// let q = SimpleQueue::new(8, 32)?;
/// q.put(b"x")?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, b"x");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SimpleQueue(Queue);

impl SimpleQueue {
    /// A queue of `capacity` messages of up to `max_msg_size` bytes.
    pub fn new(capacity: usize, max_msg_size: usize) -> Result<SimpleQueue> {
        Ok(SimpleQueue(Queue::new(capacity, max_msg_size)?))
    }

    /// Puts `msg`, waiting for room.
    pub fn put(&self, msg: &[u8]) -> Result<()> {
        self.0.put(msg, true, None)
    }

    /// Takes a message, waiting for one.
    pub fn get(&self) -> Result<Vec<u8>> {
        self.0.get_vec(true, None)
    }

    /// Whether the queue is empty (approximate).
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// Closes the queue, as [`Queue::close`].
    pub fn close(&self) {
        self.0.close()
    }

    /// The queue underneath.
    pub fn queue(&self) -> &Queue {
        &self.0
    }
}

// SAFETY: QueueHeader is repr(C), made of integers, atomics, EventCounts
// and a JoinState (atomics): no pointers, no destructor, any bit pattern
// is a state `check` and the slot protocol tolerate.
unsafe impl crate::shm::ShmSafe for QueueHeader {}
// SAFETY: one layout per kind and version; QUEUE_LAYOUT_VERSION changes
// with the layout.
unsafe impl crate::shm::ShmObject for QueueHeader {
    const KIND: ObjectKind = ObjectKind::Queue;
    const VERSION: u32 = super::mpmc::QUEUE_LAYOUT_VERSION;
}
// SAFETY: as for QueueHeader.
unsafe impl crate::shm::ShmSafe for RingHeader {}
// SAFETY: as for QueueHeader, with RING_LAYOUT_VERSION.
unsafe impl crate::shm::ShmObject for RingHeader {
    const KIND: ObjectKind = ObjectKind::SpscRing;
    const VERSION: u32 = super::spsc::RING_LAYOUT_VERSION;
}
