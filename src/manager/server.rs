//! [`Server`]: the process that holds the shared objects. One thread
//! accepts clients; each client connection gets a thread of its own (as in
//! CPython), so a client blocked in a queue `get` stalls nobody else. A
//! local client's thread serves it through shared-memory rings once it
//! upgraded (`transport.rs`), any other's on its socket.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::object::{Caller, Reply, Served, lock};
use super::protocol::{self, CONTROL_OBJECT, MAX_FRAME, Request, control};
use super::registry;
use super::transport::{Channel, Transport};
use crate::connection::{Address, Connection, DEFAULT_BACKLOG, Listener};
use crate::error::{Error, Result};
use crate::sys;

/// How long the accept loop gives a new client to complete the handshake.
/// The loop accepts one client at a time (as CPython's does), so a client
/// that connects and says nothing holds new clients up this long at most.
const ACCEPT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A manager server: binds an address and serves the shared objects to
/// clients that know the key, until a client asks it to stop.
///
/// [`Manager::start`](super::Manager::start) runs one in a child process;
/// `Server` is for running one yourself, e.g. as a standalone process other
/// machines connect to (Python's `BaseManager(address, authkey).get_server()
/// .serve_forever()`).
///
/// ```
/// use multiproc::manager::{Client, Server};
///
/// let server = Server::bind(&"tcp:127.0.0.1:0".parse()?, b"secret")?;
/// let address = server.address().clone();
/// let serving = std::thread::spawn(move || server.serve());
/// let client = Client::connect(&address, b"secret")?;
/// let d = client.dict()?;
/// d.set(b"answer", b"42")?;
/// assert_eq!(d.get(b"answer")?, Some(b"42".to_vec()));
/// client.shutdown_server()?;
/// serving.join().unwrap()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
    /// Readable when [`Shared::wake`] was written: a client asked to stop.
    wake_read: OwnedFd,
    /// A process (pidfd) whose end ends the server: a manager child's parent.
    watched: Option<OwnedFd>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", self.listener.address())
            .finish_non_exhaustive()
    }
}

/// What every client thread shares.
struct Shared {
    table: Mutex<Table>,
    /// Set by a SHUTDOWN request; no more clients are served.
    stopping: AtomicBool,
    /// The write end of the pipe that wakes the accept loop.
    wake_write: std::fs::File,
    /// A copy of each client's socket, to shut them all down at the end.
    clients: Mutex<HashMap<u64, OwnedFd>>,
    next_client: AtomicU64,
}

#[derive(Default)]
struct Table {
    objects: HashMap<u64, Slot>,
    /// The last id given out (ids start at 1; 0 is the server).
    last_id: u64,
}

struct Slot {
    object: Arc<dyn Served>,
    /// References held by all clients together; the slot goes at 0.
    refs: u64,
}

impl Server {
    /// Binds `address` (TCP port 0: the system picks one; a Unix socket
    /// path that must not exist yet) and requires `authkey` from clients
    /// (empty: no authentication).
    ///
    /// Errors: those of [`Listener::new`].
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Server> {
        let listener = Listener::new(address, DEFAULT_BACKLOG, Some(authkey))?;
        let (wake_read, wake_write) = sys::pipe().map_err(|e| Error::os("pipe", e))?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                stopping: AtomicBool::new(false),
                wake_write: std::fs::File::from(wake_write),
                clients: Mutex::new(HashMap::new()),
                next_client: AtomicU64::new(1),
            }),
            wake_read,
            watched: None,
        })
    }

    /// Where it listens, with the real port for TCP.
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Also stop when the process of `pidfd` ends.
    pub(crate) fn watch(&mut self, pidfd: OwnedFd) {
        self.watched = Some(pidfd);
    }

    /// Serves until a client calls
    /// [`shutdown_server`](super::Client::shutdown_server); then closes
    /// every client connection (their calls fail with [`Error::Eof`]) and
    /// returns. A client that fails the handshake is dropped; the server
    /// goes on. A server child (of [`Manager`](super::Manager)) also stops
    /// when its parent process ends.
    ///
    /// Errors: [`Error::Os`] when waiting for clients fails.
    pub fn serve(self) -> Result<()> {
        let mut ready = [false; 3];
        loop {
            let mut fds = vec![self.listener.fileno(), self.wake_read.as_fd()];
            if let Some(w) = &self.watched {
                fds.push(w.as_fd());
            }
            let ready = &mut ready[..fds.len()];
            sys::poll_many(&fds, None, ready).map_err(|e| Error::os("poll", e))?;
            if ready[1] || ready.get(2) == Some(&true) {
                break;
            }
            if ready[0] {
                // A client that fails the handshake, or that we cannot
                // give a thread (out of memory or threads), is dropped: it
                // sees its connection close; the server goes on.
                if let Ok(conn) = self.listener.accept(Some(ACCEPT_HANDSHAKE_TIMEOUT)) {
                    let _ = self.start_client(conn);
                }
            }
        }
        // SeqCst: read by client threads deciding whether to go on; no data
        // rides on it (they shut down by their sockets anyway).
        self.shared.stopping.store(true, Ordering::SeqCst);
        for socket in lock(&self.shared.clients).values() {
            // Ignored: a client already gone needs no shutdown.
            let _ = sys::shutdown(socket.as_fd(), sys::ShutdownHow::Read);
            let _ = sys::shutdown(socket.as_fd(), sys::ShutdownHow::Write);
        }
        Ok(())
    }

    fn start_client(&self, conn: Connection) -> Result<()> {
        // Relaxed: a counter handing out unique ids; nothing else rides on it.
        let id = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let dup = || {
            conn.fileno()
                .and_then(|fd| fd.try_clone_to_owned().map_err(|e| Error::os("dup", e)))
        };
        let caller = Caller { id, socket: dup()? };
        let local = matches!(self.listener.address(), Address::Unix(_));
        lock(&self.shared.clients).insert(id, dup()?);
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name(format!("manager-client-{id}"))
            .spawn(move || serve_client(&shared, conn, &caller, local));
        if let Err(e) = spawned {
            lock(&self.shared.clients).remove(&id);
            return Err(Error::os("spawn a client thread", e));
        }
        Ok(())
    }
}

/// What one received frame asks of the client's thread.
enum Step {
    /// Send this reply (and stop serving after it if `shutdown`).
    Reply {
        request_id: u64,
        result: Result<Reply>,
        shutdown: bool,
    },
    /// Move this client to the rings these handles name.
    Upgrade {
        request_id: u64,
        handles: Vec<Vec<u8>>,
    },
}

/// One client's thread: request, reply, until it hangs up. `local`: the
/// client came over a Unix socket, so it may move to rings.
fn serve_client(shared: &Shared, conn: Connection, caller: &Caller, local: bool) {
    let mut held: HashMap<u64, u64> = HashMap::new();
    let mut out = Vec::new();
    let mut channel = Channel::socket(conn);
    loop {
        let received = channel.recv_with(MAX_FRAME, |frame| {
            run_frame(shared, caller, &mut held, frame)
        });
        let step = match received {
            Ok(step) => step,
            Err(e @ Error::TooLarge { .. }) => {
                // The frame cannot be skipped without reading it: answer,
                // then drop this connection (the server goes on).
                protocol::encode_error(&mut out, 0, &e);
                let _ = channel.send(&out);
                break;
            }
            Err(_) => break,
        };
        let (request_id, result, shutdown) = match step {
            Step::Reply {
                request_id,
                result,
                shutdown,
            } => (request_id, result, shutdown),
            Step::Upgrade {
                request_id,
                handles,
            } => {
                if upgrade(&mut channel, &mut out, request_id, &handles, local).is_err() {
                    break;
                }
                continue;
            }
        };
        let encoded = result.and_then(|fields| {
            let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
            protocol::encode_reply(&mut out, request_id, &fields)
        });
        if let Err(e) = encoded {
            protocol::encode_error(&mut out, request_id, &e);
        }
        let sent = channel.send(&out);
        if shutdown {
            // SeqCst: see `Server::serve`.
            shared.stopping.store(true, Ordering::SeqCst);
            // Ignored: if the pipe is full the accept loop is awake already.
            let _ = std::io::Write::write(&mut &shared.wake_write, b"x");
        }
        // SeqCst: see `Server::serve`.
        if sent.is_err() || shared.stopping.load(Ordering::SeqCst) {
            break;
        }
    }
    lock(&shared.clients).remove(&caller.id);
    forget_client(shared, caller.id, held);
}

/// Decodes and runs one request frame.
fn run_frame(shared: &Shared, caller: &Caller, held: &mut HashMap<u64, u64>, frame: &[u8]) -> Step {
    let req = match protocol::decode_request(frame) {
        Ok(req) => req,
        Err(e) => {
            return Step::Reply {
                request_id: protocol::request_id_of(frame),
                result: Err(e),
                shutdown: false,
            };
        }
    };
    if req.object == CONTROL_OBJECT && req.method == control::UPGRADE {
        return Step::Upgrade {
            request_id: req.request_id,
            handles: req.args.iter().map(|a| a.to_vec()).collect(),
        };
    }
    let run = AssertUnwindSafe(|| dispatch(shared, caller, held, &req));
    let result = catch_unwind(run).unwrap_or_else(|_| {
        Err(Error::Internal(format!(
            "method {} of object {} panicked in the server",
            req.method, req.object
        )))
    });
    Step::Reply {
        request_id: req.request_id,
        result,
        shutdown: req.object == CONTROL_OBJECT && req.method == control::SHUTDOWN,
    }
}

/// Answers an upgrade request (see the `transport` module): refused at
/// once (the client stays on the socket), or "send the descriptor", the
/// attach, and "attached" (or the error, and then the connection ends: the
/// socket may hold a stray descriptor byte). `Err`: drop the client.
fn upgrade(
    channel: &mut Channel,
    out: &mut Vec<u8>,
    request_id: u64,
    handles: &[Vec<u8>],
    local: bool,
) -> Result<()> {
    let refusal = if channel.transport() == Transport::SharedMemory {
        Some(Error::State("this client is upgraded already".into()))
    } else if !local {
        Some(Error::Invalid(
            "shared-memory rings need a Unix socket connection".into(),
        ))
    } else if channel.conn().has_buffered_input() {
        Some(Error::Invalid(
            "frames sent after an upgrade request, before its answer".into(),
        ))
    } else {
        None
    };
    if let Some(e) = refusal {
        protocol::encode_error(out, request_id, &e);
        return channel.send(out);
    }
    protocol::encode_reply(out, request_id, &[])?;
    channel.conn().send_bytes(out)?;
    let handles: Vec<&[u8]> = handles.iter().map(Vec::as_slice).collect();
    let attached = channel.accept_upgrade(&handles);
    match &attached {
        Ok(()) => protocol::encode_reply(out, request_id, &[])?,
        Err(e) => protocol::encode_error(out, request_id, e),
    }
    // On the socket: the client reads this answer there.
    channel.conn().send_bytes(out)?;
    attached
}

/// Drops every reference the client held and tells every object it left.
fn forget_client(shared: &Shared, client: u64, held: HashMap<u64, u64>) {
    let objects: Vec<Arc<dyn Served>> = {
        let mut table = lock(&shared.table);
        for (id, n) in held {
            table.decref(id, n);
        }
        table
            .objects
            .values()
            .map(|s| Arc::clone(&s.object))
            .collect()
    };
    for object in objects {
        object.client_gone(client);
    }
}

fn no_object(id: u64) -> Error {
    Error::NotFound(format!(
        "no object {id} in the manager (never made, or every reference was dropped)"
    ))
}

impl Table {
    fn get(&self, id: u64) -> Result<&Slot> {
        self.objects.get(&id).ok_or_else(|| no_object(id))
    }

    fn get_mut(&mut self, id: u64) -> Result<&mut Slot> {
        self.objects.get_mut(&id).ok_or_else(|| no_object(id))
    }

    fn decref(&mut self, id: u64, n: u64) {
        if let Some(slot) = self.objects.get_mut(&id) {
            slot.refs = slot.refs.saturating_sub(n);
            if slot.refs == 0 {
                self.objects.remove(&id);
            }
        }
    }
}

/// Runs one request; the reply fields or the error to send back.
fn dispatch(
    shared: &Shared,
    caller: &Caller,
    held: &mut HashMap<u64, u64>,
    req: &Request<'_>,
) -> Result<Reply> {
    if req.object != CONTROL_OBJECT {
        let object = Arc::clone(&lock(&shared.table).get(req.object)?.object);
        return object.call(req.method, &req.args, caller);
    }
    let id_arg = |what: &str| -> Result<u64> {
        match req.args.as_slice() {
            [id] if id.len() == 8 => Ok(u64::from_le_bytes((*id).try_into().expect("8 bytes"))),
            _ => Err(Error::Invalid(format!("{what} takes one 8-byte object id"))),
        }
    };
    match req.method {
        control::CREATE => {
            let [type_name, init] = req.args.as_slice() else {
                return Err(Error::Invalid(
                    "create takes a type name and the creation bytes".into(),
                ));
            };
            let type_name = std::str::from_utf8(type_name)
                .map_err(|_| Error::Invalid("create: the type name is not UTF-8".into()))?;
            let object = registry::create(type_name, init)?;
            let mut table = lock(&shared.table);
            table.last_id += 1;
            let id = table.last_id;
            table.objects.insert(id, Slot { object, refs: 1 });
            *held.entry(id).or_default() += 1;
            Ok(vec![id.to_le_bytes().to_vec()])
        }
        control::ATTACH | control::INCREF => {
            let id = id_arg("attach")?;
            let mut table = lock(&shared.table);
            let slot = table.get_mut(id)?;
            slot.refs += 1;
            *held.entry(id).or_default() += 1;
            if req.method == control::ATTACH {
                Ok(vec![slot.object.type_name().as_bytes().to_vec()])
            } else {
                Ok(Vec::new())
            }
        }
        control::DECREF => {
            let id = id_arg("decref")?;
            match held.get_mut(&id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(&id);
                    }
                    lock(&shared.table).decref(id, 1);
                    Ok(Vec::new())
                }
                _ => Err(Error::NotFound(format!(
                    "this client holds no reference to object {id}"
                ))),
            }
        }
        // The accept loop is woken once the reply is sent (`serve_client`),
        // so that this client hears it before its connection is shut.
        control::SHUTDOWN => Ok(Vec::new()),
        control::PING => Ok(vec![(sys::getpid() as u64).to_le_bytes().to_vec()]),
        m => Err(Error::NotFound(format!(
            "the manager server has no method {m}"
        ))),
    }
}
