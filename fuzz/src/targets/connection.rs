//! The Connection framing (a peer that sends arbitrary bytes) and the
//! authkey handshake (a peer that answers or challenges with arbitrary
//! bytes), over real sockets.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc::Error;
use multiproc::connection::{Address, Connection, Listener, client};

use super::Input;

/// No body waits longer than this for its peer (the peer has already
/// written everything and hung up, so waits end at once in practice).
const LIMIT: Duration = Duration::from_secs(5);
/// Bytes of peer data used at most (they fit a socket buffer, so the
/// peer writes them all before the reader starts).
const MAX_FEED: usize = 64 * 1024;

/// The body: `[mode][maxlength][peer bytes...]`. Receives until the
/// stream ends; every message must respect the limits asked for.
pub fn framing(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.choose(3);
    let max = usize::from(input.u16());
    let feed = input.rest();
    let feed = &feed[..feed.len().min(MAX_FEED)];
    let (ours, theirs) = multiproc::sys::socketpair_stream().expect("socketpair");
    let mut conn = Connection::from_fd(ours, true, true).expect("connection");
    let mut peer = UnixStream::from(theirs);
    peer.write_all(feed).expect("feed the peer bytes");
    drop(peer);
    let mut buf = vec![0u8; max];
    // Each round consumes at least one byte or ends: bounded.
    for _ in 0..=feed.len() {
        let r = match mode {
            0 => conn.recv_bytes_timeout(None, Some(LIMIT)).map(|m| m.len()),
            1 => conn
                .recv_bytes_timeout(Some(max), Some(LIMIT))
                .inspect(|m| assert!(m.len() <= max))
                .map(|m| m.len()),
            _ => conn
                .recv_bytes_into_timeout(&mut buf, 0, Some(LIMIT))
                .inspect(|n| assert!(*n <= max)),
        };
        match r {
            Ok(_) => {}
            // A message over the limit stays; nothing else can be read.
            Err(Error::TooLarge { .. }) => break,
            Err(Error::Timeout) => panic!("a peer that hung up must not time out"),
            Err(_) => break,
        }
    }
}

/// A Unix socket path of its own for one run of the body.
fn socket_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness matters.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mp-fuzz-{}-{n}.sock", std::process::id()))
}

/// The body: `[side][key length][key][peer bytes...]`. Side 0: our
/// listener faces a client that sends the bytes; side 1: our client faces
/// a server that sends them. With garbage from the peer the handshake must
/// fail with an error (never succeed, panic or hang).
pub fn auth_handshake(data: &[u8]) {
    let mut input = Input::new(data);
    let side = input.choose(2);
    let key_len = 1 + input.choose(64);
    let key = input.bytes(key_len).to_vec();
    let key = if key.is_empty() { b"k".to_vec() } else { key };
    let feed = input.rest();
    let feed = &feed[..feed.len().min(MAX_FEED)];
    let path = socket_path();
    let address = Address::Unix(path.clone());
    if side == 0 {
        let listener = Listener::new(&address, 4, Some(&key)).expect("listen");
        let mut peer = UnixStream::connect(&path).expect("connect");
        peer.write_all(feed).expect("send the peer bytes");
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let r = listener.accept(Some(LIMIT));
        assert!(r.is_err(), "a handshake with garbage succeeded");
        assert!(
            !matches!(r, Err(Error::Timeout)),
            "a peer that hung up timed out"
        );
    } else {
        let server = UnixListener::bind(&path).expect("bind");
        let feed = feed.to_vec();
        let fake = std::thread::spawn(move || {
            let (mut s, _) = server.accept().expect("accept");
            let _ = s.write_all(&feed);
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Drain what the client says until it hangs up.
            let _ = s.set_read_timeout(Some(LIMIT));
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        let r = client(&address, Some(&key), Some(LIMIT));
        assert!(r.is_err(), "a handshake with garbage succeeded");
        assert!(
            !matches!(r, Err(Error::Timeout)),
            "a peer that hung up timed out"
        );
        drop(r);
        fake.join().expect("the fake server");
    }
    let _ = std::fs::remove_file(&path);
}
