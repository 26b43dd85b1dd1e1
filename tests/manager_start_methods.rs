//! A manager started by each start method: fork, spawn and forkserver.
//!
//! `harness = false`: a spawn or forkserver server is a fresh run of this
//! executable, so `main` calls `process::init()` first; the manager's server
//! entry registered itself when the program loaded, so nothing else is
//! needed (that is what this test shows). Every call that could hang is
//! bounded by the manager's own timeouts and the deadline of `join`.

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() {
    suite::main()
}

#[cfg(not(loom))]
mod suite {
    use std::time::Duration;

    use multiproc::connection::Address;
    use multiproc::manager::{self, Manager, Reply, SharedObject};
    use multiproc::process::{self, Process, StartMethod};

    const DEADLINE: Duration = Duration::from_secs(30);

    /// A user type, registered in `main` before `init` so that spawned
    /// servers have it too: method 1 returns how often it was called.
    struct Calls(u64);

    impl SharedObject for Calls {
        fn call(&mut self, _method: u16, _args: &[&[u8]]) -> multiproc::Result<Reply> {
            self.0 += 1;
            Ok(vec![self.0.to_le_bytes().to_vec()])
        }
    }

    fn new_calls(_init: &[u8]) -> multiproc::Result<Box<dyn SharedObject>> {
        Ok(Box::new(Calls(0)))
    }

    fn manager_works(method: StartMethod) {
        let mgr = Manager::start_with(method).expect("start");
        let Address::Unix(socket) = mgr.address().clone() else {
            panic!("a manager child listens on a Unix socket")
        };
        let dir = socket.parent().expect("socket directory").to_owned();
        assert_ne!(mgr.server_pid().unwrap(), multiproc::sys::getpid());
        assert_eq!(mgr.server_pid().unwrap(), mgr.pid().unwrap());
        let d = mgr.dict().unwrap();
        let l = mgr.list().unwrap();
        let ns = mgr.namespace().unwrap();
        let workers: Vec<Process> = (0..2u8)
            .map(|c| {
                let (d, l) = (d.clone(), l.clone());
                Process::new(move || -> multiproc::Result<()> {
                    for i in 0..20u8 {
                        d.set(&[c, i], &[i])?;
                        l.append(&[c, i])?;
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
        let calls = mgr.create("calls", b"").unwrap();
        calls.call(1, &[]).unwrap();
        assert_eq!(
            calls.call(1, &[]).unwrap(),
            vec![2u64.to_le_bytes().to_vec()]
        );
        drop(calls);
        ns.set("method", method.name().as_bytes()).unwrap();
        assert_eq!(ns.get("method").unwrap(), method.name().as_bytes());
        assert_eq!(d.len().unwrap(), 40);
        assert_eq!(l.len().unwrap(), 40);
        drop((d, l, ns));
        mgr.shutdown().unwrap();
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    pub fn main() {
        manager::register_type("calls", new_calls).expect("register");
        process::init().expect("init");
        let methods = [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ];
        for method in methods {
            manager_works(method);
            println!("manager over {method}: ok");
        }
        println!("test result: ok. {} passed", methods.len());
    }
}
