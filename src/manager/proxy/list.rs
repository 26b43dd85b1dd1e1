//! The shared list of byte values, as Python's `manager.list()`.

use super::typed_proxy;
use crate::error::{Error, Result};
use crate::manager::object::{Args, Reply, SharedObject, int, no_method};

/// The type name.
pub(crate) const TYPE: &str = "list";

/// Method numbers.
pub(crate) mod method {
    pub const APPEND: u16 = 1;
    pub const GET: u16 = 2;
    pub const SET: u16 = 3;
    pub const LEN: u16 = 4;
    pub const POP: u16 = 5;
    pub const INSERT: u16 = 6;
    pub const TO_VEC: u16 = 7;
    pub const CLEAR: u16 = 8;
}

/// The server-side list.
pub(crate) fn new(init: &[u8]) -> Result<Box<dyn SharedObject>> {
    if !init.is_empty() {
        return Err(Error::Invalid("a list is created empty".into()));
    }
    Ok(Box::new(ListObject(Vec::new())))
}

struct ListObject(Vec<Vec<u8>>);

impl ListObject {
    /// Python's index rules: negative counts from the end.
    fn index(&self, a: &Args<'_>, i: usize) -> Result<usize> {
        let raw = a.i64(i)?;
        let len = self.0.len() as i64;
        let at = if raw < 0 { raw + len } else { raw };
        if !(0..len).contains(&at) {
            return Err(Error::Value(format!(
                "{}: index {raw} out of range for a list of {len}",
                a.name
            )));
        }
        Ok(at as usize)
    }
}

impl SharedObject for ListObject {
    fn call(&mut self, m: u16, args: &[&[u8]]) -> Result<Reply> {
        let a = |name| Args { name, args };
        Ok(match m {
            method::APPEND => {
                let [v] = a("list.append").expect::<1>()?;
                self.0.push(v.to_vec());
                Vec::new()
            }
            method::GET => {
                let a = a("list.get");
                a.expect::<1>()?;
                vec![self.0[self.index(&a, 0)?].clone()]
            }
            method::SET => {
                let a = a("list.set");
                let [_, v] = a.expect::<2>()?;
                let at = self.index(&a, 0)?;
                self.0[at] = v.to_vec();
                Vec::new()
            }
            method::LEN => {
                a("list.len").expect::<0>()?;
                vec![int(self.0.len() as i64)]
            }
            method::POP => {
                a("list.pop").expect::<0>()?;
                self.0.pop().map(|v| vec![v]).unwrap_or_default()
            }
            method::INSERT => {
                let a = a("list.insert");
                let [_, v] = a.expect::<2>()?;
                // Python's insert clamps the index into 0..=len.
                let len = self.0.len() as i64;
                let raw = a.i64(0)?;
                let at = if raw < 0 {
                    (raw + len).max(0)
                } else {
                    raw.min(len)
                };
                self.0.insert(at as usize, v.to_vec());
                Vec::new()
            }
            method::TO_VEC => {
                a("list.to_vec").expect::<0>()?;
                self.0.clone()
            }
            method::CLEAR => {
                a("list.clear").expect::<0>()?;
                self.0.clear();
                Vec::new()
            }
            _ => return Err(no_method(TYPE, m)),
        })
    }
}

typed_proxy! {
    /// A proxy to a shared list of byte values (Python's `manager.list()`);
    /// made by [`Client::list`](crate::manager::Client::list). Indexes
    /// follow Python: negative ones count from the end.
    ///
    /// ```
    /// use multiproc::manager::Manager;
    ///
    /// let mgr = Manager::start()?;
    /// let l = mgr.list()?;
    /// l.append(b"a")?;
    /// l.append(b"b")?;
    /// l.set(-1, b"c")?;
    /// assert_eq!(l.to_vec()?, vec![b"a".to_vec(), b"c".to_vec()]);
    /// assert!(matches!(l.get(5), Err(multiproc::Error::Value(_))));
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ListProxy
}

impl ListProxy {
    /// `l.append(value)`.
    pub fn append(&self, value: &[u8]) -> Result<()> {
        self.0.call_unit(method::APPEND, &[value])
    }

    /// `l[index]`; [`Error::Value`] when out of range.
    pub fn get(&self, index: i64) -> Result<Vec<u8>> {
        self.0
            .call_with(method::GET, &[&index.to_le_bytes()], |f| match f {
                [v] => Ok(v.to_vec()),
                _ => Err(Error::Internal("list.get: reply is not one value".into())),
            })
    }

    /// `l[index] = value`; [`Error::Value`] when out of range.
    pub fn set(&self, index: i64, value: &[u8]) -> Result<()> {
        self.0
            .call_unit(method::SET, &[&index.to_le_bytes(), value])
    }

    /// `l.insert(index, value)`.
    pub fn insert(&self, index: i64, value: &[u8]) -> Result<()> {
        self.0
            .call_unit(method::INSERT, &[&index.to_le_bytes(), value])
    }

    /// Removes and returns the last value (`None` when empty).
    pub fn pop(&self) -> Result<Option<Vec<u8>>> {
        self.0.call_option(method::POP, &[])
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        Ok(self.0.call_i64(method::LEN, &[])? as usize)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the whole list, taken atomically.
    pub fn to_vec(&self) -> Result<Vec<Vec<u8>>> {
        self.0.call(method::TO_VEC, &[])
    }

    /// Removes every value.
    pub fn clear(&self) -> Result<()> {
        self.0.call_unit(method::CLEAR, &[])
    }
}
