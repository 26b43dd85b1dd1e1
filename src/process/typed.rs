//! Typed entry arguments (feature `serde`): the parent encodes a value with
//! [`postcard`], the entry decodes it from its argument bytes.
//!
//! ```
//! use multiproc::process::{self, Process};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Job {
//!     first: u32,
//!     count: u32,
//! }
//!
//! fn sum(arg: &[u8]) -> i32 {
//!     match process::decode_arg::<Job>(arg) {
//!         Ok(job) => (job.first..job.first + job.count).sum::<u32>() as i32,
//!         Err(_) => 255,
//!     }
//! }
//!
//! process::register("sum", sum)?;
//! let child = Process::from_entry_with("sum", &Job { first: 1, count: 4 })?;
//! child.start()?;
//! assert_eq!(child.join(None)?, 10);
//! # Ok::<(), multiproc::Error>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Process;
use crate::error::{Error, Result};

impl Process {
    /// [`Process::from_entry`] with `arg` encoded by postcard; the entry
    /// reads it back with [`decode_arg`].
    pub fn from_entry_with<T: Serialize + ?Sized>(name: &str, arg: &T) -> Result<Process> {
        let bytes = postcard::to_allocvec(arg)
            .map_err(|e| Error::Invalid(format!("cannot encode the argument: {e}")))?;
        Process::from_entry(name, bytes)
    }
}

/// Decodes the argument bytes of an entry started with
/// [`Process::from_entry_with`]; [`Error::Invalid`] if they do not hold a
/// `T` (and nothing after it).
pub fn decode_arg<T: DeserializeOwned>(arg: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(arg)
        .map_err(|e| Error::Invalid(format!("the argument is not a valid value: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Invalid(format!(
            "the argument has {} bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_bytes() {
        let bytes = postcard::to_allocvec(&(7u32, "x".to_string())).unwrap();
        assert_eq!(
            decode_arg::<(u32, String)>(&bytes).unwrap(),
            (7, "x".to_string())
        );
        assert!(matches!(
            decode_arg::<(u32, String)>(&bytes[..1]),
            Err(Error::Invalid(_))
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode_arg::<(u32, String)>(&long),
            Err(Error::Invalid(_))
        ));
    }
}
