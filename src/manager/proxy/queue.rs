//! The manager queue, as Python's `manager.Queue(maxsize)`: blocking `put`
//! and `get` run on the server, each in the thread of the calling client,
//! so one client waiting does not stall the others.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{timeout_arg, typed_proxy};
use crate::error::{Error, Result};
use crate::manager::object::{Args, Caller, Reply, Served, int, lock, no_method, wait_for};

/// The type name.
pub(crate) const TYPE: &str = "queue";

/// Method numbers.
pub(crate) mod method {
    pub const PUT: u16 = 1;
    pub const GET: u16 = 2;
    pub const QSIZE: u16 = 3;
}

/// The server-side queue.
pub(crate) struct QueueObject {
    /// 0: no limit.
    maxsize: usize,
    items: Mutex<VecDeque<Vec<u8>>>,
    /// Signalled when an item is added or taken.
    changed: Condvar,
}

impl QueueObject {
    /// `init`: maxsize as 8 bytes, or nothing for no limit.
    pub(crate) fn new(init: &[u8]) -> Result<QueueObject> {
        let maxsize = match init {
            [] => 0,
            _ => Args {
                name: "queue",
                args: &[init],
            }
            .i64(0)?,
        };
        let maxsize = usize::try_from(maxsize)
            .map_err(|_| Error::Invalid(format!("queue maxsize {maxsize} is negative")))?;
        Ok(QueueObject {
            maxsize,
            items: Mutex::new(VecDeque::new()),
            changed: Condvar::new(),
        })
    }
}

impl Served for QueueObject {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn call(&self, m: u16, args: &[&[u8]], caller: &Caller) -> Result<Reply> {
        let a = |name| Args { name, args };
        match m {
            method::PUT => {
                let a = a("queue.put");
                let [item, _] = a.expect::<2>()?;
                let deadline = a.deadline(1)?;
                let max = self.maxsize;
                let guard = lock(&self.items);
                let ready = |q: &mut VecDeque<Vec<u8>>| (max == 0 || q.len() < max).then_some(());
                let (mut q, ()) =
                    wait_for(guard, &self.changed, deadline, caller, ready).map_err(|e| {
                        if matches!(e, Error::Timeout) {
                            Error::Full
                        } else {
                            e
                        }
                    })?;
                q.push_back(item.to_vec());
                self.changed.notify_all();
                Ok(Vec::new())
            }
            method::GET => {
                let a = a("queue.get");
                a.expect::<1>()?;
                let deadline = a.deadline(0)?;
                let guard = lock(&self.items);
                let (_q, item) =
                    wait_for(guard, &self.changed, deadline, caller, |q| q.pop_front()).map_err(
                        |e| {
                            if matches!(e, Error::Timeout) {
                                Error::Empty
                            } else {
                                e
                            }
                        },
                    )?;
                self.changed.notify_all();
                Ok(vec![item])
            }
            method::QSIZE => {
                a("queue.qsize").expect::<0>()?;
                Ok(vec![int(lock(&self.items).len() as i64)])
            }
            _ => Err(no_method(TYPE, m)),
        }
    }
}

typed_proxy! {
    /// A proxy to a queue in the server (Python's `manager.Queue()`); made
    /// by [`Client::queue`](crate::manager::Client::queue). Slower than
    /// [`crate::queue::Queue`] (every call is a round trip), but reachable
    /// from other machines.
    ///
    /// ```
    /// use multiproc::manager::Manager;
    /// use std::time::Duration;
    ///
    /// let mgr = Manager::start()?;
    /// let q = mgr.queue(1)?;
    /// q.put(b"job", None)?;
    /// assert!(matches!(q.put(b"more", Some(Duration::ZERO)), Err(multiproc::Error::Full)));
    /// assert_eq!(q.get(None)?, b"job");
    /// assert!(matches!(q.get(Some(Duration::ZERO)), Err(multiproc::Error::Empty)));
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    QueueProxy
}

impl QueueProxy {
    /// Adds `item`, waiting at most `timeout` for room (`None`: without
    /// limit; zero: not at all). [`Error::Full`] when there was none.
    pub fn put(&self, item: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.0
            .call_unit(method::PUT, &[item, &timeout_arg(timeout)])
    }

    /// Takes the oldest item, waiting at most `timeout` for one.
    /// [`Error::Empty`] when none came.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.0
            .call_with(method::GET, &[&timeout_arg(timeout)], |f| match f {
                [v] => Ok(v.to_vec()),
                _ => Err(Error::Internal("queue.get: reply is not one item".into())),
            })
    }

    /// How many items it holds now.
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.0.call_i64(method::QSIZE, &[])? as usize)
    }
}
