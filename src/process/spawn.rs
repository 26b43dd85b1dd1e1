//! The `spawn` start method: a fresh run of this executable
//! (`/proc/self/exe`, started by `posix_spawn`), told by an inherited memfd
//! which entry to run. Its `main` calls [`init`](super::init) first, which
//! finds the payload, runs the entry and exits.
//!
//! What the child inherits: stdin, stdout and stderr; the payload memfd;
//! the read end of its daemon lifeline; and the descriptor of every memfd
//! segment this process maps at `start`, under the same numbers, so that
//! the handle texts of objects in them (`mp1:memfd:FD:...`) resolve in the
//! child as they are. Nothing else: every other descriptor multiproc makes
//! is close-on-exec.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use super::children;
use super::launch::{Launch, Work};
use super::lifeline;
use super::reaper::ChildCell;
use super::{StartMethod, init_ran};
use crate::error::{Error, Result};
use crate::{shm, sys};

/// The environment variable that tells a spawned child where its payload
/// is (a descriptor number); [`init`](super::init) removes it.
pub(crate) const LAUNCH_ENV: &str = "MULTIPROC_LAUNCH_FD";
/// The environment variable that makes a fresh run the fork server (the
/// descriptor number of its control socket).
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROC_FORKSERVER_FD";

/// Starts a spawned child that runs `work`; on failure `work` comes back.
pub(crate) fn start(
    work: Work,
    launch: Launch<'_>,
) -> std::result::Result<Arc<ChildCell>, (Work, Error)> {
    start_child(&work, launch).map_err(|e| (work, e))
}

fn start_child(work: &Work, launch: Launch<'_>) -> Result<Arc<ChildCell>> {
    launch.check_work(work, StartMethod::Spawn)?;
    require_init(StartMethod::Spawn)?;
    let lifeline = launch.daemon.then(lifeline::new).transpose()?;
    let lifeline_fd = lifeline.as_ref().map_or(-1, |(_, r)| r.as_raw_fd());
    let segments = shm::memfd_descriptors();
    let spec = launch.spec(work, StartMethod::Spawn, lifeline_fd, -1, segments.clone())?;
    let payload = spec.to_memfd()?;
    let mut keep = segments;
    keep.push(payload.as_raw_fd());
    if lifeline_fd >= 0 {
        keep.push(lifeline_fd);
    }
    let env = environment(&[(LAUNCH_ENV, payload.as_raw_fd())])?;
    let pid = exec_self(&env, &keep)?;
    let mut cell = ChildCell::new(pid);
    if let Some((write_end, _read_end)) = lifeline {
        cell = cell.with_lifeline(write_end);
    }
    let child = Arc::new(cell);
    let mut table = children::lock();
    table.reap_finished();
    table.track(Arc::clone(&child));
    Ok(child)
}

/// [`Error::State`] unless [`init`](super::init) ran: a fresh run of a
/// program whose `main` does not call it first would run that `main` again
/// instead of the entry (and perhaps start children of its own, again).
pub(crate) fn require_init(method: StartMethod) -> Result<()> {
    if init_ran() {
        return Ok(());
    }
    Err(Error::State(format!(
        "the {method} start method runs this program again: call multiproc::process::init() \
         (C: mp_init) first thing in main, after registering the entry points"
    )))
}

/// This process's environment without multiproc's own variables, plus
/// `extra` (`NAME=descriptor`), as C strings.
pub(crate) fn environment(extra: &[(&str, i32)]) -> Result<Vec<CString>> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| name != LAUNCH_ENV && name != FORKSERVER_ENV)
        .filter_map(|(name, value)| {
            let mut entry = name;
            entry.push("=");
            entry.push(value);
            CString::new(entry.into_vec()).ok()
        })
        .collect();
    for (name, fd) in extra {
        env.push(
            CString::new(format!("{name}={fd}"))
                .map_err(|_| Error::Internal("environment name with NUL".into()))?,
        );
    }
    Ok(env)
}

/// `posix_spawn`s `/proc/self/exe` with our `argv[0]`, `env`, and the
/// descriptors `keep` kept open; returns the pid.
pub(crate) fn exec_self(env: &[CString], keep: &[i32]) -> Result<i32> {
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("multiproc-child"));
    let argv0 = CString::new(argv0.into_vec())
        .map_err(|_| Error::Invalid("argv[0] contains NUL".into()))?;
    let env: Vec<&std::ffi::CStr> = env.iter().map(CString::as_c_str).collect();
    sys::posix_spawn(c"/proc/self/exe", &[argv0.as_c_str()], &env, keep)
        .map_err(|e| Error::os("posix_spawn /proc/self/exe", e))
}
