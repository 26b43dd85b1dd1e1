//! Managers, as Python's `multiprocessing.Manager()`: a server process holds
//! shared objects (dict, list, namespace, value, queue, lock, event, and
//! types you register) and other processes, on this machine or another, use
//! them through proxies.
//!
//! - [`Manager::start`] runs the server in a child process (any start
//!   method) on a Unix socket in a private directory, with a random key.
//! - [`serve`] (or [`Server::bind`] + [`Server::serve`]) runs one in this
//!   process, e.g. on TCP for other machines; [`connect`] reaches it from
//!   anywhere with the key (CPython's `Listener` / `Client` handshake).
//! - Each proxy call is one request and one reply, in the compact binary
//!   frames of [`protocol`]; the server runs it atomically under the
//!   object's mutex, in the thread that serves that client.
//! - Two [`Transport`]s carry the frames. Every client connects and
//!   authenticates on a socket ([`Connection`](crate::connection::Connection)).
//!   Over the socket each call costs two wake-ups, which is most of its
//!   time; so a client on a Unix socket then passes the server a memfd
//!   holding two SPSC rings (requests, replies) and both move their frames
//!   there: a prompt peer is met while it spins, with no system call. The
//!   socket stays open, for frames over 64 KiB (announced in the ring, so
//!   order holds) and to notice a dead peer (waits run in 100 ms slices,
//!   checking it between). TCP clients, and those that ask for
//!   [`Transport::Socket`], stay on the socket.
//! - Values are bytes. With the `serde` feature, `TypedDict` / `TypedList`
//!   (from `DictProxy::typed` / `ListProxy::typed`) and the namespace's
//!   and value's `set_value` / `get_value` hold any serde type, encoded with
//!   postcard (as the crate's typed queues are).
//! - When the server dies, every proxy call fails at once with
//!   [`Error::Eof`](crate::Error::Eof).
//! - Bad requests get specific errors, and the server goes on serving:
//!   an unknown object id or method is [`Error::NotFound`](crate::Error::NotFound),
//!   a malformed frame [`Error::Invalid`](crate::Error::Invalid), a frame over
//!   [`MAX_FRAME`] [`Error::TooLarge`](crate::Error::TooLarge).
//!
//! ```
//! use multiproc::manager::{Manager, connect};
//!
//! let mgr = Manager::start()?;
//! let counts = mgr.dict()?;
//! counts.set(b"apples", b"3")?;
//! // Another process (here: another connection) reaches the same dict.
//! let other = connect(mgr.address(), mgr.authkey())?;
//! let same = multiproc::manager::DictProxy::attach(&other, counts.proxy().id())?;
//! assert_eq!(same.get(b"apples")?, Some(b"3".to_vec()));
//! mgr.shutdown()?;
//! # Ok::<(), multiproc::Error>(())
//! ```

mod child;
mod client;
mod object;
pub mod protocol;
mod proxy;
mod registry;
mod server;
mod transport;

pub use child::{Manager, SERVER_ENTRY};
pub use client::Client;
pub use object::{Reply, SharedObject};
pub use protocol::MAX_FRAME;
pub use proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, Proxy, QueueProxy, ValueProxy,
};
#[cfg(feature = "serde")]
pub use proxy::{TypedDict, TypedList};
pub use registry::{BUILTIN_TYPES, Constructor, MAX_TYPE_NAME, register_type};
pub use server::Server;
pub use transport::Transport;

use crate::connection::Address;
use crate::error::Result;

/// Connects to the manager server at `address` with `authkey`: see
/// [`Client::connect`].
pub fn connect(address: &Address, authkey: &[u8]) -> Result<Client> {
    Client::connect(address, authkey)
}

/// Serves shared objects at `address` to clients that know `authkey`, in
/// this process, until a client asks the server to stop
/// ([`Client::shutdown_server`]): [`Server::bind`] then [`Server::serve`].
/// Use `Server` to learn the port the system chose for TCP port 0.
///
/// ```no_run
/// // A standalone manager for other machines (Python's
/// // `BaseManager(address, authkey).get_server().serve_forever()`).
/// multiproc::manager::serve(&"tcp:0.0.0.0:50000".parse()?, b"secret")?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn serve(address: &Address, authkey: &[u8]) -> Result<()> {
    Server::bind(address, authkey)?.serve()
}
