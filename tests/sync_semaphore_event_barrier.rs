//! Semaphore, Event and Barrier across real processes (fork), and their C
//! API called from Rust.
//!
//! Children block on the objects under test, never spin for long; events
//! are ordered with the objects themselves (a parent waits until a child
//! is asleep in the object before acting). Every wait has a deadline.
#![cfg(not(loom))]

use std::ffi::{CString, c_char};
use std::os::fd::AsFd;
use std::ptr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::Error;
use multiproc::ffi::*;
use multiproc::shm::{Backing, SharedMemory};
use multiproc::sync::{Barrier, BoundedSemaphore, Event, Semaphore};
use multiproc::sys::{self, ChildStatus, Forked};

/// The longest any test waits for anything.
const DEADLINE: Duration = Duration::from_secs(20);
/// What children wait when they expect to be woken by the parent.
const LONG: Duration = Duration::from_secs(10);

/// A forked child, killed and reaped if the test fails before joining it.
struct Child {
    pid: i32,
    reaped: bool,
}

/// Forks; the child runs `body` and exits with its code (101 on panic).
fn fork_child(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs only `body` (test code using this crate's
    // shared objects) and leaves with _exit, never returning into the
    // test harness.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
            sys::exit_immediately(code)
        }
        Forked::Parent(pid) => Child { pid, reaped: false },
    }
}

impl Child {
    /// Waits for the child to end (at most DEADLINE) and returns its status.
    fn join(mut self) -> ChildStatus {
        let pidfd = sys::pidfd_open(self.pid).expect("pidfd_open");
        let ended = sys::poll_readable(pidfd.as_fd(), Some(DEADLINE)).expect("poll");
        assert!(ended, "child {} still running after {DEADLINE:?}", self.pid);
        self.reaped = true;
        sys::waitpid(self.pid, false)
            .expect("waitpid")
            .expect("reaped")
    }

    /// Joins and checks the child exited with 0.
    fn expect_success(self) {
        let pid = self.pid;
        assert_eq!(self.join(), ChildStatus::Exited(0), "child {pid}");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, false);
        }
    }
}

/// Polls `cond` (yielding) until it holds, failing after DEADLINE.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

/// Shared counters for children to report through.
fn counters(n: usize) -> SharedMemory {
    SharedMemory::new(n * 4, Backing::Anonymous).unwrap()
}

// ---------------------------------------------------------------- semaphore

#[test]
fn semaphore_caps_concurrency_across_processes() {
    const PERMITS: u32 = 2;
    const PROCS: usize = 4;
    const ROUNDS: u32 = 300;
    let sem = Semaphore::new(PERMITS).unwrap();
    let mem = counters(2);
    let children: Vec<Child> = (0..PROCS)
        .map(|_| {
            let (sem, mem) = (sem.clone(), mem.clone());
            fork_child(move || {
                let [inside, max_seen] = &mem.as_atomic_u32()[..2] else {
                    return 2;
                };
                for _ in 0..ROUNDS {
                    if sem.acquire_timeout(LONG).is_err() {
                        return 3;
                    }
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    if sem.release().is_err() {
                        return 4;
                    }
                }
                0
            })
        })
        .collect();
    for c in children {
        c.expect_success();
    }
    let words = mem.as_atomic_u32();
    let max = words[1].load(Ordering::SeqCst);
    assert!(
        (1..=PERMITS).contains(&max),
        "{max} processes inside at once"
    );
    assert_eq!(words[0].load(Ordering::SeqCst), 0);
    assert_eq!(sem.value(), PERMITS);
}

#[test]
fn release_wakes_an_acquirer_asleep_in_another_process() {
    let sem = Semaphore::new(0).unwrap();
    let child = {
        let sem = sem.clone();
        fork_child(move || match sem.acquire_timeout(LONG) {
            Ok(()) => 0,
            Err(_) => 1,
        })
    };
    until("the child sleeps in acquire", || sem.sleepers() == 1);
    sem.release().unwrap();
    child.expect_success();
    assert_eq!(sem.value(), 0);
}

#[test]
fn acquire_times_out_in_a_child() {
    let sem = Semaphore::new(0).unwrap();
    let child = fork_child(
        move || match sem.acquire_timeout(Duration::from_millis(30)) {
            Err(Error::Timeout) => 0,
            _ => 1,
        },
    );
    child.expect_success();
}

#[test]
fn bounded_release_past_max_is_a_value_error_in_any_process() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let err = sem.release().unwrap_err();
    assert!(matches!(err, Error::Value(_)), "{err:?}");
    assert_eq!(sem.value(), 2);
    sem.acquire();
    let child = {
        let sem = sem.clone();
        fork_child(move || {
            let first = sem.release().is_ok();
            let second = matches!(sem.release(), Err(Error::Value(_)));
            if first && second { 0 } else { 1 }
        })
    };
    child.expect_success();
    assert_eq!(sem.value(), 2);
}

#[test]
fn semaphore_handles_name_the_right_kind() {
    let sem = Semaphore::new(1).unwrap();
    let bounded = BoundedSemaphore::new(1).unwrap();
    assert_eq!(Semaphore::open(&bounded.handle()).unwrap().max(), Some(1));
    let err = BoundedSemaphore::open(&sem.handle()).unwrap_err();
    assert!(matches!(err, Error::Kind { .. }), "{err:?}");
    let ev = Event::new().unwrap();
    assert!(matches!(
        Semaphore::open(&ev.handle()),
        Err(Error::Kind { .. })
    ));
    assert!(matches!(BoundedSemaphore::new(0), Err(Error::Invalid(_))));
}

// -------------------------------------------------------------------- event

#[test]
fn event_wakes_waiters_in_other_processes() {
    const WAITERS: usize = 3;
    let ev = Event::new().unwrap();
    let children: Vec<Child> = (0..WAITERS)
        .map(|_| {
            let ev = ev.clone();
            fork_child(move || {
                if ev.wait_timeout(LONG) && ev.is_set() {
                    0
                } else {
                    1
                }
            })
        })
        .collect();
    until("every child sleeps in wait", || {
        ev.sleepers() == WAITERS as u32
    });
    ev.set();
    for c in children {
        c.expect_success();
    }
}

#[test]
fn event_wait_times_out_and_clear_resets() {
    let ev = Event::new().unwrap();
    ev.set();
    ev.clear();
    let child = {
        let ev = ev.clone();
        fork_child(move || {
            if ev.wait_timeout(Duration::from_millis(30)) {
                1
            } else {
                0
            }
        })
    };
    child.expect_success();
    assert!(!ev.is_set());
}

#[test]
fn event_opened_by_handle_in_a_child() {
    let ev = Event::new().unwrap();
    let text = ev.handle().to_string();
    let child = fork_child(move || {
        let Ok(handle) = text.parse() else { return 2 };
        match Event::open(&handle) {
            Ok(ev) => {
                ev.set();
                0
            }
            Err(_) => 1,
        }
    });
    child.expect_success();
    assert!(ev.is_set());
}

// ------------------------------------------------------------------ barrier

#[test]
fn barrier_rounds_across_processes_hand_out_every_index() {
    const PARTIES: usize = 4;
    const ROUNDS: usize = 6;
    let barrier = Barrier::new(PARTIES as u32).unwrap();
    let mem = counters(PARTIES * ROUNDS);
    let children: Vec<Child> = (0..PARTIES)
        .map(|me| {
            let (barrier, mem) = (barrier.clone(), mem.clone());
            fork_child(move || {
                let slots = mem.as_atomic_u32();
                for round in 0..ROUNDS {
                    match barrier.wait_timeout(LONG) {
                        // +1: zero means "not written".
                        Ok(i) => slots[round * PARTIES + me].store(i + 1, Ordering::Relaxed),
                        Err(_) => return 1,
                    }
                }
                0
            })
        })
        .collect();
    for c in children {
        c.expect_success();
    }
    let slots = mem.as_atomic_u32();
    for round in 0..ROUNDS {
        let mut got: Vec<u32> = (0..PARTIES)
            .map(|p| slots[round * PARTIES + p].load(Ordering::Relaxed))
            .collect();
        got.sort_unstable();
        let expected: Vec<u32> = (1..=PARTIES as u32).collect();
        assert_eq!(got, expected, "round {round}: indices (plus one)");
    }
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

#[test]
fn a_timeout_breaks_the_barrier_for_everyone() {
    let barrier = Barrier::new(3).unwrap();
    let child = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(LONG) {
            Err(Error::Broken) => 0,
            _ => 1,
        })
    };
    until("the child waits at the barrier", || {
        barrier.n_waiting() == 1
    });
    let r = barrier.wait_timeout(Duration::from_millis(20));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    child.expect_success();
    assert!(barrier.broken());
    assert!(matches!(barrier.wait_timeout(LONG), Err(Error::Broken)));
    barrier.reset();
    assert!(!barrier.broken());
}

#[test]
fn abort_and_reset_reach_a_waiter_in_another_process() {
    let barrier = Barrier::new(2).unwrap();
    let aborted = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(LONG) {
            Err(Error::Broken) => 0,
            _ => 1,
        })
    };
    until("the child waits at the barrier", || {
        barrier.n_waiting() == 1
    });
    barrier.abort();
    aborted.expect_success();
    assert!(barrier.broken());

    barrier.reset();
    let reset_away = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(LONG) {
            Err(Error::Broken) => 0,
            _ => 1,
        })
    };
    until("the child waits at the barrier", || {
        barrier.n_waiting() == 1
    });
    barrier.reset();
    reset_away.expect_success();

    // After the reset the barrier works again, with a fresh child.
    let partner = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(LONG) {
            Ok(i) if i < 2 => 0,
            _ => 1,
        })
    };
    let mine = barrier.wait_timeout(LONG).unwrap();
    assert!(mine < 2);
    partner.expect_success();
}

#[test]
fn a_killed_party_does_not_hang_the_others_past_their_timeouts() {
    // Four parties: the victim arrives and is killed, a patient child and
    // this process arrive; the fourth never comes.
    let barrier = Barrier::new(4).unwrap();
    let victim = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait() {
            Ok(_) => 0,
            Err(_) => 1,
        })
    };
    until("the victim waits at the barrier", || {
        barrier.n_waiting() == 1
    });
    sys::kill(victim.pid, libc::SIGKILL).unwrap();
    assert_eq!(victim.join(), ChildStatus::Signaled(libc::SIGKILL));
    let patient = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(LONG) {
            Err(Error::Broken) => 0,
            _ => 1,
        })
    };
    until("the patient child waits too", || barrier.n_waiting() == 2);
    // This party's short timeout breaks the round; the patient child is
    // released with Broken long before its own timeout.
    let r = barrier.wait_timeout(Duration::from_millis(30));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    patient.expect_success();
    assert!(barrier.broken());
}

#[test]
fn barrier_of_zero_parties_is_invalid() {
    let err = Barrier::new(0).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("not 0"), "{err}");
}

// -------------------------------------------------------------------- C API

fn last_error() -> String {
    // SAFETY: mp_last_error never returns NULL and the text lives until
    // the next failing call in this thread.
    unsafe { std::ffi::CStr::from_ptr(mp_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn handle_text(write: impl FnOnce(*mut c_char, usize) -> i32) -> CString {
    let mut buf = [0 as c_char; 256];
    assert_eq!(write(buf.as_mut_ptr(), buf.len()), MP_OK);
    // SAFETY: the call wrote a NUL-terminated string into `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_owned()
}

#[test]
fn c_semaphore() {
    // SAFETY: every pointer passed is NULL, a live object from the
    // matching constructor, or a valid out-parameter.
    unsafe {
        assert_eq!(mp_sem_new(1, 0, ptr::null_mut()), MP_ERR_NULL);
        let mut s = ptr::null_mut();
        assert_eq!(mp_sem_new(3, 2, &mut s), MP_ERR_INVALID);
        assert!(
            last_error().contains("above the maximum 2"),
            "{}",
            last_error()
        );
        assert_eq!(mp_sem_new(1, 2, &mut s), MP_OK);
        let mut v = 0;
        assert_eq!(mp_sem_value(s, &mut v), MP_OK);
        assert_eq!(v, 1);
        assert_eq!(mp_sem_value(s, ptr::null_mut()), MP_ERR_NULL);
        assert_eq!(mp_sem_acquire(s, MP_WAIT_FOREVER), MP_OK);
        assert_eq!(mp_sem_acquire(s, 0), MP_ERR_TIMEOUT);
        assert_eq!(mp_sem_acquire(s, 1_000_000), MP_ERR_TIMEOUT);
        assert_eq!(mp_sem_acquire(s, -5), MP_ERR_INVALID);
        assert_eq!(mp_sem_release(s), MP_OK);
        assert_eq!(mp_sem_release(s), MP_OK);
        assert_eq!(mp_sem_release(s), MP_ERR_VALUE);
        assert_eq!(mp_sem_value(s, &mut v), MP_OK);
        assert_eq!(v, 2, "a refused release changes nothing");
        assert_eq!(mp_sem_acquire(ptr::null_mut(), 0), MP_ERR_NULL);
        assert_eq!(mp_sem_release(ptr::null_mut()), MP_ERR_NULL);

        let text = handle_text(|buf, cap| mp_sem_handle(s, buf, cap));
        let mut tiny = [0 as c_char; 4];
        assert_eq!(mp_sem_handle(s, tiny.as_mut_ptr(), 4), MP_ERR_TOO_LARGE);
        let mut again = ptr::null_mut();
        assert_eq!(mp_sem_open(text.as_ptr(), &mut again), MP_OK);
        assert_eq!(mp_sem_acquire(again, 0), MP_OK);
        assert_eq!(mp_sem_value(s, &mut v), MP_OK);
        assert_eq!(v, 1, "both pointers name one semaphore");
        assert_eq!(mp_sem_open(c"garbage".as_ptr(), &mut again), MP_ERR_INVALID);
        assert_eq!(mp_sem_open(ptr::null(), &mut again), MP_ERR_NULL);

        // An event's pointer is not a semaphore.
        let mut e = ptr::null_mut();
        assert_eq!(mp_event_new(&mut e), MP_OK);
        assert_eq!(mp_sem_release(e.cast()), MP_ERR_INVALID);
        let etext = handle_text(|buf, cap| mp_event_handle(e, buf, cap));
        assert_eq!(mp_sem_open(etext.as_ptr(), &mut again), MP_ERR_KIND);
        mp_event_free(e);

        mp_sem_free(again);
        mp_sem_free(s);
        mp_sem_free(ptr::null_mut());
    }
}

#[test]
fn c_unbounded_semaphore_and_child() {
    // SAFETY: as in `c_semaphore`.
    unsafe {
        let mut s = ptr::null_mut();
        assert_eq!(mp_sem_new(0, 0, &mut s), MP_OK);
        assert_eq!(mp_sem_release(s), MP_OK);
        assert_eq!(mp_sem_release(s), MP_OK);
        let sp = s as usize;
        let child = fork_child(move || {
            let s = sp as *mut mp_sem_t;
            let ok = mp_sem_acquire(s, 0) == MP_OK && mp_sem_acquire(s, 0) == MP_OK;
            let empty = mp_sem_acquire(s, 0) == MP_ERR_TIMEOUT;
            if ok && empty { 0 } else { 1 }
        });
        child.expect_success();
        let mut v = 9;
        assert_eq!(mp_sem_value(s, &mut v), MP_OK);
        assert_eq!(v, 0);
        mp_sem_free(s);
    }
}

#[test]
fn c_event() {
    // SAFETY: as in `c_semaphore`.
    unsafe {
        assert_eq!(mp_event_new(ptr::null_mut()), MP_ERR_NULL);
        let mut e = ptr::null_mut();
        assert_eq!(mp_event_new(&mut e), MP_OK);
        assert_eq!(mp_event_is_set(e), 0);
        assert_eq!(mp_event_wait(e, 0), MP_ERR_TIMEOUT);
        assert_eq!(mp_event_wait(e, -2), MP_ERR_INVALID);
        let ep = e as usize;
        let child = fork_child(move || {
            let e = ep as *mut mp_event_t;
            if mp_event_wait(e, LONG.as_nanos() as i64) == MP_OK {
                0
            } else {
                1
            }
        });
        assert_eq!(mp_event_set(e), MP_OK);
        child.expect_success();
        assert_eq!(mp_event_is_set(e), 1);
        assert_eq!(mp_event_wait(e, MP_WAIT_FOREVER), MP_OK);
        assert_eq!(mp_event_clear(e), MP_OK);
        assert_eq!(mp_event_is_set(e), 0);
        assert_eq!(mp_event_is_set(ptr::null()), MP_ERR_NULL);
        assert_eq!(mp_event_set(ptr::null_mut()), MP_ERR_NULL);
        let text = handle_text(|buf, cap| mp_event_handle(e, buf, cap));
        let mut again = ptr::null_mut();
        assert_eq!(mp_event_open(text.as_ptr(), &mut again), MP_OK);
        assert_eq!(mp_event_set(again), MP_OK);
        assert_eq!(mp_event_is_set(e), 1);
        mp_event_free(again);
        mp_event_free(e);
        mp_event_free(ptr::null_mut());
    }
}

#[test]
fn c_barrier() {
    // SAFETY: as in `c_semaphore`.
    unsafe {
        let mut b = ptr::null_mut();
        assert_eq!(mp_barrier_new(0, &mut b), MP_ERR_INVALID);
        assert_eq!(mp_barrier_new(2, ptr::null_mut()), MP_ERR_NULL);
        assert_eq!(mp_barrier_new(2, &mut b), MP_OK);
        let mut n = 0;
        assert_eq!(mp_barrier_parties(b, &mut n), MP_OK);
        assert_eq!(n, 2);
        let bp = b as usize;
        let child = fork_child(move || {
            let b = bp as *mut mp_barrier_t;
            let mut i = 9;
            let r = mp_barrier_wait(b, LONG.as_nanos() as i64, &mut i);
            if r == MP_OK && i < 2 { 0 } else { 1 }
        });
        let mut i = 9;
        assert_eq!(mp_barrier_wait(b, LONG.as_nanos() as i64, &mut i), MP_OK);
        assert!(i < 2);
        child.expect_success();

        // Alone at a barrier of two: timeout, then broken for the next.
        assert_eq!(
            mp_barrier_wait(b, 1_000_000, ptr::null_mut()),
            MP_ERR_TIMEOUT
        );
        assert_eq!(mp_barrier_broken(b), 1);
        assert_eq!(mp_barrier_wait(b, 0, &mut i), MP_ERR_BROKEN);
        assert_eq!(mp_barrier_n_waiting(b, &mut n), MP_OK);
        assert_eq!(n, 0);
        assert_eq!(mp_barrier_reset(b), MP_OK);
        assert_eq!(mp_barrier_broken(b), 0);
        assert_eq!(mp_barrier_abort(b), MP_OK);
        assert_eq!(mp_barrier_wait(b, MP_WAIT_FOREVER, &mut i), MP_ERR_BROKEN);
        assert_eq!(mp_barrier_wait(b, -7, &mut i), MP_ERR_INVALID);
        assert_eq!(mp_barrier_abort(ptr::null_mut()), MP_ERR_NULL);
        assert_eq!(mp_barrier_reset(ptr::null_mut()), MP_ERR_NULL);
        assert_eq!(mp_barrier_broken(ptr::null()), MP_ERR_NULL);

        let text = handle_text(|buf, cap| mp_barrier_handle(b, buf, cap));
        let mut again = ptr::null_mut();
        assert_eq!(mp_barrier_open(text.as_ptr(), &mut again), MP_OK);
        assert_eq!(mp_barrier_broken(again), 1);
        mp_barrier_free(again);
        mp_barrier_free(b);
        mp_barrier_free(ptr::null_mut());
    }
}
