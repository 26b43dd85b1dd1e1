//! `process` with the fork start method, on real processes.
//!
//! Children that must stay alive block reading a pipe (a "gate") until the
//! test writes a byte or kills them; nothing is ordered by sleeping. Every
//! wait has a deadline.
#![cfg(not(loom))]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use multiproc::Error;
use multiproc::process::{self, Process, StartMethod, active_children};
use multiproc::sys;

/// Far longer than anything here takes; reaching it means a bug.
const DEADLINE: Duration = Duration::from_secs(30);

fn join(p: &Process) -> i32 {
    p.join(Some(DEADLINE))
        .unwrap_or_else(|e| panic!("join of {} failed: {e}", p.name()))
}

/// A pipe `(read end, write end)`: a child blocks reading the read end until
/// the test writes to the write end.
fn gate() -> (File, File) {
    let (r, w) = sys::pipe().expect("pipe");
    (File::from(r), File::from(w))
}

/// A target that waits at the gate and exits with the byte it reads.
fn wait_at(mut gate: File) -> impl FnOnce() -> i32 + Send + 'static {
    move || {
        let mut byte = [0u8];
        match gate.read(&mut byte) {
            Ok(1) => byte[0].into(),
            _ => 99,
        }
    }
}

/// What the pipe holds now, without waiting for an end of file (other
/// tests' children may hold copies of the write end).
fn read_available(pipe: &mut File) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while sys::poll_readable(pipe.as_fd(), Some(Duration::ZERO)).unwrap() {
        match pipe.read(&mut buf).unwrap() {
            0 => break,
            n => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The state letter of `pid` if it is a child of this process (`Z`: a
/// zombie nobody reaped), read from `/proc/PID/stat`.
fn our_child_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid: i32 = fields.next()?.parse().ok()?;
    (ppid == sys::getpid()).then_some(state)
}

fn assert_reaped(pid: i32) {
    assert_eq!(
        our_child_state(pid),
        None,
        "child {pid} is still our child (zombie or running)"
    );
}

#[test]
fn exit_codes_come_from_return_values() {
    let unit = Process::new(|| ());
    let three = Process::new(|| 3);
    let ok = Process::new(|| Ok::<(), String>(()));
    let ok_four = Process::new(|| Ok::<i32, String>(4));
    for p in [&unit, &three, &ok, &ok_four] {
        p.start().unwrap();
    }
    assert_eq!(join(&unit), 0);
    assert_eq!(join(&three), 3);
    assert_eq!(join(&ok), 0);
    assert_eq!(join(&ok_four), 4);
}

#[test]
fn an_error_exits_with_1_and_is_printed_on_stderr() {
    let (mut stderr_r, stderr_w) = gate();
    let p = Process::new(move || -> Result<(), String> {
        sys::dup2(stderr_w.as_fd(), 2).expect("dup2");
        Err("disk on fire".into())
    });
    p.start().unwrap();
    assert_eq!(join(&p), 1);
    let text = read_available(&mut stderr_r);
    assert!(text.contains("Error: disk on fire"), "stderr was {text:?}");
}

#[test]
fn output_left_in_buffers_is_written_before_the_child_exits() {
    let (mut out_r, out_w) = gate();
    let p = Process::new(move || {
        sys::dup2(out_w.as_fd(), 1).expect("dup2");
        // No newline: Rust's stdout (a line writer) and C's stdout (fully
        // buffered on a pipe) both keep it until a flush.
        std::io::stdout()
            .write_all(b"rust-pending ")
            .expect("write");
        // SAFETY: a NUL-terminated format with no conversions.
        unsafe { libc::printf(c"c-pending".as_ptr()) };
    });
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let text = read_available(&mut out_r);
    assert!(
        text.contains("rust-pending") && text.contains("c-pending"),
        "stdout was {text:?}"
    );
}

#[test]
fn a_panic_exits_with_1_and_its_message_is_on_stderr() {
    let (mut stderr_r, stderr_w) = gate();
    let p = Process::new(move || -> i32 {
        sys::dup2(stderr_w.as_fd(), 2).expect("dup2");
        panic!("boom number {}", 7);
    })
    .with_name("panicker");
    p.start().unwrap();
    assert_eq!(join(&p), 1);
    assert_eq!(p.exitcode(), Some(1));
    let text = read_available(&mut stderr_r);
    assert!(
        text.contains("Process panicker") && text.contains("panicked: boom number 7"),
        "stderr was {text:?}"
    );
}

#[test]
fn kill_gives_minus_9_and_later_signals_are_no_ops() {
    let (r, _w) = gate();
    let p = Process::new(wait_at(r));
    p.start().unwrap();
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    assert_eq!(p.exitcode(), Some(-9));
    assert!(!p.is_alive());
    // Reaped: nothing is signalled any more, and nothing fails.
    p.kill().unwrap();
    p.terminate().unwrap();
    assert_eq!(join(&p), -9);
}

#[test]
fn terminate_gives_minus_15() {
    let (r, _w) = gate();
    let p = Process::new(wait_at(r));
    p.start().unwrap();
    p.terminate().unwrap();
    assert_eq!(join(&p), -15);
    assert_eq!(p.exitcode(), Some(-15));
}

#[test]
fn join_times_out_while_the_child_blocks_then_succeeds() {
    let (r, mut w) = gate();
    let p = Process::new(wait_at(r));
    p.start().unwrap();
    assert!(matches!(p.join(Some(Duration::ZERO)), Err(Error::Timeout)));
    assert!(matches!(
        p.join(Some(Duration::from_millis(20))),
        Err(Error::Timeout)
    ));
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    w.write_all(&[6]).unwrap();
    assert_eq!(join(&p), 6);
}

#[test]
fn one_thread_joins_while_another_kills() {
    fn send_and_sync<T: Send + Sync>(_: &T) {}
    let (r, _w) = gate();
    let p = Process::new(wait_at(r));
    send_and_sync(&p);
    p.start().unwrap();
    std::thread::scope(|s| {
        let joiner = s.spawn(|| p.join(Some(DEADLINE)));
        p.kill().unwrap();
        assert_eq!(joiner.join().unwrap().unwrap(), -9);
    });
    assert_eq!(join(&p), -9);
}

#[test]
fn join_twice_returns_the_cached_code_and_leaves_no_zombie() {
    let p = Process::new(|| 5);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(join(&p), 5);
    assert_reaped(pid);
    let err = sys::waitpid(pid, true).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
    assert_eq!(p.join(Some(Duration::ZERO)).unwrap(), 5);
    assert_eq!(p.join(None).unwrap(), 5);
    assert_eq!(p.pid(), Some(pid));
}

#[test]
fn calls_before_start_are_state_errors() {
    let p = Process::new(|| ());
    assert!(matches!(p.join(None), Err(Error::State(_))));
    assert!(matches!(p.kill(), Err(Error::State(_))));
    assert!(matches!(p.terminate(), Err(Error::State(_))));
    assert!(matches!(p.sentinel(), Err(Error::State(_))));
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
}

#[test]
fn start_twice_is_a_state_error() {
    let p = Process::new(|| 0);
    p.start().unwrap();
    let err = p.start().unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    assert_eq!(join(&p), 0);
    assert!(matches!(p.start(), Err(Error::State(_))));
}

#[test]
fn closures_are_refused_by_spawn_and_forkserver_and_the_target_is_kept() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let p = Process::new(|| 2).start_method(method);
        let err = p.start().unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(
            err.to_string()
                .contains("a closure can only run in a fork child"),
            "{err}"
        );
        assert_eq!(p.pid(), None);
        let p = p.start_method(StartMethod::Fork);
        p.start().unwrap();
        assert_eq!(join(&p), 2);
    }
}

#[test]
fn drop_after_the_child_ended_reaps_it() {
    let p = Process::new(|| 0);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    // Wait for the end through the sentinel, without reaping.
    assert!(sys::poll_readable(p.sentinel().unwrap(), Some(DEADLINE)).unwrap());
    drop(p);
    assert_reaped(pid);
}

#[test]
fn drop_of_a_running_daemon_kills_and_reaps_it() {
    let (r, _w) = gate();
    let p = Process::new(wait_at(r)).daemon(true);
    assert!(p.is_daemon());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(p.is_alive());
    drop(p);
    assert_reaped(pid);
}

#[test]
fn drop_of_a_running_non_daemon_leaves_an_orphan_reaped_later() {
    let (r, mut w) = gate();
    let p = Process::new(wait_at(r));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    let pidfd = sys::pidfd_open(pid).unwrap();
    drop(p);
    // Still running, and still counted as our child.
    assert!(matches!(our_child_state(pid), Some(s) if s != 'Z'));
    assert!(active_children().contains(&pid));
    w.write_all(&[0]).unwrap();
    assert!(sys::poll_readable(pidfd.as_fd(), Some(DEADLINE)).unwrap());
    // Ended: the next sweep reaps it (another test's sweep may have already).
    assert!(!active_children().contains(&pid));
    assert_reaped(pid);
}

#[test]
fn active_children_lists_the_live_ones() {
    let (r1, mut w1) = gate();
    let (r2, _w2) = gate();
    let a = Process::new(wait_at(r1));
    let b = Process::new(wait_at(r2));
    a.start().unwrap();
    b.start().unwrap();
    let (pa, pb) = (a.pid().unwrap(), b.pid().unwrap());
    let live = active_children();
    assert!(live.contains(&pa) && live.contains(&pb), "{live:?}");
    b.kill().unwrap();
    assert_eq!(join(&b), -9);
    let live = active_children();
    assert!(live.contains(&pa) && !live.contains(&pb), "{live:?}");
    w1.write_all(&[1]).unwrap();
    assert_eq!(join(&a), 1);
    assert!(!active_children().contains(&pa));
}

#[test]
fn sentinel_becomes_readable_when_the_child_ends() {
    let (r, mut w) = gate();
    let p = Process::new(wait_at(r));
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    assert!(!sys::poll_readable(sentinel, Some(Duration::ZERO)).unwrap());
    w.write_all(&[4]).unwrap();
    assert!(sys::poll_readable(sentinel, Some(DEADLINE)).unwrap());
    assert_eq!(join(&p), 4);
}

fn exit_with_first_byte(arg: &[u8]) -> i32 {
    arg.first().copied().map_or(-1, i32::from)
}

#[test]
fn from_entry_runs_a_registered_name_and_refuses_others() {
    process::register("process_fork:first-byte", exit_with_first_byte).unwrap();
    let p = Process::from_entry("process_fork:first-byte", vec![7, 1]).unwrap();
    p.start().unwrap();
    assert_eq!(join(&p), 7);
    let err = Process::from_entry("process_fork:never-registered", vec![]).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[test]
fn names_and_flags() {
    let number = |p: &Process| -> u32 {
        p.name()
            .strip_prefix("Process-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("default name {:?}", p.name()))
    };
    let p = Process::new(|| ());
    let q = Process::new(|| ());
    assert!(number(&q) > number(&p));
    let q = q.with_name("worker").daemon(true);
    assert_eq!(q.name(), "worker");
    assert!(q.is_daemon());
    assert!(!p.is_daemon());
    assert_eq!(p.method(), StartMethod::Fork);
    assert!(format!("{q:?}").contains("worker"));
}

#[test]
fn a_child_starts_its_own_child_named_after_it() {
    let (mut names_r, mut names_w) = gate();
    let outer = Process::new(move || {
        let inner = Process::new(|| 5);
        let _ = writeln!(names_w, "{}", inner.name());
        inner.start().unwrap();
        let code = inner.join(Some(DEADLINE)).unwrap();
        // The grandchild is reaped: nothing left for this child.
        if code == 5 && active_children().is_empty() {
            0
        } else {
            1
        }
    });
    outer.start().unwrap();
    assert_eq!(join(&outer), 0);
    let names = read_available(&mut names_r);
    assert_eq!(names.trim(), format!("{}:1", outer.name()));
}

/// Writes "dropped by PID" into its pipe when dropped.
struct DropWitness(File);

impl Drop for DropWitness {
    fn drop(&mut self) {
        let _ = writeln!(self.0, "dropped by {}", sys::getpid());
    }
}

#[test]
fn the_child_never_runs_the_parents_destructors() {
    let (mut log_r, log_w) = gate();
    let witness = DropWitness(log_w);
    let p = Process::new(|| ());
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(read_available(&mut log_r), "");
    drop(witness);
    assert_eq!(
        read_available(&mut log_r),
        format!("dropped by {}\n", sys::getpid())
    );
}

#[test]
fn the_parent_drops_its_copy_of_the_target_at_start() {
    let (mut log_r, log_w) = gate();
    let witness = DropWitness(log_w);
    let (r, mut w) = gate();
    let p = Process::new(move || {
        let _keep = &witness;
        wait_at(r)()
    });
    p.start().unwrap();
    // The parent's copy is gone; the child's copy is dropped when its
    // target returns, in the child.
    let parent_line = format!("dropped by {}\n", sys::getpid());
    assert_eq!(read_available(&mut log_r), parent_line);
    w.write_all(&[0]).unwrap();
    assert_eq!(join(&p), 0);
    let child_line = format!("dropped by {}\n", p.pid().unwrap());
    assert_eq!(read_available(&mut log_r), child_line);
}

#[test]
fn cpu_count_is_at_least_one() {
    assert!(process::cpu_count().unwrap() >= 1);
}

mod c_api {
    use super::*;
    use multiproc::ffi::process::*;
    use multiproc::ffi::{
        MP_ERR_INVALID, MP_ERR_NOT_FOUND, MP_ERR_NULL, MP_ERR_STATE, MP_ERR_TIMEOUT, MP_OK,
        MP_WAIT_FOREVER, mp_last_error,
    };
    use std::ffi::{CStr, c_char, c_int};
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    use std::ptr::{null, null_mut};

    const DEADLINE_NS: i64 = DEADLINE.as_nanos() as i64;

    /// Exits with the first byte of its argument.
    unsafe extern "C" fn c_first_byte(arg: *const u8, len: usize) -> c_int {
        if len == 0 {
            return 0;
        }
        // SAFETY: the entry contract: `arg` holds `len` >= 1 bytes.
        unsafe { *arg }.into()
    }

    /// Reads one byte from the descriptor whose number the argument holds
    /// (4 bytes, native endian) and exits with it.
    unsafe extern "C" fn c_wait_at_fd(arg: *const u8, len: usize) -> c_int {
        if len != 4 {
            return 98;
        }
        let mut raw = [0u8; 4];
        // SAFETY: the entry contract: `arg` holds `len` = 4 bytes.
        unsafe { std::ptr::copy_nonoverlapping(arg, raw.as_mut_ptr(), 4) };
        // SAFETY: the parent passed an open descriptor the child inherited;
        // ManuallyDrop leaves it open.
        let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(i32::from_ne_bytes(raw)) });
        let mut byte = [0u8];
        match file.read(&mut byte) {
            Ok(1) => byte[0].into(),
            _ => 99,
        }
    }

    fn last_error() -> String {
        // SAFETY: mp_last_error never returns NULL.
        unsafe { CStr::from_ptr(mp_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    fn start(method: c_int, entry: &CStr, arg: &[u8]) -> (c_int, *mut mp_process_t) {
        let mut p = null_mut();
        // SAFETY: valid string, buffer and out-pointer.
        let rc =
            unsafe { mp_process_start(method, entry.as_ptr(), arg.as_ptr(), arg.len(), &mut p) };
        (rc, p)
    }

    #[test]
    fn register_and_init_check_their_arguments() {
        // SAFETY: in all calls below, NULLs, and valid strings and arrays.
        unsafe {
            assert_eq!(mp_register(null(), Some(c_first_byte)), MP_ERR_NULL);
            assert_eq!(mp_register(c"c_api:first".as_ptr(), None), MP_ERR_NULL);
            assert_eq!(
                mp_register(c"".as_ptr(), Some(c_first_byte)),
                MP_ERR_INVALID
            );
            assert_eq!(
                mp_register(c"c_api:first".as_ptr(), Some(c_first_byte)),
                MP_OK
            );
            assert_eq!(
                mp_register(c"c_api:first".as_ptr(), Some(c_wait_at_fd)),
                MP_ERR_INVALID
            );
            assert!(
                last_error().contains("already registered"),
                "{}",
                last_error()
            );

            assert_eq!(mp_init(-1, null_mut()), MP_ERR_INVALID);
            assert_eq!(mp_init(1, null_mut()), MP_ERR_NULL);
            let mut args: [*mut c_char; 2] = [c"prog".as_ptr().cast_mut(), null_mut()];
            assert_eq!(mp_init(2, args.as_mut_ptr()), MP_ERR_INVALID);
            assert!(last_error().contains("argv[1] is NULL"), "{}", last_error());
            assert_eq!(mp_init(0, null_mut()), MP_OK);
            assert_eq!(mp_init(1, args.as_mut_ptr()), MP_OK);
        }
        assert!(process::init_ran());
        assert!(mp_cpu_count() >= 1);
    }

    #[test]
    fn start_refuses_bad_arguments_and_leaves_out_alone() {
        // SAFETY: registering a function that follows the entry contract.
        let rc = unsafe { mp_register(c"c_api:refusals".as_ptr(), Some(c_first_byte)) };
        assert_eq!(rc, MP_OK);
        let marker = 0x1234usize as *mut mp_process_t;
        let mut out = marker;
        let entry = c"c_api:refusals";
        // SAFETY: in all calls below, NULLs where tested, else valid pointers.
        unsafe {
            assert_eq!(
                mp_process_start(MP_START_FORK, entry.as_ptr(), null(), 0, null_mut()),
                MP_ERR_NULL
            );
            assert_eq!(
                mp_process_start(MP_START_FORK, null(), null(), 0, &mut out),
                MP_ERR_NULL
            );
            assert_eq!(
                mp_process_start(MP_START_FORK, entry.as_ptr(), null(), 3, &mut out),
                MP_ERR_NULL
            );
            assert_eq!(
                mp_process_start(7, entry.as_ptr(), null(), 0, &mut out),
                MP_ERR_INVALID
            );
            assert!(last_error().contains("MP_START_FORK"), "{}", last_error());
            // Spawn and forkserver check the entry before anything starts.
            for method in [MP_START_SPAWN, MP_START_FORKSERVER] {
                assert_eq!(
                    mp_process_start(method, c"c_api:unregistered".as_ptr(), null(), 0, &mut out),
                    MP_ERR_NOT_FOUND
                );
            }
            assert_eq!(
                mp_process_start(
                    MP_START_FORK,
                    c"c_api:unregistered".as_ptr(),
                    null(),
                    0,
                    &mut out
                ),
                MP_ERR_NOT_FOUND
            );
        }
        assert_eq!(out, marker, "a failed start wrote *out");
    }

    #[test]
    fn null_process_pointers_are_refused() {
        let mut code = 0;
        // SAFETY: in all calls below, NULL process pointers, valid out-pointers.
        unsafe {
            assert_eq!(mp_process_join(null_mut(), 0, &mut code), MP_ERR_NULL);
            assert_eq!(mp_process_pid(null()), MP_ERR_NULL);
            assert_eq!(mp_process_is_alive(null_mut()), MP_ERR_NULL);
            assert_eq!(mp_process_terminate(null_mut()), MP_ERR_NULL);
            assert_eq!(mp_process_kill(null_mut()), MP_ERR_NULL);
            assert_eq!(mp_process_exitcode(null_mut(), &mut code), MP_ERR_NULL);
            assert_eq!(mp_process_sentinel(null_mut(), &mut code), MP_ERR_NULL);
            mp_process_free(null_mut());
        }
    }

    /// All lifecycle checks in one test, so that the freed-pointer checks
    /// run right after the free, before anything could reuse the memory.
    #[test]
    fn lifecycle_join_twice_kill_and_freed_pointers() {
        // SAFETY: registering functions that follow the entry contract.
        unsafe {
            assert_eq!(
                mp_register(c"c_api:byte".as_ptr(), Some(c_first_byte)),
                MP_OK
            );
            assert_eq!(
                mp_register(c"c_api:wait".as_ptr(), Some(c_wait_at_fd)),
                MP_OK
            );
        }

        // Exit code from the entry; join twice.
        let (rc, p) = start(MP_START_FORK, c"c_api:byte", &[3]);
        assert_eq!(rc, MP_OK, "{}", last_error());
        let mut code = 0;
        // SAFETY: `p` is live until the free below; the calls after it
        // check that the freed pointer is refused (its tag says freed).
        unsafe {
            assert!(mp_process_pid(p) > 0);
            assert_eq!(mp_process_join(p, DEADLINE_NS, &mut code), MP_OK);
            assert_eq!(code, 3);
            code = 0;
            assert_eq!(mp_process_join(p, 0, &mut code), MP_OK);
            assert_eq!(code, 3);
            assert_eq!(mp_process_join(p, MP_WAIT_FOREVER, null_mut()), MP_OK);
            assert_eq!(mp_process_join(p, -5, &mut code), MP_ERR_INVALID);
            assert_eq!(mp_process_exitcode(p, &mut code), MP_OK);
            assert_eq!(code, 3);
            assert_eq!(mp_process_exitcode(p, null_mut()), MP_ERR_NULL);
            assert_eq!(mp_process_is_alive(p), 0);
            assert_eq!(mp_process_kill(p), MP_OK);
            assert_eq!(mp_process_terminate(p), MP_OK);
            assert_reaped(mp_process_pid(p));
            mp_process_free(p);
            // Freed: refused, not used.
            assert_eq!(mp_process_join(p, 0, &mut code), MP_ERR_INVALID);
            assert_eq!(mp_process_kill(p), MP_ERR_INVALID);
            mp_process_free(p);
            assert!(
                last_error().contains("not a live object"),
                "{}",
                last_error()
            );
        }

        // A child blocked at a gate: timeout, state error, kill.
        let (r, _w) = gate();
        let fd = r.as_raw_fd().to_ne_bytes();
        let (rc, p) = start(MP_START_FORK, c"c_api:wait", &fd);
        assert_eq!(rc, MP_OK, "{}", last_error());
        // SAFETY: until the free below, `p` is live.
        unsafe {
            assert_eq!(mp_process_join(p, 0, &mut code), MP_ERR_TIMEOUT);
            assert_eq!(mp_process_join(p, 1_000_000, &mut code), MP_ERR_TIMEOUT);
            assert_eq!(mp_process_exitcode(p, &mut code), MP_ERR_STATE);
            assert_eq!(mp_process_is_alive(p), 1);
            let mut sentinel = -1;
            assert_eq!(mp_process_sentinel(p, &mut sentinel), MP_OK);
            assert!(sentinel >= 0);
            assert_eq!(mp_process_kill(p), MP_OK);
            assert_eq!(mp_process_join(p, DEADLINE_NS, &mut code), MP_OK);
            assert_eq!(code, -9);
            mp_process_free(p);
        }

        // Freeing a running child leaves an orphan that a later sweep reaps.
        let (r, mut w) = gate();
        let fd = r.as_raw_fd().to_ne_bytes();
        let (rc, p) = start(MP_START_FORK, c"c_api:wait", &fd);
        assert_eq!(rc, MP_OK, "{}", last_error());
        // SAFETY: `p` is live until the free.
        let pid = unsafe { mp_process_pid(p) };
        let pidfd = sys::pidfd_open(pid).unwrap();
        // SAFETY: `p` is live and not used afterwards.
        unsafe { mp_process_free(p) };
        w.write_all(&[0]).unwrap();
        assert!(sys::poll_readable(pidfd.as_fd(), Some(DEADLINE)).unwrap());
        assert!(!active_children().contains(&pid));
        assert_reaped(pid);
    }
}
