//! Lock benchmarks: our robust process-shared `Lock` beside a
//! process-shared robust `pthread_mutex_t` (the libc baseline) and
//! `raw_sync`'s process-shared mutex, all in shared memory, in one run.
//!
//! - `uncontended/*`: one acquire + release, nobody else around.
//! - `contended/*`: two fork children increment one shared counter under
//!   the lock; the time reported is per increment (wall time of the pair
//!   divided by the increments of both).
//!
//! Run: `cargo bench --bench lock`.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::sync::Lock;
use multiproc::sys::{self, Forked};
use raw_sync::locks::{LockImpl, LockInit, Mutex as RawSyncMutex};

/// A lock that lives in shared memory, seen by fork children.
trait SharedLock {
    fn name(&self) -> &'static str;
    fn lock(&self);
    fn unlock(&self);
}

/// A zeroed, shared anonymous mapping of `len` bytes.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Mapping {
        // SAFETY: a fresh mapping, unmapped once in Drop with the same len.
        let ptr = unsafe { sys::mmap_shared(None, len) }.expect("mmap");
        Mapping { ptr, len }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this len; nothing points into it now.
        let _ = unsafe { sys::munmap(self.ptr, self.len) };
    }
}

/// Ours.
struct Ours(Lock);

impl SharedLock for Ours {
    fn name(&self) -> &'static str {
        "multiproc"
    }
    fn lock(&self) {
        self.0.acquire_unguarded(None).expect("nobody dies here");
    }
    fn unlock(&self) {
        self.0.release().expect("held");
    }
}

/// `pthread_mutex_t` with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST.
struct PthreadRobust {
    map: Mapping,
}

impl PthreadRobust {
    fn new() -> PthreadRobust {
        let map = Mapping::new(size_of::<libc::pthread_mutex_t>());
        // SAFETY: the mapping is page-aligned and large enough for a mutex;
        // the attribute lives on the stack for the init calls only.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(map.ptr.as_ptr().cast(), &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        PthreadRobust { map }
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.map.ptr.as_ptr().cast()
    }
}

impl SharedLock for PthreadRobust {
    fn name(&self) -> &'static str {
        "pthread-robust"
    }
    fn lock(&self) {
        // SAFETY: an initialized process-shared mutex in a live mapping.
        let rc = unsafe { libc::pthread_mutex_lock(self.mutex()) };
        assert_eq!(rc, 0);
    }
    fn unlock(&self) {
        // SAFETY: as above; held by this thread.
        let rc = unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        assert_eq!(rc, 0);
    }
}

/// `raw_sync`'s process-shared (non-robust) pthread mutex.
struct RawSync {
    lock: Box<dyn LockImpl>,
    _map: Mapping,
}

impl RawSync {
    fn new() -> RawSync {
        let map = Mapping::new(4096);
        // SAFETY: the mapping has room for the mutex (size_of is far below
        // a page) and for the data pointer's target at its end.
        let (lock, _) = unsafe {
            let base = map.ptr.as_ptr();
            RawSyncMutex::new(base, base.add(2048))
        }
        .expect("raw_sync mutex");
        RawSync { lock, _map: map }
    }
}

impl SharedLock for RawSync {
    fn name(&self) -> &'static str {
        "raw_sync"
    }
    fn lock(&self) {
        // The guard would release on drop; we release explicitly instead.
        std::mem::forget(self.lock.lock().expect("lock"));
    }
    fn unlock(&self) {
        self.lock.release().expect("release");
    }
}

fn uncontended(c: &mut Criterion) {
    let locks: Vec<Box<dyn SharedLock>> = vec![
        Box::new(Ours(Lock::new().expect("lock"))),
        Box::new(PthreadRobust::new()),
        Box::new(RawSync::new()),
    ];
    let mut group = c.benchmark_group("uncontended");
    for l in &locks {
        group.bench_function(l.name(), |b| {
            b.iter(|| {
                l.lock();
                l.unlock();
            })
        });
    }
    let ours = Lock::new().expect("lock");
    group.bench_function("multiproc-guard", |b| {
        b.iter(|| drop(black_box(ours.acquire().expect("nobody dies here"))))
    });
    group.finish();
}

/// What the two contending children share besides the lock.
#[repr(C)]
struct Arena {
    /// Incremented under the lock.
    counter: UnsafeCell<u64>,
    /// Children that are ready to start.
    ready: AtomicU32,
    /// Set by the parent once both are ready.
    go: AtomicU32,
    /// Each child's time for its increments, in nanoseconds.
    elapsed_ns: [AtomicU64; 2],
}

/// Two children do `iters` locked increments each; returns the wall time
/// per increment times `iters` (what criterion divides by `iters`).
fn contend(lock: &dyn SharedLock, iters: u64) -> Duration {
    let map = Mapping::new(size_of::<Arena>());
    // SAFETY: zeroed shared memory is a valid Arena (integers and atomics).
    let arena = unsafe { &*map.ptr.as_ptr().cast::<Arena>() };
    // Finish the one-time fork-handler registration before forking.
    sys::current_ids();
    let mut pids = Vec::new();
    for who in 0..2 {
        // SAFETY: the child touches only the lock and the arena (atomics,
        // futex calls) and leaves with _exit.
        match unsafe { sys::fork() }.expect("fork") {
            Forked::Child => {
                arena.ready.fetch_add(1, Ordering::Release);
                while arena.go.load(Ordering::Acquire) == 0 {
                    std::hint::spin_loop();
                }
                let start = Instant::now();
                for _ in 0..iters {
                    lock.lock();
                    // SAFETY: the lock is held.
                    unsafe { *arena.counter.get() += 1 };
                    lock.unlock();
                }
                let ns = start.elapsed().as_nanos() as u64;
                arena.elapsed_ns[who].store(ns, Ordering::Release);
                sys::exit_immediately(0);
            }
            Forked::Parent(pid) => pids.push(pid),
        }
    }
    while arena.ready.load(Ordering::Acquire) < 2 {
        std::thread::yield_now();
    }
    arena.go.store(1, Ordering::Release);
    for pid in pids {
        let status = sys::waitpid(pid, false).expect("waitpid");
        assert_eq!(status, Some(sys::ChildStatus::Exited(0)));
    }
    // SAFETY: both children have exited.
    let counted = unsafe { *arena.counter.get() };
    assert_eq!(counted, 2 * iters, "lost increments");
    let max_ns = arena
        .elapsed_ns
        .iter()
        .map(|e| e.load(Ordering::Acquire))
        .max();
    // Per increment: the pair made 2 * iters increments.
    Duration::from_nanos(max_ns.unwrap_or(0) / 2)
}

fn contended(c: &mut Criterion) {
    let locks: Vec<Box<dyn SharedLock>> = vec![
        Box::new(Ours(Lock::new().expect("lock"))),
        Box::new(PthreadRobust::new()),
        Box::new(RawSync::new()),
    ];
    let mut group = c.benchmark_group("contended");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for l in &locks {
        group.bench_function(l.name(), |b| b.iter_custom(|iters| contend(&**l, iters)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = uncontended, contended
}
criterion_main!(benches);
