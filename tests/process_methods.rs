//! One conformance suite of process tests, run against each start method:
//! fork, spawn and forkserver.
//!
//! `harness = false`: spawn runs this executable again, so `main` must
//! register the entry points and call `process::init()` first, which a
//! libtest harness would not let us do. Tests run one after another in
//! this one thread. Children that must wait block on a futex word in a
//! shared memfd block (the "gate"), never on time; every wait has a
//! deadline. Run one test with `cargo test --test process_methods -- NAME`.

// The loom build (`--cfg loom`) compiles every test target but runs only
// tests/loom_*.rs: the suite needs real processes and is left out there.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() {
    suite::main()
}

#[cfg(not(loom))]
mod suite {

    use std::os::fd::AsFd;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use multiproc::Error;
    use multiproc::process::{self, Process, StartMethod, active_children};
    use multiproc::shm::{Backing, Handle, SharedMemory};
    use multiproc::sys;

    const DEADLINE: Duration = Duration::from_secs(30);

    // ---- entry points (run in the children) ----

    fn exit_with(arg: &[u8]) -> i32 {
        arg.first().copied().unwrap_or(0).into()
    }

    /// `arg` is a handle text of a gate: waits until word 0 is non-zero, exits
    /// with it. Word 1 counts arrivals (so the parent knows it waits).
    fn wait_at_gate(arg: &[u8]) -> i32 {
        let gate = match open(arg) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("wait_at_gate: {e}");
                return 100;
            }
        };
        let words = gate.as_atomic_u32();
        words[1].fetch_add(1, Ordering::SeqCst);
        let _ = sys::futex_wake(&words[1], u32::MAX);
        loop {
            let v = words[0].load(Ordering::SeqCst);
            if v != 0 {
                return v as i32;
            }
            let _ = sys::futex_wait(&words[0], 0, None);
        }
    }

    fn panics(_: &[u8]) -> i32 {
        panic!("boom from the child")
    }

    /// Writes its identity into the block named by `arg`: word 0 pid, word 1
    /// parent pid, word 2 1 if the parent is alive, word 3 1 if the name is
    /// "named-child", word 4 1 if daemon.
    fn report_identity(arg: &[u8]) -> i32 {
        let Ok(mem) = open(arg) else { return 100 };
        let w = mem.as_atomic_u32();
        let me = process::current_process();
        let parent = process::parent_process();
        w[0].store(me.pid() as u32, Ordering::SeqCst);
        w[1].store(
            parent.as_ref().map_or(0, |p| p.pid()) as u32,
            Ordering::SeqCst,
        );
        w[2].store(
            parent.is_some_and(|p| p.is_alive()).into(),
            Ordering::SeqCst,
        );
        w[3].store((me.name() == "named-child").into(), Ordering::SeqCst);
        w[4].store(me.is_daemon().into(), Ordering::SeqCst);
        0
    }

    /// Opens the handle in `arg`; exit code 3 with the error kind if it does
    /// not resolve.
    fn open_handle(arg: &[u8]) -> i32 {
        match open(arg) {
            Ok(mem) => {
                mem.as_atomic_u32()[0].store(42, Ordering::SeqCst);
                0
            }
            Err(Error::NotFound(_)) => 3,
            Err(Error::Invalid(_)) => 4,
            Err(_) => 5,
        }
    }

    /// Starts a daemon child by the method in arg[0] that waits at the gate in
    /// arg[2..] and stores its pid in the gate's word 2; then, if arg[1] is 1,
    /// exits normally, else waits forever (the test kills it).
    fn start_daemon_then_wait(arg: &[u8]) -> i32 {
        let method = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ][arg[0] as usize];
        let exit_at_once = arg[1] == 1;
        let Ok(gate) = open(&arg[2..]) else {
            return 100;
        };
        let daemon = Process::from_entry("wait_at_gate", arg[2..].to_vec())
            .unwrap()
            .start_method(method)
            .daemon(true);
        if daemon.start().is_err() {
            return 101;
        }
        let words = gate.as_atomic_u32();
        words[2].store(daemon.pid().unwrap() as u32, Ordering::SeqCst);
        let _ = sys::futex_wake(&words[2], u32::MAX);
        // Not dropped: only the end of this process may stop the daemon.
        std::mem::forget(daemon);
        if exit_at_once {
            // Only once the daemon is inside its entry (else the test could not
            // tell it started at all).
            while words[1].load(Ordering::SeqCst) == 0 {
                let _ = sys::futex_wait(&words[1], 0, Some(DEADLINE));
            }
            return 0;
        }
        loop {
            let _ = sys::futex_wait(&words[3], 0, None);
        }
    }

    /// `arg`: handle texts of blocks, one a line. Opens them one at a time
    /// (a runner's descriptor limit may be 1024), checks that word 0 of
    /// block `i` is `i` (the parent's mark) and stores `i + 1` in word 1.
    fn touch_every_block(arg: &[u8]) -> i32 {
        let Ok(text) = std::str::from_utf8(arg) else {
            return 100;
        };
        for (i, line) in text.lines().enumerate() {
            let Ok(mem) = open(line.as_bytes()) else {
                return 101;
            };
            let w = mem.as_atomic_u32();
            if w[0].load(Ordering::SeqCst) != i as u32 {
                return 102;
            }
            w[1].store(i as u32 + 1, Ordering::SeqCst);
        }
        0
    }

    /// Stores its pid in word 1 of the gate in `arg`, then waits there
    /// (for a SIGINT, which should end it).
    fn wait_for_sigint(arg: &[u8]) -> i32 {
        let Ok(gate) = open(arg) else { return 100 };
        let words = gate.as_atomic_u32();
        words[1].store(sys::getpid() as u32, Ordering::SeqCst);
        let _ = sys::futex_wake(&words[1], u32::MAX);
        loop {
            if words[0].load(Ordering::SeqCst) != 0 {
                return 0;
            }
            let _ = sys::futex_wait(&words[0], 0, None);
        }
    }

    fn open(arg: &[u8]) -> multiproc::Result<SharedMemory> {
        let text = std::str::from_utf8(arg).map_err(|_| Error::Invalid("not UTF-8".into()))?;
        SharedMemory::open(&text.parse::<Handle>()?)
    }

    // ---- helpers ----

    fn gate() -> SharedMemory {
        SharedMemory::new(64, Backing::Memfd).expect("gate")
    }

    fn handle_of(mem: &SharedMemory) -> Vec<u8> {
        mem.handle().to_string().into_bytes()
    }

    fn open_gate(gate: &SharedMemory, code: u32) {
        let w = &gate.as_atomic_u32()[0];
        w.store(code, Ordering::SeqCst);
        sys::futex_wake(w, u32::MAX).unwrap();
    }

    /// Waits until word `i` of `mem` is at least `n`.
    fn wait_word(mem: &SharedMemory, i: usize, n: u32) -> u32 {
        let word: &AtomicU32 = &mem.as_atomic_u32()[i];
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = word.load(Ordering::SeqCst);
            if v >= n {
                return v;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("word {i} stayed {v}, expected {n}"));
            let _ = sys::futex_wait(word, v, Some(left));
        }
    }

    fn entry(method: StartMethod, name: &str, arg: Vec<u8>) -> Process {
        Process::from_entry(name, arg).unwrap().start_method(method)
    }

    fn join(p: &Process) -> i32 {
        p.join(Some(DEADLINE))
            .unwrap_or_else(|e| panic!("join of {} failed: {e}", p.name()))
    }

    /// `Some(state)` if `pid` exists; fails on a zombie.
    fn assert_no_zombie(pid: i32) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let state = text[text.rfind(')').unwrap() + 2..].chars().next().unwrap();
            assert_ne!(state, 'Z', "process {pid} is a zombie");
            panic!("process {pid} still exists in state {state} after join");
        }
    }

    /// Waits (pidfd) until `pid` has ended, whoever its parent.
    fn wait_gone(pid: i32) {
        match sys::pidfd_open(pid) {
            Ok(fd) => assert!(
                sys::poll_readable(fd.as_fd(), Some(DEADLINE)).unwrap(),
                "process {pid} still runs"
            ),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESRCH)),
        }
    }

    /// Runs `f` with this process's stderr going into a pipe; returns what was
    /// written there.
    fn capture_stderr(f: impl FnOnce()) -> String {
        let (r, w) = sys::pipe().unwrap();
        let saved = sys::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), 10).unwrap();
        sys::dup2(w.as_fd(), 2).unwrap();
        drop(w);
        f();
        sys::dup2(saved.as_fd(), 2).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while sys::poll_readable(r.as_fd(), Some(Duration::ZERO)).unwrap() {
            match sys::recv(r.as_fd(), &mut buf) {
                Ok(0) | Err(_) => match std::io::Read::read(
                    &mut std::fs::File::from(r.try_clone().unwrap()),
                    &mut buf,
                ) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                },
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    // ---- the suite ----

    fn exit_codes(m: StartMethod) {
        for code in [0u8, 1, 7, 255] {
            let p = entry(m, "exit_with", vec![code]);
            p.start().unwrap();
            assert_eq!(join(&p), code as i32);
            assert_eq!(p.exitcode(), Some(code as i32));
            assert!(!p.is_alive());
            assert_no_zombie(p.pid().unwrap());
        }
    }

    fn join_timeout_then_release(m: StartMethod) {
        let g = gate();
        let p = entry(m, "wait_at_gate", handle_of(&g));
        p.start().unwrap();
        wait_word(&g, 1, 1);
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert!(matches!(p.join(Some(Duration::ZERO)), Err(Error::Timeout)));
        assert!(matches!(
            p.join(Some(Duration::from_millis(20))),
            Err(Error::Timeout)
        ));
        assert!(active_children().contains(&p.pid().unwrap()));
        open_gate(&g, 9);
        assert_eq!(join(&p), 9);
        assert!(!active_children().contains(&p.pid().unwrap()));
        assert_no_zombie(p.pid().unwrap());
    }

    fn terminate_and_kill(m: StartMethod) {
        for (sig, code) in [(libc::SIGTERM, -15), (libc::SIGKILL, -9)] {
            let g = gate();
            let p = entry(m, "wait_at_gate", handle_of(&g));
            p.start().unwrap();
            wait_word(&g, 1, 1);
            if sig == libc::SIGTERM {
                p.terminate().unwrap();
            } else {
                p.kill().unwrap();
            }
            assert_eq!(join(&p), code);
            // Reaped: signalling again is a no-op.
            p.kill().unwrap();
            assert_no_zombie(p.pid().unwrap());
        }
    }

    fn sentinel_becomes_readable(m: StartMethod) {
        let g = gate();
        let p = entry(m, "wait_at_gate", handle_of(&g));
        p.start().unwrap();
        wait_word(&g, 1, 1);
        let s = p.sentinel().unwrap();
        assert!(!sys::poll_readable(s, Some(Duration::ZERO)).unwrap());
        open_gate(&g, 1);
        assert!(sys::poll_readable(p.sentinel().unwrap(), Some(DEADLINE)).unwrap());
        assert_eq!(join(&p), 1);
        // Asked for only after the join: readable at once.
        let q = entry(m, "exit_with", vec![0]);
        q.start().unwrap();
        assert_eq!(join(&q), 0);
        assert!(sys::poll_readable(q.sentinel().unwrap(), Some(Duration::ZERO)).unwrap());
    }

    fn panic_exits_with_one_and_a_message(m: StartMethod) {
        let p = entry(m, "panics", Vec::new());
        let text = capture_stderr(|| {
            p.start().unwrap();
            assert_eq!(join(&p), 1);
        });
        assert!(text.contains("boom from the child"), "stderr was {text:?}");
        assert!(text.contains(p.name()), "stderr was {text:?}");
    }

    fn shared_memory_reaches_the_child(m: StartMethod) {
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        let p = entry(m, "open_handle", handle_of(&mem));
        p.start().unwrap();
        assert_eq!(join(&p), 0);
        assert_eq!(mem.as_atomic_u32()[0].load(Ordering::SeqCst), 42);
        // A named segment too.
        let named = SharedMemory::new(64, Backing::Named).unwrap();
        let p = entry(m, "open_handle", handle_of(&named));
        p.start().unwrap();
        assert_eq!(join(&p), 0);
        assert_eq!(named.as_atomic_u32()[0].load(Ordering::SeqCst), 42);
    }

    fn bad_handle_is_an_error_in_the_child(m: StartMethod) {
        // A descriptor number nobody passed: not found in the child.
        let p = entry(
            m,
            "open_handle",
            b"mp1:memfd:999:00000000000000aa:64:bytes".to_vec(),
        );
        p.start().unwrap();
        assert_eq!(join(&p), 3);
        let p = entry(m, "open_handle", b"not a handle".to_vec());
        p.start().unwrap();
        assert_eq!(join(&p), 4);
    }

    fn identity_in_the_child(m: StartMethod) {
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        let p = entry(m, "report_identity", handle_of(&mem)).with_name("named-child");
        p.start().unwrap();
        assert_eq!(join(&p), 0);
        let w = mem.as_atomic_u32();
        assert_eq!(w[0].load(Ordering::SeqCst) as i32, p.pid().unwrap());
        assert_eq!(w[1].load(Ordering::SeqCst) as i32, sys::getpid());
        assert_eq!(w[2].load(Ordering::SeqCst), 1, "parent alive");
        assert_eq!(w[3].load(Ordering::SeqCst), 1, "name");
        assert_eq!(w[4].load(Ordering::SeqCst), 0, "daemon");
    }

    fn bad_input_is_refused(m: StartMethod) {
        let err = Process::from_entry("never-registered", Vec::new()).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        let p = entry(m, "exit_with", vec![0]);
        assert!(matches!(p.join(None), Err(Error::State(_))));
        assert!(matches!(p.kill(), Err(Error::State(_))));
        p.start().unwrap();
        assert!(matches!(p.start(), Err(Error::State(_))));
        assert_eq!(join(&p), 0);
        if m != StartMethod::Fork {
            let closure = Process::new(|| 0).start_method(m);
            assert!(matches!(closure.start(), Err(Error::Invalid(_))));
        }
    }

    fn close_releases(m: StartMethod) {
        let g = gate();
        let mut p = entry(m, "wait_at_gate", handle_of(&g));
        p.start().unwrap();
        assert!(matches!(p.close(), Err(Error::State(_))));
        open_gate(&g, 2);
        assert_eq!(join(&p), 2);
        p.close().unwrap();
        p.close().unwrap();
        assert!(matches!(p.join(None), Err(Error::State(_))));
    }

    fn dropped_daemon_is_killed_and_reaped(m: StartMethod) {
        let g = gate();
        let p = entry(m, "wait_at_gate", handle_of(&g)).daemon(true);
        p.start().unwrap();
        wait_word(&g, 1, 1);
        let pid = p.pid().unwrap();
        drop(p);
        wait_gone(pid);
        assert_no_zombie(pid);
    }

    fn daemon_dies_with_its_parent_killed_or_not(m: StartMethod) {
        let index = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ]
        .iter()
        .position(|x| *x == m)
        .unwrap() as u8;
        for exit_normally in [false, true] {
            let g = gate();
            let mut arg = vec![index, exit_normally.into()];
            arg.extend(handle_of(&g));
            // The middle process is started by fork (it only needs to end).
            let middle = entry(StartMethod::Fork, "start_daemon_then_wait", arg);
            middle.start().unwrap();
            let daemon = wait_word(&g, 2, 1) as i32;
            wait_word(&g, 1, 1);
            if exit_normally {
                assert_eq!(join(&middle), 0);
            } else {
                middle.kill().unwrap();
                assert_eq!(join(&middle), -9);
            }
            wait_gone(daemon);
        }
    }

    fn orphans_are_reaped(m: StartMethod) {
        let g = gate();
        let p = entry(m, "wait_at_gate", handle_of(&g));
        p.start().unwrap();
        let pid = p.pid().unwrap();
        drop(p); // not a daemon: keeps running
        assert!(active_children().contains(&pid));
        open_gate(&g, 1);
        wait_gone(pid);
        let deadline = Instant::now() + DEADLINE;
        while active_children().contains(&pid) {
            assert!(Instant::now() < deadline, "orphan {pid} never reaped");
            std::thread::yield_now();
        }
        assert_no_zombie(pid);
    }

    fn start_from_threads(m: StartMethod) {
        // Two threads start and join children at once; with forkserver this is
        // the multi-threaded parent it exists for.
        let workers: Vec<_> = (0..2u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..3u8 {
                        let p = entry(m, "exit_with", vec![t * 10 + i]);
                        p.start().unwrap();
                        assert_eq!(join(&p), i32::from(t * 10 + i));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a starting thread panicked");
        }
    }

    /// Starts one forkserver child, stores the server's pid in word 0 of the
    /// block in `arg`, and exits: the server must then exit too.
    fn use_forkserver_then_exit(arg: &[u8]) -> i32 {
        let Ok(mem) = open(arg) else { return 100 };
        let p = entry(StartMethod::ForkServer, "exit_with", vec![5]);
        if p.start().is_err() || p.join(Some(DEADLINE)).ok() != Some(5) {
            return 101;
        }
        let Some(server) = process::forkserver_pid() else {
            return 102;
        };
        mem.as_atomic_u32()[0].store(server as u32, Ordering::SeqCst);
        0
    }

    fn forkserver_exits_with_its_parent(m: StartMethod) {
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        let p = entry(m, "use_forkserver_then_exit", handle_of(&mem));
        p.start().unwrap();
        assert_eq!(join(&p), 0);
        let server = mem.as_atomic_u32()[0].load(Ordering::SeqCst) as i32;
        assert!(server > 0);
        wait_gone(server);
    }

    /// More memfd segments than one `SCM_RIGHTS` message carries (253): the
    /// child inherits every one under its number.
    fn many_segments_reach_the_child(m: StartMethod) {
        const SEGMENTS: u32 = 600;
        let blocks: Vec<SharedMemory> = (0..SEGMENTS)
            .map(|i| {
                let block = gate();
                block.as_atomic_u32()[0].store(i, Ordering::SeqCst);
                block
            })
            .collect();
        let handles: Vec<String> = blocks.iter().map(|b| b.handle().to_string()).collect();
        let p = entry(m, "touch_every_block", handles.join("\n").into_bytes());
        p.start().unwrap();
        assert_eq!(join(&p), 0);
        for (i, block) in (1..).zip(&blocks) {
            assert_eq!(block.as_atomic_u32()[1].load(Ordering::SeqCst), i);
        }
    }

    /// A Ctrl-C reaches the whole foreground process group: the fork server
    /// ignores SIGINT (later starts still work, by the same server), while
    /// a child still dies of it by default, whatever the method.
    fn sigint_ends_children_not_the_forkserver(m: StartMethod) {
        let g = gate();
        let p = entry(m, "wait_for_sigint", handle_of(&g));
        p.start().unwrap();
        let pid = wait_word(&g, 1, 1) as i32;
        assert_eq!(Some(pid), p.pid());
        sys::kill(pid, libc::SIGINT).unwrap();
        assert_eq!(join(&p), -libc::SIGINT);
        if m != StartMethod::ForkServer {
            return;
        }
        let server = process::forkserver_pid().expect("a forkserver runs");
        sys::kill(server, libc::SIGINT).unwrap();
        // Were SIGINT at its default action there, the kernel would end the
        // server as the signal is sent (before `kill` returns), and the start
        // below would need a new server.
        let p = entry(m, "exit_with", vec![7]);
        p.start().unwrap();
        assert_eq!(join(&p), 7);
        assert_eq!(process::forkserver_pid(), Some(server));
        let status = std::fs::read_to_string(format!("/proc/{server}/status")).unwrap();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        assert_ne!(
            ignored & (1 << (libc::SIGINT - 1)),
            0,
            "SigIgn: {ignored:x}"
        );
    }

    /// The test binary run again with a launch variable that names no payload:
    /// `init` must end it with code 1 and say why, not run `main`'s tests.
    fn stray_launch_variable_ends_the_program(m: StartMethod) {
        if m != StartMethod::Fork {
            return; // about `init`, not about a method: once is enough
        }
        for value in ["999", "banana", "1"] {
            let out = std::process::Command::new("/proc/self/exe")
                .env("MULTIPROC_LAUNCH_FD", value)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{value}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("MULTIPROC_LAUNCH_FD"), "{value}: {err}");
            assert!(out.stdout.is_empty(), "{value}: the tests ran again");
        }
    }

    fn c_api_daemon_flag_and_parent_pid(m: StartMethod) {
        use multiproc::ffi::process::*;
        let method = match m {
            StartMethod::Fork => MP_START_FORK,
            StartMethod::Spawn => MP_START_SPAWN,
            StartMethod::ForkServer => MP_START_FORKSERVER,
        };
        assert_eq!(mp_parent_pid(), 0);
        let g = gate();
        let arg = handle_of(&g);
        let mut p = std::ptr::null_mut();
        // SAFETY: a registered entry name, `arg` readable for its length, `p`
        // writable; `p` is freed once below and not used afterwards.
        unsafe {
            assert_eq!(
                mp_process_start(
                    method | MP_START_DAEMON,
                    c"wait_at_gate".as_ptr(),
                    arg.as_ptr(),
                    arg.len(),
                    &mut p
                ),
                0
            );
            wait_word(&g, 1, 1);
            let pid = mp_process_pid(p);
            assert!(pid > 0);
            mp_process_free(p); // a daemon: killed and reaped
            wait_gone(pid);
            assert_no_zombie(pid);
        }
    }

    /// `arg`: "LOCK HANDLE\nBLOCK HANDLE". Adds 1 to word 0 of the block
    /// INCREMENTS times, each as a separate load and store under the lock (a
    /// lost update would show without it). With the block's word 1 set to 1,
    /// it instead takes the lock, says so in 32-bit word 4 and waits to be
    /// killed.
    fn locked_increments(arg: &[u8]) -> i32 {
        let text = String::from_utf8_lossy(arg);
        let Some((lock, mem)) = text.split_once('\n') else {
            return 100;
        };
        let (Ok(lock), Ok(mem)) = (
            lock.parse::<Handle>()
                .and_then(|h| multiproc::sync::Lock::open(&h)),
            mem.parse::<Handle>().and_then(|h| SharedMemory::open(&h)),
        ) else {
            return 101;
        };
        let words = mem.as_atomic_u64();
        if words[1].load(Ordering::SeqCst) == 1 {
            let _held = lock.acquire();
            let took = &mem.as_atomic_u32()[4];
            took.store(1, Ordering::SeqCst);
            let _ = sys::futex_wake(took, u32::MAX);
            let w = &mem.as_atomic_u32()[6];
            loop {
                let _ = sys::futex_wait(w, 0, None);
            }
        }
        for _ in 0..INCREMENTS {
            let Ok(_guard) = lock.acquire() else {
                return 102;
            };
            let v = words[0].load(Ordering::Relaxed);
            std::hint::spin_loop();
            words[0].store(v + 1, Ordering::Relaxed);
        }
        0
    }

    const INCREMENTS: u64 = 2000;

    fn lock_arg(lock: &multiproc::sync::Lock, mem: &SharedMemory) -> Vec<u8> {
        format!("{}\n{}", lock.handle(), mem.handle()).into_bytes()
    }

    fn shared_lock_guards_the_children(m: StartMethod) {
        let lock = multiproc::sync::Lock::new().unwrap();
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        let children: Vec<Process> = (0..2)
            .map(|_| entry(m, "locked_increments", lock_arg(&lock, &mem)))
            .collect();
        for c in &children {
            c.start().unwrap();
        }
        for c in &children {
            assert_eq!(join(c), 0);
        }
        assert_eq!(
            mem.as_atomic_u64()[0].load(Ordering::SeqCst),
            2 * INCREMENTS
        );
    }

    fn lock_held_by_a_killed_child_reports_owner_died(m: StartMethod) {
        use multiproc::sync::LockError;
        let lock = multiproc::sync::Lock::new().unwrap();
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        mem.as_atomic_u64()[1].store(1, Ordering::SeqCst);
        let p = entry(m, "locked_increments", lock_arg(&lock, &mem));
        p.start().unwrap();
        wait_word(&mem, 4, 1);
        p.kill().unwrap();
        assert_eq!(join(&p), -9);
        match lock.acquire_timeout(DEADLINE) {
            Err(LockError::OwnerDied(guard)) => guard.make_consistent(),
            Ok(_) => panic!("acquired without OwnerDied"),
            Err(LockError::Timeout) => panic!("timed out"),
        }
        assert!(lock.acquire().is_ok());
    }

    /// `arg`: a handle text. Exit code 1 if the descriptor of its memfd is
    /// open and close-on-exec here, 2 if open without it, 3 if not open.
    fn cloexec_of_handle(arg: &[u8]) -> i32 {
        let Ok(text) = std::str::from_utf8(arg) else {
            return 100;
        };
        let Some(fd) = text.split(':').nth(2).and_then(|f| f.parse::<i32>().ok()) else {
            return 101;
        };
        // SAFETY: F_GETFD only reads the descriptor flags.
        match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
            -1 => 3,
            flags if flags & libc::FD_CLOEXEC != 0 => 1,
            _ => 2,
        }
    }

    fn inherited_segments_stay_close_on_exec(m: StartMethod) {
        let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
        let p = entry(m, "cloexec_of_handle", handle_of(&mem));
        p.start().unwrap();
        assert_eq!(join(&p), 1);
    }

    /// arg[0]: the method; arg[1]: depth. Starts a child by the same method
    /// one level deeper (down to depth 0, which exits with 1) and returns its
    /// code + 1.
    fn nested(arg: &[u8]) -> i32 {
        let (method, depth) = (arg[0], arg[1]);
        if depth == 0 {
            return 1;
        }
        let m = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ][method as usize];
        let p = entry(m, "nested", vec![method, depth - 1]);
        if p.start().is_err() {
            return 100;
        }
        p.join(Some(DEADLINE)).map_or(101, |code| code + 1)
    }

    fn grandchildren_by_the_same_method(m: StartMethod) {
        let index = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ]
        .iter()
        .position(|x| *x == m)
        .unwrap() as u8;
        let p = entry(m, "nested", vec![index, 2]);
        p.start().unwrap();
        assert_eq!(join(&p), 3);
    }

    #[cfg(feature = "serde")]
    fn typed_sum(arg: &[u8]) -> i32 {
        match process::decode_arg::<(Vec<u16>, String)>(arg) {
            Ok((numbers, tag)) if tag == "sum" => numbers.iter().map(|n| i32::from(*n)).sum(),
            _ => 255,
        }
    }

    #[cfg(feature = "serde")]
    fn typed_arguments(m: StartMethod) {
        let arg = (vec![1u16, 2, 3, 4], "sum".to_string());
        let p = Process::from_entry_with("typed_sum", &arg)
            .unwrap()
            .start_method(m);
        p.start().unwrap();
        assert_eq!(join(&p), 10);
        let p = entry(m, "typed_sum", vec![0xff; 3]);
        p.start().unwrap();
        assert_eq!(join(&p), 255);
    }

    #[cfg(not(feature = "serde"))]
    fn typed_arguments(_: StartMethod) {}

    type Test = fn(StartMethod);

    const TESTS: &[(&str, Test)] = &[
        ("exit_codes", exit_codes),
        ("join_timeout_then_release", join_timeout_then_release),
        ("terminate_and_kill", terminate_and_kill),
        ("sentinel_becomes_readable", sentinel_becomes_readable),
        (
            "panic_exits_with_one_and_a_message",
            panic_exits_with_one_and_a_message,
        ),
        (
            "shared_memory_reaches_the_child",
            shared_memory_reaches_the_child,
        ),
        (
            "bad_handle_is_an_error_in_the_child",
            bad_handle_is_an_error_in_the_child,
        ),
        ("identity_in_the_child", identity_in_the_child),
        ("bad_input_is_refused", bad_input_is_refused),
        ("close_releases", close_releases),
        (
            "dropped_daemon_is_killed_and_reaped",
            dropped_daemon_is_killed_and_reaped,
        ),
        (
            "daemon_dies_with_its_parent_killed_or_not",
            daemon_dies_with_its_parent_killed_or_not,
        ),
        ("orphans_are_reaped", orphans_are_reaped),
        ("start_from_threads", start_from_threads),
        (
            "forkserver_exits_with_its_parent",
            forkserver_exits_with_its_parent,
        ),
        (
            "stray_launch_variable_ends_the_program",
            stray_launch_variable_ends_the_program,
        ),
        (
            "c_api_daemon_flag_and_parent_pid",
            c_api_daemon_flag_and_parent_pid,
        ),
        ("typed_arguments", typed_arguments),
        (
            "inherited_segments_stay_close_on_exec",
            inherited_segments_stay_close_on_exec,
        ),
        (
            "shared_lock_guards_the_children",
            shared_lock_guards_the_children,
        ),
        (
            "lock_held_by_a_killed_child_reports_owner_died",
            lock_held_by_a_killed_child_reports_owner_died,
        ),
        (
            "grandchildren_by_the_same_method",
            grandchildren_by_the_same_method,
        ),
        (
            "many_segments_reach_the_child",
            many_segments_reach_the_child,
        ),
        (
            "sigint_ends_children_not_the_forkserver",
            sigint_ends_children_not_the_forkserver,
        ),
    ];

    pub fn main() {
        multiproc::register_entries!(
            exit_with,
            wait_at_gate,
            panics,
            report_identity,
            open_handle,
            start_daemon_then_wait,
            use_forkserver_then_exit,
            nested,
            locked_increments,
            cloexec_of_handle,
            touch_every_block,
            wait_for_sigint,
        )
        .unwrap();
        #[cfg(feature = "serde")]
        multiproc::register_entries!(typed_sum).unwrap();
        process::init().unwrap();
        // A shell starts background jobs with SIGINT ignored, and children
        // inherit that; the SIGINT test is about the default action, so this
        // process (a spawn child runs `init` above and never gets here) starts
        // from it whoever ran it.
        // SAFETY: no other thread runs yet; SIG_DFL is a valid disposition.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };

        let filter: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let mut failed = Vec::new();
        let mut ran = 0;
        let started = Instant::now();
        for method in [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ] {
            for (name, test) in TESTS {
                let full = format!("{method}::{name}");
                if !filter.is_empty() && !filter.iter().any(|f| full.contains(f.as_str())) {
                    continue;
                }
                ran += 1;
                let outcome = catch_unwind(AssertUnwindSafe(|| test(method)));
                println!(
                    "test {full} ... {}",
                    if outcome.is_ok() { "ok" } else { "FAILED" }
                );
                if outcome.is_err() {
                    failed.push(full);
                }
            }
        }
        // The fork server (if one was started) must not be reported as a child.
        if let Some(server) = process::forkserver_pid() {
            assert!(!active_children().contains(&server));
        }
        // The summary line in libtest's form, so tools that tally
        // `test result:` lines (scripts/test-all) count this suite too.
        let outcome = if failed.is_empty() { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {outcome}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; \
         finished in {:.2}s",
            ran - failed.len(),
            failed.len(),
            3 * TESTS.len() - ran,
            started.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            println!("failed: {failed:?}");
            std::process::exit(1);
        }
    }
}
