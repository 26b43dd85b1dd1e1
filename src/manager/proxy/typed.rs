//! Typed views of the byte proxies (feature `serde`): keys and values of
//! any `Serialize` / `Deserialize` type, encoded with postcard. The server
//! stores the encoded bytes, so a key matches when its encoding does.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DictProxy, ListProxy, NamespaceProxy, ValueProxy};
use crate::error::{Error, Result};

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::Value(format!("cannot encode the value: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::Value(format!(
            "{} stored bytes are not an encoded {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}

/// A [`DictProxy`] of `K` keys and `V` values; made by [`DictProxy::typed`].
///
/// ```
/// use multiproc::manager::Manager;
///
/// let mgr = Manager::start()?;
/// let scores = mgr.dict()?.typed::<String, u32>();
/// scores.set(&"ada".to_string(), &36)?;
/// assert_eq!(scores.get(&"ada".to_string())?, Some(36));
/// assert_eq!(scores.items()?, vec![("ada".to_string(), 36)]);
/// mgr.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TypedDict<K, V> {
    dict: DictProxy,
    _types: PhantomData<fn() -> (K, V)>,
}

impl DictProxy {
    /// This dict seen as `K` keys and `V` values (feature `serde`).
    pub fn typed<K, V>(self) -> TypedDict<K, V> {
        TypedDict {
            dict: self,
            _types: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> TypedDict<K, V> {
    /// `d[key] = value`. [`Error::Value`] when either does not encode.
    pub fn set(&self, key: &K, value: &V) -> Result<()> {
        self.dict.set(&encode(key)?, &encode(value)?)
    }

    /// `d.get(key)`. [`Error::Value`] when the stored bytes are not a `V`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.dict
            .get(&encode(key)?)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// `d.pop(key, None)`.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.dict
            .remove(&encode(key)?)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.dict.contains_key(&encode(key)?)
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        self.dict.len()
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        self.dict.is_empty()
    }

    /// A copy of the whole content, taken atomically, in no particular order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.dict
            .items()?
            .iter()
            .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
            .collect()
    }

    /// The byte dict underneath.
    pub fn bytes(&self) -> &DictProxy {
        &self.dict
    }
}

/// A [`ListProxy`] of `T` values; made by [`ListProxy::typed`].
///
/// ```
/// use multiproc::manager::Manager;
///
/// let mgr = Manager::start()?;
/// let points = mgr.list()?.typed::<(i32, i32)>();
/// points.append(&(1, 2))?;
/// points.append(&(3, 4))?;
/// assert_eq!(points.get(-1)?, (3, 4));
/// assert_eq!(points.to_vec()?, vec![(1, 2), (3, 4)]);
/// mgr.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TypedList<T> {
    list: ListProxy,
    _type: PhantomData<fn(T) -> T>,
}

impl ListProxy {
    /// This list seen as `T` values (feature `serde`).
    pub fn typed<T>(self) -> TypedList<T> {
        TypedList {
            list: self,
            _type: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> TypedList<T> {
    /// `l.append(value)`.
    pub fn append(&self, value: &T) -> Result<()> {
        self.list.append(&encode(value)?)
    }

    /// `l[index]`.
    pub fn get(&self, index: i64) -> Result<T> {
        decode(&self.list.get(index)?)
    }

    /// `l[index] = value`.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.list.set(index, &encode(value)?)
    }

    /// Removes and returns the last value.
    pub fn pop(&self) -> Result<Option<T>> {
        self.list.pop()?.map(|v| decode(&v)).transpose()
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        self.list.len()
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        self.list.is_empty()
    }

    /// A copy of the whole list, taken atomically.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.list.to_vec()?.iter().map(|v| decode(v)).collect()
    }

    /// The byte list underneath.
    pub fn bytes(&self) -> &ListProxy {
        &self.list
    }
}

impl NamespaceProxy {
    /// `ns.name = value`, encoded with postcard (feature `serde`).
    pub fn set_value<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.set(name, &encode(value)?)
    }

    /// `ns.name` decoded as a `T` (feature `serde`); [`Error::NotFound`]
    /// when there is no such field, [`Error::Value`] when it is not a `T`.
    ///
    /// ```
    /// use multiproc::manager::Manager;
    ///
    /// let mgr = Manager::start()?;
    /// let ns = mgr.namespace()?;
    /// ns.set_value("ratio", &0.5f64)?;
    /// assert_eq!(ns.get_value::<f64>("ratio")?, 0.5);
    /// mgr.shutdown()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_value<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        decode(&self.get(name)?)
    }
}

impl ValueProxy {
    /// Replaces the value with `value`, encoded with postcard (feature
    /// `serde`).
    pub fn set_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.set(&encode(value)?)
    }

    /// The value decoded as a `T` (feature `serde`).
    pub fn get_value<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.get()?)
    }
}
