//! Unit tests of the shm layer's checks: corrupt headers, foreign handles,
//! attaching through a descriptor or a name rather than the registry.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;

use super::object::ObjectHeader;
use super::*;
use crate::error::Error;

/// The object header of a block, for corrupting it on purpose.
fn header_of(mem: &SharedMemory) -> *mut ObjectHeader {
    let h = mem.handle();
    // SAFETY: the handle's offset is the header of a live object inside the
    // mapping of `mem`'s segment.
    unsafe { mem.segment().base().as_ptr().add(h.offset as usize).cast() }
}

#[test]
fn handle_of_another_kind_is_refused() {
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    let text = mem.handle().to_string().replace(":bytes", ":lock");
    let err = SharedMemory::open(&text.parse().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kind {
                expected: "bytes",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn header_of_another_kind_is_refused() {
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    // SAFETY: the header is ours; kind is a plain u32 nobody else reads now.
    unsafe { (*header_of(&mem)).kind = ObjectKind::Queue as u32 };
    let err = SharedMemory::open(&mem.handle()).unwrap_err();
    assert!(
        matches!(&err, Error::Kind { found, .. } if found == "queue"),
        "{err}"
    );
    // SAFETY: as above.
    unsafe { (*header_of(&mem)).kind = 999 };
    let err = SharedMemory::open(&mem.handle()).unwrap_err();
    assert!(err.to_string().contains("unknown kind 999"), "{err}");
}

#[test]
fn wrong_layout_version_is_refused() {
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    // SAFETY: as in header_of_another_kind_is_refused.
    unsafe { (*header_of(&mem)).version = 77 };
    let err = SharedMemory::open(&mem.handle()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Version {
                expected: 1,
                found: 77
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_sizes_are_refused() {
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    // SAFETY: as above.
    unsafe { (*header_of(&mem)).tail_len = u64::MAX / 2 };
    let err = SharedMemory::open(&mem.handle()).unwrap_err();
    assert!(err.to_string().contains("outside the segment"), "{err}");
    // SAFETY: as above.
    unsafe { (*header_of(&mem)).magic.store(0, Ordering::Relaxed) };
    let err = SharedMemory::open(&mem.handle()).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[test]
fn offsets_outside_or_between_objects_are_refused() {
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    for (offset, why) in [
        (1u64 << 40, "outside"),
        (65, "misaligned"),
        (8, "outside"),
        (2048, "bad magic"),
    ] {
        let h = Handle {
            offset,
            ..mem.handle()
        };
        let err = SharedMemory::open(&h).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{offset}: {err}");
        assert!(err.to_string().contains(why), "{offset}: {err}");
    }
}

#[test]
fn memfd_attach_through_a_descriptor() {
    let mem = SharedMemory::new(100, Backing::Memfd).unwrap();
    // SAFETY: we are the only user of the block in this test.
    unsafe { mem.as_mut_slice()[..5].copy_from_slice(b"hello") };
    // Pass the descriptor on as another number, as exec or SCM_RIGHTS would,
    // and drop every mapping we had, so the open must map it afresh.
    let passed = crate::sys::dup_cloexec(mem.segment().fd().unwrap()).unwrap();
    let handle = mem.handle().with_fd(passed.as_raw_fd()).unwrap();
    let old_base = mem.as_ptr();
    drop(mem);
    let again = SharedMemory::open(&handle).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { &again.as_slice()[..5] }, b"hello");
    assert_eq!(again.len(), 100);
    // Another process would see another address; here the kernel may reuse it.
    let _ = old_base;
    drop(again);
    // A descriptor that is not a multiproc segment is refused.
    let other = crate::sys::memfd_create("not-ours").unwrap();
    crate::sys::ftruncate(other.as_fd(), 8192).unwrap();
    let err = SharedMemory::open(&handle.with_fd(other.as_raw_fd()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("not a multiproc segment"), "{err}");
}

#[test]
fn named_attach_through_the_name_and_unlink_on_drop() {
    let mem = SharedMemory::new(10, Backing::Named).unwrap();
    let name = mem.segment().name().unwrap().to_owned();
    let path = format!("/dev/shm{name}");
    assert!(std::path::Path::new(&path).exists());
    mem.as_atomic_u8()[3].store(9, Ordering::Relaxed);
    let handle = mem.handle();
    // Forget the registry entry so the open goes through shm_open.
    registry::forget(mem.segment().id(), &mem.segment().map);
    let other = SharedMemory::open(&handle).unwrap();
    assert_ne!(
        other.as_ptr(),
        mem.as_ptr(),
        "a second, independent mapping"
    );
    assert_eq!(other.as_atomic_u8()[3].load(Ordering::Relaxed), 9);
    drop(other);
    assert!(
        std::path::Path::new(&path).exists(),
        "only the creator unlinks"
    );
    drop(mem);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the creator unlinked it"
    );
    let err = SharedMemory::open(&handle).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[test]
fn anonymous_handles_do_not_leave_the_family() {
    let mem = SharedMemory::new(10, Backing::Anonymous).unwrap();
    let handle = mem.handle();
    assert_eq!(
        SharedMemory::open(&handle).unwrap().as_ptr(),
        mem.as_ptr(),
        "found in the registry"
    );
    drop(mem);
    let err = SharedMemory::open(&handle).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[test]
fn segments_hold_several_aligned_objects_until_full() {
    let seg = Segment::create(Backing::Anonymous, 4096).unwrap();
    assert_eq!(seg.len(), 4096);
    let a = SharedMemory::new_in(&seg, 100).unwrap();
    let b = SharedMemory::new_in(&seg, 100).unwrap();
    assert_eq!(a.as_ptr() as usize % 64, 0);
    assert_eq!(b.as_ptr() as usize % 64, 0);
    assert!(b.as_ptr() as usize >= a.as_ptr() as usize + 100);
    let err = SharedMemory::new_in(&seg, 8000).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { len, .. } if len > 8000),
        "{err}"
    );
    assert!(SharedMemory::new_in(&seg, seg.free_bytes() / 2).is_ok());
    assert!(matches!(
        SharedMemory::new(0, Backing::Memfd).unwrap_err(),
        Error::Invalid(_)
    ));
}

#[test]
fn memfd_segment_size_is_sealed_and_an_unsealed_copy_is_refused() {
    let mem = SharedMemory::new(100, Backing::Memfd).unwrap();
    let fd = mem.segment().fd().unwrap();
    // Nobody holding the descriptor can shrink the file under a mapping.
    let err = crate::sys::ftruncate(fd, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert!(crate::sys::is_size_sealed(fd).unwrap());
    // A byte-for-byte copy in a memfd without seals (one that could shrink)
    // is refused before it is mapped.
    let len = mem.segment().len();
    let copy = crate::sys::memfd_create("unsealed-copy").unwrap();
    crate::sys::ftruncate(copy.as_fd(), len as u64).unwrap();
    // SAFETY: a fresh shared mapping of `copy`, `len` bytes long; the
    // segment's mapping is `len` bytes from its base.
    unsafe {
        let dst = crate::sys::mmap_shared(Some(copy.as_fd()), len).unwrap();
        let src = mem.segment().base().as_ptr();
        std::ptr::copy_nonoverlapping(src, dst.as_ptr(), len);
        crate::sys::munmap(dst, len).unwrap();
    }
    let handle = mem.handle().with_fd(copy.as_raw_fd()).unwrap();
    // Unmapped, so the open below cannot find it in this process's registry.
    drop(mem);
    let err = SharedMemory::open(&handle).unwrap_err();
    assert!(err.to_string().contains("size is not sealed"), "{err}");
}
