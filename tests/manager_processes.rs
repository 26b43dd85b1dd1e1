//! The manager with real processes: concurrent updates from fork children
//! end exact, TCP with the right and a wrong key, a killed server fails the
//! next call promptly, a dead parent's server cleans up, bad requests get
//! specific errors while the server goes on, blocking calls do not stall
//! other clients, user types.
//!
//! Every wait has a deadline: calls that could hang run in a helper thread
//! the test waits for with a timeout. Order comes from the objects under
//! test and pipes, never from sleeping.
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
use multiproc::connection::{self, Address};
use multiproc::manager::{
    self, Client, DictProxy, ListProxy, Manager, Reply, Server, SharedObject, protocol,
};
use multiproc::process::{Process, StartMethod};
use multiproc::sys;

const DEADLINE: Duration = Duration::from_secs(30);

/// The directory of a manager's Unix socket.
fn socket_dir(client: &Client) -> std::path::PathBuf {
    match client.address() {
        Address::Unix(path) => path.parent().expect("socket in a directory").to_owned(),
        other => panic!("a manager child listens on a Unix socket, not {other}"),
    }
}

#[test]
fn clients_and_proxies_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<manager::Proxy>();
    send_sync::<DictProxy>();
    send_sync::<ListProxy>();
    send_sync::<manager::QueueProxy>();
    send_sync::<Manager>();
}

#[test]
fn children_update_one_dict_and_one_list_exactly() {
    const CHILDREN: u8 = 4;
    const EACH: u32 = 50;
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let dir = socket_dir(&mgr);
    let d = mgr.dict().unwrap();
    let l = mgr.list().unwrap();
    let lock = mgr.lock().unwrap();
    d.set(b"total", &0u64.to_le_bytes()).unwrap();
    let workers: Vec<Process> = (0..CHILDREN)
        .map(|c| {
            let (d, l, lock) = (d.clone(), l.clone(), lock.clone());
            Process::new(move || -> multiproc::Result<()> {
                for i in 0..EACH {
                    d.set(format!("{c}-{i}").as_bytes(), &i.to_le_bytes())?;
                    l.append(&[c, i as u8])?;
                    // A read-modify-write made atomic by the manager lock.
                    assert!(lock.acquire(Some(DEADLINE))?);
                    let old = d.get(b"total")?.expect("total is set");
                    let old = u64::from_le_bytes(old.try_into().expect("8 bytes"));
                    d.set(b"total", &(old + 1).to_le_bytes())?;
                    lock.release()?;
                }
                Ok(())
            })
        })
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    for w in &workers {
        assert_eq!(w.join(Some(DEADLINE)).unwrap(), 0, "a worker failed");
    }
    let total = u64::from(CHILDREN) * u64::from(EACH);
    assert_eq!(d.len().unwrap(), total as usize + 1);
    assert_eq!(d.get(b"total").unwrap(), Some(total.to_le_bytes().to_vec()));
    for c in 0..CHILDREN {
        for i in 0..EACH {
            let v = d.get(format!("{c}-{i}").as_bytes()).unwrap();
            assert_eq!(v, Some(i.to_le_bytes().to_vec()), "key {c}-{i}");
        }
    }
    let mut items = l.to_vec().unwrap();
    items.sort();
    let mut expected: Vec<Vec<u8>> = (0..CHILDREN)
        .flat_map(|c| (0..EACH).map(move |i| vec![c, i as u8]))
        .collect();
    expected.sort();
    assert_eq!(items, expected);
    // Each child's own appends kept their order.
    let items = l.to_vec().unwrap();
    for c in 0..CHILDREN {
        let mine: Vec<u8> = items.iter().filter(|v| v[0] == c).map(|v| v[1]).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "child {c}: {mine:?}");
    }
    drop((d, l, lock));
    mgr.shutdown().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn tcp_clients_need_the_key() {
    let server = Server::bind(&"tcp:127.0.0.1:0".parse().unwrap(), b"right key").unwrap();
    let address = server.address().clone();
    let serving = Process::new(move || server.serve());
    serving.start().unwrap();
    let client = Client::connect(&address, b"right key").unwrap();
    let d = client.dict().unwrap();
    d.set(b"k", b"v").unwrap();
    let refused = Client::connect(&address, b"wrong key").unwrap_err();
    assert!(matches!(refused, Error::Auth(_)), "{refused}");
    // The server goes on after the refusal.
    let again = Client::connect(&address, b"right key").unwrap();
    let same = DictProxy::attach(&again, d.proxy().id()).unwrap();
    assert_eq!(same.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_ne!(client.server_pid().unwrap(), sys::getpid());
    client.shutdown_server().unwrap();
    assert_eq!(serving.join(Some(DEADLINE)).unwrap(), 0);
    let after = same.get(b"k").unwrap_err();
    assert!(matches!(after, Error::Eof), "{after}");
}

#[test]
fn the_server_of_a_dead_parent_cleans_up_and_ends() {
    let (r, w) = sys::pipe().unwrap();
    let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
    let parent = fork_child(move || {
        let mgr = Manager::start_with(StartMethod::Fork).expect("start");
        let dir = socket_dir(&mgr);
        let pid = mgr.pid().expect("pid");
        let report = format!("{pid} {}", dir.display());
        w.write_all(report.as_bytes()).expect("report");
        // Ends without shutdown: `mgr` is never dropped.
        std::mem::forget(mgr);
        0
    });
    let mut report = String::new();
    r.read_to_string(&mut report).unwrap();
    assert_eq!(parent.join(), 0);
    let (pid, dir) = report.split_once(' ').expect("pid and dir");
    wait_gone(pid.parse().unwrap());
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn bad_requests_get_specific_errors_and_the_server_goes_on() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let d = mgr.dict().unwrap();
    let l = mgr.list().unwrap();
    d.set(b"k", b"v").unwrap();

    // Unknown object id, unknown type, object of another type.
    assert!(matches!(mgr.attach(9999), Err(Error::NotFound(_))));
    assert!(matches!(
        mgr.create("no-such-type", b""),
        Err(Error::NotFound(_))
    ));
    let err = DictProxy::attach(&mgr, l.proxy().id()).unwrap_err();
    assert!(matches!(err, Error::Kind { .. }), "{err}");
    assert!(ListProxy::attach(&mgr, l.proxy().id()).is_ok());
    // A method the type does not have, and wrong arguments.
    let err = d.proxy().call(99, &[]).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(t) if t.contains("no method 99")),
        "{err}"
    );
    let err = d.proxy().call(1, &[b"only a key"]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(matches!(l.get(3), Err(Error::Value(_))));
    // A value too large is refused before it is sent.
    let big = vec![0u8; manager::MAX_FRAME];
    assert!(matches!(d.set(b"big", &big), Err(Error::TooLarge { .. })));

    // Malformed frames on a raw connection: an error reply each, and the
    // connection goes on.
    let mut raw = connection::client(mgr.address(), Some(mgr.authkey()), Some(DEADLINE)).unwrap();
    for garbage in [
        &b""[..],
        b"\x01",
        b"\x07Qxxxxxxxxxxxxxxxxxxxxxxx",
        b"\x01Q\x05",
    ] {
        raw.send_bytes(garbage).unwrap();
        let reply = raw.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
        let err = protocol::decode_reply(&reply, protocol::request_id_of(garbage)).unwrap();
        assert!(
            matches!(err, Err(Error::Invalid(_))),
            "{garbage:?}: {err:?}"
        );
    }
    let mut unknown = Vec::new();
    protocol::encode_request(&mut unknown, 76, 9999, 2, &[b"k"]).unwrap();
    raw.send_bytes(&unknown).unwrap();
    let reply = raw.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
    let err = protocol::decode_reply(&reply, 76).unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(t) if t.contains("9999")),
        "{err}"
    );
    let mut ping = Vec::new();
    protocol::encode_request(
        &mut ping,
        77,
        protocol::CONTROL_OBJECT,
        protocol::control::PING,
        &[],
    )
    .unwrap();
    raw.send_bytes(&ping).unwrap();
    let reply = raw.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
    assert!(protocol::decode_reply(&reply, 77).unwrap().is_ok());
    // A frame over the limit: an error reply, then that connection ends
    // (the server does not read the rest, so our send may fail: ignored).
    let _ = raw.send_bytes(&vec![0u8; manager::MAX_FRAME + 1]);
    let reply = raw.recv_bytes_timeout(None, Some(DEADLINE)).unwrap();
    let err = protocol::decode_reply(&reply, 0).unwrap();
    assert!(matches!(err, Err(Error::TooLarge { .. })), "{err:?}");
    assert!(matches!(
        raw.recv_bytes_timeout(None, Some(DEADLINE)),
        Err(Error::Eof)
    ));

    // Everything still works for everyone.
    assert_eq!(d.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(d.len().unwrap(), 1);
    drop((d, l));
    mgr.shutdown().unwrap();
}

#[test]
fn a_blocked_queue_get_does_not_stall_other_clients() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let q = mgr.queue(0).unwrap();
    let started = mgr.event().unwrap();
    let d = mgr.dict().unwrap();
    let consumer = {
        let (q, started) = (q.clone(), started.clone());
        Process::new(move || -> multiproc::Result<i32> {
            started.set()?;
            Ok(q.get(Some(DEADLINE))?[0].into())
        })
    };
    consumer.start().unwrap();
    assert!(started.wait(Some(DEADLINE)).unwrap());
    // The consumer waits in the server (or is about to); others go on.
    for i in 0..20u8 {
        d.set(&[i], &[i]).unwrap();
    }
    assert_eq!(d.len().unwrap(), 20);
    q.put(&[42], None).unwrap();
    assert_eq!(consumer.join(Some(DEADLINE)).unwrap(), 42);
    assert_eq!(q.qsize().unwrap(), 0);
    drop((q, started, d));
    mgr.shutdown().unwrap();
}

#[test]
fn a_dead_clients_lock_is_reported_and_its_references_dropped() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let lock = mgr.lock().unwrap();
    let (r, w) = sys::pipe().unwrap();
    let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
    let holder = {
        let (lock, client) = (lock.clone(), Client::clone(&mgr));
        Process::new(move || -> multiproc::Result<()> {
            // Its own object, referenced by this process alone.
            let d = client.dict()?;
            w.write_all(&d.proxy().id().to_le_bytes())
                .map_err(|e| Error::os("write", e))?;
            assert!(lock.acquire(Some(DEADLINE))?);
            // Dies holding the lock and the dict: its connection closes
            // with the process.
            sys::exit_immediately(0)
        })
    };
    holder.start().unwrap();
    let mut id = [0u8; 8];
    r.read_exact(&mut id).unwrap();
    assert_eq!(holder.join(Some(DEADLINE)).unwrap(), 0);
    let err = lock.acquire(Some(DEADLINE)).unwrap_err();
    assert!(matches!(err, Error::OwnerDied), "{err}");
    // The server dropped the dead client's references before it released
    // the lock, so its dict is gone now.
    let err = mgr.attach(u64::from_le_bytes(id)).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // Acquired all the same: ours to release.
    assert!(lock.locked().unwrap());
    lock.release().unwrap();
    assert!(lock.acquire(Some(Duration::ZERO)).unwrap());
    drop(lock);
    mgr.shutdown().unwrap();
}

/// A user type: method 1 adds the u64 argument, returns the new total.
struct Counter(u64);

impl SharedObject for Counter {
    fn call(&mut self, method: u16, args: &[&[u8]]) -> multiproc::Result<Reply> {
        match (method, args) {
            (1, [delta]) => {
                let delta: [u8; 8] = (*delta)
                    .try_into()
                    .map_err(|_| Error::Invalid("add takes 8 bytes".into()))?;
                self.0 += u64::from_le_bytes(delta);
                Ok(vec![self.0.to_le_bytes().to_vec()])
            }
            _ => Err(Error::NotFound(format!("counter has no method {method}"))),
        }
    }
}

fn new_counter(init: &[u8]) -> multiproc::Result<Box<dyn SharedObject>> {
    let start = match init {
        [] => 0,
        bytes => u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| Error::Invalid("a counter starts from 8 bytes".into()))?,
        ),
    };
    Ok(Box::new(Counter(start)))
}

#[test]
fn user_types_are_atomic_across_processes() {
    manager::register_type("test-counter", new_counter).unwrap();
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let counter = mgr.create("test-counter", &100u64.to_le_bytes()).unwrap();
    assert!(matches!(
        mgr.create("test-counter", b"bad"),
        Err(Error::Invalid(_))
    ));
    let workers: Vec<Process> = (0..3)
        .map(|_| {
            let counter = counter.clone();
            Process::new(move || -> multiproc::Result<()> {
                for _ in 0..100 {
                    counter.call(1, &[&1u64.to_le_bytes()])?;
                }
                Ok(())
            })
        })
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    for w in &workers {
        assert_eq!(w.join(Some(DEADLINE)).unwrap(), 0);
    }
    let total = counter.call(1, &[&0u64.to_le_bytes()]).unwrap();
    assert_eq!(total, vec![400u64.to_le_bytes().to_vec()]);
    assert!(matches!(counter.call(2, &[]), Err(Error::NotFound(_))));
    drop(counter);
    mgr.shutdown().unwrap();
}

#[test]
fn references_keep_objects_alive_until_the_last_is_dropped() {
    let mgr = Manager::start_with(StartMethod::Fork).unwrap();
    let other = manager::connect(mgr.address(), mgr.authkey()).unwrap();
    let d = mgr.dict().unwrap();
    let id = d.proxy().id();
    let copy = d.clone();
    let attached = DictProxy::attach(&other, id).unwrap();
    drop(d);
    copy.set(b"a", b"1").unwrap();
    drop(copy);
    assert_eq!(attached.get(b"a").unwrap(), Some(b"1".to_vec()));
    drop(attached);
    assert!(matches!(other.attach(id), Err(Error::NotFound(_))));
    drop(other);
    mgr.shutdown().unwrap();
}

#[test]
fn a_python_client_passes_the_handshake_and_gets_replies() {
    let server = Server::bind(&"tcp:127.0.0.1:0".parse().unwrap(), b"py key").unwrap();
    let Address::Tcp { port, .. } = server.address().clone() else {
        unreachable!("bound on TCP")
    };
    let serving = Process::new(move || server.serve());
    serving.start().unwrap();
    let mut ping = Vec::new();
    protocol::encode_request(
        &mut ping,
        5,
        protocol::CONTROL_OBJECT,
        protocol::control::PING,
        &[],
    )
    .unwrap();
    let hex: String = ping.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "from multiprocessing.connection import Client\n\
         c = Client(('127.0.0.1', {port}), authkey=b'py key')\n\
         c.send_bytes(bytes.fromhex('{hex}'))\n\
         print(c.recv_bytes().hex())\n\
         try:\n    Client(('127.0.0.1', {port}), authkey=b'other')\n    print('accepted')\n\
         except Exception as e:\n    print('refused', type(e).__name__)\n"
    );
    let out = within("python client", move || {
        std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
    });
    let client = Client::connect(&format!("tcp:127.0.0.1:{port}").parse().unwrap(), b"py key");
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let reply_hex = lines.next().expect("a reply line");
            let reply: Vec<u8> = (0..reply_hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&reply_hex[i..i + 2], 16).expect("hex"))
                .collect();
            let fields = protocol::decode_reply(&reply, 5).unwrap().unwrap();
            assert_eq!(fields.len(), 1, "the server's pid");
            assert_eq!(lines.next(), Some("refused AuthenticationError"));
        }
        Ok(out) => panic!(
            "python client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("python3 not available ({e}): handshake interop not checked"),
    }
    client.unwrap().shutdown_server().unwrap();
    assert_eq!(serving.join(Some(DEADLINE)).unwrap(), 0);
}
