//! Lock, RLock and Condition across real processes (fork): mutual
//! exclusion, owner death, ownership checks, timeouts, producer/consumer,
//! and dead waiters or notifiers.
//!
//! Every blocking call has a deadline; children that outlive a test are
//! killed and reaped by their handle's `Drop`.
#![cfg(not(loom))]

use std::cell::UnsafeCell;
use std::io::{Read, Write};
use std::ops::Deref;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use multiproc::sync::{LockError, NotOwner, RawCondition, RawLock, RawRLock, WaitError};
use multiproc::sys::{self};

mod common;
use common::child::{Child, fork_child};

/// How long any single blocking step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A zeroed `T` in an anonymous shared mapping: fork children share it.
struct Shared<T> {
    ptr: NonNull<T>,
}

impl<T> Shared<T> {
    /// # Safety
    ///
    /// - All-zero bytes must be a valid `T` (true of every raw primitive).
    unsafe fn zeroed() -> Self {
        // SAFETY: a fresh mapping, unmapped once in Drop with the same size.
        let ptr = unsafe { sys::mmap_shared(None, size_of::<T>()) }.expect("mmap");
        Shared { ptr: ptr.cast() }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping is page-aligned, zeroed (a valid T by the
        // constructor's contract), and lives until Drop.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: mapped in `zeroed` with this size; no reference outlives self.
        let _ = unsafe { sys::munmap(self.ptr.cast(), size_of::<T>()) };
    }
}

/// A socket pair for "I hold it now"-style signals, with read deadlines.
fn channel() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    for s in [&a, &b] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    (a, b)
}

fn send(s: &mut UnixStream, byte: u8) {
    s.write_all(&[byte]).expect("send");
}

fn recv(s: &mut UnixStream) -> u8 {
    let mut b = [0u8];
    s.read_exact(&mut b).expect("recv (timed out?)");
    b[0]
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + PATIENCE)
}

/// A balance guarded by a lock, in shared memory.
#[repr(C)]
struct Account {
    lock: RawLock,
    balance: UnsafeCell<i64>,
}

// SAFETY: `balance` is only touched with `lock` held.
unsafe impl Sync for Account {}

#[test]
fn deposit_withdraw_four_processes_end_at_the_start_value() {
    const ROUNDS: i64 = 100_000;
    const START: i64 = 1_000;
    // SAFETY: an all-zero Account is an unlocked lock and a zero balance.
    let account = unsafe { Shared::<Account>::zeroed() };
    // SAFETY: no child runs yet.
    unsafe { *account.balance.get() = START };
    let children: Vec<Child> = [1i64, 1, -1, -1]
        .into_iter()
        .map(|delta| {
            let account = &account;
            fork_child(move || {
                for _ in 0..ROUNDS {
                    let Ok(_g) = account.lock.acquire_timeout(PATIENCE) else {
                        return 1;
                    };
                    // SAFETY: the lock is held.
                    unsafe { *account.balance.get() += delta };
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.join(), 0, "a child failed to take the lock");
    }
    // SAFETY: every child has exited.
    assert_eq!(unsafe { *account.balance.get() }, START);
    assert!(!account.lock.is_locked());
}

/// The child takes the lock(s), says so, and waits to be killed.
fn hold_until_killed(levels: u32, take: impl Fn() -> bool) -> (Child, UnixStream) {
    let (mut parent_end, mut child_end) = channel();
    let child = fork_child(move || {
        for _ in 0..levels {
            if !take() {
                return 1;
            }
        }
        send(&mut child_end, b'H');
        // Block until killed (the parent never writes; EOF if it dies).
        let _ = recv(&mut child_end);
        2
    });
    assert_eq!(recv(&mut parent_end), b'H');
    (child, parent_end)
}

#[test]
fn a_killed_lock_owner_is_reported_and_the_lock_recovers() {
    // SAFETY: all-zero is an unlocked lock.
    let lock = unsafe { Shared::<RawLock>::zeroed() };
    let (child, _chan) = hold_until_killed(1, || lock.acquire_unguarded(None).is_ok());
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(20)),
        Err(LockError::Timeout)
    ));
    child.kill();
    // Not reaped yet: the owner is a zombie, and must count as dead.
    let g = match lock.acquire_until(deadline()) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert!(!lock.is_consistent());
    g.make_consistent();
    drop(g);
    assert_eq!(child.join(), -libc::SIGKILL);
    // Works normally again, from this process and from another.
    drop(
        lock.acquire_until(deadline())
            .expect("clean after make_consistent"),
    );
    let user = fork_child(|| match lock.acquire_timeout(PATIENCE) {
        Ok(_) => 0,
        Err(_) => 1,
    });
    assert_eq!(user.join(), 0);
}

#[test]
fn owner_died_stays_reported_until_made_consistent() {
    // SAFETY: all-zero is an unlocked lock.
    let lock = unsafe { Shared::<RawLock>::zeroed() };
    let (child, _chan) = hold_until_killed(1, || lock.acquire_unguarded(None).is_ok());
    child.kill();
    assert_eq!(child.join(), -libc::SIGKILL);
    // Reaped: the owner is gone from /proc. A try recovers too.
    drop(
        lock.try_acquire()
            .unwrap_err()
            .into_guard()
            .expect("OwnerDied"),
    );
    // Dropped without repair: the next acquirer, in another process, is told.
    let next = fork_child(|| match lock.acquire_timeout(PATIENCE) {
        Err(LockError::OwnerDied(g)) => {
            g.make_consistent();
            0
        }
        _ => 1,
    });
    assert_eq!(next.join(), 0);
    assert!(lock.try_acquire().is_ok());
}

#[test]
fn a_killed_rlock_owner_three_levels_deep_is_reported() {
    // SAFETY: all-zero is an unlocked re-entrant lock.
    let rlock = unsafe { Shared::<RawRLock>::zeroed() };
    let (child, _chan) = hold_until_killed(3, || rlock.acquire_unguarded(None).is_ok());
    child.kill();
    let g = rlock
        .acquire_until(deadline())
        .unwrap_err()
        .into_guard()
        .expect("OwnerDied");
    assert_eq!(rlock.count(), 1);
    g.make_consistent();
    let inner = rlock.acquire().expect("re-entry, consistent");
    assert_eq!(rlock.count(), 2);
    drop(inner);
    drop(g);
    assert!(!rlock.is_locked());
    assert_eq!(child.join(), -libc::SIGKILL);
}

#[test]
fn release_by_another_process_is_not_owner() {
    // SAFETY: all-zero locks are unlocked.
    let both = unsafe { Shared::<(RawLock, RawRLock)>::zeroed() };
    let (lock, rlock) = (&both.0, &both.1);
    let _g = lock.acquire().unwrap();
    let _r = rlock.acquire().unwrap();
    let child = fork_child(|| {
        let ok = lock.release() == Err(NotOwner)
            && rlock.release() == Err(NotOwner)
            && lock.make_consistent() == Err(NotOwner)
            && rlock.count() == 0
            && lock.is_locked();
        if ok { 0 } else { 1 }
    });
    assert_eq!(child.join(), 0);
    // And the other way round: the child holds, we may not release.
    drop(_g);
    let (child, mut chan) = hold_until_killed(1, || lock.acquire_unguarded(None).is_ok());
    assert_eq!(lock.release(), Err(NotOwner));
    assert!(lock.is_locked());
    send(&mut chan, b'x'); // the child returns without releasing: dies holding it
    assert_eq!(child.join(), 2);
    assert!(matches!(
        lock.acquire_until(deadline()),
        Err(LockError::OwnerDied(_))
    ));
}

#[test]
fn try_and_timeout_while_another_process_holds_it() {
    // SAFETY: all-zero is an unlocked lock.
    let lock = unsafe { Shared::<RawLock>::zeroed() };
    let (mut parent_end, mut child_end) = channel();
    let lock = &*lock;
    let child = fork_child(move || {
        let g = lock.acquire_timeout(PATIENCE);
        send(&mut child_end, b'H');
        recv(&mut child_end); // release when told
        drop(g);
        0
    });
    assert_eq!(recv(&mut parent_end), b'H');
    assert!(matches!(lock.try_acquire(), Err(LockError::Timeout)));
    let start = Instant::now();
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(30)),
        Err(LockError::Timeout)
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));
    send(&mut parent_end, b'R');
    assert!(lock.acquire_until(deadline()).is_ok());
    assert_eq!(child.join(), 0);
}

/// A bounded buffer guarded by a condition's own lock.
#[repr(C)]
struct Buffer {
    cond: RawCondition,
    items: UnsafeCell<[u64; 4]>,
    head: UnsafeCell<u64>,
    tail: UnsafeCell<u64>,
}

// SAFETY: the cells are touched only with `cond.lock()` held.
unsafe impl Sync for Buffer {}

#[test]
fn condition_producer_consumer_across_processes() {
    const ITEMS: u64 = 2_000;
    // SAFETY: all-zero is an empty buffer with an unlocked condition.
    let buf = unsafe { Shared::<Buffer>::zeroed() };
    let (cond, lock) = (&buf.cond, buf.cond.lock());
    // SAFETY: (all cell accesses below) under `lock`.
    let len = || unsafe { *buf.tail.get() - *buf.head.get() };
    let producer = fork_child(|| {
        for i in 0..ITEMS {
            let Ok(_g) = lock.acquire_timeout(PATIENCE) else {
                return 1;
            };
            if cond.wait_for(lock, || len() < 4, deadline()) != Ok(true) {
                return 2;
            }
            // SAFETY: under the lock.
            unsafe {
                let tail = *buf.tail.get();
                (*buf.items.get())[(tail % 4) as usize] = i;
                *buf.tail.get() = tail + 1;
            }
            cond.notify(lock, 1).unwrap();
        }
        0
    });
    for expected in 0..ITEMS {
        let _g = lock.acquire_until(deadline()).expect("lock");
        assert_eq!(cond.wait_for(lock, || len() > 0, deadline()), Ok(true));
        // SAFETY: under the lock.
        let item = unsafe {
            let head = *buf.head.get();
            *buf.head.get() = head + 1;
            (*buf.items.get())[(head % 4) as usize]
        };
        assert_eq!(item, expected);
        cond.notify(lock, 1).unwrap();
    }
    assert_eq!(producer.join(), 0);
    assert_eq!(cond.waiters(), 0);
}

#[test]
fn a_killed_waiter_does_not_hang_the_notifier_or_other_waiters() {
    // SAFETY: all-zero is a condition with an unlocked own lock, and false.
    let shared = unsafe { Shared::<(RawCondition, UnsafeCell<bool>)>::zeroed() };
    let (cond, flag) = (&shared.0, &shared.1);
    let lock = cond.lock();
    // Each waiter says "about to wait" while holding the lock; once we get
    // the lock, it is inside `wait` (registered, lock released).
    let start_waiter = |patience: Option<Instant>| {
        let (mut parent_end, mut child_end) = channel();
        let child = fork_child(move || {
            let Ok(_g) = lock.acquire_timeout(PATIENCE) else {
                return 1;
            };
            send(&mut child_end, b'W');
            // SAFETY: the predicate runs with the lock held.
            match cond.wait_for(lock, || unsafe { *flag.get() }, patience) {
                Ok(true) => 0,
                _ => 3,
            }
        });
        assert_eq!(recv(&mut parent_end), b'W');
        drop(lock.acquire_until(deadline()).expect("lock"));
        child
    };
    let doomed = start_waiter(None);
    let patient = start_waiter(Some(Instant::now() + Duration::from_millis(500)));
    assert_eq!(cond.waiters(), 2);
    doomed.kill();
    assert_eq!(doomed.join(), -libc::SIGKILL);
    {
        let _g = lock.acquire_until(deadline()).expect("lock");
        // SAFETY: under the lock.
        unsafe { *flag.get() = true };
        // FIFO picks the dead waiter's slot: this notify is wasted, yet
        // the notifier does not block, and the live waiter's wait ends at
        // its deadline, when its predicate holds.
        cond.notify(lock, 1).unwrap();
    }
    assert_eq!(patient.join(), 0);
    assert_eq!(cond.waiters(), 0);
}

#[test]
fn a_notifier_that_dies_holding_the_lock_is_reported_to_the_waiter() {
    // SAFETY: all-zero is a condition with an unlocked own lock.
    let cond = unsafe { Shared::<RawCondition>::zeroed() };
    let lock = cond.lock();
    let g = lock.acquire().unwrap();
    let notifier = fork_child(|| {
        // Gets the lock once we are inside `wait`; notifies, then dies
        // holding it.
        let Ok(g) = lock.acquire_timeout(PATIENCE) else {
            return 1;
        };
        cond.notify(lock, 1).unwrap();
        std::mem::forget(g);
        let _ = sys::kill(sys::getpid(), libc::SIGKILL);
        2
    });
    assert_eq!(cond.wait(lock, deadline()), Err(WaitError::OwnerDied));
    assert!(lock.is_held_by_current_thread());
    assert_eq!(lock.count(), 1, "the level is restored");
    g.make_consistent();
    drop(g);
    assert_eq!(notifier.join(), -libc::SIGKILL);
}

#[test]
fn locks_open_by_handle_text_in_another_process() {
    let lock = multiproc::sync::Lock::new().expect("lock");
    let rlock = multiproc::sync::RLock::new().expect("rlock");
    let (lock_text, rlock_text) = (lock.handle().to_string(), rlock.handle().to_string());
    // A handle of the wrong kind is refused.
    assert!(matches!(
        multiproc::sync::RLock::open(&lock.handle()),
        Err(multiproc::Error::Kind { .. })
    ));
    assert!(matches!(
        multiproc::sync::Condition::open(&lock.handle()),
        Err(multiproc::Error::Kind { .. })
    ));
    let g = lock.acquire().unwrap();
    let child = fork_child(move || {
        let lock = multiproc::sync::Lock::open(&lock_text.parse().unwrap()).unwrap();
        let rlock = multiproc::sync::RLock::open(&rlock_text.parse().unwrap()).unwrap();
        // The parent holds the lock: we cannot take or release it.
        let ok = matches!(lock.try_acquire(), Err(LockError::Timeout))
            && lock.release() == Err(NotOwner);
        let r = rlock.acquire_timeout(PATIENCE).unwrap();
        let again = rlock.acquire().unwrap();
        let ok = ok && rlock.count() == 2;
        drop(again);
        drop(r);
        if ok { 0 } else { 1 }
    });
    assert_eq!(child.join(), 0);
    drop(g);
    assert!(!rlock.is_locked());
}

#[test]
fn condition_with_a_separate_lock_across_processes() {
    use multiproc::sync::{Condition, Lock};
    let lock = Lock::new().expect("lock");
    let cond = Condition::with_lock(lock.clone()).expect("condition");
    // Its own handle alone is not enough to open it.
    assert!(matches!(
        Condition::open(&cond.handle()),
        Err(multiproc::Error::Invalid(_))
    ));
    let (cond_text, lock_text) = (cond.handle().to_string(), lock.handle().to_string());
    let g = cond.acquire().unwrap();
    let notifier = fork_child(move || {
        let lock = Lock::open(&lock_text.parse().unwrap()).unwrap();
        let cond = Condition::open_with_lock(&cond_text.parse().unwrap(), lock).unwrap();
        // The lock is free once the parent waits.
        let Ok(_g) = cond.acquire_timeout(PATIENCE) else {
            return 1;
        };
        if cond.notify(1).is_err() {
            return 2;
        }
        0
    });
    assert_eq!(cond.wait(Some(PATIENCE)), Ok(true));
    assert!(lock.is_held_by_current_thread());
    drop(g);
    assert_eq!(notifier.join(), 0);
    assert_eq!(cond.notify(1), Err(NotOwner));
    assert_eq!(cond.wait(Some(Duration::ZERO)), Err(WaitError::NotOwner));
}

#[test]
fn errors_convert_into_the_crate_error() {
    use multiproc::{Error, Status};
    let timeout: Error = LockError::<()>::Timeout.into();
    assert_eq!(timeout.status(), Status::Timeout);
    let died: Error = LockError::OwnerDied(()).into();
    assert_eq!(died.status(), Status::OwnerDied);
    assert_eq!(Error::from(NotOwner).status(), Status::NotOwner);
    assert_eq!(Error::from(WaitError::NotOwner).status(), Status::NotOwner);
    assert_eq!(
        Error::from(WaitError::OwnerDied).status(),
        Status::OwnerDied
    );
}
