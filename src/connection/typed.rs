//! Typed `send` / `recv` (feature `serde`): values encoded with postcard.
//!
//! Python's `Connection.send` pickles; a pickle is Python-only, so typed
//! messages here are for Rust peers. Interoperate with Python through
//! `send_bytes` / `recv_bytes` and a format both sides know.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Connection;
use crate::error::{Error, Result};

impl Connection {
    /// Sends `value`, encoded with postcard, as one message.
    ///
    /// ```
    /// let (mut a, mut b) = multiproc::connection::pipe(true)?;
    /// a.send(&(7u32, "seven".to_string()))?;
    /// assert_eq!(b.recv::<(u32, String)>()?, (7, "seven".to_string()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = postcard::to_stdvec(value)
            .map_err(|e| Error::Value(format!("cannot encode the value to send: {e}")))?;
        self.send_bytes(&bytes)
    }

    /// Receives one message sent by [`send`](Connection::send) and decodes
    /// it as a `T`: [`Error::Value`] (the message consumed) if it is not one.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes(None)?;
        postcard::from_bytes(&bytes).map_err(|e| {
            Error::Value(format!(
                "a {}-byte message is not an encoded {}: {e}",
                bytes.len(),
                std::any::type_name::<T>()
            ))
        })
    }
}
