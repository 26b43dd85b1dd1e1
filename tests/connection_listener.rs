//! `Listener` and `client` between processes (fork children), and bad
//! clients and servers written by hand on raw sockets: each gets a specific
//! error, and the listener keeps accepting.
//!
//! Each test holds `SERIAL`, so no fork child of one test holds another
//! test's sockets open.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Address, Connection, Listener, Waitable, client, wait};
use multiproc::process::Process;

/// Far longer than anything here takes; reaching it means a bug.
const DEADLINE: Duration = Duration::from_secs(30);
const KEY: &[u8] = b"listener key";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn tcp_listener(key: Option<&[u8]>) -> Listener {
    Listener::new(&"tcp:127.0.0.1:0".parse().unwrap(), 4, key).unwrap()
}

fn join(p: &Process) -> i32 {
    p.join(Some(DEADLINE)).expect("child ends in time")
}

/// A fresh directory for Unix sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("multiproc-conn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Exit codes a client child reports its outcome with.
fn outcome(result: multiproc::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(Error::Auth(_)) => 3,
        Err(_) => 4,
    }
}

/// A child that connects, sends `hello` and expects `world` back.
fn client_child(address: Address, key: Option<&'static [u8]>) -> Process {
    Process::new(move || {
        outcome((|| {
            let mut conn = client(&address, key, Some(DEADLINE))?;
            conn.send_bytes(b"hello")?;
            let reply = conn.recv_bytes_timeout(None, Some(DEADLINE))?;
            assert_eq!(reply, b"world");
            Ok(())
        })())
    })
}

fn serve_one(listener: &Listener) -> multiproc::Result<()> {
    let mut conn = listener.accept(Some(DEADLINE))?;
    assert_eq!(conn.recv_bytes_timeout(None, Some(DEADLINE))?, b"hello");
    conn.send_bytes(b"world")
}

#[test]
fn tcp_clients_in_other_processes_with_a_key() {
    let _serial = serial();
    let listener = tcp_listener(Some(KEY));
    let children: Vec<Process> = (0..3)
        .map(|_| client_child(listener.address().clone(), Some(KEY)))
        .collect();
    for child in &children {
        child.start().unwrap();
    }
    for _ in &children {
        serve_one(&listener).unwrap();
    }
    for child in &children {
        assert_eq!(join(child), 0);
    }
}

#[test]
fn unix_socket_clients_and_the_socket_file_is_removed() {
    let _serial = serial();
    let dir = TempDir::new("unix");
    let path = dir.0.join("listener.sock");
    let address = Address::Unix(path.clone());
    let listener = Listener::new(&address, 1, Some(KEY)).unwrap();
    assert!(path.exists());
    // A second listener on the same path is refused by the system.
    assert!(matches!(
        Listener::new(&address, 1, None),
        Err(Error::Os { .. })
    ));
    let child = client_child(address, Some(KEY));
    child.start().unwrap();
    serve_one(&listener).unwrap();
    assert_eq!(join(&child), 0);
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
}

#[test]
fn a_client_with_another_key_is_refused_on_both_sides() {
    let _serial = serial();
    let listener = tcp_listener(Some(KEY));
    let child = client_child(listener.address().clone(), Some(b"another key"));
    child.start().unwrap();
    assert!(matches!(
        listener.accept(Some(DEADLINE)),
        Err(Error::Auth(_))
    ));
    assert_eq!(join(&child), 3, "the client sees an authentication error");
    // The listener goes on.
    let child = client_child(listener.address().clone(), Some(KEY));
    child.start().unwrap();
    serve_one(&listener).unwrap();
    assert_eq!(join(&child), 0);
}

#[test]
fn a_client_without_a_key_never_gets_a_connection() {
    let _serial = serial();
    let listener = tcp_listener(Some(KEY));
    let address = listener.address().clone();
    let child = Process::new(move || {
        // Without a key the client sends its message where the answer to
        // the challenge belongs; the listener refuses it.
        let mut conn = client(&address, None, Some(DEADLINE))?;
        conn.send_bytes(b"hello")?;
        // Stay until the listener hangs up (it sends the challenge and
        // #FAILURE# first).
        while conn.recv_bytes_timeout(None, Some(DEADLINE)).is_ok() {}
        Ok::<(), Error>(())
    });
    child.start().unwrap();
    assert!(matches!(
        listener.accept(Some(DEADLINE)),
        Err(Error::Auth(_))
    ));
    assert_eq!(join(&child), 0);
}

/// Connects a raw TCP socket to `listener` and runs `script` on it in a
/// thread, while the listener accepts; returns what `accept` said.
fn accept_raw_client(
    listener: &Listener,
    script: impl FnOnce(TcpStream) + Send + 'static,
) -> multiproc::Result<Connection> {
    let Address::Tcp { host, port } = listener.address().clone() else {
        unreachable!()
    };
    let stream = TcpStream::connect((host.as_str(), port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let peer = std::thread::spawn(move || script(stream));
    let result = listener.accept(Some(DEADLINE));
    peer.join().unwrap();
    result
}

/// Reads one framed message from a raw stream.
fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
}

fn expect_auth(result: multiproc::Result<Connection>, words: &str) {
    match result {
        Err(Error::Auth(text)) => assert!(text.contains(words), "{text}"),
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

#[test]
fn bad_clients_get_specific_errors_and_the_listener_goes_on() {
    let _serial = serial();
    let listener = tcp_listener(Some(KEY));

    // A garbage answer of the right shape.
    let result = accept_raw_client(&listener, |mut s| {
        let challenge = read_frame(&mut s);
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
        write_frame(&mut s, &[0u8; 16]);
        assert_eq!(read_frame(&mut s), b"#FAILURE#");
    });
    expect_auth(result, "wrong");

    // An answer with no digest prefix and an odd length.
    let result = accept_raw_client(&listener, |mut s| {
        read_frame(&mut s);
        write_frame(&mut s, b"not an answer at all!");
        let _ = s.read(&mut [0u8; 64]);
    });
    expect_auth(result, "no {digest} prefix");

    // An answer naming a digest we do not speak.
    let result = accept_raw_client(&listener, |mut s| {
        read_frame(&mut s);
        write_frame(&mut s, b"{whirl}0123456789abcdef");
        let _ = s.read(&mut [0u8; 64]);
    });
    expect_auth(result, "unsupported digest");

    // An answer far longer than any digest.
    let result = accept_raw_client(&listener, |mut s| {
        read_frame(&mut s);
        write_frame(&mut s, &[b'x'; 1000]);
    });
    expect_auth(result, "1000-byte");

    // A client that hangs up at once.
    let result = accept_raw_client(&listener, drop);
    assert!(matches!(result, Err(Error::Eof)), "{result:?}");

    // A truncated frame, then a hang-up.
    let result = accept_raw_client(&listener, |mut s| {
        read_frame(&mut s);
        s.write_all(&[0, 0, 0, 32, 1, 2, 3]).unwrap();
    });
    match result {
        Err(Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        other => panic!("expected an unexpected end of file, got {other:?}"),
    }

    // A client that says nothing: the accept's deadline ends it.
    let Address::Tcp { host, port } = listener.address().clone() else {
        unreachable!()
    };
    let silent = TcpStream::connect((host.as_str(), port)).unwrap();
    assert!(matches!(
        listener.accept(Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
    drop(silent);

    // After all that, a good client is served.
    let child = client_child(listener.address().clone(), Some(KEY));
    child.start().unwrap();
    serve_one(&listener).unwrap();
    assert_eq!(join(&child), 0);
}

/// Runs a raw TCP server `script` in a thread and connects our client to it.
fn connect_to_raw_server(
    script: impl FnOnce(TcpStream) + Send + 'static,
) -> multiproc::Result<Connection> {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = Address::from(server.local_addr().unwrap());
    let peer = std::thread::spawn(move || {
        let (stream, _) = server.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        script(stream);
    });
    let result = client(&address, Some(KEY), Some(DEADLINE));
    peer.join().unwrap();
    result
}

#[test]
fn bad_servers_get_specific_errors() {
    let _serial = serial();
    let result = connect_to_raw_server(|mut s| write_frame(&mut s, b"HELLO, WORLD AND ALL"));
    expect_auth(result, "expected a challenge");

    let result = connect_to_raw_server(|mut s| write_frame(&mut s, b"#CHALLENGE#short"));
    expect_auth(result, "too short");

    let result = connect_to_raw_server(|mut s| {
        write_frame(
            &mut s,
            b"#CHALLENGE#{sha3_256}0123456789012345678901234567890123456789",
        )
    });
    expect_auth(result, "unsupported digest");

    let result = connect_to_raw_server(|mut s| {
        write_frame(&mut s, &[b"#CHALLENGE#".as_slice(), &[9; 20]].concat());
        assert_eq!(
            read_frame(&mut s).len(),
            16,
            "a legacy challenge gets raw HMAC-MD5"
        );
        write_frame(&mut s, b"#NO#");
    });
    expect_auth(result, "expected #WELCOME#");

    let result = connect_to_raw_server(|mut s| {
        write_frame(&mut s, &[b"#CHALLENGE#".as_slice(), &[9; 20]].concat());
        read_frame(&mut s);
        write_frame(&mut s, b"#FAILURE#");
    });
    expect_auth(result, "rejected");

    let result = connect_to_raw_server(|mut s| s.write_all(&[0, 0]).unwrap());
    assert!(matches!(result, Err(Error::Os { .. })), "{result:?}");

    let result = connect_to_raw_server(drop);
    assert!(matches!(result, Err(Error::Eof)), "{result:?}");
}

#[test]
fn addresses_that_do_not_parse_or_cannot_be_reached() {
    let _serial = serial();
    for text in [
        "",
        "tcp:127.0.0.1",
        "tcp:127.0.0.1:99999",
        "udp:x:1",
        "unix:",
    ] {
        assert!(
            matches!(text.parse::<Address>(), Err(Error::Invalid(_))),
            "{text}"
        );
    }
    let long = Address::Unix(PathBuf::from(format!("/tmp/{}", "x".repeat(200))));
    assert!(matches!(
        Listener::new(&long, 1, None),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(client(&long, None, None), Err(Error::Invalid(_))));
    let dir = TempDir::new("nobody");
    let nobody = Address::Unix(dir.0.join("nobody.sock"));
    assert!(matches!(client(&nobody, None, None), Err(Error::Os { .. })));
    // A port nobody listens on: take one, then stop listening on it.
    let port = tcp_listener(None).address().clone();
    assert!(matches!(client(&port, None, None), Err(Error::Os { .. })));
}

#[test]
fn a_listener_is_waitable_and_accept_times_out() {
    let _serial = serial();
    let listener = tcp_listener(None);
    assert!(matches!(
        listener.accept(Some(Duration::ZERO)),
        Err(Error::Timeout)
    ));
    assert!(
        wait(&[&listener as &dyn Waitable], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    let mut conn = client(listener.address(), None, None).unwrap();
    assert_eq!(
        wait(&[&listener as &dyn Waitable], Some(DEADLINE)).unwrap(),
        [0]
    );
    let server = listener.accept(Some(Duration::ZERO)).unwrap();
    server.send_bytes(b"hi").unwrap();
    assert_eq!(
        conn.recv_bytes_timeout(None, Some(DEADLINE)).unwrap(),
        b"hi"
    );
}
