//! [`Manager`]: a [`Server`] in a child process, as Python's `Manager()`.
//!
//! The parent makes a private directory (mode 0700) and a random key; the
//! child (started by any method, running the entry the crate registers
//! itself) listens on `manager.sock` in it, then says "ready" through a
//! one-shot socket `ready.sock` the parent listens on. The parent waits for
//! that or for the child's end, whichever comes first, and connects.
//!
//! Cleanup: `shutdown` (or dropping the `Manager`) asks the server to stop,
//! reaps it (killing it if it does not end in time) and removes the
//! directory. If the parent dies first, the server notices (it watches a
//! pidfd of its parent), stops, and removes the directory itself.

use std::ops::Deref;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::{Client, HANDSHAKE_TIMEOUT};
use super::server::Server;
use crate::connection::{self, Address, Listener};
use crate::error::{Error, Result};
use crate::process::{self, Entry, Process, StartMethod, register_entry};
use crate::sys;

/// The name the server entry is registered under.
pub const SERVER_ENTRY: &str = "multiproc.manager.server";

/// How long a new server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `shutdown` waits for the server to end before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The random key's length, in bytes.
const AUTHKEY_LEN: usize = 32;

const SOCKET_NAME: &str = "manager.sock";
const READY_NAME: &str = "ready.sock";

/// Registers the server entry when the program (or the C library) is
/// loaded, before `main`, so that a `spawn` or `forkserver` child, a fresh
/// run of the program, finds it with nothing but `process::init()` in
/// `main`.
// SAFETY: `.init_array` holds pointers to `extern "C" fn()` that the
// loader calls once at load; this is one, and what it runs (a registry
// insert under a const-initialized std mutex) needs nothing that only
// exists after `main` starts.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_AT_LOAD: extern "C" fn() = register_at_load;

extern "C" fn register_at_load() {
    // Ignored: the name is ours, valid, and taken by no other function.
    let _ = register_server_entry();
}

fn register_server_entry() -> Result<()> {
    register_entry(SERVER_ENTRY, Entry::Rust(server_entry))
}

/// A manager: a server process holding shared objects, and a [`Client`]
/// connected to it (which the `Manager` dereferences to), as Python's
/// `multiprocessing.Manager()`.
///
/// The server listens on a Unix socket in a private temporary directory,
/// with a random key; give [`address`](Client::address) and
/// [`authkey`](Manager::authkey) to other processes to let them
/// [`connect`](super::connect). Fork children may simply use the proxies
/// they inherited.
///
/// ```
/// use multiproc::manager::Manager;
/// use multiproc::process::Process;
///
/// let mgr = Manager::start()?;
/// let d = mgr.dict()?;
/// let l = mgr.list()?;
/// let workers: Vec<Process> = (0..3u8)
///     .map(|i| {
///         let (d, l) = (d.clone(), l.clone());
///         Process::new(move || {
///             d.set(&[i], &[i * 10]).and_then(|()| l.append(&[i]))
///         })
///     })
///     .collect();
/// for w in &workers {
///     w.start()?;
/// }
/// for w in &workers {
///     assert_eq!(w.join(None)?, 0);
/// }
/// assert_eq!(d.len()?, 3);
/// assert_eq!(d.get(&[2])?, Some(vec![20]));
/// assert_eq!(l.len()?, 3);
/// mgr.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Manager {
    client: Client,
    authkey: Vec<u8>,
    /// `None` once shut down.
    process: Option<Process>,
    dir: PathBuf,
    /// The process that started the server: only it stops the server (a
    /// fork child dropping its copy of the `Manager` leaves it alone).
    owner: i32,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", self.client.address())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts a manager with the default start method
    /// ([`process::get_start_method`]).
    ///
    /// Errors: see [`start_with`](Manager::start_with).
    pub fn start() -> Result<Manager> {
        Manager::start_with(process::get_start_method())
    }

    /// Starts a manager whose server runs in a child started by `method`.
    /// Spawn and forkserver need `process::init()` first thing in `main`,
    /// as for any spawned child; the server's entry registers itself.
    ///
    /// Errors: [`Error::State`] when the server ended before it was ready
    /// (its exit code in the message); [`Error::Timeout`] when it did not
    /// get ready in 30 s; the errors of [`Process::start`] and of making
    /// the directory and sockets.
    pub fn start_with(method: StartMethod) -> Result<Manager> {
        register_server_entry()?;
        let dir = private_dir()?;
        let started = start_in(&dir, method);
        if started.is_err() {
            // Ignored: the error that matters is the one returned.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let (client, authkey, process) = started?;
        Ok(Manager {
            client,
            authkey,
            process: Some(process),
            dir,
            owner: sys::getpid(),
        })
    }

    /// The key clients authenticate with.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The server process's pid, until shutdown.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// Stops the server (Python's `manager.shutdown()`): asks it to stop,
    /// waits for it to end (killing it after 10 s), reaps it and removes
    /// its directory. Every proxy's later calls fail with [`Error::Eof`].
    /// Dropping the `Manager` does the same.
    ///
    /// In a fork child, which holds a copy of its parent's `Manager`, this
    /// (and dropping it) does nothing: the server belongs to the parent.
    ///
    /// Errors: [`Error::State`] when the server ended with a non-zero exit
    /// code of its own (not after a kill by someone else, nor by us);
    /// [`Error::Os`] when reaping failed.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        if self.owner != sys::getpid() {
            return Ok(());
        }
        // Ignored: a server that is gone already has nothing to answer.
        let _ = self.client.shutdown_server();
        let code = match process.join(Some(STOP_TIMEOUT)) {
            Err(Error::Timeout) => {
                process.kill()?;
                process.join(None).map(|_| 0)
            }
            other => other,
        };
        // Ignored: the server may have removed it already.
        let _ = std::fs::remove_dir_all(&self.dir);
        match code? {
            c if c <= 0 => Ok(()),
            c => Err(Error::State(format!(
                "the manager server exited with code {c}"
            ))),
        }
    }
}

impl Deref for Manager {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Ignored: nothing to report to at drop; `shutdown` reports.
        let _ = self.stop();
    }
}

/// A new directory only this user can enter, under the system's temp dir.
fn private_dir() -> Result<PathBuf> {
    let random = sys::getrandom_u64().map_err(|e| Error::os("getrandom", e))?;
    let dir = std::env::temp_dir().join(format!("mp-manager-{}-{random:016x}", sys::getpid()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::os(format!("mkdir {}", dir.display()), e))?;
    Ok(dir)
}

fn random_key() -> Result<Vec<u8>> {
    let mut key = Vec::with_capacity(AUTHKEY_LEN);
    while key.len() < AUTHKEY_LEN {
        let word = sys::getrandom_u64().map_err(|e| Error::os("getrandom", e))?;
        key.extend_from_slice(&word.to_ne_bytes());
    }
    Ok(key)
}

fn unix_in(dir: &Path, name: &str) -> Address {
    Address::Unix(dir.join(name))
}

/// Starts the server child and connects to it.
fn start_in(dir: &Path, method: StartMethod) -> Result<(Client, Vec<u8>, Process)> {
    let authkey = random_key()?;
    let ready = Listener::new(&unix_in(dir, READY_NAME), 1, Some(&authkey))?;
    let process = Process::from_entry(SERVER_ENTRY, encode_arg(dir, &authkey)?)?
        .with_name("Manager")
        .start_method(method);
    process.start()?;
    let connected = wait_ready(&ready, &process)
        .and_then(|()| Client::connect(&unix_in(dir, SOCKET_NAME), &authkey));
    match connected {
        Ok(client) => Ok((client, authkey, process)),
        Err(e) => {
            // Ignored: it may have ended already; the join reaps it.
            let _ = process.kill();
            let _ = process.join(Some(STOP_TIMEOUT));
            Err(e)
        }
    }
}

/// Waits for the child's "ready" (or its error text), or its end.
fn wait_ready(ready: &Listener, process: &Process) -> Result<()> {
    let sentinel = process.sentinel()?;
    let woke = connection::wait(&[ready, &sentinel], Some(START_TIMEOUT))?;
    if woke.is_empty() {
        return Err(Error::Timeout);
    }
    if !woke.contains(&0) {
        let code = process.join(Some(Duration::ZERO))?;
        return Err(Error::State(format!(
            "the manager server exited with code {code} before it was ready"
        )));
    }
    let mut conn = ready.accept(Some(HANDSHAKE_TIMEOUT))?;
    let word = conn.recv_bytes_timeout(Some(4096), Some(START_TIMEOUT))?;
    match word.as_slice() {
        b"ready" => Ok(()),
        text => Err(Error::State(format!(
            "the manager server could not start: {}",
            String::from_utf8_lossy(text)
        ))),
    }
}

/// The server entry's argument: the directory and the key, each as a
/// little-endian u32 length and its bytes.
fn encode_arg(dir: &Path, authkey: &[u8]) -> Result<Vec<u8>> {
    let dir = dir.as_os_str().as_encoded_bytes();
    let mut arg = Vec::with_capacity(8 + dir.len() + authkey.len());
    for part in [dir, authkey] {
        let len = u32::try_from(part.len())
            .map_err(|_| Error::Invalid("manager directory or key too long".into()))?;
        arg.extend_from_slice(&len.to_le_bytes());
        arg.extend_from_slice(part);
    }
    Ok(arg)
}

fn decode_arg(arg: &[u8]) -> Result<(PathBuf, Vec<u8>)> {
    let bad = || Error::Invalid("malformed manager server argument".into());
    let mut rest = arg;
    let mut part = || -> Result<Vec<u8>> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (bytes, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        rest = tail;
        Ok(bytes.to_vec())
    };
    let dir = part()?;
    let key = part()?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let dir = String::from_utf8(dir).map_err(|_| bad())?;
    Ok((PathBuf::from(dir), key))
}

/// The entry the manager child runs: serve until told to stop or until the
/// parent ends; exit code 0, or 2 when it could not start.
fn server_entry(arg: &[u8]) -> i32 {
    let Ok((dir, authkey)) = decode_arg(arg) else {
        eprintln!("multiproc manager server: malformed argument");
        return 2;
    };
    let code = match bind_and_report(&dir, &authkey) {
        Ok(server) => match server.serve() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("multiproc manager server: {e}");
                1
            }
        },
        Err(_) => 2,
    };
    // Ignored: the parent may have removed it already.
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// Binds the server, watches the parent, and tells the parent the outcome.
fn bind_and_report(dir: &Path, authkey: &[u8]) -> Result<Server> {
    let server = bind_watching_parent(dir, authkey);
    let ready = connection::client(
        &unix_in(dir, READY_NAME),
        Some(authkey),
        Some(HANDSHAKE_TIMEOUT),
    )?;
    match &server {
        Ok(_) => ready.send_bytes(b"ready")?,
        Err(e) => ready.send_bytes(e.to_string().as_bytes())?,
    }
    server
}

fn bind_watching_parent(dir: &Path, authkey: &[u8]) -> Result<Server> {
    let parent = process::parent_process()
        .ok_or_else(|| Error::State("the manager server has no parent process".into()))?;
    let pidfd = sys::pidfd_open(parent.pid()).map_err(|e| Error::os("pidfd_open", e))?;
    // Checked after the pidfd is open: a parent that died before would
    // have had its pid free for reuse.
    if !parent.is_alive() {
        return Err(Error::State("the manager's parent is gone".into()));
    }
    let mut server = Server::bind(&unix_in(dir, SOCKET_NAME), authkey)?;
    server.watch(pidfd);
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_round_trips_and_bad_args_are_refused() {
        let arg = encode_arg(Path::new("/tmp/x y"), b"key\0").unwrap();
        assert_eq!(
            decode_arg(&arg).unwrap(),
            (PathBuf::from("/tmp/x y"), b"key\0".to_vec())
        );
        for cut in 0..arg.len() {
            assert!(decode_arg(&arg[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = arg.clone();
        longer.push(1);
        assert!(decode_arg(&longer).is_err());
    }
}
