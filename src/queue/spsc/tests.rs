//! The ring on heap memory, one thread: the end marker over many laps,
//! batches published by their first word, a dead producer's tail, corrupt
//! words. Across processes: `tests/queue_spsc.rs`; interleavings: the loom
//! models in `tests/loom_queue.rs`.

use std::ptr::NonNull;

use super::{EMPTY, PREFIX, RawRing, RingHeader, WRAP, record_len};
use crate::queue::common::Blocked;
use crate::shim::Ordering;

/// A ring with its memory.
struct TestRing {
    raw: RawRing,
    header: Box<RingHeader>,
    _bytes: Vec<u64>,
}

fn ring(capacity: usize, max_msg: usize) -> TestRing {
    let mut header = Box::new(RingHeader::new(capacity, max_msg, 0).unwrap());
    let mut bytes = vec![0u64; header.tail_len() / 8];
    // SAFETY: the header is checked by `new`; both allocations live in the
    // returned struct, which owns `raw` too, and do not move.
    let raw = unsafe {
        RawRing::new(
            NonNull::from(&mut *header),
            NonNull::new(bytes.as_mut_ptr().cast()).unwrap(),
        )
    };
    TestRing {
        raw,
        header,
        _bytes: bytes,
    }
}

/// Message `i`: `i % (max + 1)` bytes of `i as u8`.
fn msg(i: usize, max: usize) -> Vec<u8> {
    vec![i as u8; i % (max + 1)]
}

fn get(r: &RawRing, max: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; max];
    match r.try_pop(&mut buf) {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Ok(Err(len)) => panic!("a {len}-byte message in a {max}-byte buffer"),
        Err(_) => None,
    }
}

#[test]
fn messages_of_every_length_over_many_laps_keep_order_and_the_end_marker() {
    let max = 40;
    let t = ring(5, max);
    let (mut put, mut got) = (0, 0);
    for round in 0..2000 {
        // Fill up to a varying depth, then drain part of it.
        while put - got < 1 + round % 5 && t.raw.try_push(&msg(put, max)).is_ok() {
            put += 1;
            let tail = t.header.tail.load(Ordering::Relaxed);
            assert_eq!(
                t.raw.word(tail).load(Ordering::Relaxed),
                EMPTY,
                "the word after the last record"
            );
        }
        for _ in 0..=(round % 3) {
            if let Some(m) = get(&t.raw, max) {
                assert_eq!(m, msg(got, max), "message {got}");
                got += 1;
            }
        }
    }
    while let Some(m) = get(&t.raw, max) {
        assert_eq!(m, msg(got, max));
        got += 1;
    }
    assert_eq!(got, put);
    let laps = t.header.tail.load(Ordering::Relaxed) / t.header.capacity;
    assert!(laps > 100, "{put} messages made only {laps} laps");
    assert_eq!(t.raw.len(), 0);
}

#[test]
fn a_batch_is_published_by_its_first_word_stored_last() {
    let max = 24;
    let t = ring(6, max);
    // Move near the ring's end so that the batch wraps.
    let cap = t.header.capacity;
    let mut i = 0;
    while t.header.tail.load(Ordering::Relaxed) + 2 * record_len(max as u64) < cap {
        t.raw.try_push(&msg(i, max)).unwrap();
        assert_eq!(get(&t.raw, max).unwrap(), msg(i, max));
        i += 1;
    }
    let mut end = None;
    let mut written = Vec::new();
    for k in i..i + 3 {
        let m = msg(k, max);
        let r = t.raw.try_reserve_after(end, m.len()).unwrap();
        // SAFETY: a fresh reservation of `m.len()` bytes.
        let w = unsafe {
            std::ptr::copy_nonoverlapping(m.as_ptr(), t.raw.reserved_bytes(&r), m.len());
            t.raw.write_record(&r, m.len())
        };
        if !written.is_empty() {
            t.raw.store_word(&w);
        }
        end = Some(w.end());
        written.push(w);
    }
    assert!(end.unwrap() > cap, "the batch wraps");
    assert!(
        matches!(t.raw.try_peek(), Err(Blocked::Plain)),
        "nothing is visible before the first word"
    );
    t.raw.publish(&written[0], end.unwrap(), 3);
    for k in i..i + 3 {
        assert_eq!(get(&t.raw, max).unwrap(), msg(k, max));
    }
    assert!(get(&t.raw, max).is_none());
}

/// The tid of a process that has exited and been reaped.
fn dead_tid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_tail_left_behind_by_a_dead_producer_is_caught_up_by_the_next_put() {
    let max = 16;
    let t = ring(8, max);
    for i in 0..2 {
        t.raw.try_push(&msg(i, max)).unwrap();
    }
    // The third put dies after its word, before its `tail` store.
    let before = t.header.tail.load(Ordering::Relaxed);
    t.raw.try_push(&msg(2, max)).unwrap();
    t.header.tail.store(before, Ordering::Relaxed);
    // The next put, by whoever holds the role (here the same thread, as a
    // thread that got a dead producer's tid would), catches `tail` up.
    t.raw.try_push(&msg(3, max)).unwrap();
    for i in 0..4 {
        assert_eq!(get(&t.raw, max).unwrap(), msg(i, max), "message {i}");
    }
    assert!(get(&t.raw, max).is_none());
}

#[test]
fn corrupt_words_are_read_as_clamped_messages_not_endless_walks() {
    let max = 16;
    let t = ring(4, max);
    let cap = t.header.capacity;
    // Every word of the ring says "wrap" or "huge": a taker's walk and a
    // reader's peek both end.
    for at in (0..cap).step_by(PREFIX as usize) {
        let w = if at % 16 == 0 { WRAP } else { u32::MAX - 1 };
        t.raw.word(at).store(w, Ordering::Relaxed);
    }
    t.header.producer.store(dead_tid(), Ordering::Relaxed);
    t.raw.take_role(true).unwrap();
    assert!(
        t.raw.try_push(&[1]).is_err(),
        "no room in a ring whose words all say published"
    );
    let m = get(&t.raw, max).expect("a wrap marker at the start reads as a message");
    assert!(m.is_empty());
    let m = get(&t.raw, max).expect("a huge length is clamped");
    assert_eq!(m.len(), max);
}

#[test]
fn sizes_that_do_not_fit_a_word_or_the_ring_are_refused() {
    assert!(RingHeader::new(1, u32::MAX as usize - 1, 0).is_err());
    assert!(RingHeader::new(1, 0, 0).is_err());
    assert!(RingHeader::new(0, 8, 0).is_err());
    // Room for the requested messages and the end marker.
    for (capacity, max) in [(1, 24), (2, 24), (3, 56), (8, 64)] {
        let t = ring(capacity, max);
        assert!(t.raw.capacity() >= capacity, "{capacity} x {max}");
        for i in 0..capacity {
            t.raw
                .try_push(&vec![1; max])
                .unwrap_or_else(|_| panic!("{i}"));
        }
    }
}

#[test]
fn message_copies_of_every_length_write_exactly_their_bytes() {
    let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 1) as u8).collect();
    for len in 0..=130 {
        for offset in [0, 1, 7] {
            let mut dst = vec![0xeeu8; 200];
            // SAFETY: both ranges lie inside their vectors; distinct vectors.
            unsafe {
                super::copy::copy_message(src.as_ptr().add(offset), dst.as_mut_ptr().add(3), len)
            };
            assert_eq!(&dst[3..3 + len], &src[offset..offset + len], "length {len}");
            assert!(dst[..3].iter().all(|b| *b == 0xee), "before, length {len}");
            assert!(
                dst[3 + len..].iter().all(|b| *b == 0xee),
                "after, length {len}"
            );
        }
    }
}
