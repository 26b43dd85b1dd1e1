//! The manager lock, as Python's `manager.Lock()`, owned by the client
//! connection that acquired it. When that client disconnects or dies while
//! holding it, the lock is released and the next acquirer is told
//! ([`Error::OwnerDied`]), as with the crate's shared-memory locks.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{timeout_arg, typed_proxy};
use crate::error::{Error, Result};
use crate::manager::object::{Args, Caller, Reply, Served, flag, lock, no_method, wait_for};

/// The type name.
pub(crate) const TYPE: &str = "lock";

/// Method numbers.
pub(crate) mod method {
    pub const ACQUIRE: u16 = 1;
    pub const RELEASE: u16 = 2;
    pub const LOCKED: u16 = 3;
}

#[derive(Default)]
struct LockState {
    /// The client holding it.
    owner: Option<u64>,
    /// The last owner disconnected holding it; told to the next acquirer.
    owner_died: bool,
}

/// The server-side lock.
pub(crate) struct LockObject {
    state: Mutex<LockState>,
    released: Condvar,
}

impl LockObject {
    pub(crate) fn new(init: &[u8]) -> Result<LockObject> {
        if !init.is_empty() {
            return Err(Error::Invalid("a lock is created released".into()));
        }
        Ok(LockObject {
            state: Mutex::new(LockState::default()),
            released: Condvar::new(),
        })
    }
}

impl Served for LockObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, m: u16, args: &[&[u8]], caller: &Caller) -> Result<Reply> {
        let a = |name| Args { name, args };
        match m {
            method::ACQUIRE => {
                let a = a("lock.acquire");
                a.expect::<1>()?;
                let deadline = a.deadline(0)?;
                let guard = lock(&self.state);
                if guard.owner == Some(caller.id) {
                    return Err(Error::State(
                        "lock.acquire: this client holds the lock already (it is not reentrant)"
                            .into(),
                    ));
                }
                let free = |s: &mut LockState| s.owner.is_none().then_some(());
                let (mut s, ()) = match wait_for(guard, &self.released, deadline, caller, free) {
                    Ok(got) => got,
                    Err(Error::Timeout) => return Ok(vec![flag(false)]),
                    Err(e) => return Err(e),
                };
                s.owner = Some(caller.id);
                if std::mem::take(&mut s.owner_died) {
                    return Err(Error::OwnerDied);
                }
                Ok(vec![flag(true)])
            }
            method::RELEASE => {
                a("lock.release").expect::<0>()?;
                let mut s = lock(&self.state);
                if s.owner != Some(caller.id) {
                    return Err(Error::NotOwner);
                }
                s.owner = None;
                self.released.notify_one();
                Ok(Vec::new())
            }
            method::LOCKED => {
                a("lock.locked").expect::<0>()?;
                Ok(vec![flag(lock(&self.state).owner.is_some())])
            }
            _ => Err(no_method(TYPE, m)),
        }
    }

    fn client_gone(&self, caller_id: u64) {
        let mut s = lock(&self.state);
        if s.owner == Some(caller_id) {
            s.owner = None;
            s.owner_died = true;
            self.released.notify_one();
        }
    }
}

typed_proxy! {
    /// A proxy to a lock in the server (Python's `manager.Lock()`); made by
    /// [`Client::lock`](crate::manager::Client::lock). The client
    /// connection that acquired it owns it: another one's `release` is
    /// [`Error::NotOwner`]. It is not reentrant.
    ///
    /// ```
    /// use multiproc::manager::Manager;
    /// use std::time::Duration;
    ///
    /// let mgr = Manager::start()?;
    /// let lock = mgr.lock()?;
    /// assert!(lock.acquire(None)?);
    /// assert!(lock.locked()?);
    /// lock.release()?;
    /// assert!(matches!(lock.release(), Err(multiproc::Error::NotOwner)));
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    LockProxy
}

impl LockProxy {
    /// Acquires the lock, waiting at most `timeout` (`None`: without
    /// limit); whether it got it.
    ///
    /// Errors: [`Error::OwnerDied`]: acquired, but the previous owner
    /// disconnected holding it (check the data it guards);
    /// [`Error::State`] when this client holds it already.
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.call_bool(method::ACQUIRE, &[&timeout_arg(timeout)])
    }

    /// Releases it; [`Error::NotOwner`] unless this client holds it.
    pub fn release(&self) -> Result<()> {
        self.0.call_unit(method::RELEASE, &[])
    }

    /// Whether some client holds it now.
    pub fn locked(&self) -> Result<bool> {
        self.0.call_bool(method::LOCKED, &[])
    }
}
