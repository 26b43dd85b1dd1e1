//! Handle text parsing, and attaching to segments whose headers were
//! corrupted: a real memfd segment is built, copied into a fresh memfd,
//! the copy's segment header, object headers and payloads (the queue's
//! whole header and first slots, the SPSC ring's header and first records) are overwritten with fuzz bytes, and every kind of object is opened
//! from it. An open must fail with an error or give an object that works.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use multiproc::queue::{Queue, QueueOptions};
use multiproc::shm::{Backing, Handle, Locator, Segment, SharedMemory};
use multiproc::sync::{Event, Lock, LockError};

use super::Input;

/// The body: `[text length][text][corruptions...]`.
pub fn attach(data: &[u8]) {
    let mut input = Input::new(data);
    let n = usize::from(input.u8());
    parse_text(input.bytes(n));
    corrupted_segment(&mut input);
}

/// Any text: parsing never panics, and what parses prints back to itself.
fn parse_text(text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let Ok(handle) = text.parse::<Handle>() else {
        return;
    };
    let printed = handle.to_string();
    let again: Handle = printed.parse().expect("a printed handle parses");
    assert_eq!(again, handle, "{printed}");
    // Attach only where the text cannot reach other processes' objects: an
    // anonymous segment of this process (not found unless registered here).
    if let Locator::Anonymous { .. } = handle.locator() {
        let _ = SharedMemory::open(&handle);
    }
}

/// The bytes of a model segment, its id, and the handles of its objects.
struct Model {
    bytes: Vec<u8>,
    id: u64,
    handles: Vec<Handle>,
}

/// A segment with one object of each kind opened below, copied out.
fn model() -> Model {
    let seg = Segment::create(Backing::Memfd, 16 * 1024).expect("memfd segment");
    let queue = Queue::new_in(&seg, QueueOptions::new(4, 24)).expect("queue");
    // An SPSC ring with two messages in it and one taken: published words,
    // an end marker and counters to corrupt.
    let ring = Queue::new_in(
        &seg,
        QueueOptions {
            spsc: true,
            ..QueueOptions::new(4, 24)
        },
    )
    .expect("ring");
    for m in [&b"first"[..], b"second message", b"third"] {
        ring.put_nowait(m).expect("room in the ring");
    }
    ring.get_nowait(&mut [0u8; 24]).expect("a message");
    let lock = Lock::new_in(&seg).expect("lock");
    let mem = SharedMemory::new_in(&seg, 64).expect("bytes");
    let event = Event::new_in(&seg).expect("event");
    // SAFETY: the segment is mapped for `seg.len()` bytes while `seg`
    // lives; nobody writes to it meanwhile (the objects are idle).
    let bytes = unsafe { std::slice::from_raw_parts(seg.base().as_ptr(), seg.len()) }.to_vec();
    Model {
        bytes,
        id: seg.id(),
        handles: vec![
            queue.handle(),
            ring.handle(),
            lock.handle(),
            mem.handle(),
            event.handle(),
        ],
    }
}

fn corrupted_segment(input: &mut Input) {
    let mut m = model();
    // Every segment of the model is unmapped now (its registry entry gone),
    // so attaching below maps the corrupted copy and checks its headers.
    let corruptions = input.choose(8);
    for _ in 0..corruptions {
        // A region: the segment header, or one object's header, payload
        // and first bytes after it (for the queue: its fixed fields, its
        // counters and wait words, and its first slots).
        let (start, len) = match input.choose(1 + m.handles.len()) {
            0 => (0, 64),
            k => (m.handles[k - 1].offset() as usize, 40 + 256 + 64),
        };
        let at = start + usize::from(input.u16()) % len;
        let width = [1, 4, 8][input.choose(3)];
        let value = input.u64().to_le_bytes();
        let end = (at + width).min(m.bytes.len());
        m.bytes[at..end].copy_from_slice(&value[..end - at]);
    }
    // Sometimes a shorter or longer file than the header says.
    let file_len = match input.choose(4) {
        0 => usize::from(input.u16()),
        _ => m.bytes.len(),
    };
    let fd = copy_to_memfd(&m.bytes, file_len);
    let id = if input.choose(8) == 0 {
        input.u64()
    } else {
        m.id
    };
    for h in &m.handles {
        let offset = if input.choose(8) == 0 {
            u64::from(input.u16())
        } else {
            h.offset()
        };
        // Each kind opened at each object's place (mostly the right one).
        let kind = if input.choose(4) == 0 {
            m.handles[input.choose(m.handles.len())].kind()
        } else {
            h.kind()
        };
        let text = format!(
            "mp1:memfd:{}:{id:016x}:{offset}:{}",
            fd.as_raw_fd(),
            kind.name()
        );
        let handle: Handle = text.parse().expect("a well-formed handle");
        open_and_use(&handle);
    }
}

fn copy_to_memfd(bytes: &[u8], len: usize) -> OwnedFd {
    let fd = multiproc::sys::memfd_create_sealable("mp-fuzz").expect("memfd");
    let mut file = File::from(fd);
    file.write_all(&bytes[..len.min(bytes.len())])
        .expect("write memfd");
    file.set_len(len as u64).expect("ftruncate memfd");
    // Sealed as our segments are, so the attach goes on to the headers
    // (an unsealed memfd is refused before it is mapped).
    let fd = OwnedFd::from(file);
    multiproc::sys::seal_size(fd.as_fd()).expect("seal memfd");
    fd
}

/// Opens the handle as every object type and uses what opens.
fn open_and_use(handle: &Handle) {
    if let Ok(q) = Queue::open(handle) {
        let _ = q.put_nowait(b"fuzz");
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            let _ = q.get_nowait(&mut buf);
        }
        let _ = q.put_nowait(&[7u8; 24]);
        let _ = (q.qsize(), q.capacity(), q.max_msg_size());
    }
    if let Ok(lock) = Lock::open(handle) {
        match lock.try_acquire() {
            Ok(g) => drop(g),
            Err(LockError::OwnerDied(g)) => g.make_consistent(),
            Err(LockError::Timeout) => {}
        }
    }
    if let Ok(mem) = SharedMemory::open(handle) {
        let cells = mem.as_atomic_u8();
        if let (Some(first), Some(last)) = (cells.first(), cells.last()) {
            first.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            last.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if let Ok(e) = Event::open(handle) {
        e.set();
        let _ = e.is_set();
    }
}
