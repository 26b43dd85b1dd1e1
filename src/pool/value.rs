//! [`TaskValue`]: how arguments and results of typed pool functions travel
//! as bytes. With the `serde` feature, any `Serialize + DeserializeOwned`
//! type, encoded with postcard; without it, any [`ShmSafe`] type, by its
//! bytes.
//!
//! [`ShmSafe`]: crate::shm::ShmSafe

use crate::error::{Error, Result};

/// A value that can be a pool task's argument or result.
///
/// Implemented for every `T: Serialize + DeserializeOwned` (feature
/// `serde`, postcard encoding), or else for every
/// [`ShmSafe`](crate::shm::ShmSafe) type (its bytes as they are in memory).
pub trait TaskValue: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes a value from exactly `bytes`; [`Error::Value`] if they do not
    /// hold one (or hold more).
    fn decode(bytes: &[u8]) -> Result<Self>;
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> TaskValue for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let taken = std::mem::take(out);
        match postcard::to_extend(self, taken) {
            Ok(v) => {
                *out = v;
                Ok(())
            }
            Err(e) => Err(Error::Value(format!("cannot encode the value: {e}"))),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| {
            Error::Value(format!(
                "{} bytes do not decode as {}: {e}",
                bytes.len(),
                std::any::type_name::<T>()
            ))
        })?;
        if !rest.is_empty() {
            return Err(Error::Value(format!(
                "{} bytes left over after decoding a {}",
                rest.len(),
                std::any::type_name::<T>()
            )));
        }
        Ok(value)
    }
}

#[cfg(not(feature = "serde"))]
impl<T: crate::shm::ShmSafe> TaskValue for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        // SAFETY: `self` is a live T of size_of::<T>() bytes; ShmSafe types
        // are plain data that travel through shared memory byte-wise (as in
        // TypedQueue; no padding expected, see ShmSafe's docs).
        let bytes =
            unsafe { std::slice::from_raw_parts((self as *const T).cast::<u8>(), size_of::<T>()) };
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != size_of::<T>() {
            return Err(Error::Value(format!(
                "{} bytes where a {} of {} bytes was expected",
                bytes.len(),
                std::any::type_name::<T>(),
                size_of::<T>()
            )));
        }
        // SAFETY: `bytes` holds size_of::<T>() initialized bytes (checked
        // above), read unaligned; ShmSafe makes every bit pattern a valid T.
        Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_bytes() {
        let mut out = Vec::new();
        (7u32, "x".to_string()).encode(&mut out).unwrap();
        assert_eq!(<(u32, String)>::decode(&out).unwrap(), (7, "x".to_string()));
        assert!(matches!(
            <(u32, String)>::decode(&out[..1]),
            Err(Error::Value(_))
        ));
        out.push(0);
        assert!(matches!(
            <(u32, String)>::decode(&out),
            Err(Error::Value(_))
        ));
    }
}
