//! Memory: `memfd_create(2)`, file seals (`fcntl(2)`), `shm_open(3)`, `ftruncate(2)`, `fstat(2)`, `mmap(2)`, `munmap(2)`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FileType, MemfdFlags, Mode, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// `memfd_create(name, MFD_CLOEXEC)`: an anonymous file that lives while a descriptor or mapping does.
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).map_err(io::Error::from)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: a memfd that can
/// take seals (see [`seal_size`]).
pub fn memfd_create_sealable(name: &str) -> io::Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(io::Error::from)
}

/// `fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)`: the
/// file's size is fixed for good, so no holder of the descriptor can shrink
/// it under another's mapping (a read past the end would be SIGBUS), and no
/// seal can be added later (F_SEAL_WRITE would stop others from mapping it).
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(io::Error::from)
}

/// `fcntl(fd, F_GET_SEALS)` includes `F_SEAL_SHRINK`: nobody can shrink the
/// file. False for a file without seals or that cannot take them.
pub fn is_size_sealed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => Ok(seals.contains(SealFlags::SHRINK)),
        // EINVAL: not a file that supports seals.
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)` when `create`, else `shm_open(name, O_RDWR)`.
///
/// `name` starts with `/` and has no other slash, as POSIX requires.
pub fn shm_open(name: &str, create: bool) -> io::Result<OwnedFd> {
    let mut flags = shm::OFlags::RDWR;
    if create {
        flags |= shm::OFlags::CREATE | shm::OFlags::EXCL;
    }
    shm::open(name, flags, Mode::RUSR | Mode::WUSR).map_err(io::Error::from)
}

/// `shm_unlink(name)`: removes the name; existing mappings stay valid.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    shm::unlink(name).map_err(io::Error::from)
}

/// `ftruncate(fd, len)`: sets the size of a memfd or shm object.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(io::Error::from)
}

/// `fstat(fd).st_size` of a regular file (memfd and shm objects are regular files).
pub fn fstat_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor is not a memory file",
        ));
    }
    Ok(st.st_size as u64)
}

/// `fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0)`.
pub fn set_cloexec(fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec {
        rustix::io::FdFlags::CLOEXEC
    } else {
        rustix::io::FdFlags::empty()
    };
    rustix::io::fcntl_setfd(fd, flags).map_err(io::Error::from)
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED [| MAP_ANONYMOUS], fd, 0)`.
///
/// With `fd == None` the mapping is anonymous and shared: fork children see
/// the same pages. The pages start zeroed.
///
/// # Safety
///
/// - The caller owns the returned range and must unmap it with [`munmap`]
///   with the same `len`, exactly once, when no reference into it remains.
pub unsafe fn mmap_shared(fd: Option<BorrowedFd<'_>>, len: usize) -> io::Result<NonNull<u8>> {
    let prot = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a NULL hint lets the kernel pick a fresh range, so no existing
    // mapping is replaced; the caller owns the result (see `# Safety`).
    let ptr = unsafe {
        match fd {
            Some(fd) => rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)?,
            None => rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, prot, MapFlags::SHARED)?,
        }
    };
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// `munmap(ptr, len)`.
///
/// # Safety
///
/// - `ptr` and `len` are exactly those of one [`mmap_shared`] call not yet unmapped.
/// - No reference into the range is used afterwards.
pub unsafe fn munmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is one live mapping of ours
    // and that nothing refers to it any more.
    unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), len) }.map_err(io::Error::from)
}

/// `getrandom(2)`: eight random bytes, for segment ids and names.
pub fn getrandom_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(u64::from_ne_bytes(buf))
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 0)`: a new close-on-exec descriptor for the same file.
pub fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(io::Error::from)
}

/// `sysconf(_SC_PAGESIZE)`: the size of a memory page.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// `madvise(ptr, len, MADV_POPULATE_WRITE)`: maps every page of the range
/// writable now, in one call, instead of one page fault per page on first
/// touch. Linux 5.14 and later; `Unsupported` before.
///
/// # Safety
///
/// - `ptr..ptr + len` lies inside one live writable mapping of ours, and
///   `ptr` is page-aligned.
pub unsafe fn madvise_populate_write(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is one live writable mapping;
    // populating writes no data (pages read as they were).
    unsafe {
        rustix::mm::madvise(
            ptr.as_ptr().cast(),
            len,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    }
    .map_err(io::Error::from)
}
