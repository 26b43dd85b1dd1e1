//! `connection::pipe`, `Connection` and `wait`, with fork children as the
//! other end, and bad input on the wire written by hand.
//!
//! Each test holds `SERIAL` while it runs: a fork child of one test would
//! otherwise inherit another test's descriptors and hold its peer open.
#![cfg(not(loom))]

use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Connection, Waitable, pipe, wait};
use multiproc::process::Process;

/// Far longer than anything here takes; reaching it means a bug.
const DEADLINE: Duration = Duration::from_secs(30);
const SIZES: [usize; 5] = [0, 1, 4096, 64 * 1024, 3 * 1024 * 1024];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pattern(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|i| ((seed + i) % 251) as u8).collect()
}

fn recv(conn: &mut Connection) -> multiproc::Result<Vec<u8>> {
    conn.recv_bytes_timeout(None, Some(DEADLINE))
}

fn join(p: &Process) -> i32 {
    p.join(Some(DEADLINE)).expect("child ends in time")
}

/// A connection and the raw other end of its socket, to write any bytes.
fn raw_pair() -> (Connection, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Connection::from_fd(OwnedFd::from(ours), true, true).unwrap();
    (conn, theirs)
}

fn prefix(len: i32) -> [u8; 4] {
    len.to_be_bytes()
}

#[test]
fn duplex_pipe_echoes_through_a_fork_child() {
    let _serial = serial();
    let (mut parent, mut child_end) = pipe(true).unwrap();
    let child = Process::new(move || -> multiproc::Result<()> {
        for _ in SIZES {
            let msg = child_end.recv_bytes(None)?;
            let echo: Vec<u8> = msg.iter().map(|b| b ^ 0xff).collect();
            child_end.send_bytes(&echo)?;
        }
        Ok(())
    });
    child.start().unwrap();
    for size in SIZES {
        let msg = pattern(size, size);
        parent.send_bytes(&msg).unwrap();
        let echo = recv(&mut parent).unwrap();
        assert_eq!(echo.len(), size);
        assert!(echo.iter().zip(&msg).all(|(e, m)| *e == m ^ 0xff));
    }
    assert_eq!(join(&child), 0);
    // The child's end is gone with it: end of file, not a hang.
    assert!(matches!(recv(&mut parent), Err(Error::Eof)));
    assert!(matches!(parent.send_bytes(b"x"), Err(Error::Eof)));
}

#[test]
fn one_way_pipe_reads_at_one_end_and_writes_at_the_other() {
    let _serial = serial();
    let (mut reader, writer) = pipe(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(!writer.readable() && writer.writable());
    assert!(matches!(reader.send_bytes(b"x"), Err(Error::State(_))));
    let child = Process::new(move || -> multiproc::Result<()> {
        for size in SIZES {
            writer.send_bytes(&pattern(size, 3))?;
        }
        Ok(())
    });
    child.start().unwrap();
    for size in SIZES {
        assert_eq!(recv(&mut reader).unwrap(), pattern(size, 3));
    }
    assert_eq!(join(&child), 0);
    assert!(matches!(recv(&mut reader), Err(Error::Eof)));
}

#[test]
fn a_write_only_end_cannot_receive() {
    let _serial = serial();
    let (_reader, mut writer) = pipe(false).unwrap();
    assert!(matches!(writer.recv_bytes(None), Err(Error::State(_))));
    assert!(matches!(
        writer.poll(Some(Duration::ZERO)),
        Err(Error::State(_))
    ));
}

#[test]
fn poll_and_timeouts() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    assert!(matches!(
        b.recv_bytes_timeout(None, Some(Duration::ZERO)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        b.recv_bytes_timeout(None, Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    a.send_bytes(b"now").unwrap();
    assert!(b.poll(Some(DEADLINE)).unwrap());
    assert_eq!(
        b.recv_bytes_timeout(None, Some(Duration::ZERO)).unwrap(),
        b"now"
    );
    drop(a);
    // A closed peer makes the end readable: the receive reports it.
    assert!(b.poll(Some(DEADLINE)).unwrap());
    assert!(matches!(recv(&mut b), Err(Error::Eof)));
}

#[test]
fn a_message_longer_than_maxlength_stays_for_a_later_receive() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes(&pattern(1000, 1)).unwrap();
    a.send_bytes(b"next").unwrap();
    match b.recv_bytes(Some(999)) {
        Err(Error::TooLarge {
            len: 1000,
            max: 999,
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    let mut small = [0u8; 10];
    assert!(matches!(
        b.recv_bytes_into(&mut small, 0),
        Err(Error::TooLarge { len: 1000, max: 10 })
    ));
    assert_eq!(b.recv_bytes(Some(1000)).unwrap(), pattern(1000, 1));
    assert_eq!(b.recv_bytes(Some(4)).unwrap(), b"next");
}

#[test]
fn recv_bytes_into_at_an_offset() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes(b"hello").unwrap();
    a.send_bytes(b"").unwrap();
    let mut buf = *b"0123456789";
    assert_eq!(b.recv_bytes_into(&mut buf, 3).unwrap(), 5);
    assert_eq!(&buf, b"012hello89");
    assert!(matches!(
        b.recv_bytes_into(&mut buf, 11),
        Err(Error::Value(_))
    ));
    assert_eq!(b.recv_bytes_into(&mut buf, 10).unwrap(), 0);
    let big = pattern(200_000, 9);
    a.send_bytes(&big).unwrap();
    let mut room = vec![0u8; 300_000];
    assert_eq!(b.recv_bytes_into(&mut room, 7).unwrap(), big.len());
    assert_eq!(&room[7..7 + big.len()], &big[..]);
}

#[test]
fn send_bytes_range_checks_its_range() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes_range(b"abcdef", 2, Some(3)).unwrap();
    a.send_bytes_range(b"abcdef", 4, None).unwrap();
    a.send_bytes_range(b"abcdef", 6, None).unwrap();
    assert!(matches!(
        a.send_bytes_range(b"abc", 4, None),
        Err(Error::Value(_))
    ));
    assert!(matches!(
        a.send_bytes_range(b"abc", 1, Some(3)),
        Err(Error::Value(_))
    ));
    assert_eq!(recv(&mut b).unwrap(), b"cde");
    assert_eq!(recv(&mut b).unwrap(), b"ef");
    assert_eq!(recv(&mut b).unwrap(), b"");
    assert!(
        !b.poll(Some(Duration::ZERO)).unwrap(),
        "nothing sent for the bad ranges"
    );
}

#[test]
fn a_receive_that_times_out_mid_message_resumes() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    let body = pattern(100_000, 5);
    raw.write_all(&prefix(100_000)).unwrap();
    raw.write_all(&body[..30_000]).unwrap();
    assert!(matches!(
        conn.recv_bytes_timeout(None, Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    raw.write_all(&body[30_000..60_000]).unwrap();
    let mut buf = vec![0u8; 100_000];
    assert!(matches!(
        conn.recv_bytes_into_timeout(&mut buf, 0, Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    raw.write_all(&body[60_000..]).unwrap();
    assert_eq!(recv(&mut conn).unwrap(), body);
}

#[test]
fn long_prefix_form_is_understood_for_any_length() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    raw.write_all(&prefix(-1)).unwrap();
    raw.write_all(&5u64.to_be_bytes()).unwrap();
    raw.write_all(b"hello").unwrap();
    assert_eq!(recv(&mut conn).unwrap(), b"hello");
}

#[test]
fn a_negative_length_prefix_is_invalid_and_stays_so() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    raw.write_all(&prefix(-2)).unwrap();
    for _ in 0..2 {
        match recv(&mut conn) {
            Err(Error::Invalid(text)) => assert!(text.contains("-2"), "{text}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}

fn expect_cut_short(result: multiproc::Result<Vec<u8>>, what: &str) {
    match result {
        Err(Error::Os { op, source }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(op.contains(what), "{op}");
        }
        other => panic!("expected an unexpected end of file, got {other:?}"),
    }
}

#[test]
fn a_truncated_prefix_is_an_unexpected_end_of_file() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    raw.write_all(&[0, 0]).unwrap();
    drop(raw);
    expect_cut_short(recv(&mut conn), "2 of the 4 bytes of a length prefix");
}

#[test]
fn a_peer_closing_mid_message_is_an_unexpected_end_of_file() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    raw.write_all(&prefix(100)).unwrap();
    raw.write_all(&[1; 10]).unwrap();
    drop(raw);
    expect_cut_short(recv(&mut conn), "10 of the 100 bytes of a message");
}

#[test]
fn a_huge_claimed_length_allocates_only_what_arrives() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    raw.write_all(&prefix(-1)).unwrap();
    raw.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
    raw.write_all(&[7; 1000]).unwrap();
    assert!(matches!(
        conn.recv_bytes(Some(1 << 20)),
        Err(Error::TooLarge { len, max }) if len == 1 << 40 && max == 1 << 20
    ));
    drop(raw);
    expect_cut_short(recv(&mut conn), "1000 of the 1099511627776 bytes");
}

#[test]
fn wait_reports_the_ready_connections_and_sentinels() {
    let _serial = serial();
    let (mut a_parent, a_child) = pipe(true).unwrap();
    let (b_parent, b_child) = pipe(true).unwrap();
    let (gate_parent, mut gate_child) = pipe(true).unwrap();
    let child = Process::new(move || -> multiproc::Result<()> {
        // Tell the parent through `a`, then wait for its go before ending.
        a_child.send_bytes(b"a")?;
        gate_child.recv_bytes(None)?;
        drop(b_child);
        Ok(())
    });
    child.start().unwrap();
    let sentinel = child.sentinel().unwrap();
    let ready = |a: &Connection, b: &Connection, s: &BorrowedFd<'_>, timeout| {
        let objects: [&dyn Waitable; 3] = [a, b, s];
        wait(&objects, Some(timeout)).unwrap()
    };
    assert_eq!(ready(&a_parent, &b_parent, &sentinel, DEADLINE), [0]);
    assert_eq!(recv(&mut a_parent).unwrap(), b"a");
    assert!(ready(&a_parent, &b_parent, &sentinel, Duration::ZERO).is_empty());
    gate_parent.send_bytes(b"go").unwrap();
    // The child ends: `a` and `b` see end of file, the sentinel fires.
    let mut seen = Vec::new();
    while seen != [0, 1, 2] {
        seen = ready(&a_parent, &b_parent, &sentinel, DEADLINE);
        assert!(!seen.is_empty(), "wait timed out");
    }
    assert_eq!(join(&child), 0);
}

#[test]
fn wait_sees_messages_already_buffered() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes(b"one").unwrap();
    a.send_bytes(b"two").unwrap();
    assert_eq!(recv(&mut b).unwrap(), b"one");
    // "two" arrived with "one" and waits in b's buffer, not in the socket.
    assert_eq!(wait(&[&b], Some(Duration::ZERO)).unwrap(), [0]);
    assert_eq!(recv(&mut b).unwrap(), b"two");
    assert!(wait(&[&b], Some(Duration::ZERO)).unwrap().is_empty());
}

#[test]
fn a_closed_connection_says_closed() {
    let _serial = serial();
    let (mut a, _b) = pipe(true).unwrap();
    a.close();
    a.close();
    assert!(a.closed());
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
    assert!(matches!(a.recv_bytes(None), Err(Error::Closed)));
    assert!(matches!(a.poll(None), Err(Error::Closed)));
    assert!(matches!(a.fileno(), Err(Error::Closed)));
    assert!(matches!(wait(&[&a], None), Err(Error::Closed)));
}

#[test]
fn from_fd_needs_a_direction() {
    let _serial = serial();
    let (x, _y) = UnixStream::pair().unwrap();
    let err = Connection::from_fd(OwnedFd::from(x), false, false).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
}

#[test]
fn a_connection_over_an_os_pipe() {
    let _serial = serial();
    let (r, w) = multiproc::sys::pipe().unwrap();
    let mut reader = Connection::from_fd(r, true, false).unwrap();
    let writer = Connection::from_fd(w, false, true).unwrap();
    // Larger than the pipe's buffer: the child writes while we read.
    let child = Process::new(move || writer.send_bytes(&pattern(1 << 20, 2)));
    child.start().unwrap();
    assert_eq!(recv(&mut reader).unwrap(), pattern(1 << 20, 2));
    assert_eq!(join(&child), 0);
    assert!(matches!(recv(&mut reader), Err(Error::Eof)));
}

#[cfg(feature = "serde")]
#[test]
fn typed_messages_cross_a_fork() {
    let _serial = serial();
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Job {
        id: u32,
        name: String,
        data: Vec<f64>,
    }
    let (mut parent, mut child_end) = pipe(true).unwrap();
    let child = Process::new(move || -> multiproc::Result<()> {
        let mut job: Job = child_end.recv()?;
        job.data.iter_mut().for_each(|x| *x *= 2.0);
        child_end.send(&job)
    });
    child.start().unwrap();
    parent
        .send(&Job {
            id: 1,
            name: "double".into(),
            data: vec![1.5, -2.0],
        })
        .unwrap();
    assert!(parent.poll(Some(DEADLINE)).unwrap());
    let back: Job = parent.recv().unwrap();
    assert_eq!(back.data, [3.0, -4.0]);
    assert_eq!(join(&child), 0);
    // A message that is not an encoded value: Value, and it is consumed.
    let (a, mut b) = pipe(true).unwrap();
    a.send_bytes(&[0xff; 3]).unwrap();
    assert!(matches!(b.recv::<Job>(), Err(Error::Value(_))));
}

#[test]
fn large_receive_buffers_take_messages_straight_and_keep_what_follows() {
    let _serial = serial();
    let (a, mut b) = pipe(true).unwrap();
    let mut room = vec![0u8; 64 * 1024];
    // Several small messages arrive at once: the first read brings them all.
    for i in 0..3u8 {
        a.send_bytes(&[i; 100]).unwrap();
    }
    a.send_bytes(&pattern(50_000, 4)).unwrap();
    for i in 0..3u8 {
        assert_eq!(b.recv_bytes_into(&mut room, 0).unwrap(), 100);
        assert!(room[..100].iter().all(|x| *x == i));
    }
    assert_eq!(b.recv_bytes_into(&mut room, 0).unwrap(), 50_000);
    assert_eq!(&room[..50_000], &pattern(50_000, 4)[..]);
    // Too large for the buffer: kept whole for recv_bytes.
    a.send_bytes(&pattern(100_000, 6)).unwrap();
    a.send_bytes(b"after").unwrap();
    assert!(matches!(
        b.recv_bytes_into(&mut room, 0),
        Err(Error::TooLarge {
            len: 100_000,
            max: 65_536
        })
    ));
    assert_eq!(recv(&mut b).unwrap(), pattern(100_000, 6));
    assert_eq!(b.recv_bytes_into(&mut room, 0).unwrap(), 5);
    assert_eq!(&room[..5], b"after");
}

#[test]
fn large_receive_buffers_handle_long_prefixes_and_timeouts() {
    let _serial = serial();
    let (mut conn, mut raw) = raw_pair();
    let mut room = vec![0u8; 64 * 1024];
    raw.write_all(&prefix(-1)).unwrap();
    raw.write_all(&20_000u64.to_be_bytes()).unwrap();
    raw.write_all(&pattern(20_000, 8)).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut room, 0).unwrap(), 20_000);
    assert_eq!(&room[..20_000], &pattern(20_000, 8)[..]);
    // Half a message, a timeout, then the rest.
    let body = pattern(40_000, 9);
    raw.write_all(&prefix(40_000)).unwrap();
    raw.write_all(&body[..10_000]).unwrap();
    assert!(matches!(
        conn.recv_bytes_into_timeout(&mut room, 0, Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    raw.write_all(&body[10_000..]).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut room, 100).unwrap(), 40_000);
    assert_eq!(&room[100..40_100], &body[..]);
    // Two bytes of a prefix, then the rest of the frame.
    raw.write_all(&[0, 0]).unwrap();
    assert!(matches!(
        conn.recv_bytes_into_timeout(&mut room, 0, Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    raw.write_all(&[0, 3, b'x', b'y', b'z']).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut room, 0).unwrap(), 3);
    assert_eq!(&room[..3], b"xyz");
    drop(raw);
    assert!(matches!(
        conn.recv_bytes_into(&mut room, 0),
        Err(Error::Eof)
    ));
}
