//! Shared arrays and values across real processes (fork), their errors,
//! and their C API called from Rust.
#![cfg(not(loom))]

use std::ffi::{CStr, c_char};
use std::os::fd::AsFd;
use std::ptr;
use std::time::Duration;

use multiproc::Error;
use multiproc::array::{Array, DynArray, Typecode, Value};
use multiproc::ffi::*;
use multiproc::sys::{self, ChildStatus, Forked};

/// The longest any test waits for a child.
const DEADLINE: Duration = Duration::from_secs(20);

/// A forked child, killed and reaped if the test fails before joining it.
struct Child {
    pid: i32,
    reaped: bool,
}

/// Forks; the child runs `body` and exits with its code (101 on panic).
fn fork_child(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs only `body` (test code using this crate's
    // shared objects) and leaves with _exit.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
            sys::exit_immediately(code)
        }
        Forked::Parent(pid) => Child { pid, reaped: false },
    }
}

impl Child {
    /// Waits (at most DEADLINE) and checks the child exited with 0.
    fn expect_success(mut self) {
        let pidfd = sys::pidfd_open(self.pid).expect("pidfd_open");
        let ended = sys::poll_readable(pidfd.as_fd(), Some(DEADLINE)).expect("poll");
        assert!(ended, "child {} still running after {DEADLINE:?}", self.pid);
        self.reaped = true;
        let status = sys::waitpid(self.pid, false).expect("waitpid");
        assert_eq!(status, Some(ChildStatus::Exited(0)), "child {}", self.pid);
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

#[test]
fn children_see_and_change_the_parents_array() {
    let a = Array::<i32>::from_slice(&[1, 2, 3]).unwrap();
    let child = {
        let a = a.clone();
        fork_child(move || {
            if a.to_vec() != [1, 2, 3] {
                return 1;
            }
            a.set(1, -20).map_or(2, |()| 0)
        })
    };
    child.expect_success();
    assert_eq!(a.to_vec(), [1, -20, 3]);
}

#[test]
fn fetch_add_from_several_processes_sums_exactly() {
    const PROCS: u64 = 2;
    const ADDS: u64 = 20_000;
    let a = Array::<u64>::new(3).unwrap();
    let v = Value::<i64>::new(0).unwrap();
    let children: Vec<Child> = (0..PROCS)
        .map(|_| {
            let (a, v) = (a.clone(), v.clone());
            fork_child(move || {
                for i in 0..ADDS {
                    if a.fetch_add((i % 3) as usize, 1).is_err() {
                        return 1;
                    }
                    v.fetch_add(-1);
                }
                0
            })
        })
        .collect();
    for c in children {
        c.expect_success();
    }
    assert_eq!(a.to_vec().iter().sum::<u64>(), PROCS * ADDS);
    assert_eq!(v.get(), -((PROCS * ADDS) as i64));
}

#[test]
fn compare_exchange_claims_each_slot_once() {
    const PROCS: i32 = 2;
    let claims = Array::<i32>::new(64).unwrap();
    let children: Vec<Child> = (1..=PROCS)
        .map(|me| {
            let claims = claims.clone();
            fork_child(move || {
                for i in 0..claims.len() {
                    match claims.compare_exchange(i, 0, me) {
                        Ok(Ok(_)) | Ok(Err(_)) => {}
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
    assert!(claims.to_vec().iter().all(|c| (1..=PROCS).contains(c)));
    assert!(claims.compare_exchange(0, 0, 9).unwrap().is_err());
}

#[test]
fn the_lock_makes_read_modify_write_exact() {
    const PROCS: usize = 2;
    const ROUNDS: u64 = 2_000;
    let a = Array::<f64>::with_lock(2).unwrap();
    assert!(a.get_lock().is_some());
    let children: Vec<Child> = (0..PROCS)
        .map(|_| {
            let a = a.clone();
            fork_child(move || {
                let lock = a.get_lock().expect("made with a lock");
                for _ in 0..ROUNDS {
                    let Ok(_held) = lock.acquire() else { return 1 };
                    // Not atomic on its own: two elements, read then write.
                    let (x, y) = (a.get(0).unwrap(), a.get(1).unwrap());
                    a.copy_from_slice(0, &[x + 1.0, y + 2.0]).unwrap();
                }
                0
            })
        })
        .collect();
    for c in children {
        c.expect_success();
    }
    let total = (PROCS as u64 * ROUNDS) as f64;
    assert_eq!(a.to_vec(), [total, 2.0 * total]);
}

#[test]
fn value_with_lock_and_handle_in_a_child() {
    let v = Value::<u32>::with_lock(41).unwrap();
    let text = v.handle().to_string();
    let child = fork_child(move || {
        let Ok(handle) = text.parse() else { return 2 };
        let Ok(v) = Value::<u32>::open(&handle) else {
            return 3;
        };
        let Some(lock) = v.get_lock() else { return 4 };
        let Ok(_held) = lock.acquire() else { return 5 };
        v.set(v.get() + 1);
        0
    });
    child.expect_success();
    assert_eq!(v.get(), 42);
}

#[test]
fn array_opened_by_handle_shares_elements_and_lock() {
    let a = Array::<i16>::with_lock(5).unwrap();
    let b = Array::<i16>::open(&a.handle()).unwrap();
    b.set(4, 7).unwrap();
    assert_eq!(a.get(4).unwrap(), 7);
    let held = a.get_lock().unwrap().acquire().unwrap();
    assert!(
        b.get_lock().unwrap().is_locked(),
        "one lock, seen through both"
    );
    drop(held);
    assert_eq!(b.len(), 5);
    assert_eq!(b.typecode(), Typecode::I16);
}

#[test]
fn bad_typecode_is_invalid_and_names_the_accepted_codes() {
    for c in ['x', 'c', 'u', 'D'] {
        let err = Typecode::from_char(c).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("b B h H i I l L q Q f d"), "{err}");
    }
}

#[test]
fn index_out_of_bounds_is_invalid_and_writes_nothing() {
    let a = Array::<u8>::from_slice(&[1, 2, 3]).unwrap();
    let err = a.get(3).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("index 3"), "{err}");
    assert!(matches!(a.set(3, 9), Err(Error::Invalid(_))));
    assert!(matches!(a.fetch_add(usize::MAX, 1), Err(Error::Invalid(_))));
    assert!(matches!(
        a.compare_exchange(7, 1, 2),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        a.copy_from_slice(2, &[8, 8]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        a.copy_from_slice(usize::MAX, &[8]),
        Err(Error::Invalid(_))
    ));
    let mut out = [0u8; 4];
    assert!(matches!(
        a.copy_to_slice(0, &mut out),
        Err(Error::Invalid(_))
    ));
    assert_eq!(a.to_vec(), [1, 2, 3], "nothing written");
    a.copy_to_slice(1, &mut out[..2]).unwrap();
    assert_eq!(out[..2], [2, 3]);
}

#[test]
fn handles_of_another_type_or_kind_are_refused() {
    let doubles = Array::<f64>::new(2).unwrap();
    let err = Array::<i32>::open(&doubles.handle()).unwrap_err();
    assert!(matches!(err, Error::Kind { .. }), "{err:?}");
    assert!(err.to_string().contains("array of 'd'"), "{err}");
    // Same layout, another code: 'l' and 'q' on 64-bit Linux.
    #[cfg(target_pointer_width = "64")]
    {
        let longs = Array::<isize>::new(1).unwrap();
        assert!(Array::<i64>::open(&longs.handle()).is_ok());
    }
    let v = Value::<f64>::new(1.0).unwrap();
    assert!(matches!(
        Array::<f64>::open(&v.handle()),
        Err(Error::Kind { .. })
    ));
    assert!(matches!(
        Value::<f64>::open(&doubles.handle()),
        Err(Error::Kind { .. })
    ));
    assert!(matches!(
        Value::<u8>::open(&v.handle()),
        Err(Error::Kind { .. })
    ));
}

#[test]
fn dyn_array_converts_to_the_matching_type_only() {
    let d = DynArray::new(Typecode::U16, 4, false).unwrap();
    assert_eq!(d.len(), 4);
    assert!(d.get_lock().is_none());
    assert!(matches!(d.clone().typed::<i16>(), Err(Error::Kind { .. })));
    let typed = d.clone().typed::<u16>().unwrap();
    typed.set(3, 65535).unwrap();
    // SAFETY: four u16 elements, nobody else writes them now.
    let raw = unsafe { std::slice::from_raw_parts(d.as_ptr().cast::<u16>(), 4) };
    assert_eq!(raw, [0, 0, 0, 65535]);
}

#[test]
fn empty_arrays_work() {
    let a = Array::<f32>::new(0).unwrap();
    assert!(a.is_empty());
    assert!(a.to_vec().is_empty());
    assert!(a.get(0).is_err());
    a.copy_from_slice(0, &[]).unwrap();
}

#[test]
fn huge_lengths_are_too_large() {
    let err = Array::<u64>::new(usize::MAX / 2).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

// -------------------------------------------------------------------- C API

#[test]
fn c_array() {
    // SAFETY: every pointer passed is NULL, a live object from the
    // matching constructor, or a valid out-parameter; the data pointer is
    // used within its length while no other process writes.
    unsafe {
        let mut a = ptr::null_mut();
        assert_eq!(mp_array_new(b'x' as c_char, 4, 0, &mut a), MP_ERR_INVALID);
        let msg = CStr::from_ptr(mp_last_error())
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("b B h H i I l L q Q f d"), "{msg}");
        assert_eq!(mp_array_new(b'i' as c_char, 4, 2, &mut a), MP_ERR_INVALID);
        assert_eq!(
            mp_array_new(b'i' as c_char, 4, 0, ptr::null_mut()),
            MP_ERR_NULL
        );
        assert_eq!(mp_array_new(b'i' as c_char, 4, 0, &mut a), MP_OK);
        assert_eq!(mp_array_len(a), 4);
        assert_eq!(mp_array_typecode(a), b'i' as c_char);
        assert!(mp_array_lock(a).is_null(), "made without a lock");
        let data = mp_array_data(a).cast::<i32>();
        assert!(!data.is_null());
        *data.add(3) = 77;

        let ap = a as usize;
        let child = fork_child(move || {
            let a = ap as *mut mp_array_t;
            let data = mp_array_data(a).cast::<i32>();
            if *data.add(3) != 77 {
                return 1;
            }
            *data = -1;
            0
        });
        child.expect_success();
        assert_eq!(*data, -1);

        let mut buf = [0 as c_char; 256];
        assert_eq!(mp_array_handle(a, buf.as_mut_ptr(), buf.len()), MP_OK);
        let mut again = ptr::null_mut();
        assert_eq!(mp_array_open(buf.as_ptr(), &mut again), MP_OK);
        assert_eq!(*mp_array_data(again).cast::<i32>().add(3), 77);
        assert_eq!(
            mp_array_open(c"mp1:nonsense".as_ptr(), &mut again),
            MP_ERR_INVALID
        );

        // Bad pointers: NULL and another type's object.
        assert!(mp_array_data(ptr::null_mut()).is_null());
        assert_eq!(mp_array_len(ptr::null()), 0);
        assert_eq!(mp_array_typecode(ptr::null()), 0);
        assert!(mp_array_lock(ptr::null_mut()).is_null());
        let mut e = ptr::null_mut();
        assert_eq!(mp_event_new(&mut e), MP_OK);
        assert_eq!(mp_array_len(e.cast()), 0);
        let msg = CStr::from_ptr(mp_last_error())
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("not a live object"), "{msg}");
        mp_event_free(e);

        mp_array_free(again);
        mp_array_free(a);
        mp_array_free(ptr::null_mut());
    }
}

#[test]
fn c_array_with_lock() {
    // SAFETY: as in `c_array`.
    unsafe {
        let mut a = ptr::null_mut();
        assert_eq!(mp_array_new(b'd' as c_char, 2, 1, &mut a), MP_OK);
        let lock = mp_array_lock(a);
        assert!(!lock.is_null());
        assert_eq!(mp_lock_acquire(lock, 0), MP_OK);
        let ap = a as usize;
        let child = fork_child(move || {
            let lock = mp_array_lock(ap as *mut mp_array_t);
            if mp_lock_acquire(lock, 0) == MP_ERR_TIMEOUT {
                0
            } else {
                1
            }
        });
        child.expect_success();
        assert_eq!(mp_lock_release(lock), MP_OK);
        mp_array_free(a);
    }
}
