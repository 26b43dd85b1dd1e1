//! Contexts, as Python's `multiprocessing.get_context(method)`: a start
//! method to make processes with, and the default one.

use std::sync::atomic::{AtomicU8, Ordering};

use super::{IntoExitCode, Process, StartMethod};
use crate::error::{Error, Result};

/// 0: not set (fork); 1 + the method's index once set.
static DEFAULT: AtomicU8 = AtomicU8::new(0);

fn encode(method: StartMethod) -> u8 {
    match method {
        StartMethod::Fork => 1,
        StartMethod::Spawn => 2,
        StartMethod::ForkServer => 3,
    }
}

/// The default start method: what [`set_start_method`] set, else fork.
pub(crate) fn default_method() -> StartMethod {
    // Relaxed: a setting read on its own; no other memory depends on it.
    match DEFAULT.load(Ordering::Relaxed) {
        2 => StartMethod::Spawn,
        3 => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    }
}

/// Sets the default start method of [`Process::from_entry`] and
/// [`Context::default`], as Python's `set_start_method(method, force)`.
///
/// Setting it a second time is [`Error::State`] unless `force`. (Closures,
/// [`Process::new`], always start with fork, the only method that can run
/// them.)
///
/// ```
/// use multiproc::process::{self, StartMethod};
///
/// process::set_start_method(StartMethod::Fork, false)?;
/// assert!(process::set_start_method(StartMethod::Spawn, false).is_err());
/// process::set_start_method(StartMethod::Fork, true)?;
/// assert_eq!(process::get_start_method(), StartMethod::Fork);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod, force: bool) -> Result<()> {
    let new = encode(method);
    if force {
        // Relaxed: see `default_method`.
        DEFAULT.store(new, Ordering::Relaxed);
        return Ok(());
    }
    // Relaxed: see `default_method`; the CAS alone decides who set it first.
    match DEFAULT.compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::State(format!(
            "the start method was already set (to {}); pass force to change it",
            default_method()
        ))),
    }
}

/// The default start method (fork unless [`set_start_method`] said otherwise).
pub fn get_start_method() -> StartMethod {
    default_method()
}

/// A start method to make processes with, as Python's context objects.
///
/// ```
/// use multiproc::process::{self, StartMethod};
///
/// fn double(arg: &[u8]) -> i32 {
///     i32::from(arg[0]) * 2
/// }
/// process::register("double", double)?;
/// let ctx = process::get_context(StartMethod::Fork);
/// let child = ctx.from_entry("double", vec![21])?;
/// child.start()?;
/// assert_eq!(child.join(None)?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context of `method`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Default for Context {
    /// The context of the default start method.
    fn default() -> Context {
        get_context(default_method())
    }
}

impl Context {
    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// [`Process::from_entry`] with this context's start method.
    pub fn from_entry(&self, name: &str, arg: Vec<u8>) -> Result<Process> {
        Ok(Process::from_entry(name, arg)?.start_method(self.method))
    }

    /// [`Process::new`] with this context's start method (which must be
    /// fork for `start` to succeed: a closure runs only in a fork child).
    pub fn process<F, R>(&self, target: F) -> Process
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoExitCode,
    {
        Process::new(target).start_method(self.method)
    }

    /// [`cpu_count`](super::cpu_count).
    pub fn cpu_count(&self) -> Result<usize> {
        super::cpu_count()
    }
}
