//! The pool, every method, run against each start method (fork, spawn,
//! forkserver), and the death of a worker in the middle of a task.
//!
//! `harness = false`: spawn runs this executable again, so `main` registers
//! the pool functions and calls `process::init()` first. Tests run one
//! after another in this thread; each pool is dropped (terminated and
//! joined) at the end of its test. Every wait for a result has a deadline.
//! Run one test with `cargo test --test pool_methods -- NAME`.

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() {
    suite::main()
}

#[cfg(not(loom))]
mod suite {
    use std::collections::BTreeSet;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use multiproc::pool::{self, AsyncResult, Callbacks, Pool, TaskError};
    use multiproc::process::{self, StartMethod, active_children};
    #[cfg(feature = "serde")]
    use multiproc::shm::{Backing, SharedMemory};
    use multiproc::{Error, Status, sys};

    const DEADLINE: Duration = Duration::from_secs(30);

    // ---- pool functions (run in the workers) ----

    fn square(x: u64) -> u64 {
        x * x
    }

    fn power(base: u64, exp: u32) -> u64 {
        base.pow(exp)
    }

    fn panic_on_odd(x: u32) -> u32 {
        if x % 2 == 1 {
            panic!("odd input {x}");
        }
        x
    }

    /// SIGKILLs its own worker on 13.
    fn die_on_13(x: u32) -> u32 {
        if x == 13 {
            let _ = sys::kill(sys::getpid(), libc::SIGKILL);
        }
        x + 1000
    }

    /// On 7: claims a slot of the inbox and dies there, as a worker killed
    /// while putting its result.
    fn die_putting_on_7(x: u32) -> u32 {
        if x == 7 {
            pool::die_while_putting_a_result();
        }
        x
    }

    /// Exits its worker with code 3 on 5.
    fn exit_on_5(x: u32) -> u32 {
        if x == 5 {
            std::process::exit(3);
        }
        x
    }

    /// Stores its worker's pid in word 0 of the shared block named by
    /// `handle` (waking the parent), then blocks until killed.
    #[cfg(feature = "serde")]
    fn announce_and_block(handle: String) -> u32 {
        let block = SharedMemory::open(&handle.parse().unwrap()).unwrap();
        let word = &block.as_atomic_u32()[0];
        word.store(sys::getpid() as u32, Ordering::SeqCst);
        let _ = sys::futex_wake(word, u32::MAX);
        loop {
            std::thread::park();
        }
    }

    fn worker_pid(_: u32) -> i32 {
        sys::getpid()
    }

    /// Never returns (until the worker is killed).
    fn block_forever(_: u32) -> u32 {
        loop {
            std::thread::park();
        }
    }

    static INIT_VALUE: AtomicU64 = AtomicU64::new(0);

    fn set_init_value(v: u64) {
        INIT_VALUE.store(v, Ordering::SeqCst);
    }

    fn failing_init(_: u64) {
        panic!("this initializer always fails");
    }

    fn read_init_value(_: u32) -> u64 {
        INIT_VALUE.load(Ordering::SeqCst)
    }

    #[cfg(feature = "serde")]
    fn big_result(n: u32) -> Vec<u8> {
        vec![7; n as usize]
    }

    fn reverse(arg: &[u8]) -> Result<Vec<u8>, String> {
        if arg == b"fail" {
            return Err("asked to fail".into());
        }
        Ok(arg.iter().rev().copied().collect())
    }

    #[cfg(feature = "serde")]
    /// Serializes as a u8, but only values up to 10 deserialize.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(try_from = "u8", into = "u8")]
    struct Small(u8);

    #[cfg(feature = "serde")]
    impl TryFrom<u8> for Small {
        type Error = String;
        fn try_from(v: u8) -> Result<Small, String> {
            if v <= 10 {
                Ok(Small(v))
            } else {
                Err(format!("{v} is not small"))
            }
        }
    }

    #[cfg(feature = "serde")]
    impl From<Small> for u8 {
        fn from(s: Small) -> u8 {
            s.0
        }
    }

    #[cfg(feature = "serde")]
    /// Makes a `Small` that does not decode on the other side.
    fn make_small(v: u8) -> Small {
        Small(v)
    }

    /// Not registered: only a fork worker can run it.
    fn unregistered(x: u32) -> u32 {
        x
    }

    fn register_all() {
        pool::register_fn("square", square).unwrap();
        pool::register_starfn("power", power).unwrap();
        pool::register_fn("panic_on_odd", panic_on_odd).unwrap();
        pool::register_fn("die_on_13", die_on_13).unwrap();
        pool::register_fn("worker_pid", worker_pid).unwrap();
        pool::register_fn("exit_on_5", exit_on_5).unwrap();
        pool::register_fn("die_putting_on_7", die_putting_on_7).unwrap();
        #[cfg(feature = "serde")]
        pool::register_fn("announce_and_block", announce_and_block).unwrap();
        pool::register_fn("block_forever", block_forever).unwrap();
        pool::register_initializer("set_init_value", set_init_value).unwrap();
        pool::register_fn("read_init_value", read_init_value).unwrap();
        pool::register_initializer("failing_init", failing_init).unwrap();
        #[cfg(feature = "serde")]
        {
            pool::register_fn("big_result", big_result).unwrap();
            pool::register_fn("make_small", make_small).unwrap();
            pool::register_fn("reverse_len", reverse_len).unwrap();
        }
        pool::register("reverse", reverse).unwrap();
    }

    // ---- helpers ----

    fn pool(method: StartMethod, processes: usize) -> Pool {
        Pool::builder()
            .processes(processes)
            .start_method(method)
            .build()
            .unwrap()
    }

    fn get<T>(r: AsyncResult<T>) -> Result<T, TaskError> {
        match r.get(Some(DEADLINE)) {
            Err(TaskError::Timeout) => panic!("no result within {DEADLINE:?}"),
            other => other,
        }
    }

    fn squares(n: u64) -> Vec<u64> {
        (0..n).map(|x| x * x).collect()
    }

    // ---- tests ----

    fn map_keeps_order_with_any_chunksize(method: StartMethod) {
        let p = pool(method, 2);
        for chunksize in [None, Some(1), Some(7), Some(1000)] {
            let r = p.map_async(square, 0..100u64, chunksize).unwrap();
            assert_eq!(get(r).unwrap(), squares(100), "chunksize {chunksize:?}");
        }
        assert_eq!(
            get(p.map_async(square, 0..0u64, None).unwrap()).unwrap(),
            []
        );
    }

    fn imap_is_ordered_and_unordered_has_all(method: StartMethod) {
        let p = pool(method, 2);
        let mut it = p.imap(square, 0..50u64, None).unwrap();
        let mut got = Vec::new();
        while let Some(r) = it.next_timeout(Some(DEADLINE)) {
            got.push(r.unwrap());
        }
        assert_eq!(got, squares(50));
        let mut it = p.imap_unordered(square, 0..50u64, Some(3)).unwrap();
        let mut got = BTreeSet::new();
        while let Some(r) = it.next_timeout(Some(DEADLINE)) {
            got.insert(r.unwrap());
        }
        assert_eq!(got, squares(50).into_iter().collect());
    }

    fn starmap_and_apply(method: StartMethod) {
        let p = pool(method, 2);
        let r = p
            .starmap_async(power, [(2u64, 10u32), (3, 3), (10, 0)], None)
            .unwrap();
        assert_eq!(get(r).unwrap(), [1024, 27, 1]);
        let r = p.apply_async(square, 12u64).unwrap();
        assert!(r.wait(Some(DEADLINE)));
        assert!(r.ready());
        assert!(r.successful().unwrap());
        assert_eq!(r.get(None).unwrap(), 144);
        assert_eq!(r.get(None).unwrap(), 144, "a result can be read again");
        assert_eq!(p.apply(square, 3u64).unwrap(), 9);
    }

    fn bytes_functions(method: StartMethod) {
        let p = pool(method, 2);
        assert_eq!(p.apply_bytes("reverse", b"abc").unwrap(), b"cba");
        let inputs: [&[u8]; 3] = [b"12", b"fail", b""];
        let r = p.map_bytes_async("reverse", &inputs, Some(1)).unwrap();
        assert!(r.wait(Some(DEADLINE)));
        assert_eq!(r.get(0).unwrap(), b"21");
        assert!(matches!(r.get(1), Err(TaskError::Failed(m)) if m.contains("asked to fail")));
        assert_eq!(r.get(2).unwrap(), b"");
        let err = p.apply_bytes("never-registered", b"").unwrap_err();
        assert_eq!(err.status(), Status::NotFound, "{err}");
    }

    fn callbacks_run_on_success_and_error(method: StartMethod) {
        let p = pool(method, 2);
        let (tx, rx) = mpsc::channel();
        let ok = tx.clone();
        let r = p
            .apply_async_with(
                square,
                5u64,
                Callbacks::new().on_success(move |v| ok.send(Ok(v)).unwrap()),
            )
            .unwrap();
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), Ok(25));
        assert_eq!(get(r).unwrap(), 25);
        let err = tx.clone();
        let r = p
            .map_async_with(
                panic_on_odd,
                [2u32, 4, 5, 6],
                Some(1),
                Callbacks::new()
                    .on_success(|_| panic!("no success expected"))
                    .on_error(move |e| err.send(Err(e.to_string())).unwrap()),
            )
            .unwrap();
        let got = rx.recv_timeout(DEADLINE).unwrap().unwrap_err();
        assert!(got.contains("odd input 5"), "{got}");
        assert!(!r.successful().unwrap());
        let ok = tx;
        let r = p
            .map_async_with(
                square,
                [1u64, 2],
                None,
                Callbacks::new().on_success(move |v: Vec<u64>| ok.send(Ok(v[0] + v[1])).unwrap()),
            )
            .unwrap();
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), Ok(5));
        assert_eq!(get(r).unwrap(), [1, 4]);
    }

    fn a_panic_is_that_tasks_error_and_the_pool_goes_on(method: StartMethod) {
        let p = pool(method, 2);
        let mut it = p.imap(panic_on_odd, 0..10u32, Some(1)).unwrap();
        for i in 0..10u32 {
            let r = it.next_timeout(Some(DEADLINE)).unwrap();
            if i % 2 == 1 {
                assert!(
                    matches!(&r, Err(TaskError::Panicked(m)) if m.contains(&format!("odd input {i}"))),
                    "{r:?}"
                );
            } else {
                assert_eq!(r.unwrap(), i);
            }
        }
        let err = get(p.map_async(panic_on_odd, [0u32, 2, 3], None).unwrap()).unwrap_err();
        assert!(matches!(err, TaskError::Panicked(_)), "{err}");
        assert_eq!(
            get(p.map_async(square, 0..5u64, None).unwrap()).unwrap(),
            squares(5)
        );
    }

    fn a_killed_worker_loses_only_its_task(method: StartMethod) {
        let p = pool(method, 2);
        let before = get(p.map_async(worker_pid, 0..20u32, Some(1)).unwrap()).unwrap();
        let mut it = p.imap(die_on_13, 0..40u32, Some(1)).unwrap();
        for i in 0..40u32 {
            let r = it.next_timeout(Some(DEADLINE)).unwrap();
            if i == 13 {
                assert!(
                    matches!(r, Err(TaskError::WorkerLost { exitcode: -9, pid }) if pid > 0),
                    "{r:?}"
                );
            } else {
                assert_eq!(r.unwrap(), i + 1000);
            }
        }
        // The pool goes on, with a replacement worker.
        let after = get(p.map_async(worker_pid, 0..20u32, Some(1)).unwrap()).unwrap();
        let after: BTreeSet<i32> = after.into_iter().collect();
        let before: BTreeSet<i32> = before.into_iter().collect();
        assert!(after.len() <= 2);
        assert!(
            after.difference(&before).count() >= 1,
            "a new worker: {before:?} {after:?}"
        );
        // Twice more, in a map: only item 13 fails.
        for _ in 0..2 {
            let r = p.map_async(die_on_13, 10..16u32, Some(1)).unwrap();
            assert!(matches!(get(r), Err(TaskError::WorkerLost { .. })));
        }
        assert_eq!(
            get(p.map_async(square, 0..5u64, None).unwrap()).unwrap(),
            squares(5)
        );
    }

    fn a_worker_that_exits_in_a_task_loses_only_it(method: StartMethod) {
        let p = pool(method, 2);
        let mut it = p.imap(exit_on_5, 0..10u32, Some(1)).unwrap();
        for i in 0..10u32 {
            let r = it.next_timeout(Some(DEADLINE)).unwrap();
            if i == 5 {
                assert!(
                    matches!(r, Err(TaskError::WorkerLost { exitcode: 3, .. })),
                    "{r:?}"
                );
            } else {
                assert_eq!(r.unwrap(), i);
            }
        }
    }

    fn a_worker_killed_while_putting_a_result_loses_only_it(method: StartMethod) {
        let p = pool(method, 2);
        for _ in 0..2 {
            let mut it = p.imap(die_putting_on_7, 0..20u32, Some(1)).unwrap();
            for i in 0..20u32 {
                let r = it.next_timeout(Some(DEADLINE)).unwrap();
                if i == 7 {
                    assert!(
                        matches!(r, Err(TaskError::WorkerLost { exitcode: -9, .. })),
                        "{r:?}"
                    );
                } else {
                    assert_eq!(r.unwrap(), i);
                }
            }
        }
        assert_eq!(
            get(p.map_async(square, 0..5u64, None).unwrap()).unwrap(),
            squares(5)
        );
    }

    fn a_worker_killed_while_idle_loses_nothing(method: StartMethod) {
        let p = pool(method, 2);
        let pids: BTreeSet<i32> = get(p.map_async(worker_pid, 0..10u32, Some(1)).unwrap())
            .unwrap()
            .into_iter()
            .collect();
        for pid in &pids {
            sys::kill(*pid, libc::SIGKILL).unwrap();
        }
        // Tasks may go to a dead worker's ring before its death is seen:
        // they never began, so they run on the replacement.
        let r = get(p.map_async(square, 0..50u64, Some(1)).unwrap()).unwrap();
        assert_eq!(r, squares(50));
        let after: BTreeSet<i32> = get(p.map_async(worker_pid, 0..10u32, Some(1)).unwrap())
            .unwrap()
            .into_iter()
            .collect();
        assert!(after.is_disjoint(&pids), "{pids:?} {after:?}");
    }

    /// A worker killed from outside while it runs a task: that task is
    /// lost, the task queued behind it in the same worker runs elsewhere.
    #[cfg(feature = "serde")]
    fn a_worker_killed_in_a_task_loses_only_it(method: StartMethod) {
        // Made before the workers, which inherit its descriptor.
        let block = SharedMemory::new(64, Backing::Memfd).unwrap();
        let p = pool(method, 2);
        let word = &block.as_atomic_u32()[0];
        let blocked = p
            .apply_async(announce_and_block, block.handle().to_string())
            .unwrap();
        let queued = p.map_async(square, 0..20u64, Some(1)).unwrap();
        let deadline = Instant::now() + DEADLINE;
        let pid = loop {
            let v = word.load(Ordering::SeqCst);
            if v != 0 {
                break v as i32;
            }
            assert!(
                Instant::now() < deadline && !blocked.ready(),
                "the task did not start: {:?}",
                blocked.get(Some(Duration::ZERO))
            );
            let _ = sys::futex_wait(word, 0, Some(Duration::from_millis(100)));
        };
        sys::kill(pid, libc::SIGKILL).unwrap();
        let r = get(blocked);
        assert!(
            matches!(r, Err(TaskError::WorkerLost { exitcode: -9, pid: p }) if p == pid),
            "{r:?}"
        );
        assert_eq!(get(queued).unwrap(), squares(20));
    }

    #[cfg(not(feature = "serde"))]
    fn a_worker_killed_in_a_task_loses_only_it(_: StartMethod) {}

    fn initializer_runs_in_each_worker(method: StartMethod) {
        let p = Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(set_init_value, 77u64)
            .build()
            .unwrap();
        let r = get(p.map_async(read_init_value, 0..10u32, Some(1)).unwrap()).unwrap();
        assert_eq!(r, [77; 10]);
    }

    fn a_failing_initializer_stops_the_pool(method: StartMethod) {
        let p = Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(failing_init, 1u64)
            .build()
            .unwrap();
        let err = get(p.map_async(square, 0..10u64, Some(1)).unwrap()).unwrap_err();
        assert!(
            matches!(&err, TaskError::Failed(m) if m.contains("initializer failed")),
            "{err}"
        );
        let err = p.apply(square, 1u64).unwrap_err();
        assert_eq!(err.status(), Status::Closed, "{err}");
        p.join().unwrap();
    }

    fn max_tasks_per_child_replaces_workers(method: StartMethod) {
        let p = Pool::builder()
            .processes(2)
            .start_method(method)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let pids = get(p.map_async(worker_pid, 0..10u32, Some(1)).unwrap()).unwrap();
        let distinct: BTreeSet<i32> = pids.iter().copied().collect();
        assert!(distinct.len() >= 5, "10 tasks, 2 per worker: {pids:?}");
        for pid in distinct {
            assert!(pids.iter().filter(|p| **p == pid).count() <= 2, "{pids:?}");
        }
    }

    fn close_then_join(method: StartMethod) {
        let p = pool(method, 2);
        let r = p.map_async(square, 0..20u64, Some(1)).unwrap();
        assert!(
            matches!(p.join(), Err(Error::State(_))),
            "join before close"
        );
        p.close().unwrap();
        let err = p.apply(square, 1u64).unwrap_err();
        assert_eq!(err.status(), Status::Closed, "{err}");
        p.join().unwrap();
        assert_eq!(get(r).unwrap(), squares(20), "submitted work finishes");
        p.join().unwrap();
        p.close().unwrap();
    }

    fn terminate_fails_unfinished_tasks(method: StartMethod) {
        let p = pool(method, 2);
        let pids = get(p.map_async(worker_pid, 0..4u32, Some(1)).unwrap()).unwrap();
        let blocked = p.apply_async(block_forever, 0u32).unwrap();
        let queued = p.map_async(square, 0..10u64, Some(1)).unwrap();
        p.terminate().unwrap();
        p.join().unwrap();
        assert_eq!(get(blocked).unwrap_err(), TaskError::Terminated);
        let err = get(queued).unwrap_err();
        assert!(
            matches!(err, TaskError::Terminated),
            "a task queued behind the blocked one: {err}"
        );
        for pid in pids {
            assert!(
                !active_children().contains(&pid),
                "worker {pid} still there"
            );
        }
        let err = p.apply(square, 1u64).unwrap_err();
        assert_eq!(err.status(), Status::Closed, "{err}");
    }

    fn drop_terminates(method: StartMethod) {
        let p = pool(method, 2);
        let pids = get(p.map_async(worker_pid, 0..4u32, Some(1)).unwrap()).unwrap();
        let _blocked = p.apply_async(block_forever, 0u32).unwrap();
        drop(p);
        for pid in pids {
            assert!(
                !active_children().contains(&pid),
                "worker {pid} still there"
            );
            assert!(sys::kill(pid, 0).is_err(), "worker {pid} still exists");
        }
    }

    fn bad_input_gets_specific_errors(method: StartMethod) {
        let err = Pool::builder()
            .processes(0)
            .start_method(method)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        let err = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_tasks_per_child(0)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        let p = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_message(1024)
            .build()
            .unwrap();
        let err = p.map(square, 0..4u64, Some(0)).unwrap_err();
        assert_eq!(err.status(), Status::Invalid, "{err}");
        #[cfg(feature = "serde")]
        serde_bad_input(&p);
        // An unregistered function works with fork only.
        match method {
            StartMethod::Fork => assert_eq!(p.apply(unregistered, 4u32).unwrap(), 4),
            _ => {
                let err = p.apply(unregistered, 4u32).unwrap_err();
                assert_eq!(err.status(), Status::NotFound, "{err}");
            }
        }
    }

    /// Results that do not decode, results and arguments too large.
    #[cfg(feature = "serde")]
    fn serde_bad_input(p: &Pool) {
        // A result that does not deserialize.
        let r = get(p.map_async(make_small, [3u8, 30], Some(1)).unwrap());
        assert!(
            matches!(&r, Err(TaskError::Decode(m)) if m.contains("Small")),
            "{r:?}"
        );
        // A result too large for a message; an argument too large.
        let r = get(p.map_async(big_result, [10u32, 5000], Some(1)).unwrap());
        assert!(
            matches!(&r, Err(TaskError::Failed(m)) if m.contains("max_message")),
            "{r:?}"
        );
        assert_eq!(p.apply(big_result, 10u32).unwrap(), vec![7; 10]);
        let err = p.apply(reverse_len, vec![1u8; 5000]).unwrap_err();
        assert_eq!(err.status(), Status::TooLarge, "{err}");
        // Results that need several messages come back in parts.
        let r = p.map(big_result, vec![300u32; 10], Some(10)).unwrap();
        assert_eq!(r, vec![vec![7u8; 300]; 10]);
        // Chunks are cut to fit a message.
        let r = p
            .map(reverse_len, vec![vec![1u8; 300]; 20], Some(20))
            .unwrap();
        assert_eq!(r, [300; 20]);
    }

    #[cfg(feature = "serde")]
    fn reverse_len(v: Vec<u8>) -> usize {
        v.len()
    }

    /// A pool and its results can be shared with and sent to threads.
    const _: fn() = || {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pool>();
        send_sync::<AsyncResult<u64>>();
        send_sync::<pool::IMap<u64>>();
        send_sync::<pool::BytesResults>();
    };

    type Test = fn(StartMethod);

    const TESTS: &[(&str, Test)] = &[
        (
            "map_keeps_order_with_any_chunksize",
            map_keeps_order_with_any_chunksize,
        ),
        (
            "imap_is_ordered_and_unordered_has_all",
            imap_is_ordered_and_unordered_has_all,
        ),
        ("starmap_and_apply", starmap_and_apply),
        ("bytes_functions", bytes_functions),
        (
            "callbacks_run_on_success_and_error",
            callbacks_run_on_success_and_error,
        ),
        (
            "a_panic_is_that_tasks_error_and_the_pool_goes_on",
            a_panic_is_that_tasks_error_and_the_pool_goes_on,
        ),
        (
            "a_killed_worker_loses_only_its_task",
            a_killed_worker_loses_only_its_task,
        ),
        (
            "a_worker_that_exits_in_a_task_loses_only_it",
            a_worker_that_exits_in_a_task_loses_only_it,
        ),
        (
            "a_worker_killed_while_putting_a_result_loses_only_it",
            a_worker_killed_while_putting_a_result_loses_only_it,
        ),
        (
            "a_worker_killed_while_idle_loses_nothing",
            a_worker_killed_while_idle_loses_nothing,
        ),
        (
            "a_worker_killed_in_a_task_loses_only_it",
            a_worker_killed_in_a_task_loses_only_it,
        ),
        (
            "initializer_runs_in_each_worker",
            initializer_runs_in_each_worker,
        ),
        (
            "a_failing_initializer_stops_the_pool",
            a_failing_initializer_stops_the_pool,
        ),
        (
            "max_tasks_per_child_replaces_workers",
            max_tasks_per_child_replaces_workers,
        ),
        ("close_then_join", close_then_join),
        (
            "terminate_fails_unfinished_tasks",
            terminate_fails_unfinished_tasks,
        ),
        ("drop_terminates", drop_terminates),
        (
            "bad_input_gets_specific_errors",
            bad_input_gets_specific_errors,
        ),
    ];

    pub fn main() {
        register_all();
        process::init().unwrap();

        let filter: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let methods = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ];
        let mut failed = Vec::new();
        let mut ran = 0;
        let started = Instant::now();
        for method in methods {
            for (name, test) in TESTS {
                let full = format!("{method}::{name}");
                if !filter.is_empty() && !filter.iter().any(|f| full.contains(f.as_str())) {
                    continue;
                }
                ran += 1;
                let t0 = Instant::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| test(method)));
                println!(
                    "test {full} ... {} ({:.2}s)",
                    if outcome.is_ok() { "ok" } else { "FAILED" },
                    t0.elapsed().as_secs_f64()
                );
                if outcome.is_err() {
                    failed.push(full);
                }
            }
        }
        let left: Vec<i32> = active_children()
            .into_iter()
            .filter(|p| Some(*p) != process::forkserver_pid())
            .collect();
        if !left.is_empty() {
            println!("children left behind: {left:?}");
            failed.push("no children left behind".into());
        }
        let outcome = if failed.is_empty() { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {outcome}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; \
         finished in {:.2}s",
            ran - failed.len(),
            failed.len(),
            methods.len() * TESTS.len() - ran,
            started.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            println!("failed: {failed:?}");
            std::process::exit(1);
        }
    }
}
