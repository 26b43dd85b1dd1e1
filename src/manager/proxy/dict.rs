//! The shared dict: byte keys to byte values, as Python's `manager.dict()`.

use std::collections::HashMap;

use super::typed_proxy;
use crate::error::{Error, Result};
use crate::manager::object::{Args, Reply, SharedObject, flag, int, no_method};

/// The type name.
pub(crate) const TYPE: &str = "dict";

/// Method numbers.
pub(crate) mod method {
    pub const SET: u16 = 1;
    pub const GET: u16 = 2;
    pub const REMOVE: u16 = 3;
    pub const LEN: u16 = 4;
    pub const CONTAINS: u16 = 5;
    pub const KEYS: u16 = 6;
    pub const ITEMS: u16 = 7;
    pub const CLEAR: u16 = 8;
}

/// The server-side dict.
pub(crate) fn new(init: &[u8]) -> Result<Box<dyn SharedObject>> {
    if !init.is_empty() {
        return Err(Error::Invalid("a dict is created empty".into()));
    }
    Ok(Box::new(DictObject(HashMap::new())))
}

struct DictObject(HashMap<Vec<u8>, Vec<u8>>);

impl SharedObject for DictObject {
    fn call(&mut self, m: u16, args: &[&[u8]]) -> Result<Reply> {
        let a = |name| Args { name, args };
        Ok(match m {
            method::SET => {
                let [k, v] = a("dict.set").expect::<2>()?;
                self.0.insert(k.to_vec(), v.to_vec());
                Vec::new()
            }
            method::GET => {
                let [k] = a("dict.get").expect::<1>()?;
                self.0.get(k).map(|v| vec![v.clone()]).unwrap_or_default()
            }
            method::REMOVE => {
                let [k] = a("dict.remove").expect::<1>()?;
                self.0.remove(k).map(|v| vec![v]).unwrap_or_default()
            }
            method::LEN => {
                a("dict.len").expect::<0>()?;
                vec![int(self.0.len() as i64)]
            }
            method::CONTAINS => {
                let [k] = a("dict.contains_key").expect::<1>()?;
                vec![flag(self.0.contains_key(k))]
            }
            method::KEYS => {
                a("dict.keys").expect::<0>()?;
                self.0.keys().cloned().collect()
            }
            method::ITEMS => {
                a("dict.items").expect::<0>()?;
                self.0
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect()
            }
            method::CLEAR => {
                a("dict.clear").expect::<0>()?;
                self.0.clear();
                Vec::new()
            }
            _ => return Err(no_method(TYPE, m)),
        })
    }
}

typed_proxy! {
    /// A proxy to a shared dict of byte keys and values (Python's
    /// `manager.dict()`); made by [`Client::dict`](crate::manager::Client::dict).
    /// Each call is one atomic operation on the server.
    ///
    /// ```
    /// use multiproc::manager::Manager;
    ///
    /// let mgr = Manager::start()?;
    /// let d = mgr.dict()?;
    /// d.set(b"k", b"v")?;
    /// assert_eq!(d.get(b"k")?, Some(b"v".to_vec()));
    /// assert_eq!(d.len()?, 1);
    /// assert_eq!(d.remove(b"k")?, Some(b"v".to_vec()));
    /// assert_eq!(d.get(b"k")?, None);
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    DictProxy
}

impl DictProxy {
    /// `d[key] = value`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0.call_unit(method::SET, &[key, value])
    }

    /// `d.get(key)`: the value, or `None` when the key is absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.call_option(method::GET, &[key])
    }

    /// `d.pop(key, None)`: removes the key and returns its value, if any.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.call_option(method::REMOVE, &[key])
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        Ok(self.0.call_i64(method::LEN, &[])? as usize)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.0.call_bool(method::CONTAINS, &[key])
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.0.call(method::KEYS, &[])
    }

    /// A copy of the whole content, as (key, value) pairs in no particular
    /// order; taken atomically.
    pub fn items(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut flat = self.0.call(method::ITEMS, &[])?.into_iter();
        let mut out = Vec::with_capacity(flat.len() / 2);
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    /// Removes every key.
    pub fn clear(&self) -> Result<()> {
        self.0.call_unit(method::CLEAR, &[])
    }
}
