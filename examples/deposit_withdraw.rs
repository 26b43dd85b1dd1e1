//! The classic deposit/withdraw demonstration, across processes.
//!
//! Four processes share one balance: two deposit 1 a hundred thousand
//! times, two withdraw 1 as often. With the balance's lock held around each
//! read-modify-write the balance always ends where it started; without the
//! lock the updates of different processes overwrite each other, and it
//! (almost always) ends somewhere else.
//!
//! `cargo run --release --example deposit_withdraw`

use multiproc::Result;
use multiproc::array::Value;
use multiproc::process::Process;
use multiproc::sync::Barrier;

const ROUNDS: i64 = 100_000;
const START: i64 = 1_000;

/// Runs the four workers over `balance` and returns where it ended.
fn run(balance: &Value<i64>, locked: bool) -> Result<i64> {
    balance.set(START);
    // All four start counting together, so their loops overlap.
    let start = Barrier::new(4)?;
    let workers: Vec<Process> = [1i64, 1, -1, -1]
        .into_iter()
        .map(|delta| {
            let (balance, start) = (balance.clone(), start.clone());
            Process::new(move || {
                start.wait().expect("all four arrive");
                for _ in 0..ROUNDS {
                    let guard = locked.then(|| {
                        let lock = balance.get_lock().expect("made with a lock");
                        lock.acquire().expect("no holder dies here")
                    });
                    // A read and a write: the window another process can hit.
                    let now = balance.get();
                    balance.set(now + delta);
                    drop(guard);
                }
            })
        })
        .collect();
    for w in &workers {
        w.start()?;
    }
    for w in &workers {
        assert_eq!(w.join(None)?, 0, "worker failed");
    }
    Ok(balance.get())
}

fn main() -> Result<()> {
    let balance = Value::with_lock(START)?;
    let with_lock = run(&balance, true)?;
    println!("with the lock:    balance {START} -> {with_lock}");
    assert_eq!(with_lock, START, "the lock must make every update count");
    let without = run(&balance, false)?;
    println!(
        "without the lock: balance {START} -> {without} ({} updates lost)",
        (without - START).abs()
    );
    Ok(())
}
