//! The manager's two transports: local clients move to shared-memory rings
//! and TCP clients stay on the socket; values of every size (small, at the
//! ring's limit, over it, empty) arrive intact and in order on both;
//! malformed frames get the same specific errors through the rings; a
//! killed server and a dead client are noticed on both; a fork child gets
//! rings of its own.
//!
//! Every wait has a deadline (`within`); order comes from the objects under
//! test, never from sleeping.
#![cfg(not(loom))]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::child::fork_child;

/// [`common::deadline::within`] with this file's deadline.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    common::deadline::within(what, DEADLINE, f)
}

/// [`common::deadline::wait_gone`] with this file's deadline.
fn wait_gone(pid: i32) {
    common::deadline::wait_gone(pid, DEADLINE)
}
use multiproc::Error;
use multiproc::connection::Address;
use multiproc::manager::{self, Client, Manager, Server, Transport, protocol};
use multiproc::process::{Process, StartMethod};
use multiproc::sys;

const DEADLINE: Duration = Duration::from_secs(30);

const BOTH: [Transport; 2] = [Transport::SharedMemory, Transport::Socket];

/// A second client of `mgr`'s server over `transport`, checked to use it.
fn client(mgr: &Manager, transport: Transport) -> Client {
    let c = Client::connect_with(mgr.address(), mgr.authkey(), transport).unwrap();
    assert_eq!(c.transport(), transport);
    c
}

#[test]
fn local_clients_use_rings_and_tcp_clients_the_socket() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    assert_eq!(mgr.transport(), Transport::SharedMemory);
    client(&mgr, Transport::Socket);
    client(&mgr, Transport::SharedMemory);
    mgr.shutdown().unwrap();

    // A server in this process: the rings' segment is mapped here already.
    let dir = common::TempDir::new("manager-transport");
    let unix = Address::Unix(dir.path().join("m.sock"));
    let server = Server::bind(&unix, b"key").unwrap();
    let serving = std::thread::spawn(move || server.serve());
    let c = Client::connect(&unix, b"key").unwrap();
    assert_eq!(c.transport(), Transport::SharedMemory);
    let d = c.dict().unwrap();
    d.set(b"k", b"v").unwrap();
    assert_eq!(d.get(b"k").unwrap(), Some(b"v".to_vec()));
    drop(d);
    c.shutdown_server().unwrap();
    serving.join().unwrap().unwrap();

    // TCP: asked for rings, stays on the socket.
    let server = Server::bind(&"tcp:127.0.0.1:0".parse().unwrap(), b"key").unwrap();
    let tcp = server.address().clone();
    let serving = std::thread::spawn(move || server.serve());
    let c = Client::connect_with(&tcp, b"key", Transport::SharedMemory).unwrap();
    assert_eq!(c.transport(), Transport::Socket);
    let l = c.list().unwrap();
    l.append(b"x").unwrap();
    assert_eq!(l.to_vec().unwrap(), [b"x".to_vec()]);
    drop(l);
    c.shutdown_server().unwrap();
    serving.join().unwrap().unwrap();
}

#[test]
fn values_of_every_size_arrive_intact_and_in_order_on_both_transports() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    // Around the ring's frame limit (64 KiB less a little), far over it,
    // and empty.
    let sizes = [
        0,
        16,
        65_000,
        65_400,
        65_480,
        65_520,
        65_536,
        70_000,
        1 << 20,
    ];
    for transport in BOTH {
        let c = client(&mgr, transport);
        let d = c.dict().unwrap();
        let l = c.list().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let value: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            d.set(&n.to_le_bytes(), &value).unwrap();
            l.append(&value).unwrap();
        }
        for (i, &n) in sizes.iter().enumerate() {
            let value: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            assert_eq!(
                d.get(&n.to_le_bytes()).unwrap().as_deref(),
                Some(&value[..]),
                "{transport:?}: {n} bytes"
            );
        }
        // One reply carrying them all (over the socket, after a marker),
        // then small calls again (through the ring).
        let all = l.to_vec().unwrap();
        assert_eq!(all.len(), sizes.len());
        for (i, (&n, got)) in sizes.iter().zip(&all).enumerate() {
            assert_eq!(got.len(), n, "{transport:?}: item {i}");
            assert!(
                got.iter().enumerate().all(|(j, b)| *b == (i + j) as u8),
                "{transport:?}: item {i}"
            );
        }
        assert_eq!(d.len().unwrap(), sizes.len());
        assert_eq!(c.transport(), transport);
    }
    mgr.shutdown().unwrap();
}

#[test]
fn malformed_frames_get_the_same_errors_on_both_transports() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    for transport in BOTH {
        let c = client(&mgr, transport);
        let too_long = {
            let mut f = Vec::new();
            protocol::encode_request(&mut f, 5, protocol::CONTROL_OBJECT, 6, &[]).unwrap();
            f.resize(70_000, 0);
            f
        };
        for garbage in [
            &b""[..],
            b"\x01",
            b"\x07Qxxxxxxxxxxxxxxxxxxxxxxx",
            b"\x01Q\x05",
            &too_long,
        ] {
            let reply = c.exchange_raw_frame(garbage).unwrap();
            let err = protocol::decode_reply(&reply, protocol::request_id_of(garbage)).unwrap();
            assert!(
                matches!(err, Err(Error::Invalid(_))),
                "{transport:?}, {} bytes: {err:?}",
                garbage.len()
            );
        }
        let mut unknown = Vec::new();
        protocol::encode_request(&mut unknown, 76, 9999, 2, &[b"k"]).unwrap();
        let reply = c.exchange_raw_frame(&unknown).unwrap();
        let err = protocol::decode_reply(&reply, 76).unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(t) if t.contains("9999")),
            "{transport:?}: {err}"
        );
        // An upgrade through the rings (or a second one) is refused, and
        // the client goes on where it was.
        let mut again = Vec::new();
        protocol::encode_request(
            &mut again,
            77,
            protocol::CONTROL_OBJECT,
            protocol::control::UPGRADE,
            &[b"x", b"y"],
        )
        .unwrap();
        if transport == Transport::SharedMemory {
            let reply = c.exchange_raw_frame(&again).unwrap();
            let err = protocol::decode_reply(&reply, 77).unwrap().unwrap_err();
            assert!(matches!(err, Error::State(_)), "{err}");
        }
        assert_eq!(c.server_pid().unwrap(), mgr.pid().unwrap());
        // Over the limit: an error reply, then that connection ends.
        let reply = c
            .exchange_raw_frame(&vec![0u8; manager::MAX_FRAME + 1])
            .unwrap();
        let err = protocol::decode_reply(&reply, 0).unwrap();
        assert!(
            matches!(err, Err(Error::TooLarge { .. })),
            "{transport:?}: {err:?}"
        );
        let err = within("a call on a dropped connection", move || {
            c.server_pid().unwrap_err()
        });
        assert!(matches!(err, Error::Eof), "{transport:?}: {err}");
    }
    // The server goes on for everyone.
    assert_eq!(mgr.server_pid().unwrap(), mgr.pid().unwrap());
    mgr.shutdown().unwrap();
}

#[test]
fn an_upgrade_left_unfinished_drops_only_that_client() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    // The server answers "send the descriptor", which never comes: its
    // wait for it ends when this client hangs up.
    let c = client(&mgr, Transport::Socket);
    let mut upgrade = Vec::new();
    protocol::encode_request(
        &mut upgrade,
        3,
        protocol::CONTROL_OBJECT,
        protocol::control::UPGRADE,
        &[b"not a handle"],
    )
    .unwrap();
    let reply = c.exchange_raw_frame(&upgrade).unwrap();
    assert!(protocol::decode_reply(&reply, 3).unwrap().is_ok());
    drop(c);
    // Nothing else is disturbed.
    let d = mgr.dict().unwrap();
    d.set(b"k", b"v").unwrap();
    assert_eq!(d.get(b"k").unwrap(), Some(b"v".to_vec()));
    drop(d);
    mgr.shutdown().unwrap();
}

#[test]
fn a_killed_server_fails_the_next_call_on_both_transports() {
    for transport in BOTH {
        let mgr = Manager::start_with(StartMethod::Fork).unwrap();
        let c = client(&mgr, transport);
        let d = c.dict().unwrap();
        d.set(b"k", b"v").unwrap();
        let pid = mgr.pid().unwrap();
        sys::kill(pid, libc::SIGKILL).unwrap();
        wait_gone(pid);
        let (d, err) = within("a call on a dead server", move || {
            let err = d.get(b"k").unwrap_err();
            (d, err)
        });
        assert!(matches!(err, Error::Eof), "{transport:?}: {err}");
        // Every later call too, at once.
        assert!(matches!(d.len(), Err(Error::Eof)));
        drop(d);
        let dir = match mgr.address() {
            Address::Unix(path) => path.parent().expect("socket in a directory").to_owned(),
            other => panic!("a manager child listens on a Unix socket, not {other}"),
        };
        mgr.shutdown().unwrap();
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn a_dead_clients_lock_and_references_are_dropped_on_both_transports() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    for transport in BOTH {
        let lock = mgr.lock().unwrap();
        let (r, w) = sys::pipe().unwrap();
        let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
        let (address, key, lock_id) = (
            mgr.address().clone(),
            mgr.authkey().to_vec(),
            lock.proxy().id(),
        );
        let holder = Process::new(move || -> multiproc::Result<()> {
            let c = Client::connect_with(&address, &key, transport)?;
            assert_eq!(c.transport(), transport);
            let d = c.dict()?;
            let lock = manager::LockProxy::attach(&c, lock_id)?;
            assert!(lock.acquire(Some(DEADLINE))?);
            w.write_all(&d.proxy().id().to_le_bytes())
                .map_err(|e| Error::os("write", e))?;
            sys::exit_immediately(0)
        });
        holder.start().unwrap();
        let mut id = [0u8; 8];
        r.read_exact(&mut id).unwrap();
        assert_eq!(holder.join(Some(DEADLINE)).unwrap(), 0);
        let err = lock.acquire(Some(DEADLINE)).unwrap_err();
        assert!(matches!(err, Error::OwnerDied), "{transport:?}: {err}");
        let err = mgr.attach(u64::from_le_bytes(id)).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{transport:?}: {err}");
        lock.release().unwrap();
    }
    mgr.shutdown().unwrap();
}

#[test]
fn a_fork_child_gets_rings_of_its_own() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let d = mgr.dict().unwrap();
    d.set(b"warm", b"up").unwrap();
    assert_eq!(mgr.transport(), Transport::SharedMemory);
    const ROUNDS: u32 = 300;
    // Parent and child call at the same time through "the same" client:
    // shared rings would mix their replies up.
    let child = {
        let (d, c) = (d.clone(), Client::clone(&mgr));
        fork_child(move || {
            for i in 0..ROUNDS {
                let key = [b"c".as_slice(), &i.to_le_bytes()].concat();
                d.set(&key, &key).expect("child set");
                if d.get(&key).expect("child get").as_deref() != Some(&key[..]) {
                    return 1;
                }
            }
            if c.transport() != Transport::SharedMemory {
                return 2;
            }
            0
        })
    };
    for i in 0..ROUNDS {
        let key = [b"p".as_slice(), &i.to_le_bytes()].concat();
        d.set(&key, &key).unwrap();
        assert_eq!(d.get(&key).unwrap().as_deref(), Some(&key[..]));
    }
    assert_eq!(within("the child", move || child.join()), 0);
    assert_eq!(d.len().unwrap(), 2 * ROUNDS as usize + 1);
    // The parent's rings still work after the child's end.
    assert_eq!(mgr.transport(), Transport::SharedMemory);
    assert_eq!(d.get(b"warm").unwrap(), Some(b"up".to_vec()));
    drop(d);
    mgr.shutdown().unwrap();
}
