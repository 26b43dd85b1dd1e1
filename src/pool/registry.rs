//! Functions a pool runs, and how a task names one to a worker.
//!
//! A worker started by `spawn` or `forkserver` is another run of the
//! program, with its own addresses: it finds a function by the name it was
//! registered under ([`register`], [`register_fn`], [`register_starfn`],
//! [`register_initializer`], C's `mp_pool_register`), in the same
//! registrations `main` ran before [`init`](crate::process::init). A fork
//! worker is a copy of the parent, so any plain `fn` works there: the task
//! carries its address (and a registered function still travels by name).

use std::collections::BTreeMap;
use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use super::value::TaskValue;
use crate::error::{Error, Result};
use crate::process::{self, MAX_ENTRY_NAME, StartMethod};

/// A function on bytes: takes a task's argument bytes, returns its result
/// bytes or an error message (what [`TaskError::Failed`](super::TaskError::Failed)
/// carries).
pub type BytesFn = fn(&[u8]) -> std::result::Result<Vec<u8>, String>;

/// C's `mp_pool_fn`: reads `in_len` bytes at `input`, writes at most
/// `out_cap` bytes at `out` and their count in `*out_len`, returns 0 on
/// success or any other value as a failure code.
pub type CPoolFn = unsafe extern "C" fn(
    input: *const u8,
    in_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int;

/// Calls the typed function at address `f` on encoded input, appending the
/// encoded result to `out`.
pub(crate) type Trampoline =
    fn(f: usize, input: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String>;

/// The name the pool's worker entry is registered under in the process
/// registry (spawn and forkserver workers run it).
pub(crate) const WORKER_ENTRY: &str = "multiproc.pool.worker";

/// A function a worker can call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PoolFn {
    /// Registered with [`register`].
    Bytes(BytesFn),
    /// A typed `fn` behind its trampoline (made by one of this module's
    /// generic functions, which instantiate `call` for the type of `f`).
    Typed { call: Trampoline, f: usize },
    /// Registered from C.
    C(CPoolFn),
}

impl PoolFn {
    /// Runs the function on `input`, appending its result to `out` (at most
    /// `max_out` bytes for a C function).
    pub(crate) fn call(
        self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> std::result::Result<(), String> {
        match self {
            PoolFn::Bytes(f) => {
                out.extend_from_slice(&f(input)?);
                Ok(())
            }
            PoolFn::Typed { call, f } => call(f, input, out),
            PoolFn::C(f) => {
                out.reserve(max_out);
                let start = out.len();
                let mut len = 0usize;
                // SAFETY: `mp_pool_fn`'s contract: reads `in_len` bytes of
                // the live slice `input`, writes at most `out_cap` bytes into
                // the spare capacity reserved above, and its count in `len`.
                let code = unsafe {
                    f(
                        input.as_ptr(),
                        input.len(),
                        out.as_mut_ptr().add(start),
                        max_out,
                        &mut len,
                    )
                };
                if code != 0 {
                    return Err(format!("the C function returned {code}"));
                }
                if len > max_out {
                    return Err(format!(
                        "the C function reported {len} bytes written into a buffer of {max_out}"
                    ));
                }
                // SAFETY: the function wrote `len <= max_out` bytes at
                // `start`, inside the reserved capacity.
                unsafe { out.set_len(start + len) };
                Ok(())
            }
        }
    }

    fn address(self) -> usize {
        match self {
            PoolFn::Bytes(f) => f as usize,
            PoolFn::Typed { f, .. } => f,
            PoolFn::C(f) => f as usize,
        }
    }
}

/// How a task names its function to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FnRef {
    /// A registered name (any start method).
    Named(String),
    /// The trampoline's and the function's addresses: only for fork
    /// workers, copies of the process that made this reference.
    Address { call: usize, f: usize },
}

impl FnRef {
    /// The reference to send for `func` to workers started by `method`: its
    /// registered name if it has one, else (fork only) its address.
    /// [`Error::NotFound`] for an unregistered function and another method.
    pub(crate) fn for_fn(func: PoolFn, method: StartMethod) -> Result<FnRef> {
        if let Some(name) = name_of(func) {
            return Ok(FnRef::Named(name));
        }
        match (method, func) {
            (StartMethod::Fork, PoolFn::Typed { call, f }) => Ok(FnRef::Address {
                call: call as usize,
                f,
            }),
            _ => Err(Error::NotFound(format!(
                "a {method} worker finds functions by name: register this one with \
                 pool::register_fn (or register_starfn / register_initializer) before init"
            ))),
        }
    }

    /// The function this reference names, in a worker.
    ///
    /// # Safety
    ///
    /// - An [`FnRef::Address`] must come from the parent this fork worker
    ///   is a copy of, made by [`FnRef::for_fn`] (so both addresses are a
    ///   trampoline and the `fn` it was instantiated for, in this image).
    pub(crate) unsafe fn resolve(&self) -> std::result::Result<PoolFn, String> {
        match self {
            FnRef::Named(name) => lookup(name).map_err(|e| e.to_string()),
            FnRef::Address { call, f } => {
                // SAFETY: per the contract, `call` is the address of a
                // `Trampoline` in this same image.
                let call = unsafe { std::mem::transmute::<usize, Trampoline>(*call) };
                Ok(PoolFn::Typed { call, f: *f })
            }
        }
    }
}

static FUNCTIONS: Mutex<BTreeMap<String, PoolFn>> = Mutex::new(BTreeMap::new());

fn functions() -> MutexGuard<'static, BTreeMap<String, PoolFn>> {
    // Insert and get only: a panic cannot leave the map half-updated.
    FUNCTIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn worker_entry(arg: &[u8]) -> i32 {
    super::worker::entry(arg)
}

/// Registers the worker entry in the process registry (spawn and
/// forkserver workers run it); idempotent.
pub(crate) fn register_worker_entry() -> Result<()> {
    process::register(WORKER_ENTRY, worker_entry)
}

/// Registers `func` under `name` (1 to [`MAX_ENTRY_NAME`] bytes, no NUL);
/// the same function again is fine, another one under a taken name is
/// [`Error::Invalid`] and keeps the first.
pub(crate) fn register_pool_fn(name: &str, func: PoolFn) -> Result<()> {
    if name.is_empty() || name.len() > MAX_ENTRY_NAME || name.contains('\0') {
        return Err(Error::Invalid(format!(
            "pool function name {name:?}: 1 to {MAX_ENTRY_NAME} bytes without NUL expected"
        )));
    }
    register_worker_entry()?;
    let mut map = functions();
    match map.get(name) {
        Some(old) if old.address() == func.address() => Ok(()),
        Some(_) => Err(Error::Invalid(format!(
            "pool function name {name:?} is already registered with another function"
        ))),
        None => {
            map.insert(name.to_owned(), func);
            Ok(())
        }
    }
}

/// A copy of the registry that a fork worker uses instead of the global
/// one: another thread of the parent may have held the registry's lock at
/// the instant of the fork, and the child's copy of that lock would then
/// stay locked forever.
static FORK_SNAPSHOT: OnceLock<BTreeMap<String, PoolFn>> = OnceLock::new();

/// A copy of every registration, for [`use_snapshot`] in a fork worker.
pub(crate) fn snapshot() -> BTreeMap<String, PoolFn> {
    functions().clone()
}

/// In a fork worker: looks names up in `snapshot` from now on.
pub(crate) fn use_snapshot(snapshot: BTreeMap<String, PoolFn>) {
    let _ = FORK_SNAPSHOT.set(snapshot);
}

/// The function registered under `name`, or [`Error::NotFound`].
pub(crate) fn lookup(name: &str) -> Result<PoolFn> {
    let found = match FORK_SNAPSHOT.get() {
        Some(snapshot) => snapshot.get(name).copied(),
        None => functions().get(name).copied(),
    };
    found.ok_or_else(|| {
        Error::NotFound(format!(
            "no pool function registered under {name:?} in this process \
             (register it before init, with pool::register_fn or mp_pool_register)"
        ))
    })
}

/// The name `func` is registered under, if any.
fn name_of(func: PoolFn) -> Option<String> {
    let addr = func.address();
    functions()
        .iter()
        .find(|(_, f)| f.address() == addr)
        .map(|(name, _)| name.clone())
}

/// Registers a function on bytes under `name`, for every start method.
///
/// Register first thing in `main`, before [`init`](crate::process::init):
/// a `spawn` or `forkserver` worker runs the same registrations and then
/// finds the function by name. Registering also makes the pool's worker
/// entry known to `init`.
///
/// ```
/// use multiproc::pool::{self, Pool};
///
/// fn reverse(arg: &[u8]) -> Result<Vec<u8>, String> {
///     Ok(arg.iter().rev().copied().collect())
/// }
///
/// pool::register("reverse", reverse)?;
/// multiproc::process::init()?;
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.apply_bytes("reverse", b"abc")?, b"cba");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register(name: &str, func: BytesFn) -> Result<()> {
    register_pool_fn(name, PoolFn::Bytes(func))
}

/// Registers a typed function under `name` (see [`register`]); then
/// `pool.map(func, ...)` works with every start method.
///
/// ```
/// use multiproc::pool::{self, Pool};
/// use multiproc::process::StartMethod;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// pool::register_fn("square", square)?;
/// multiproc::process::init()?;
/// let pool = Pool::builder().processes(2).start_method(StartMethod::Spawn).build()?;
/// assert_eq!(pool.map(square, 0..5u64, None)?, [0, 1, 4, 9, 16]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register_fn<A: TaskValue, R: TaskValue>(name: &str, func: fn(A) -> R) -> Result<()> {
    register_pool_fn(name, typed(func))
}

/// Registers a two-argument function for [`Pool::starmap`](super::Pool::starmap)
/// (see [`register`]).
pub fn register_starfn<A: TaskValue, B: TaskValue, R: TaskValue>(
    name: &str,
    func: fn(A, B) -> R,
) -> Result<()> {
    register_pool_fn(name, typed_star(func))
}

/// Registers an initializer for [`PoolBuilder::initializer`](super::PoolBuilder::initializer)
/// (see [`register`]).
pub fn register_initializer<A: TaskValue>(name: &str, func: fn(A)) -> Result<()> {
    register_pool_fn(name, typed_init(func))
}

/// `func` behind its trampoline.
pub(crate) fn typed<A: TaskValue, R: TaskValue>(func: fn(A) -> R) -> PoolFn {
    PoolFn::Typed {
        call: call_typed::<A, R>,
        f: func as usize,
    }
}

/// `func` behind its trampoline; its argument is a pair (see [`encode_pair`]).
pub(crate) fn typed_star<A: TaskValue, B: TaskValue, R: TaskValue>(func: fn(A, B) -> R) -> PoolFn {
    PoolFn::Typed {
        call: call_typed_star::<A, B, R>,
        f: func as usize,
    }
}

/// `func` behind its trampoline; it returns nothing.
pub(crate) fn typed_init<A: TaskValue>(func: fn(A)) -> PoolFn {
    PoolFn::Typed {
        call: call_typed_init::<A>,
        f: func as usize,
    }
}

fn call_typed<A: TaskValue, R: TaskValue>(
    f: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // SAFETY: `typed::<A, R>` paired this trampoline with a `fn(A) -> R`,
    // and the address is from this image (a registered function, or the
    // fork parent's, see FnRef::resolve).
    let func = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let arg = A::decode(input).map_err(|e| format!("argument: {e}"))?;
    func(arg).encode(out).map_err(|e| format!("result: {e}"))
}

fn call_typed_star<A: TaskValue, B: TaskValue, R: TaskValue>(
    f: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // SAFETY: as in `call_typed`, paired by `typed_star::<A, B, R>`.
    let func = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    let (a, b) = decode_pair::<A, B>(input).map_err(|e| format!("arguments: {e}"))?;
    func(a, b).encode(out).map_err(|e| format!("result: {e}"))
}

fn call_typed_init<A: TaskValue>(
    f: usize,
    input: &[u8],
    _out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    // SAFETY: as in `call_typed`, paired by `typed_init::<A>`.
    let func = unsafe { std::mem::transmute::<usize, fn(A)>(f) };
    func(A::decode(input).map_err(|e| format!("argument: {e}"))?);
    Ok(())
}

/// Encodes a pair of arguments: `a`'s length (u32 LE), `a`, `b`.
pub(crate) fn encode_pair<A: TaskValue, B: TaskValue>(
    a: &A,
    b: &B,
    out: &mut Vec<u8>,
) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    a.encode(out)?;
    let len = u32::try_from(out.len() - at - 4).map_err(|_| Error::TooLarge {
        len: out.len(),
        max: u32::MAX as usize,
    })?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    b.encode(out)
}

fn decode_pair<A: TaskValue, B: TaskValue>(bytes: &[u8]) -> Result<(A, B)> {
    let short = || Error::Value("a pair of arguments is cut short".into());
    let len = bytes.get(..4).ok_or_else(short)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let a = bytes.get(4..4 + len).ok_or_else(short)?;
    Ok((A::decode(a)?, B::decode(&bytes[4 + len..])?))
}
