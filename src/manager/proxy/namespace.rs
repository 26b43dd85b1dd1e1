//! The namespace: named byte fields, as Python's `manager.Namespace()`.

use std::collections::BTreeMap;

use super::typed_proxy;
use crate::error::{Error, Result};
use crate::manager::object::{Args, Reply, SharedObject, no_method};

/// The type name.
pub(crate) const TYPE: &str = "namespace";

/// Method numbers.
pub(crate) mod method {
    pub const SET: u16 = 1;
    pub const GET: u16 = 2;
    pub const REMOVE: u16 = 3;
    pub const NAMES: u16 = 4;
}

/// The server-side namespace.
pub(crate) fn new(init: &[u8]) -> Result<Box<dyn SharedObject>> {
    if !init.is_empty() {
        return Err(Error::Invalid("a namespace is created empty".into()));
    }
    Ok(Box::new(NamespaceObject(BTreeMap::new())))
}

struct NamespaceObject(BTreeMap<String, Vec<u8>>);

/// The field name argument: UTF-8, not empty.
fn field<'a>(a: &Args<'a>) -> Result<&'a str> {
    let name = a.text(0)?;
    if name.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: a field name is not empty",
            a.name
        )));
    }
    Ok(name)
}

fn missing(name: &str) -> Error {
    Error::NotFound(format!("the namespace has no field {name:?}"))
}

impl SharedObject for NamespaceObject {
    fn call(&mut self, m: u16, args: &[&[u8]]) -> Result<Reply> {
        let a = |name| Args { name, args };
        Ok(match m {
            method::SET => {
                let a = a("namespace.set");
                let [_, v] = a.expect::<2>()?;
                self.0.insert(field(&a)?.to_owned(), v.to_vec());
                Vec::new()
            }
            method::GET => {
                let a = a("namespace.get");
                a.expect::<1>()?;
                let name = field(&a)?;
                vec![self.0.get(name).ok_or_else(|| missing(name))?.clone()]
            }
            method::REMOVE => {
                let a = a("namespace.remove");
                a.expect::<1>()?;
                let name = field(&a)?;
                self.0.remove(name).ok_or_else(|| missing(name))?;
                Vec::new()
            }
            method::NAMES => {
                a("namespace.names").expect::<0>()?;
                self.0.keys().map(|k| k.as_bytes().to_vec()).collect()
            }
            _ => return Err(no_method(TYPE, m)),
        })
    }
}

typed_proxy! {
    /// A proxy to a namespace of named byte fields (Python's
    /// `manager.Namespace()`, whose attributes become `set` / `get`);
    /// made by [`Client::namespace`](crate::manager::Client::namespace).
    ///
    /// ```
    /// use multiproc::manager::Manager;
    ///
    /// let mgr = Manager::start()?;
    /// let ns = mgr.namespace()?;
    /// ns.set("x", b"10")?;
    /// assert_eq!(ns.get("x")?, b"10");
    /// assert!(matches!(ns.get("y"), Err(multiproc::Error::NotFound(_))));
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    NamespaceProxy
}

impl NamespaceProxy {
    /// `ns.name = value`.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<()> {
        self.0.call_unit(method::SET, &[name.as_bytes(), value])
    }

    /// `ns.name`; [`Error::NotFound`] when there is no such field.
    pub fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.0
            .call_with(method::GET, &[name.as_bytes()], |f| match f {
                [v] => Ok(v.to_vec()),
                _ => Err(Error::Internal(
                    "namespace.get: reply is not one value".into(),
                )),
            })
    }

    /// `del ns.name`; [`Error::NotFound`] when there is no such field.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.0.call_unit(method::REMOVE, &[name.as_bytes()])
    }

    /// The field names, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let names = self.0.call(method::NAMES, &[])?;
        Ok(names
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }
}
