//! The shared value: one byte string, as Python's `manager.Value()`.

use super::typed_proxy;
use crate::error::{Error, Result};
use crate::manager::object::{Args, Reply, SharedObject, flag, no_method};

/// The type name.
pub(crate) const TYPE: &str = "value";

/// Method numbers.
pub(crate) mod method {
    pub const GET: u16 = 1;
    pub const SET: u16 = 2;
    pub const COMPARE_AND_SET: u16 = 3;
}

/// The server-side value, holding `init` first.
pub(crate) fn new(init: &[u8]) -> Result<Box<dyn SharedObject>> {
    Ok(Box::new(ValueObject(init.to_vec())))
}

struct ValueObject(Vec<u8>);

impl SharedObject for ValueObject {
    fn call(&mut self, m: u16, args: &[&[u8]]) -> Result<Reply> {
        let a = |name| Args { name, args };
        Ok(match m {
            method::GET => {
                a("value.get").expect::<0>()?;
                vec![self.0.clone()]
            }
            method::SET => {
                let [v] = a("value.set").expect::<1>()?;
                self.0 = v.to_vec();
                Vec::new()
            }
            method::COMPARE_AND_SET => {
                let [expected, new] = a("value.compare_and_set").expect::<2>()?;
                let equal = self.0 == expected;
                if equal {
                    self.0 = new.to_vec();
                }
                vec![flag(equal)]
            }
            _ => return Err(no_method(TYPE, m)),
        })
    }
}

typed_proxy! {
    /// A proxy to a shared value, one byte string (Python's
    /// `manager.Value(typecode, value)`, its `.value` as `get` / `set`);
    /// made by [`Client::value`](crate::manager::Client::value).
    ///
    /// ```
    /// use multiproc::manager::Manager;
    ///
    /// let mgr = Manager::start()?;
    /// let v = mgr.value(b"1")?;
    /// assert!(v.compare_and_set(b"1", b"2")?);
    /// assert!(!v.compare_and_set(b"1", b"3")?);
    /// assert_eq!(v.get()?, b"2");
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ValueProxy
}

impl ValueProxy {
    /// The current value.
    pub fn get(&self) -> Result<Vec<u8>> {
        self.0.call_with(method::GET, &[], |f| match f {
            [v] => Ok(v.to_vec()),
            _ => Err(Error::Internal("value.get: reply is not one value".into())),
        })
    }

    /// Replaces the value.
    pub fn set(&self, value: &[u8]) -> Result<()> {
        self.0.call_unit(method::SET, &[value])
    }

    /// Replaces the value with `new` if it equals `expected`, atomically;
    /// whether it did.
    pub fn compare_and_set(&self, expected: &[u8], new: &[u8]) -> Result<bool> {
        self.0.call_bool(method::COMPARE_AND_SET, &[expected, new])
    }
}
