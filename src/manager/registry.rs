//! The types a server can create, by name: the built-in ones and those
//! registered with [`register_type`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::object::{Locked, Served, SharedObject, lock};
use super::proxy::{dict, event, list, lock as lock_type, namespace, queue, value};
use crate::error::{Error, Result};

/// Makes a new object of a registered type from the creation bytes given to
/// [`Client::create`](super::Client::create).
pub type Constructor = fn(init: &[u8]) -> Result<Box<dyn SharedObject>>;

/// The names of the built-in types, which cannot be registered again.
pub const BUILTIN_TYPES: [&str; 7] = [
    dict::TYPE,
    list::TYPE,
    namespace::TYPE,
    value::TYPE,
    queue::TYPE,
    lock_type::TYPE,
    event::TYPE,
];

/// The longest type name accepted, in bytes.
pub const MAX_TYPE_NAME: usize = 255;

static TYPES: Mutex<BTreeMap<String, Constructor>> = Mutex::new(BTreeMap::new());

/// Registers a user type under `name`, so that a manager's server can
/// create objects of it (see [`SharedObject`] for an example).
///
/// Register in the server's process: before [`Manager::start`] with the
/// `fork` method (the child inherits the table), and first thing in `main`
/// (before `process::init`) for `spawn` and `forkserver`, whose server is a
/// fresh run of the program; before [`Server::bind`] for a standalone
/// server. Clients need not register anything.
///
/// Errors: [`Error::Invalid`] for an empty name, one longer than
/// [`MAX_TYPE_NAME`], a built-in name, or a name taken by another
/// constructor (the same constructor again is fine; two functions with
/// identical code may share one address in an optimised build and then
/// count as the same, which is harmless: they make the same objects).
///
/// [`Manager::start`]: super::Manager::start
/// [`Server::bind`]: super::Server::bind
pub fn register_type(name: &str, make: Constructor) -> Result<()> {
    if name.is_empty() || name.len() > MAX_TYPE_NAME {
        return Err(Error::Invalid(format!(
            "a type name has 1 to {MAX_TYPE_NAME} bytes, {name:?} has {}",
            name.len()
        )));
    }
    if BUILTIN_TYPES.contains(&name) {
        return Err(Error::Invalid(format!(
            "{name:?} is a built-in manager type"
        )));
    }
    let mut types = lock(&TYPES);
    match types.get(name) {
        Some(old) if std::ptr::fn_addr_eq(*old, make) => Ok(()),
        Some(_) => Err(Error::Invalid(format!(
            "type name {name:?} is already registered with another constructor"
        ))),
        None => {
            types.insert(name.to_owned(), make);
            Ok(())
        }
    }
}

/// A new object of type `name`, made from `init`.
pub(crate) fn create(name: &str, init: &[u8]) -> Result<Arc<dyn Served>> {
    match name {
        dict::TYPE => locked(name, dict::new(init)?),
        list::TYPE => locked(name, list::new(init)?),
        namespace::TYPE => locked(name, namespace::new(init)?),
        value::TYPE => locked(name, value::new(init)?),
        queue::TYPE => Ok(Arc::new(queue::QueueObject::new(init)?)),
        lock_type::TYPE => Ok(Arc::new(lock_type::LockObject::new(init)?)),
        event::TYPE => Ok(Arc::new(event::EventObject::new(init)?)),
        _ => {
            let make = lock(&TYPES).get(name).copied().ok_or_else(|| {
                Error::NotFound(format!(
                    "no manager type {name:?} (built-in: {BUILTIN_TYPES:?}; register others \
                     with manager::register_type in the server's process)"
                ))
            })?;
            locked(name, make(init)?)
        }
    }
}

fn locked(name: &str, object: Box<dyn SharedObject>) -> Result<Arc<dyn Served>> {
    Ok(Arc::new(Locked {
        type_name: name.to_owned(),
        inner: Mutex::new(object),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::object::Reply;

    struct Nothing;
    impl SharedObject for Nothing {
        fn call(&mut self, _: u16, _: &[&[u8]]) -> Result<Reply> {
            Ok(Vec::new())
        }
    }

    fn make_nothing(_: &[u8]) -> Result<Box<dyn SharedObject>> {
        Ok(Box::new(Nothing))
    }

    /// A different body from `make_nothing`: identical functions may be
    /// merged into one address by the optimiser, and then they *are* the
    /// same constructor.
    fn make_other(_: &[u8]) -> Result<Box<dyn SharedObject>> {
        Err(Error::Invalid("another constructor".into()))
    }

    #[test]
    fn names_are_checked() {
        register_type("registry-nothing", make_nothing).unwrap();
        register_type("registry-nothing", make_nothing).unwrap();
        for bad in ["", "dict", "queue"] {
            assert!(matches!(
                register_type(bad, make_nothing),
                Err(Error::Invalid(_))
            ));
        }
        let long = "x".repeat(MAX_TYPE_NAME + 1);
        assert!(matches!(
            register_type(&long, make_nothing),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            register_type("registry-nothing", make_other),
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            create("registry-nothing", b"").unwrap().type_name(),
            "registry-nothing"
        );
        assert!(matches!(
            create("registry-never", b""),
            Err(Error::NotFound(_))
        ));
    }
}
