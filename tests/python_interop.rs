//! Interoperability with the machine's real CPython (`python3`):
//! `multiprocessing.connection.Listener` and `Client` talking to ours, over
//! TCP on 127.0.0.1 and over Unix sockets, with the right key and a wrong
//! one, in the native dialect of this python3 (HMAC-MD5 up to 3.11) and in
//! the `{sha256}` dialect of 3.12+.
//!
//! The Python side is `tests/python/peer_connection.py`; see its docstring
//! for the exchange. Every wait has a deadline; the Python peer also ends
//! itself after 60 s.
#![cfg(not(loom))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Address, Connection, Listener, client};

const DEADLINE: Duration = Duration::from_secs(60);
const SIZES: [usize; 4] = [0, 1, 64 * 1024, 3 * 1024 * 1024];
const CLIENT_SEED: usize = 7;
const LISTENER_SEED: usize = 101;
const KEY: &[u8] = b"interop secret";
const OTHER_KEY: &[u8] = b"another secret";

fn pattern(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|i| ((seed + i) % 256) as u8).collect()
}

fn hex(key: Option<&[u8]>) -> String {
    key.map_or("-".into(), |k| {
        k.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// A running `peer_connection.py`, its stdout lines arriving on a channel.
struct PythonPeer {
    child: Child,
    lines: Receiver<String>,
}

impl PythonPeer {
    fn start(mode: &str, address: &str, key: Option<&[u8]>, dialect: &str) -> PythonPeer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/peer_connection.py"
        );
        let mut child = Command::new("python3")
            .args([script, mode, address, &hex(key), dialect])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PythonPeer { child, lines }
    }

    /// The next line the peer prints; panics (killing it) after the deadline
    /// or when it exits without printing.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("python peer printed no line ({e})");
            }
        }
    }

    /// The rest of its output after it ends (stdout closes at its exit),
    /// and its exit code.
    fn finish(mut self) -> (String, i32) {
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => out.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("python peer did not finish ({e}); it said {out:?}");
                }
            }
        }
        let status = self.child.wait().expect("wait for python3");
        (out.join("\n"), status.code().unwrap_or(-1))
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        // Only if a test failed half-way: never leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory for Unix sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("multiproc-interop-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn socket(&self) -> String {
        format!("unix:{}", self.0.join("s").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our half of the exchange as the client: send, then check the answer.
fn exchange_as_client(conn: &mut Connection) {
    for size in SIZES {
        conn.send_bytes(&pattern(size, CLIENT_SEED)).unwrap();
        let got = conn.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
        assert!(
            got == pattern(size, LISTENER_SEED),
            "answer of {size} bytes differs"
        );
    }
}

/// Our half as the listener: check, then answer.
fn exchange_as_listener(conn: &mut Connection) {
    for size in SIZES {
        let got = conn.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
        assert!(
            got == pattern(size, CLIENT_SEED),
            "message of {size} bytes differs"
        );
        conn.send_bytes(&pattern(size, LISTENER_SEED)).unwrap();
    }
}

fn python_listener_our_client(address: &str, dialect: &str) {
    let mut peer = PythonPeer::start("listen", address, Some(KEY), dialect);
    let address: Address = peer.line().parse().unwrap();
    let mut conn = client(&address, Some(KEY), Some(DEADLINE)).unwrap();
    exchange_as_client(&mut conn);
    assert_eq!(peer.finish(), ("OK".into(), 0));
}

fn our_listener_python_client(address: &str, dialect: &str) {
    let listener = Listener::new(&address.parse().unwrap(), 4, Some(KEY)).unwrap();
    let peer = PythonPeer::start(
        "connect",
        &listener.address().to_string(),
        Some(KEY),
        dialect,
    );
    let mut conn = listener.accept(Some(DEADLINE)).unwrap();
    exchange_as_listener(&mut conn);
    assert_eq!(peer.finish(), ("OK".into(), 0));
}

#[test]
fn python_listener_and_our_client_over_tcp() {
    python_listener_our_client("tcp", "native");
}

#[test]
fn python_listener_and_our_client_over_unix() {
    let dir = TempDir::new("pl-unix");
    python_listener_our_client(&dir.socket(), "native");
}

#[test]
fn our_listener_and_python_client_over_tcp() {
    our_listener_python_client("tcp:127.0.0.1:0", "native");
}

#[test]
fn our_listener_and_python_client_over_unix() {
    let dir = TempDir::new("ol-unix");
    our_listener_python_client(&dir.socket(), "native");
    assert!(
        !dir.0.join("s").exists(),
        "the listener removes its socket file"
    );
}

#[test]
fn python_sha256_listener_and_our_client() {
    python_listener_our_client("tcp", "sha256");
}

#[test]
fn our_listener_and_python_sha256_client() {
    our_listener_python_client("tcp:127.0.0.1:0", "sha256");
}

fn python_listener_wrong_key(dialect: &str) {
    let mut peer = PythonPeer::start("listen", "tcp", Some(OTHER_KEY), dialect);
    let address: Address = peer.line().parse().unwrap();
    let err = client(&address, Some(KEY), Some(DEADLINE)).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    let (out, code) = peer.finish();
    assert_eq!(code, 3, "python said {out}");
    assert!(out.starts_with("AUTH_ERROR"), "python said {out}");
}

#[test]
fn python_listener_refuses_our_wrong_key() {
    python_listener_wrong_key("native");
}

#[test]
fn python_sha256_listener_refuses_our_wrong_key() {
    python_listener_wrong_key("sha256");
}

fn our_listener_wrong_key(dialect: &str) {
    let listener = Listener::new(&"tcp:127.0.0.1:0".parse().unwrap(), 4, Some(KEY)).unwrap();
    let address = listener.address().to_string();
    let peer = PythonPeer::start("connect", &address, Some(OTHER_KEY), dialect);
    let err = listener.accept(Some(DEADLINE)).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    let (out, code) = peer.finish();
    assert_eq!(code, 3, "python said {out}");
    assert!(out.starts_with("AUTH_ERROR"), "python said {out}");

    // The listener goes on: the next client, with the right key, gets in.
    let peer = PythonPeer::start("connect", &address, Some(KEY), dialect);
    let mut conn = listener.accept(Some(DEADLINE)).unwrap();
    exchange_as_listener(&mut conn);
    assert_eq!(peer.finish(), ("OK".into(), 0));
}

#[test]
fn our_listener_refuses_python_wrong_key_and_keeps_accepting() {
    our_listener_wrong_key("native");
}

#[test]
fn our_listener_refuses_python_sha256_wrong_key_and_keeps_accepting() {
    our_listener_wrong_key("sha256");
}

#[test]
fn without_keys_on_both_sides() {
    let listener = Listener::new(&"tcp:127.0.0.1:0".parse().unwrap(), 4, None).unwrap();
    let peer = PythonPeer::start("connect", &listener.address().to_string(), None, "native");
    let mut conn = listener.accept(Some(DEADLINE)).unwrap();
    exchange_as_listener(&mut conn);
    assert_eq!(peer.finish(), ("OK".into(), 0));
}
