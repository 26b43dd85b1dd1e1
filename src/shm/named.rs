//! Named segments in `/dev/shm`: their names, and cleaning up after a
//! creator that died.
//!
//! A name records its creator: `/mp-<pid>-<starttime>-<random>`, where
//! `starttime` is field 22 of `/proc/<pid>/stat`. The pair names one
//! process even across pid reuse. A creator unlinks its names when the
//! segments are dropped; if it is killed first, two things clean up:
//!
//! - the *tracker* ([`super::tracker`]): a small process started with the
//!   first named segment, which unlinks every name its creator registered as
//!   soon as the creator (and all its fork children) are gone;
//! - [`sweep_orphans`]: unlinks every `mp-` name whose creator is no longer
//!   alive. It runs once in each process before its first named segment,
//!   and can be called at any time (C: `mp_segment_sweep`).

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys;

use super::tracker;

const PREFIX: &str = "mp-";
const SHM_DIR: &str = "/dev/shm";

/// This process's `(pid, starttime)`, recomputed after a fork.
fn creator_identity() -> Result<(i32, u64)> {
    let pid = sys::getpid();
    let start = sys::process_start_time(pid)
        .map_err(|e| Error::os("reading /proc/self/stat", e))?
        .map(|(start, _)| start)
        .ok_or_else(|| Error::NotFound("/proc/self/stat".into()))?;
    Ok((pid, start))
}

/// Creates a fresh name of `len` bytes; returns the name (with its leading
/// `/`) and the descriptor.
pub(crate) fn create(len: usize) -> Result<(String, OwnedFd)> {
    sweep_once();
    let (pid, start) = creator_identity()?;
    loop {
        let rand = sys::getrandom_u64().map_err(|e| Error::os("getrandom", e))?;
        let name = format!("/{PREFIX}{pid}-{start}-{rand:016x}");
        // The tracker hears of the name before it exists, so a death at any
        // instant after the shm_open leaves nothing behind (unlinking a
        // name that was never made is harmless).
        tracker::register(&name);
        match sys::shm_open(&name, true) {
            Ok(fd) => {
                if let Err(e) = sys::ftruncate(fd.as_fd(), len as u64) {
                    unlink_owned(&name);
                    return Err(Error::os("ftruncate", e));
                }
                return Ok((name, fd));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                tracker::unregister(&name);
                continue;
            }
            Err(e) => {
                tracker::unregister(&name);
                return Err(Error::os(format!("shm_open {name}"), e));
            }
        }
    }
}

/// Unlinks a name this process created (the segment was dropped).
pub(crate) fn unlink_owned(name: &str) {
    // ENOENT: somebody (a sweep) already removed it; nothing to do.
    let _ = sys::shm_unlink(name);
    tracker::unregister(name);
}

/// The creator `(pid, starttime)` recorded in a `/dev/shm` entry name
/// (without the leading `/`), if it is one of ours.
pub(crate) fn parse_creator(entry: &str) -> Option<(i32, u64)> {
    let mut parts = entry.strip_prefix(PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let rand = parts.next()?;
    if rand.len() != 16 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) || parts.next().is_some() {
        return None;
    }
    Some((pid, start))
}

/// Whether the process `(pid, start)` still runs (a zombie does not).
fn creator_alive(pid: i32, start: u64) -> bool {
    match sys::process_start_time(pid) {
        Ok(Some((now_start, dead))) => now_start == start && !dead,
        Ok(None) => false,
        // Unreadable /proc entry (another user's process): assume alive.
        Err(_) => true,
    }
}

/// Unlinks every `/dev/shm/mp-*` segment whose creator is no longer alive,
/// and returns how many it removed.
///
/// Mappings that processes still hold stay valid (unlink only removes the
/// name); only attaching by that name becomes impossible.
///
/// # Example
///
/// ```
/// let removed = multiproc::shm::sweep_orphans()?;
/// println!("removed {removed} leftover segments");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn sweep_orphans() -> Result<usize> {
    let dir = match std::fs::read_dir(SHM_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::os("reading /dev/shm", e)),
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((pid, start)) = parse_creator(name) else {
            continue;
        };
        if !creator_alive(pid, start) && sys::shm_unlink(&format!("/{name}")).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Runs [`sweep_orphans`] once per process.
fn sweep_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // A failed sweep is not an error of the segment being created.
    ONCE.call_once(|| drop(sweep_orphans()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_their_creator() {
        assert_eq!(
            parse_creator("mp-42-1234-00112233aabbccdd"),
            Some((42, 1234))
        );
        for bad in [
            "mp-42-1234",
            "mp-x-1234-00112233aabbccdd",
            "mp-42-1234-0011",
            "psm_1234",
            "mp-42-1234-00112233aabbccdd-extra",
            "mp-42-1234-00112233aabbccdz",
        ] {
            assert_eq!(parse_creator(bad), None, "{bad}");
        }
    }
}
