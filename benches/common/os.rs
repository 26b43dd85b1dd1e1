//! The links the OS gives: the baselines every multiproc transport is
//! measured against.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use super::peer::pipe;
use super::transport::{Endpoint, Transport};

/// Two OS pipes, one per direction (`pipe2(2)`).
pub struct Pipe;

/// One end of a [`Pipe`] link: reads from one pipe, writes to the other.
pub struct PipeEnd {
    rx: File,
    tx: File,
}

impl Endpoint for PipeEnd {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.write_all(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.rx.read_exact(buf)
    }
}

impl Transport for Pipe {
    type End = PipeEnd;

    fn name(&self) -> &'static str {
        "pipe"
    }

    fn pair(&self) -> io::Result<(PipeEnd, PipeEnd)> {
        let (a_rx, b_tx) = pipe();
        let (b_rx, a_tx) = pipe();
        Ok((
            PipeEnd { rx: a_rx, tx: a_tx },
            PipeEnd { rx: b_rx, tx: b_tx },
        ))
    }
}

/// A Unix stream socketpair (`socketpair(AF_UNIX, SOCK_STREAM)`), with the
/// kernel's default buffer sizes.
pub struct SocketPair;

impl Endpoint for UnixStream {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.write_all(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact(buf)
    }
}

impl Transport for SocketPair {
    type End = UnixStream;

    fn name(&self) -> &'static str {
        "socketpair"
    }

    fn pair(&self) -> io::Result<(UnixStream, UnixStream)> {
        UnixStream::pair()
    }
}
