//! An asymmetric fence: a store-load barrier split into a nearly free half
//! for the hot path ([`light`]) and an expensive half for the rare path
//! ([`heavy`]).
//!
//! The lost wake-up problem of every wait/wake protocol is a Dekker pair:
//!
//! | notifier (hot, every operation) | waiter (rare, before it sleeps)   |
//! |---------------------------------|-----------------------------------|
//! | store the new state             | register as a sleeper             |
//! | `light()`                       | `heavy()`                         |
//! | load "does anybody sleep?"      | load the state: still nothing?    |
//!
//! With a plain `fence(SeqCst)` on both sides, at least one side sees the
//! other's store. On x86 that fence drains the store buffer, so the
//! notifier waits for its state store to reach the other core: on a queue
//! that is most of the cost of a small message. Here `light()` is only a
//! compiler barrier and `heavy()` is `membarrier(2)`
//! (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`), which makes every CPU running a
//! thread of a registered process execute a full barrier before it returns.
//! For any interleaving, the notifier's `light()` then stands either before
//! that barrier (its store is visible to the waiter's load) or after it
//! (its load sees the registration): the pair acts as two `SeqCst` fences,
//! as in liburcu and folly's `asymmetricLightBarrier`/`HeavyBarrier`.
//!
//! # Registration
//!
//! `membarrier` reaches only processes registered with
//! `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`. `light()` registers the
//! calling process the first time it runs in it (a fork child, which has a
//! new pid, registers again). Where the kernel refuses (`ENOSYS`, a seccomp
//! filter), `light()` is a real `fence(SeqCst)` in that process, and a
//! `heavy()` that fails returns false: its caller must then not sleep
//! without a deadline (it polls), because a registered notifier elsewhere
//! relies on the barrier it could not make.
//!
//! Under loom both halves are `fence(SeqCst)`: the models check the
//! protocols with the guarantee the pair gives.

#[cfg(not(loom))]
use std::sync::atomic::{AtomicI32, Ordering as StdOrdering, compiler_fence};

/// The registration state of this process: the pid that registered (a fork
/// child sees its parent's pid and registers again), 0 before the first
/// `light()`, or [`UNAVAILABLE`].
#[cfg(not(loom))]
static REGISTERED_PID: AtomicI32 = AtomicI32::new(0);

/// `REGISTERED_PID` when the kernel refused registration: full fences.
#[cfg(not(loom))]
const UNAVAILABLE: i32 = -1;

/// The notifier's half: cheap (a compiler barrier once this process is
/// registered). Put it between the store that changes the state and the
/// load that asks whether anybody sleeps.
///
/// # Example
///
/// ```
/// use multiproc::sync::{EventCount, asymmetric_fence};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// let ec = EventCount::new();
/// let ready = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         ready.store(true, Ordering::Relaxed);
///         asymmetric_fence::light();
///         if ec.sleepers() > 0 {
///             ec.notify_all();
///         }
///     });
///     let got = ec.wait_until_registered(None, asymmetric_fence::heavy, || {
///         ready.load(Ordering::Relaxed).then_some(())
///     });
///     assert_eq!(got, Some(()));
/// });
/// ```
#[inline]
pub fn light() {
    #[cfg(not(loom))]
    {
        // Relaxed: the value was written by this process (or its parent
        // before the fork), and only ever decides which barrier to run.
        let state = REGISTERED_PID.load(StdOrdering::Relaxed);
        if state != crate::sys::current_ids().0 {
            light_slow(state);
            return;
        }
        compiler_fence(StdOrdering::SeqCst);
    }
    #[cfg(loom)]
    crate::shim::fence(crate::shim::Ordering::SeqCst);
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn light_slow(state: i32) {
    if state != UNAVAILABLE {
        let pid = crate::sys::current_ids().0;
        let now = match crate::sys::membarrier_register_global_expedited() {
            Ok(()) => pid,
            Err(_) => UNAVAILABLE,
        };
        // Relaxed: see `light`; two threads registering at once store the
        // same value.
        REGISTERED_PID.store(now, StdOrdering::Relaxed);
        if now == pid {
            // The registration syscall was a full barrier already.
            return;
        }
    }
    std::sync::atomic::fence(StdOrdering::SeqCst);
}

/// The waiter's half: expensive (a system call that interrupts the CPUs
/// running registered processes). Put it between the store that registers
/// the waiter and the load of the state it waits for. False when the
/// barrier could not be made: the caller must not rely on a notify alone
/// (it should sleep with a short deadline and look again).
pub fn heavy() -> bool {
    #[cfg(not(loom))]
    {
        // Our own stores before the call are ordered by the syscall itself.
        crate::sys::membarrier_global_expedited().is_ok()
    }
    #[cfg(loom)]
    {
        crate::shim::fence(crate::shim::Ordering::SeqCst);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn light_registers_this_process_and_heavy_succeeds() {
        light();
        let state = REGISTERED_PID.load(StdOrdering::Relaxed);
        assert!(
            state == crate::sys::current_ids().0 || state == UNAVAILABLE,
            "unexpected state {state}"
        );
        if state != UNAVAILABLE {
            assert!(heavy(), "registered, but the expedited barrier failed");
        }
    }

    #[test]
    fn a_fork_child_registers_again() {
        light();
        let parent_state = REGISTERED_PID.load(StdOrdering::Relaxed);
        // SAFETY: the child only runs `light`/`heavy` (a syscall and
        // atomics, no allocation).
        unsafe {
            crate::test_support::in_fork_child("the fork child did not register itself", || {
                // Inherited: the parent's pid, which is stale here.
                let inherited = REGISTERED_PID.load(StdOrdering::Relaxed);
                light();
                let now = REGISTERED_PID.load(StdOrdering::Relaxed);
                let me = crate::sys::current_ids().0;
                inherited == parent_state
                    && (now == me || now == UNAVAILABLE)
                    && (now == UNAVAILABLE || heavy())
            })
        };
    }
}
