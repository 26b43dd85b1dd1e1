//! How a forkserver child puts the descriptors it received at the numbers
//! they have in its parent (so handle texts made there resolve unchanged)
//! and closes every other one.
//!
//! The server works the moves out before it forks ([`plan`]); the child
//! only carries them out ([`apply`]): system calls, nothing else. In a fork
//! child every page it writes first and every stretch of code it runs first
//! is a page fault, on the path the parent's `join` waits for, and working
//! the moves out allocates and hashes.
//!
//! The plan works in place: a descriptor that sits on the target of
//! another is first copied to the lowest free number. So the child never
//! holds more than one descriptor beyond those it received and never needs
//! a number above them: a request that fits the descriptor limit of the
//! parent fits in the child (which has the same limit: the server
//! inherited it).

use std::collections::{BTreeMap, BTreeSet};

use crate::sys;

/// One step of a plan, on raw descriptor numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Close every descriptor from `first` to `last`, both included.
    CloseRange {
        /// The first number closed.
        first: u32,
        /// The last number closed.
        last: u32,
    },
    /// `dup3(from, to)`: `to` becomes a copy of `from` (what `to` was is
    /// closed), close-on-exec or not.
    Dup {
        /// The descriptor copied.
        from: i32,
        /// The number the copy gets.
        to: i32,
        /// Whether the copy is close-on-exec.
        cloexec: bool,
    },
    /// Close one descriptor.
    Close(i32),
    /// Clear close-on-exec of a descriptor already at its number.
    KeepOnExec(i32),
}

/// The steps that take a process whose descriptors are `held` (and any
/// others, to be closed) to one where the descriptor that was at `held[i]`
/// is at `targets[i]`, nothing else is open, and each is close-on-exec
/// except at 0 to 2 (stdio, inherited by programs the child execs).
///
/// `held` and `targets` have the same length, and neither has a number
/// twice (the server checks `targets`; `held` are open descriptors).
pub(crate) fn plan(held: &[i32], targets: &[i32]) -> Vec<Step> {
    debug_assert_eq!(held.len(), targets.len());
    let mut steps = Vec::with_capacity(2 * held.len() + 2);
    let mut open = Numbers::new(held);
    let mut next = 0u32;
    for &fd in &open.open {
        if fd as u32 > next {
            steps.push(Step::CloseRange {
                first: next,
                last: fd as u32 - 1,
            });
        }
        next = fd as u32 + 1;
    }
    steps.push(Step::CloseRange {
        first: next,
        last: u32::MAX,
    });
    // Where each slot's descriptor is now, whether it is close-on-exec
    // there (received ones are), and which slot still to be placed sits at
    // each number.
    let mut at = held.to_vec();
    let mut cloexec = vec![true; held.len()];
    let mut unplaced_at: BTreeMap<i32, usize> =
        held.iter().enumerate().map(|(i, &fd)| (fd, i)).collect();
    for (i, &target) in targets.iter().enumerate() {
        let current = at[i];
        unplaced_at.remove(&current);
        if current == target {
            // Already there (received there, or copied there out of another
            // one's way): only its flag may be wrong.
            if cloexec[i] != (target > 2) {
                steps.push(Step::KeepOnExec(target));
            }
            continue;
        }
        if let Some(j) = unplaced_at.remove(&target) {
            // Another one still to be placed sits on the target: out of the
            // way first.
            let free = open.lowest_free();
            steps.push(Step::Dup {
                from: target,
                to: free,
                cloexec: free > 2,
            });
            open.insert(free);
            unplaced_at.insert(free, j);
            at[j] = free;
            cloexec[j] = free > 2;
        }
        steps.push(Step::Dup {
            from: current,
            to: target,
            cloexec: target > 2,
        });
        steps.push(Step::Close(current));
        open.remove(current);
        open.insert(target);
        at[i] = target;
    }
    steps
}

/// The descriptor numbers open in the child as the plan goes, and the
/// free ones among those that can be the lowest: a copy out of the way is
/// made when `held.len()` descriptors are open, so the lowest free number
/// is then at most `held.len()`.
struct Numbers {
    open: BTreeSet<i32>,
    free: BTreeSet<i32>,
    limit: i32,
}

impl Numbers {
    fn new(held: &[i32]) -> Numbers {
        let open: BTreeSet<i32> = held.iter().copied().collect();
        let limit = held.len() as i32;
        let free = (0..=limit).filter(|n| !open.contains(n)).collect();
        Numbers { open, free, limit }
    }

    fn insert(&mut self, fd: i32) {
        self.open.insert(fd);
        self.free.remove(&fd);
    }

    fn remove(&mut self, fd: i32) {
        self.open.remove(&fd);
        if fd <= self.limit {
            self.free.insert(fd);
        }
    }

    /// The lowest number not open (what `dup` would pick).
    fn lowest_free(&self) -> i32 {
        *self.free.first().expect("at most `limit` numbers are open")
    }
}

/// Carries out `steps`; on a failed `dup3`, the name of the call.
///
/// # Safety
///
/// - Only in a fresh fork child, before it uses any descriptor: the steps
///   close and replace descriptors by number, behind the back of whatever
///   owns them (the child must never drop or use those owners).
/// - `steps` is a [`plan`] made for this process's descriptors.
#[inline(always)]
pub(crate) unsafe fn apply(steps: &[Step]) -> Result<(), &'static str> {
    for step in steps {
        match *step {
            // SAFETY: the caller's contract (a fresh fork child whose
            // descriptors the plan was made for).
            Step::CloseRange { first, last } => unsafe { sys::close_range(first, last) },
            Step::Dup { from, to, cloexec } => {
                // SAFETY: as above; `from` is open at this step of the plan.
                let copied = unsafe { sys::dup3(from, to, cloexec) };
                copied.map_err(|_| "dup3")?;
            }
            // SAFETY: as above; a copy of it was just made elsewhere.
            Step::Close(fd) => unsafe { sys::close(fd) },
            // SAFETY: as above; open at this step of the plan.
            Step::KeepOnExec(fd) => unsafe { sys::keep_on_exec(fd) }.map_err(|_| "fcntl")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

    use super::*;
    use crate::sys::Forked;

    /// Runs `steps` on a model descriptor table (number -> which slot's
    /// descriptor, or `None` for one of the others) and returns the final
    /// table with each entry's close-on-exec flag.
    fn simulate(
        held: &[i32],
        others: &[i32],
        steps: &[Step],
    ) -> BTreeMap<i32, (Option<usize>, bool)> {
        let mut table: BTreeMap<i32, (Option<usize>, bool)> = held
            .iter()
            .enumerate()
            .map(|(i, &fd)| (fd, (Some(i), true)))
            .chain(others.iter().map(|&fd| (fd, (None, false))))
            .collect();
        for step in steps {
            match *step {
                Step::CloseRange { first, last } => {
                    table.retain(|&fd, _| !(first..=last).contains(&(fd as u32)));
                }
                Step::Dup { from, to, cloexec } => {
                    assert_ne!(from, to, "dup3 onto itself is EINVAL");
                    let (who, _) = *table.get(&from).expect("dup3 from a closed number");
                    if let Some((Some(lost), _)) = table.get(&to) {
                        // Replacing a received one is fine only if a copy of
                        // it lives on elsewhere.
                        let lost = *lost;
                        assert!(
                            table
                                .iter()
                                .any(|(&fd, &(w, _))| fd != to && w == Some(lost)),
                            "dup3 onto {to} loses slot {lost}"
                        );
                    }
                    table.insert(to, (who, cloexec));
                }
                Step::Close(fd) => {
                    assert!(table.remove(&fd).is_some(), "close of a closed {fd}");
                }
                Step::KeepOnExec(fd) => {
                    table.get_mut(&fd).expect("fcntl of a closed number").1 = false;
                }
            }
        }
        table
    }

    fn check(held: &[i32], others: &[i32], targets: &[i32]) {
        let steps = plan(held, targets);
        let table = simulate(held, others, &steps);
        let want: BTreeMap<i32, (Option<usize>, bool)> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (Some(i), t > 2)))
            .collect();
        assert_eq!(table, want, "held {held:?} targets {targets:?}: {steps:?}");
        let limit = held.iter().chain(targets).max().copied().unwrap_or(0);
        for step in &steps {
            if let Step::Dup { to, .. } = step {
                assert!(*to <= limit, "{to} above every number in play: {steps:?}");
            }
        }
    }

    #[test]
    fn plans_place_every_descriptor_and_close_the_rest() {
        check(&[], &[0, 1, 2, 5], &[]);
        // Already in place; swapped; a cycle of three; onto stdio.
        check(&[3, 4], &[0, 1, 2], &[3, 4]);
        check(&[3, 4], &[0, 1, 2], &[4, 3]);
        check(&[5, 6, 7], &[0, 1, 2, 9], &[6, 7, 5]);
        check(&[3, 4, 5], &[0, 1, 2], &[0, 1, 2]);
        // Targets far above and below, a gap the aside copy falls into.
        check(&[3, 4, 8], &[0, 1, 2, 6], &[8, 3, 100]);
        check(&[10, 11], &[0, 1, 2], &[11, 10]);
        // Copied out of the way onto 0, its own target: close-on-exec must
        // go (stdin is inherited by programs the child execs). Received at
        // 1 (the server's stdio closed), its target.
        check(&[6, 7], &[1, 2], &[7, 0]);
        check(&[1, 7], &[2], &[1, 7]);
    }

    #[test]
    fn random_plans_are_correct() {
        // A small xorshift: every permutation shape of a few numbers.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n) as i32
        };
        for _ in 0..3000 {
            let count = next(8) as usize;
            let mut numbers: Vec<i32> = (0..24).collect();
            for k in (1..numbers.len()).rev() {
                numbers.swap(k, next(k as u64 + 1) as usize);
            }
            let held: Vec<i32> = numbers[..count].to_vec();
            let others: Vec<i32> = numbers[count..count + 3].to_vec();
            let mut targets: Vec<i32> = (0..24).collect();
            for k in (1..targets.len()).rev() {
                targets.swap(k, next(k as u64 + 1) as usize);
            }
            targets.truncate(count);
            check(&held, &others, &targets);
        }
    }

    #[test]
    fn a_request_of_thousands_of_descriptors_is_planned() {
        // Every target held by the next one still to be placed: a copy out
        // of the way at every step.
        let n = 3_000;
        let held: Vec<i32> = (1..=n).collect();
        let targets: Vec<i32> = (0..n).map(|i| (i + 2) % (n + 1)).collect();
        check(&held, &[0], &targets);
        let dups = plan(&held, &targets)
            .iter()
            .filter(|s| matches!(s, Step::Dup { .. }))
            .count();
        assert!(
            dups > n as usize,
            "the case copies out of the way: {dups} copies"
        );
    }

    #[test]
    fn a_fork_child_applies_a_plan() {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..5).map(|_| sys::pipe().unwrap()).collect();
        // SAFETY: the child only moves descriptors, writes and `_exit`s.
        match unsafe { sys::fork() }.unwrap() {
            Forked::Child => {
                let fds: Vec<OwnedFd> = pipes
                    .iter()
                    .map(|(_, w)| sys::fcntl_dupfd_cloexec(w.as_fd(), 0).unwrap())
                    .collect();
                let held: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
                // Write end `i` goes to `targets[i]`: a cycle of three, one
                // left in place, one onto a number that must be freed first.
                let targets = [held[1], held[2], held[0], held[3], pipes[0].1.as_raw_fd()];
                let steps = plan(&held, &targets);
                std::mem::forget(fds);
                std::mem::forget(pipes);
                // SAFETY: a fork child that uses no descriptor but these.
                if unsafe { apply(&steps) }.is_err() {
                    sys::exit_immediately(30);
                }
                for (i, &t) in targets.iter().enumerate() {
                    // SAFETY: the plan left a descriptor at each target; it
                    // is never closed here (ManuallyDrop).
                    let mut pipe = std::mem::ManuallyDrop::new(std::fs::File::from(unsafe {
                        OwnedFd::from_raw_fd(t)
                    }));
                    if pipe.write_all(&[i as u8]).is_err() {
                        sys::exit_immediately(10 + i as i32);
                    }
                }
                // Nothing else is open: the read ends are gone.
                let others_closed = pipes_closed_except(&targets);
                sys::exit_immediately(if others_closed { 0 } else { 20 });
            }
            Forked::Parent(pid) => {
                let status = sys::waitpid(pid, false).unwrap();
                for (i, (r, w)) in pipes.into_iter().enumerate() {
                    drop(w);
                    let mut got = Vec::new();
                    std::fs::File::from(r).read_to_end(&mut got).unwrap();
                    assert_eq!(got, [i as u8], "pipe {i}");
                }
                assert_eq!(status, Some(sys::ChildStatus::Exited(0)));
            }
        }
    }

    /// Whether every descriptor number up to 64 but `keep` is closed.
    fn pipes_closed_except(keep: &[i32]) -> bool {
        (0..64).all(|fd| keep.contains(&fd) || !sys::fd_is_open(fd))
    }
}
