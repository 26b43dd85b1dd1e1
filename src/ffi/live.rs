//! The set of objects this library has handed to C and not yet freed.
//!
//! A C caller can pass any pointer: NULL, a freed object, a pointer into
//! the middle of something, garbage. Reading a tag behind such a pointer is
//! already a read of memory we do not own (and a fault if it is unmapped),
//! so every C entry point asks this set first and touches the object only
//! when its address is here: a freed, foreign or made-up pointer is refused
//! with `MP_ERR_INVALID` without ever being dereferenced.
//!
//! The set is sharded by address over [`SHARDS`] spin-locked `BTreeSet`s on
//! their own cache lines, so threads using different objects do not share a
//! line, and a lookup costs one uncontended lock and a short search.
//!
//! Fork: a fork child inherits the set with the objects. A shard locked by
//! another thread at the instant of the fork would stay locked forever in
//! the child, so a `pthread_atfork` prepare handler takes every shard lock
//! before the fork and both sides release them after it.

use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many independently locked parts the set has.
const SHARDS: usize = 64;

/// One part of the set: a spin lock and the addresses it guards.
#[repr(align(64))]
struct Shard {
    locked: AtomicBool,
    addresses: UnsafeCell<BTreeSet<usize>>,
}

// SAFETY: `addresses` is only reached through `Shard::with`, which holds
// `locked` for the whole access, so no two threads touch it at once.
unsafe impl Sync for Shard {}

impl Shard {
    const fn new() -> Shard {
        Shard {
            locked: AtomicBool::new(false),
            addresses: UnsafeCell::new(BTreeSet::new()),
        }
    }

    fn lock(&self) {
        let mut spins = 0u32;
        // SYNC(live-shard): Acquire pairs with the Release in `unlock`, so
        // the set's last writer's changes are visible here.
        while self.locked.swap(true, Ordering::Acquire) {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn unlock(&self) {
        // SYNC(live-shard): Release pairs with the Acquire in `lock`.
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeSet<usize>) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held until after `f` returns (see the `Sync`
        // impl); `f` cannot reach this shard again (it gets the set only).
        let r = f(unsafe { &mut *self.addresses.get() });
        self.unlock();
        r
    }
}

static LIVE: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];

fn shard_of(address: usize) -> &'static Shard {
    // Boxes are at least 8-aligned: drop the low bits, then mix (Fibonacci
    // hashing) so neighbouring allocations spread over the shards.
    let mixed = ((address >> 3) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    &LIVE[(mixed >> (64 - SHARDS.trailing_zeros())) as usize]
}

/// Records `address` as a live object handed to C.
pub(crate) fn insert(address: usize) {
    register_fork_handlers();
    shard_of(address).with(|set| set.insert(address));
}

/// Forgets `address`; false when it was not live (a double or foreign free).
pub(crate) fn remove(address: usize) -> bool {
    shard_of(address).with(|set| set.remove(&address))
}

/// Whether `address` is a live object handed to C.
pub(crate) fn contains(address: usize) -> bool {
    shard_of(address).with(|set| set.contains(&address))
}

extern "C" fn lock_all_before_fork() {
    for shard in &LIVE {
        shard.lock();
    }
}

extern "C" fn unlock_all_after_fork() {
    for shard in LIVE.iter().rev() {
        shard.unlock();
    }
}

fn register_fork_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::sys::register_fork_handlers(
            lock_all_before_fork,
            unlock_all_after_fork,
            unlock_all_after_fork,
        )
        .expect("pthread_atfork");
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_remove() {
        let b = Box::new(7u64);
        let a = &*b as *const u64 as usize;
        assert!(!contains(a));
        insert(a);
        assert!(contains(a));
        assert!(!contains(a + 8), "an address inside is not the object");
        assert!(remove(a));
        assert!(!remove(a), "a second free is refused");
        assert!(!contains(a));
    }

    #[test]
    fn a_fork_child_sees_the_set_and_can_lock_it() {
        let b = Box::new(1u64);
        let a = &*b as *const u64 as usize;
        insert(a);
        // Another thread hammers the shards while this one forks: the child
        // must still be able to take every lock.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let hammer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let x = 0x1000 + (i % 4096) * 8;
                    insert(x);
                    remove(x);
                    i += 1;
                }
            })
        };
        for _ in 0..20 {
            // SAFETY: the child only takes our spin locks (released by the
            // fork handlers) and searches the set, without allocating.
            unsafe {
                crate::test_support::in_fork_child("fork child could not use the live set", || {
                    let ok = contains(a) && !contains(a + 8);
                    for s in &LIVE {
                        s.with(|_| ());
                    }
                    ok
                })
            };
        }
        stop.store(true, Ordering::Relaxed);
        hammer.join().unwrap();
        assert!(remove(a));
    }
}
