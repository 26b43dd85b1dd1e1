//! The only module that makes raw system calls.
//!
//! Every function is named after the system call it wraps, says so in its
//! first doc line, and returns [`std::io::Result`]. Higher layers never call
//! `libc` or `rustix` for a syscall themselves; they come here.

mod barrier;
mod exec;
mod fd;
mod futex;
mod ipc;
mod mem;
mod net;
mod proc;
mod scm;

pub use barrier::{membarrier_global_expedited, membarrier_register_global_expedited};
pub use exec::{
    close_range, fcntl_async_signal, fcntl_dupfd_cloexec, fd_is_open, getrusage_cpu,
    poll_readable_many, posix_spawn, waitid_exited_nowait,
};
pub use fd::{close, dup2, dup3, fflush_all, keep_on_exec, pipe};
pub use futex::{futex_wait, futex_wake};
pub use ipc::{
    close_range_except, ignore_signal, recv, send_nosignal, socketpair_seqpacket, unlink_path,
};
pub use mem::{
    dup_cloexec, fstat_size, ftruncate, getrandom_u64, is_size_sealed, madvise_populate_write,
    memfd_create, memfd_create_sealable, mmap_shared, munmap, page_size, seal_size, set_cloexec,
    shm_open, shm_unlink,
};
pub use net::{
    ShutdownHow, SocketAddress, accept, bind, connect, getsockname_inet, is_socket, listen,
    poll_many, read, readv, sendmsg_nosignal, set_nonblocking, setsockopt_reuseaddr, shutdown,
    socket_stream, socketpair_stream, writev,
};
pub use proc::{
    ChildStatus, Forked, current_ids, exit_immediately, fflush_all_and_exit, fork, getpid, getppid,
    gettid, kill, pidfd_open, pidfd_send_signal, poll_readable, process_start_time,
    register_fork_handlers, set_parent_death_signal, sigaction_ignore, waitpid,
};
pub use scm::{MAX_PASSED_FDS, recv_dontwait, recvmsg_fds, sendmsg_fds};
