//! Proxies: handles on objects in the server. [`Proxy`] calls any object by
//! method number; the typed proxies wrap it for the built-in types. Each
//! file holds one type: its method numbers, its server-side state, and its
//! proxy.

pub(crate) mod dict;
pub(crate) mod event;
pub(crate) mod list;
pub(crate) mod lock;
pub(crate) mod namespace;
pub(crate) mod queue;
#[cfg(feature = "serde")]
mod typed;
pub(crate) mod value;

pub use dict::DictProxy;
pub use event::EventProxy;
pub use list::ListProxy;
pub use lock::LockProxy;
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
#[cfg(feature = "serde")]
pub use typed::{TypedDict, TypedList};
pub use value::ValueProxy;

use std::time::Duration;

use super::client::Client;
use super::object::Reply;
use super::protocol::{CONTROL_OBJECT, control};
use crate::error::{Error, Result};

/// A reference to one object in a manager's server, as Python's
/// `BaseProxy`: it keeps the object alive (the server counts references
/// per client) and calls its methods.
///
/// Cloning takes another reference; dropping gives one back. When a
/// client disconnects or dies, the server drops every reference it held.
pub struct Proxy {
    client: Client,
    id: u64,
    type_name: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("id", &self.id)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    pub(crate) fn new(client: Client, id: u64, type_name: String) -> Proxy {
        Proxy {
            client,
            id,
            type_name,
        }
    }

    /// The object's id in the server: another client reaches the same
    /// object with [`Client::attach`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The object's type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The client this proxy calls through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Calls method `method` with `args`; returns the result fields.
    /// Atomic on the server.
    ///
    /// Errors: [`Error::NotFound`] for a method the type does not have (or
    /// an object that no longer lives), the method's own errors, and
    /// [`Error::Eof`] when the server is gone.
    pub fn call(&self, method: u16, args: &[&[u8]]) -> Result<Reply> {
        self.client.call(self.id, method, args)
    }

    /// [`call`](Proxy::call), reading the reply fields in place.
    pub(crate) fn call_with<R>(
        &self,
        method: u16,
        args: &[&[u8]],
        read: impl FnOnce(&[&[u8]]) -> Result<R>,
    ) -> Result<R> {
        self.client.call_with(self.id, method, args, read)
    }

    /// A call that returns nothing.
    pub(crate) fn call_unit(&self, method: u16, args: &[&[u8]]) -> Result<()> {
        self.call_with(method, args, |_| Ok(()))
    }

    /// A call that returns one 8-byte integer.
    pub(crate) fn call_i64(&self, method: u16, args: &[&[u8]]) -> Result<i64> {
        self.call_with(method, args, |f| {
            Ok(super::client::read_u64(f, self.type_name())? as i64)
        })
    }

    /// A call that returns one flag byte.
    pub(crate) fn call_bool(&self, method: u16, args: &[&[u8]]) -> Result<bool> {
        self.call_with(method, args, |f| match f {
            [[b]] => Ok(*b != 0),
            _ => Err(Error::Internal(format!(
                "{}: the reply is not one flag byte",
                self.type_name
            ))),
        })
    }

    /// A call that returns zero or one byte string.
    pub(crate) fn call_option(&self, method: u16, args: &[&[u8]]) -> Result<Option<Vec<u8>>> {
        self.call_with(method, args, |f| match f {
            [] => Ok(None),
            [v] => Ok(Some(v.to_vec())),
            _ => Err(Error::Internal(format!(
                "{}: the reply has more than one value",
                self.type_name
            ))),
        })
    }

    /// [`Error::Kind`] unless the object is of type `expected`.
    pub(crate) fn expect_type(self, expected: &'static str) -> Result<Proxy> {
        if self.type_name != expected {
            return Err(Error::Kind {
                expected,
                found: self.type_name.clone(),
            });
        }
        Ok(self)
    }
}

impl Clone for Proxy {
    /// Another reference to the same object. If the server is gone the
    /// clone is made anyway (its calls fail with [`Error::Eof`]).
    fn clone(&self) -> Proxy {
        // Ignored: the only failure is a dead server, which every call on
        // the clone reports.
        let _ = self
            .client
            .call(CONTROL_OBJECT, control::INCREF, &[&self.id.to_le_bytes()]);
        Proxy::new(self.client.clone(), self.id, self.type_name.clone())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // A fork child's copy of its parent's proxy took no reference of
        // its own: nothing to give back.
        if self.client.is_own() {
            // Ignored: a dead server holds nothing any more.
            let _ = self
                .client
                .call(CONTROL_OBJECT, control::DECREF, &[&self.id.to_le_bytes()]);
        }
    }
}

/// A timeout as the `i64` nanoseconds argument of blocking methods
/// (negative: wait without limit).
pub(crate) fn timeout_arg(timeout: Option<Duration>) -> [u8; 8] {
    let ns = timeout.map_or(-1, |t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX));
    ns.to_le_bytes()
}

/// Declares a typed proxy: a [`Proxy`] known to be of type `TYPE`.
macro_rules! typed_proxy {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(crate::manager::proxy::Proxy);

        impl TryFrom<crate::manager::proxy::Proxy> for $name {
            type Error = crate::error::Error;

            /// [`Error::Kind`](crate::Error::Kind) for a proxy to another type.
            fn try_from(p: crate::manager::proxy::Proxy) -> crate::error::Result<$name> {
                Ok($name(p.expect_type(TYPE)?))
            }
        }

        impl $name {
            /// A proxy to the existing object `id` through `client`.
            ///
            /// Errors: [`Error::NotFound`](crate::Error::NotFound) when no such object
            /// lives, [`Error::Kind`](crate::Error::Kind) when it has another type.
            pub fn attach(client: &crate::manager::Client, id: u64) -> crate::error::Result<$name> {
                $name::try_from(client.attach(id)?)
            }

            /// The untyped proxy (its id, its client, raw calls).
            pub fn proxy(&self) -> &crate::manager::proxy::Proxy {
                &self.0
            }
        }
    };
}
pub(crate) use typed_proxy;
