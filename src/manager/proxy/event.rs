//! The manager event, as Python's `manager.Event()`.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{timeout_arg, typed_proxy};
use crate::error::{Error, Result};
use crate::manager::object::{Args, Caller, Reply, Served, flag, lock, no_method, wait_for};

/// The type name.
pub(crate) const TYPE: &str = "event";

/// Method numbers.
pub(crate) mod method {
    pub const SET: u16 = 1;
    pub const CLEAR: u16 = 2;
    pub const IS_SET: u16 = 3;
    pub const WAIT: u16 = 4;
}

/// The server-side event.
pub(crate) struct EventObject {
    flag: Mutex<bool>,
    changed: Condvar,
}

impl EventObject {
    pub(crate) fn new(init: &[u8]) -> Result<EventObject> {
        if !init.is_empty() {
            return Err(Error::Invalid("an event is created clear".into()));
        }
        Ok(EventObject {
            flag: Mutex::new(false),
            changed: Condvar::new(),
        })
    }
}

impl Served for EventObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, m: u16, args: &[&[u8]], caller: &Caller) -> Result<Reply> {
        let a = |name| Args { name, args };
        match m {
            method::SET => {
                a("event.set").expect::<0>()?;
                *lock(&self.flag) = true;
                self.changed.notify_all();
                Ok(Vec::new())
            }
            method::CLEAR => {
                a("event.clear").expect::<0>()?;
                *lock(&self.flag) = false;
                Ok(Vec::new())
            }
            method::IS_SET => {
                a("event.is_set").expect::<0>()?;
                Ok(vec![flag(*lock(&self.flag))])
            }
            method::WAIT => {
                let a = a("event.wait");
                a.expect::<1>()?;
                let deadline = a.deadline(0)?;
                let guard = lock(&self.flag);
                let set = |f: &mut bool| f.then_some(());
                match wait_for(guard, &self.changed, deadline, caller, set) {
                    Ok(_) => Ok(vec![flag(true)]),
                    Err(Error::Timeout) => Ok(vec![flag(false)]),
                    Err(e) => Err(e),
                }
            }
            _ => Err(no_method(TYPE, m)),
        }
    }
}

typed_proxy! {
    /// A proxy to an event in the server (Python's `manager.Event()`); made
    /// by [`Client::event`](crate::manager::Client::event).
    ///
    /// ```
    /// use multiproc::manager::Manager;
    /// use std::time::Duration;
    ///
    /// let mgr = Manager::start()?;
    /// let ev = mgr.event()?;
    /// assert!(!ev.wait(Some(Duration::ZERO))?);
    /// ev.set()?;
    /// assert!(ev.wait(None)? && ev.is_set()?);
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    EventProxy
}

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.0.call_unit(method::SET, &[])
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.0.call_unit(method::CLEAR, &[])
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.0.call_bool(method::IS_SET, &[])
    }

    /// Waits at most `timeout` (`None`: without limit) for the flag;
    /// whether it is set.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.call_bool(method::WAIT, &[&timeout_arg(timeout)])
    }
}
