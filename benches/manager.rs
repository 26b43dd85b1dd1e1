//! A manager dict proxy's set+get round trip against CPython's
//! `multiprocessing.Manager().dict()` doing the same (`d[k] = v; d[k]`),
//! measured in the same run: this bench runs `benches/python/manager_dict.py`
//! first and prints its figure beside ours.
//!
//! Key `b"key"`, value 16 bytes. Our server is a fork child on a Unix
//! socket, as Python's default manager is.
//!
//! Run: `cargo bench --bench manager`.

use std::hint::black_box;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::manager::Manager;
use multiproc::process::StartMethod;

fn python_figure() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/python/manager_dict.py"
    );
    match Command::new("python3").arg(script).output() {
        Ok(out) if out.status.success() => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(out) => eprintln!(
            "python manager.dict bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("python3 not available ({e}): no CPython figure"),
    }
}

fn dict_set_get(c: &mut Criterion) {
    python_figure();
    let manager = Manager::start_with(StartMethod::Fork).expect("start manager");
    let d = manager.dict().expect("dict");
    let (key, value) = (b"key".as_slice(), [b'v'; 16]);
    c.bench_function("manager dict set+get", |b| {
        b.iter(|| {
            d.set(key, &value).expect("set");
            black_box(d.get(key).expect("get"));
        })
    });
    drop(d);
    manager.shutdown().expect("shutdown");
}

criterion_group!(benches, dict_set_get);
criterion_main!(benches);
