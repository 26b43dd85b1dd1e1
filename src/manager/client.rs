//! [`Client`]: one authenticated connection to a manager's server, shared
//! by every proxy made through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::object::{Reply, lock};
use super::protocol::{self, MAX_FRAME};
use super::protocol::{CONTROL_OBJECT, control};
use super::proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, Proxy, QueueProxy, ValueProxy,
};
use super::transport::{Channel, Transport};
use crate::connection::{self, Address};
use crate::error::{Error, Result};
use crate::sys;

/// How long the authentication handshake with the server may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a manager's server: makes shared objects and hands out
/// proxies to them. Cheap to clone (the clones share the connection).
///
/// Calls are made one at a time per `Client`: threads of one process that
/// share a client take turns, and a blocking call (a queue `get`, a lock
/// `acquire`) holds the connection until it returns. Give such threads
/// their own [`connect`](super::connect).
///
/// # Transports
///
/// A client on a Unix socket (any [`Manager`](super::Manager)'s) moves its
/// calls to shared-memory rings after connecting, which saves the two
/// socket wake-ups of each call; TCP clients stay on the socket. See
/// [`Transport`] and [`connect_with`](Client::connect_with).
///
/// # Across `fork`
///
/// A fork child must not share its parent's socket or rings, so the first
/// call a child makes through an inherited client opens a connection of its
/// own, upgraded to rings of its own (as CPython's proxies reconnect after
/// fork). Objects stay alive as long as some
/// client holds a reference: a child using its parent's proxies relies on
/// the parent keeping them (clone a proxy in the child to hold a reference
/// of its own). As with anything a fork child inherits from a threaded
/// parent: fork while no other thread is in the middle of a call through
/// the same client, or the child finds the client locked.
///
/// # When the server dies
///
/// A call on a connection the server closed fails at once with
/// [`Error::Eof`], and so does every later call through this client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    address: Address,
    authkey: Vec<u8>,
    /// The transport asked for (the one in use may be the socket).
    transport: Transport,
    state: Mutex<State>,
}

struct State {
    /// The process the connection belongs to.
    pid: i32,
    /// `None` once broken (the server hung up, or a reply made no sense).
    channel: Option<Channel>,
    next_request: u64,
    /// The encoded request, reused.
    out: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server at `address` and authenticates with
    /// `authkey` (CPython's handshake; an empty key: none).
    ///
    /// On a Unix socket the client then moves to shared-memory rings
    /// ([`Transport::SharedMemory`]).
    ///
    /// Errors: [`Error::Auth`] for a wrong key, [`Error::Os`] when nobody
    /// listens there, [`Error::Timeout`] when the handshake takes more than
    /// 30 s.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Client> {
        Client::connect_with(address, authkey, Transport::default())
    }

    /// As [`connect`](Client::connect), with the [`Transport`] to use:
    /// [`Transport::Socket`] keeps every call on the socket.
    ///
    /// ```
    /// use multiproc::manager::{Client, Manager, Transport};
    ///
    /// let mgr = Manager::start()?;
    /// let c = Client::connect_with(mgr.address(), mgr.authkey(), Transport::Socket)?;
    /// assert_eq!(c.transport(), Transport::Socket);
    /// assert_eq!(Some(c.server_pid()?), mgr.pid());
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn connect_with(address: &Address, authkey: &[u8], transport: Transport) -> Result<Client> {
        let channel = open_channel(address, authkey, transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                address: address.clone(),
                authkey: authkey.to_vec(),
                transport,
                state: Mutex::new(State {
                    pid: sys::getpid(),
                    channel: Some(channel),
                    next_request: 1,
                    out: Vec::new(),
                }),
            }),
        })
    }

    /// The transport this process's calls use now:
    /// [`Transport::SharedMemory`] once upgraded, else
    /// [`Transport::Socket`] (also once the connection is lost).
    pub fn transport(&self) -> Transport {
        let state = lock(&self.inner.state);
        match &state.channel {
            Some(channel) if state.pid == sys::getpid() => channel.transport(),
            _ => Transport::Socket,
        }
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// Calls `method` of object `object` with `args`; hands the reply
    /// fields to `read` while they are borrowed from the received frame.
    pub(crate) fn call_with<R>(
        &self,
        object: u64,
        method: u16,
        args: &[&[u8]],
        read: impl FnOnce(&[&[u8]]) -> Result<R>,
    ) -> Result<R> {
        let mut state = self.own_state()?;
        let id = state.next_request;
        state.next_request += 1;
        let State { channel, out, .. } = &mut *state;
        protocol::encode_request(out, id, object, method, args)?;
        let Some(ch) = channel.as_mut() else {
            return Err(Error::Eof);
        };
        let replied = ch.send(out).and_then(|()| {
            ch.recv_with(MAX_FRAME, |frame| match protocol::decode_reply(frame, id) {
                Ok(Ok(fields)) => Ok(read(&fields)),
                Ok(Err(server_error)) => Ok(Err(server_error)),
                Err(e) => Err(undecodable_reply(frame, "manager reply", e)),
            })
        });
        match replied {
            Ok(Ok(result)) => result,
            // A reply that makes no sense: the connection is not trusted.
            Ok(Err(bad_reply)) => {
                *channel = None;
                Err(bad_reply)
            }
            Err(e) => {
                *channel = None;
                Err(transport_error(e))
            }
        }
    }

    /// The state, with a channel of this process's own: a fork child's
    /// copy of its parent's (socket and rings) is dropped (only here; the
    /// parent's stay open) and replaced.
    fn own_state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut state = lock(&self.inner.state);
        let me = sys::getpid();
        if state.pid != me {
            state.channel = None;
            state.pid = me;
            let inner = &self.inner;
            state.channel = Some(open_channel(
                &inner.address,
                &inner.authkey,
                inner.transport,
            )?);
        }
        Ok(state)
    }

    /// Sends `frame` as it is (a request, well formed or not) through this
    /// client's transport and returns the reply frame as it came: for
    /// tests of the server's checks. A transport failure breaks the
    /// client, as for any call.
    #[doc(hidden)]
    pub fn exchange_raw_frame(&self, frame: &[u8]) -> Result<Vec<u8>> {
        let mut state = self.own_state()?;
        let Some(ch) = state.channel.as_mut() else {
            return Err(Error::Eof);
        };
        // A send the server cut short (it refuses a frame over the limit
        // after its header) may still have an answer waiting.
        let sent = ch.send(frame);
        match (sent, ch.recv_with(MAX_FRAME, <[u8]>::to_vec)) {
            (_, Ok(reply)) => Ok(reply),
            (Err(e), Err(_)) | (Ok(()), Err(e)) => {
                state.channel = None;
                Err(transport_error(e))
            }
        }
    }

    /// [`call_with`](Client::call_with) returning owned fields.
    pub(crate) fn call(&self, object: u64, method: u16, args: &[&[u8]]) -> Result<Reply> {
        self.call_with(object, method, args, |fields| {
            Ok(fields.iter().map(|f| f.to_vec()).collect())
        })
    }

    /// Whether the connection belongs to this process (not inherited
    /// across fork).
    pub(crate) fn is_own(&self) -> bool {
        lock(&self.inner.state).pid == sys::getpid()
    }

    /// Creates an object of type `type_name` (a built-in name or one given
    /// to [`register_type`](super::register_type) in the server's process)
    /// from `init`, and returns a proxy holding a reference to it.
    ///
    /// Errors: [`Error::NotFound`] for an unknown type, whatever the type's
    /// constructor returns for bad `init`.
    pub fn create(&self, type_name: &str, init: &[u8]) -> Result<Proxy> {
        let id = self.call_with(
            CONTROL_OBJECT,
            control::CREATE,
            &[type_name.as_bytes(), init],
            |f| read_u64(f, "create"),
        )?;
        Ok(Proxy::new(self.clone(), id, type_name.to_owned()))
    }

    /// A proxy to the existing object `id` (another client's
    /// [`Proxy::id`]), holding a reference of its own.
    ///
    /// Errors: [`Error::NotFound`] when no such object lives.
    pub fn attach(&self, id: u64) -> Result<Proxy> {
        let type_name = self.call_with(
            CONTROL_OBJECT,
            control::ATTACH,
            &[&id.to_le_bytes()],
            |f| match f {
                [name] => Ok(String::from_utf8_lossy(name).into_owned()),
                _ => Err(Error::Internal("attach: reply has no type name".into())),
            },
        )?;
        Ok(Proxy::new(self.clone(), id, type_name))
    }

    /// A new empty shared dict of byte keys and values.
    pub fn dict(&self) -> Result<DictProxy> {
        DictProxy::try_from(self.create(super::proxy::dict::TYPE, b"")?)
    }

    /// A new empty shared list of byte values.
    pub fn list(&self) -> Result<ListProxy> {
        ListProxy::try_from(self.create(super::proxy::list::TYPE, b"")?)
    }

    /// A new empty namespace (named byte fields).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        NamespaceProxy::try_from(self.create(super::proxy::namespace::TYPE, b"")?)
    }

    /// A new shared value holding `initial`.
    pub fn value(&self, initial: &[u8]) -> Result<ValueProxy> {
        ValueProxy::try_from(self.create(super::proxy::value::TYPE, initial)?)
    }

    /// A new queue holding at most `maxsize` items (0: no limit).
    pub fn queue(&self, maxsize: usize) -> Result<QueueProxy> {
        let init = (maxsize as u64).to_le_bytes();
        QueueProxy::try_from(self.create(super::proxy::queue::TYPE, &init)?)
    }

    /// A new lock, released.
    pub fn lock(&self) -> Result<LockProxy> {
        LockProxy::try_from(self.create(super::proxy::lock::TYPE, b"")?)
    }

    /// A new event, clear.
    pub fn event(&self) -> Result<EventProxy> {
        EventProxy::try_from(self.create(super::proxy::event::TYPE, b"")?)
    }

    /// The server's process id (a round trip that changes nothing).
    pub fn server_pid(&self) -> Result<i32> {
        self.call_with(CONTROL_OBJECT, control::PING, &[], |f| {
            Ok(read_u64(f, "ping")? as i32)
        })
    }

    /// Asks the server to stop: it answers, stops accepting clients,
    /// closes every connection and ends (a manager child exits). Later
    /// calls fail with [`Error::Eof`].
    pub fn shutdown_server(&self) -> Result<()> {
        self.call(CONTROL_OBJECT, control::SHUTDOWN, &[])?;
        Ok(())
    }
}

/// Connects, authenticates and, for [`Transport::SharedMemory`] on a Unix
/// socket, upgrades to rings (staying on the socket if the server refuses).
fn open_channel(address: &Address, authkey: &[u8], transport: Transport) -> Result<Channel> {
    let conn = connection::client(address, Some(authkey), Some(HANDSHAKE_TIMEOUT))?;
    let mut channel = Channel::socket(conn);
    if transport == Transport::SharedMemory && matches!(address, Address::Unix(_)) {
        // Request id 0: calls count from 1.
        let upgraded = channel.upgrade(
            |handles| {
                let mut frame = Vec::new();
                protocol::encode_request(&mut frame, 0, CONTROL_OBJECT, control::UPGRADE, handles)?;
                Ok(frame)
            },
            |reply| match protocol::decode_reply(reply, 0) {
                Ok(answer) => Ok(answer.map(|_| ())),
                Err(e) => Err(undecodable_reply(reply, "manager upgrade reply", e)),
            },
        );
        // `Ok(Err(_))`, refused at once: the server serves this client on
        // the socket, which is all this client needs.
        let _refused = upgraded.map_err(transport_error)?;
    }
    Ok(channel)
}

/// What a reply that does not decode means. A server with a key sends
/// its challenge (`#CHALLENGE#...`, see `connection::auth`) first; a client
/// given no key skips the handshake and reads that challenge as its first
/// reply: [`Error::Auth`] (it was `Error::Internal`). Anything else is a
/// peer that is no manager, or a bug: [`Error::Internal`].
fn undecodable_reply(frame: &[u8], what: &str, e: Error) -> Error {
    if frame.starts_with(b"#CHALLENGE#") {
        Error::Auth(
            "the manager asks for an authkey (it sent a challenge), but none was given".into(),
        )
    } else {
        Error::Internal(format!("{what}: {e}"))
    }
}

/// The single u64 field of a reply.
pub(crate) fn read_u64(fields: &[&[u8]], what: &str) -> Result<u64> {
    match fields {
        [f] if f.len() == 8 => Ok(u64::from_le_bytes((*f).try_into().expect("8 bytes"))),
        _ => Err(Error::Internal(format!(
            "{what}: the reply is not one 8-byte integer"
        ))),
    }
}

/// What a proxy call reports when the transport failed: the server is gone
/// ([`Error::Eof`]) or the system said why.
fn transport_error(e: Error) -> Error {
    match e {
        Error::Eof => Error::Eof,
        Error::Os { op, source } => match source.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => Error::Eof,
            _ => Error::Os { op, source },
        },
        other => other,
    }
}
