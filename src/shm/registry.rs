//! The segments this process has mapped, by id, so attaching to a handle of
//! a segment we already map reuses the mapping (in the creator and in its
//! fork children, which inherit the table with the mappings).
//!
//! The table is behind a `std::sync::Mutex`: a fork child of a parent with
//! other threads could inherit it locked, like any lock (see the `fork`
//! notes in `process`). Children that only use inherited objects never
//! touch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::segment::Mapping;

static TABLE: Mutex<Option<HashMap<u64, Weak<Mapping>>>> = Mutex::new(None);

/// Records a mapping under its id.
pub(crate) fn remember(map: &Arc<Mapping>) {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    table
        .get_or_insert_with(HashMap::new)
        .insert(map.id(), Arc::downgrade(map));
}

/// The live mapping with this id, if this process has one.
pub(crate) fn lookup(id: u64) -> Option<Arc<Mapping>> {
    let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    table.as_ref()?.get(&id)?.upgrade()
}

/// Removes the entry of a mapping that is being dropped.
pub(crate) fn forget(id: u64, map: &Mapping) {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(table) = table.as_mut()
        && table
            .get(&id)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), map) || w.strong_count() == 0)
    {
        table.remove(&id);
    }
}

/// The descriptor numbers of the memfd segments this process maps now:
/// what a `spawn` or `forkserver` child must inherit so that the handles of
/// objects in them (which carry these numbers) resolve there.
pub(crate) fn memfd_descriptors() -> Vec<i32> {
    // The mappings are upgraded under the lock but dropped after it: the
    // drop of a last reference calls `forget`, which takes the lock.
    let live: Vec<Arc<Mapping>> = {
        let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        match table.as_ref() {
            Some(table) => table.values().filter_map(Weak::upgrade).collect(),
            None => Vec::new(),
        }
    };
    let mut fds: Vec<i32> = live.iter().filter_map(|map| map.memfd_raw()).collect();
    fds.sort_unstable();
    fds.dedup();
    fds
}
