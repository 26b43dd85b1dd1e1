//! [`Address`]: where a [`Listener`](super::Listener) listens and a
//! [`client`](super::client) connects, in text form `tcp:HOST:PORT` or
//! `unix:PATH`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A listening address: Python's `('HOST', PORT)` tuple (`AF_INET`) or a
/// socket path string (`AF_UNIX`).
///
/// ```
/// use multiproc::connection::Address;
///
/// let tcp: Address = "tcp:127.0.0.1:0".parse()?;
/// assert_eq!(tcp, Address::Tcp { host: "127.0.0.1".into(), port: 0 });
/// let v6: Address = "tcp:[::1]:6000".parse()?;
/// assert_eq!(v6.to_string(), "tcp:[::1]:6000");
/// let unix: Address = "unix:/tmp/app.sock".parse()?;
/// assert_eq!(unix, Address::Unix("/tmp/app.sock".into()));
/// assert!("udp:1.2.3.4:5".parse::<Address>().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// TCP: a host name or IP address (IPv6 without brackets) and a port
    /// (0: the system picks one when listening).
    Tcp {
        /// Host name or address text.
        host: String,
        /// Port number.
        port: u16,
    },
    /// A Unix domain socket path (at most 107 bytes).
    Unix(PathBuf),
}

fn bad(text: &str, why: &str) -> Error {
    Error::Invalid(format!(
        "address `{text}` does not parse: {why} (expected tcp:HOST:PORT or unix:PATH)"
    ))
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(text: &str) -> Result<Address> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad(text, "the path is empty"));
            }
            if path.contains('\0') {
                return Err(bad(text, "the path contains a NUL byte"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let Some(rest) = text.strip_prefix("tcp:") else {
            return Err(bad(text, "unknown scheme"));
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(bad(text, "no port"));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad(text, "the port is not a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| bad(text, "unclosed `[` around the host"))?,
            None if host.contains(':') => {
                return Err(bad(text, "an IPv6 host must be written in brackets"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(bad(text, "the host is empty"));
        }
        Ok(Address::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl Address {
    /// The socket addresses a TCP host name stands for (through the
    /// system's resolver); [`Error::NotFound`] when there are none.
    pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::NotFound(format!("host `{host}`: {e}")))?
            .collect();
        if found.is_empty() {
            return Err(Error::NotFound(format!("host `{host}` has no address")));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for text in ["tcp:localhost:80", "tcp:[::1]:0", "unix:/a/b c", "unix:rel"] {
            let addr: Address = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
    }

    #[test]
    fn bad_texts_say_why() {
        for (text, why) in [
            ("", "unknown scheme"),
            ("tcp:", "no port"),
            ("tcp:host", "no port"),
            ("tcp:host:", "port"),
            ("tcp:host:65536", "port"),
            ("tcp:host:-1", "port"),
            ("tcp::80", "host is empty"),
            ("tcp:::1:80", "brackets"),
            ("tcp:[::1:80", "unclosed"),
            ("unix:", "path is empty"),
            ("unix:a\0b", "NUL"),
            ("http://x", "unknown scheme"),
        ] {
            let err = text.parse::<Address>().unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{text}: {err}");
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
