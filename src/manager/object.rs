//! What the server holds: objects that answer numbered method calls.
//!
//! A user type implements [`SharedObject`] (`&mut self`: the server runs
//! each call under the object's own mutex, so every call is atomic). The
//! built-in blocking types (queue, lock, event) implement the crate's
//! `Served` directly, to wait on a condition variable without holding
//! their mutex.

use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// A reply: the result fields of one call.
pub type Reply = Vec<Vec<u8>>;

/// A type whose values live in the manager's server and are used through a
/// [`Proxy`](super::Proxy): register it with
/// [`register_type`](super::register_type), create one with
/// [`Client::create`](super::Client::create), call it with
/// [`Proxy::call`](super::Proxy::call).
///
/// The server runs each `call` under the object's own mutex, so a call is
/// atomic with respect to every other call on the same object, from any
/// client. An error is sent back to the caller; the object and the server
/// go on.
///
/// ```
/// use multiproc::manager::{self, Manager, SharedObject, Reply};
/// use multiproc::{Error, Result};
///
/// /// A counter: method 1 adds the u64 argument and returns the new total.
/// struct Counter(u64);
///
/// impl SharedObject for Counter {
///     fn call(&mut self, method: u16, args: &[&[u8]]) -> Result<Reply> {
///         match (method, args) {
///             (1, [delta]) => {
///                 let delta = u64::from_le_bytes((*delta).try_into().map_err(|_| {
///                     Error::Invalid("counter.add takes 8 bytes".into())
///                 })?);
///                 self.0 += delta;
///                 Ok(vec![self.0.to_le_bytes().to_vec()])
///             }
///             _ => Err(Error::NotFound(format!("counter has no method {method}"))),
///         }
///     }
/// }
///
/// manager::register_type("counter", |_init| Ok(Box::new(Counter(0))))?;
/// let mgr = Manager::start()?;
/// let counter = mgr.create("counter", b"")?;
/// counter.call(1, &[&5u64.to_le_bytes()])?;
/// let total = counter.call(1, &[&2u64.to_le_bytes()])?;
/// assert_eq!(total, vec![7u64.to_le_bytes().to_vec()]);
/// mgr.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait SharedObject: Send + 'static {
    /// Runs method `method` on `args` and returns the result fields.
    /// Unknown methods and bad arguments should be specific errors
    /// ([`Error::NotFound`], [`Error::Invalid`]).
    fn call(&mut self, method: u16, args: &[&[u8]]) -> Result<Reply>;
}

/// Who makes a call: the server's handle on one client connection.
pub(crate) struct Caller {
    /// Unique among the server's clients, for as long as it runs.
    pub(crate) id: u64,
    /// A copy of the client's socket, to notice a hang-up during a long wait.
    pub(crate) socket: OwnedFd,
}

impl Caller {
    /// Whether the client hung up. It sends nothing while its call runs
    /// (one call at a time per connection), so a readable socket means end
    /// of file.
    pub(crate) fn gone(&self) -> bool {
        use std::os::fd::AsFd;
        sys::poll_readable(self.socket.as_fd(), Some(Duration::ZERO)).unwrap_or(true)
    }
}

/// An object in the server's table.
pub(crate) trait Served: Send + Sync {
    /// Its type's name, as given to `create` ("dict", a registered name).
    fn type_name(&self) -> &str;

    /// Runs one call for `caller`.
    fn call(&self, method: u16, args: &[&[u8]], caller: &Caller) -> Result<Reply>;

    /// Forgets what the client `caller_id` held (a lock), after it
    /// disconnected.
    fn client_gone(&self, _caller_id: u64) {}
}

/// A [`SharedObject`] behind its mutex.
pub(crate) struct Locked {
    pub(crate) type_name: String,
    pub(crate) inner: Mutex<Box<dyn SharedObject>>,
}

impl Served for Locked {
    fn type_name(&self) -> &str {
        &self.type_name
    }

    fn call(&self, method: u16, args: &[&[u8]], _caller: &Caller) -> Result<Reply> {
        // A call that panicked left the object as its code left it; the
        // server catches the panic and reports it, and the object goes on.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.call(method, args)
    }
}

/// Locks `m`, ignoring poisoning (see [`Locked::call`]).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a server-side wait sleeps before it checks again whether its
/// client hung up.
const HANGUP_CHECK: Duration = Duration::from_millis(100);

/// Waits on `cv` until `ready` gives a value, the deadline passes
/// ([`Error::Timeout`]) or the caller hangs up ([`Error::Eof`]).
pub(crate) fn wait_for<'a, S, R>(
    mut guard: MutexGuard<'a, S>,
    cv: &Condvar,
    deadline: Option<Instant>,
    caller: &Caller,
    mut ready: impl FnMut(&mut S) -> Option<R>,
) -> Result<(MutexGuard<'a, S>, R)> {
    loop {
        if let Some(r) = ready(&mut guard) {
            return Ok((guard, r));
        }
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout);
                }
                left.min(HANGUP_CHECK)
            }
            None => HANGUP_CHECK,
        };
        if caller.gone() {
            return Err(Error::Eof);
        }
        guard = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The arguments of one call, with the checks every method needs.
pub(crate) struct Args<'a> {
    /// `type.method`, for messages.
    pub(crate) name: &'static str,
    pub(crate) args: &'a [&'a [u8]],
}

impl<'a> Args<'a> {
    /// The `N` arguments; [`Error::Invalid`] unless there are exactly `N`.
    pub(crate) fn expect<const N: usize>(&self) -> Result<[&'a [u8]; N]> {
        <[&[u8]; N]>::try_from(self.args).map_err(|_| {
            Error::Invalid(format!(
                "{} takes {N} argument(s), {} were given",
                self.name,
                self.args.len()
            ))
        })
    }

    /// Argument `i` as a little-endian `i64`.
    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        let bytes: [u8; 8] = self.args[i].try_into().map_err(|_| {
            Error::Invalid(format!(
                "{}: argument {i} must be an 8-byte integer, it has {} bytes",
                self.name,
                self.args[i].len()
            ))
        })?;
        Ok(i64::from_le_bytes(bytes))
    }

    /// Argument `i` as a timeout in nanoseconds (negative: none), turned
    /// into a deadline.
    pub(crate) fn deadline(&self, i: usize) -> Result<Option<Instant>> {
        let ns = self.i64(i)?;
        Ok(u64::try_from(ns)
            .ok()
            .map(|ns| Instant::now() + Duration::from_nanos(ns.min(u64::MAX / 4))))
    }

    /// Argument `i` as UTF-8 text.
    pub(crate) fn text(&self, i: usize) -> Result<&'a str> {
        std::str::from_utf8(self.args[i])
            .map_err(|_| Error::Invalid(format!("{}: argument {i} is not UTF-8", self.name)))
    }
}

/// The error of a method number the type does not have.
pub(crate) fn no_method(type_name: &str, method: u16) -> Error {
    Error::NotFound(format!("a {type_name} has no method {method}"))
}

/// A `bool` as a reply field.
pub(crate) fn flag(b: bool) -> Vec<u8> {
    vec![u8::from(b)]
}

/// An integer as a reply field.
pub(crate) fn int(n: i64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}
