//! The crate's error type and the C status codes it maps onto one-to-one.
//!
//! Each operation may also have its own small error enum (a full queue hands
//! the value back, a lock whose owner died hands over the guard); those
//! convert into [`Error`], and [`Error::status`] gives the C code.

use std::fmt;
use std::io;

/// The C status codes of `include/multiproc.h`: `MP_OK` or a negative `MP_ERR_*`.
///
/// The numbers are part of the ABI and never change meaning.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A bad argument: a value out of range, text that does not parse.
    Invalid = -1,
    /// A NULL pointer where an object or buffer was required.
    Null = -2,
    /// The timeout elapsed first.
    Timeout = -3,
    /// The queue is full (a `put` that could not wait longer).
    Full = -4,
    /// The queue is empty (a `get` that could not wait longer).
    Empty = -5,
    /// The object was closed.
    Closed = -6,
    /// A message or value larger than the maximum, or a buffer too small for it.
    TooLarge = -7,
    /// The lock was acquired, but its previous owner died holding it.
    OwnerDied = -8,
    /// Released by a process or thread that does not hold it.
    NotOwner = -9,
    /// A value error, as Python's `ValueError` (a bounded semaphore released too often).
    Value = -10,
    /// The barrier is broken (aborted, or a party timed out or died).
    Broken = -11,
    /// The named thing does not exist (a segment, a registered entry).
    NotFound = -12,
    /// A handle of another kind of object than the one asked for.
    Kind = -13,
    /// A shared layout of an incompatible version.
    Version = -14,
    /// Authentication failed.
    Auth = -15,
    /// The peer closed the connection.
    Eof = -16,
    /// The operating system refused; `mp_last_error` has errno's text.
    Os = -17,
    /// The object is not in a state that allows the call (start twice, join before start).
    State = -18,
    /// A bug inside multiproc (a panic caught at the C boundary); please report it.
    Internal = -19,
}

impl Status {
    /// Every status, in code order (for tables and tests).
    pub const ALL: [Status; 20] = [
        Status::Ok,
        Status::Invalid,
        Status::Null,
        Status::Timeout,
        Status::Full,
        Status::Empty,
        Status::Closed,
        Status::TooLarge,
        Status::OwnerDied,
        Status::NotOwner,
        Status::Value,
        Status::Broken,
        Status::NotFound,
        Status::Kind,
        Status::Version,
        Status::Auth,
        Status::Eof,
        Status::Os,
        Status::State,
        Status::Internal,
    ];

    /// The status with this code, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// The C name of the code, as `mp_strerror` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "MP_OK",
            Status::Invalid => "MP_ERR_INVALID",
            Status::Null => "MP_ERR_NULL",
            Status::Timeout => "MP_ERR_TIMEOUT",
            Status::Full => "MP_ERR_FULL",
            Status::Empty => "MP_ERR_EMPTY",
            Status::Closed => "MP_ERR_CLOSED",
            Status::TooLarge => "MP_ERR_TOO_LARGE",
            Status::OwnerDied => "MP_ERR_OWNER_DIED",
            Status::NotOwner => "MP_ERR_NOT_OWNER",
            Status::Value => "MP_ERR_VALUE",
            Status::Broken => "MP_ERR_BROKEN",
            Status::NotFound => "MP_ERR_NOT_FOUND",
            Status::Kind => "MP_ERR_KIND",
            Status::Version => "MP_ERR_VERSION",
            Status::Auth => "MP_ERR_AUTH",
            Status::Eof => "MP_ERR_EOF",
            Status::Os => "MP_ERR_OS",
            Status::State => "MP_ERR_STATE",
            Status::Internal => "MP_ERR_INTERNAL",
        }
    }

    /// A one-line description of the code.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::Invalid => "invalid argument",
            Status::Null => "null pointer",
            Status::Timeout => "timed out",
            Status::Full => "queue full",
            Status::Empty => "queue empty",
            Status::Closed => "closed",
            Status::TooLarge => "too large",
            Status::OwnerDied => "previous owner died holding the lock",
            Status::NotOwner => "not the owner",
            Status::Value => "value error",
            Status::Broken => "broken barrier",
            Status::NotFound => "not found",
            Status::Kind => "handle of another kind",
            Status::Version => "incompatible layout version",
            Status::Auth => "authentication failed",
            Status::Eof => "end of file: peer closed",
            Status::Os => "operating system error",
            Status::State => "invalid state for this call",
            Status::Internal => "internal error in multiproc",
        }
    }
}

/// Every error of the crate. Each variant maps onto one [`Status`].
///
/// Messages say what was wrong and what was expected.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A bad argument; the text says which and why.
    Invalid(String),
    /// A NULL pointer from C; names the parameter.
    Null(&'static str),
    /// The timeout elapsed first.
    Timeout,
    /// The queue is full.
    Full,
    /// The queue is empty.
    Empty,
    /// The object was closed.
    Closed,
    /// `len` bytes where at most `max` fit.
    TooLarge {
        /// The size offered or needed.
        len: usize,
        /// The size that fits.
        max: usize,
    },
    /// Acquired, but the previous owner died holding the lock.
    OwnerDied,
    /// The caller does not hold the lock.
    NotOwner,
    /// Python's `ValueError`; the text says which value.
    Value(String),
    /// The barrier is broken.
    Broken,
    /// The named thing does not exist.
    NotFound(String),
    /// A handle of kind `found` where `expected` was asked for.
    Kind {
        /// The kind the caller asked for.
        expected: &'static str,
        /// The kind the object header holds.
        found: String,
    },
    /// A shared layout of version `found` where `expected` is supported.
    Version {
        /// What this build supports.
        expected: u32,
        /// What the object header holds.
        found: u32,
    },
    /// Authentication failed; the text says how.
    Auth(String),
    /// The peer closed.
    Eof,
    /// The OS refused `op`.
    Os {
        /// What we were doing.
        op: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The object's state does not allow the call; the text says which.
    State(String),
    /// A bug inside multiproc, caught before it crossed the C boundary.
    Internal(String),
}

impl Error {
    /// The C status code of this error.
    pub fn status(&self) -> Status {
        match self {
            Error::Invalid(_) => Status::Invalid,
            Error::Null(_) => Status::Null,
            Error::Timeout => Status::Timeout,
            Error::Full => Status::Full,
            Error::Empty => Status::Empty,
            Error::Closed => Status::Closed,
            Error::TooLarge { .. } => Status::TooLarge,
            Error::OwnerDied => Status::OwnerDied,
            Error::NotOwner => Status::NotOwner,
            Error::Value(_) => Status::Value,
            Error::Broken => Status::Broken,
            Error::NotFound(_) => Status::NotFound,
            Error::Kind { .. } => Status::Kind,
            Error::Version { .. } => Status::Version,
            Error::Auth(_) => Status::Auth,
            Error::Eof => Status::Eof,
            Error::Os { .. } => Status::Os,
            Error::State(_) => Status::State,
            Error::Internal(_) => Status::Internal,
        }
    }

    /// An [`Error::Os`] for `op`, from an [`io::Error`].
    pub fn os(op: impl Into<String>, source: io::Error) -> Error {
        Error::Os {
            op: op.into(),
            source,
        }
    }

    /// An [`Error::Os`] for `op`, from `errno`.
    pub fn last_os(op: impl Into<String>) -> Error {
        Error::os(op, io::Error::last_os_error())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(what) => write!(f, "invalid argument: {what}"),
            Error::Null(param) => write!(f, "null pointer passed as `{param}`"),
            Error::Timeout => f.write_str("timed out"),
            Error::Full => f.write_str("queue full"),
            Error::Empty => f.write_str("queue empty"),
            Error::Closed => f.write_str("closed"),
            Error::TooLarge { len, max } => {
                write!(f, "too large: {len} bytes where at most {max} fit")
            }
            Error::OwnerDied => f.write_str("acquired, but the previous owner died holding it"),
            Error::NotOwner => f.write_str("not held by the caller"),
            Error::Value(what) => write!(f, "value error: {what}"),
            Error::Broken => f.write_str("broken barrier"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::Kind { expected, found } => {
                write!(
                    f,
                    "handle of another kind: expected {expected}, found {found}"
                )
            }
            Error::Version { expected, found } => write!(
                f,
                "incompatible layout version: expected {expected}, found {found}"
            ),
            Error::Auth(what) => write!(f, "authentication failed: {what}"),
            Error::Eof => f.write_str("end of file: the peer closed"),
            Error::Os { op, source } => write!(f, "{op}: {source}"),
            Error::State(what) => write!(f, "invalid state: {what}"),
            Error::Internal(what) => write!(f, "internal error (a bug in multiproc): {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, -(i as i32));
            assert_eq!(Status::from_code(*s as i32), Some(*s));
            assert!(s.name().starts_with("MP_"));
        }
        assert_eq!(Status::from_code(1), None);
        assert_eq!(Status::from_code(-20), None);
    }

    #[test]
    fn messages_name_what_was_expected() {
        let e = Error::Kind {
            expected: "lock",
            found: "queue".into(),
        };
        assert_eq!(e.status(), Status::Kind);
        assert_eq!(
            e.to_string(),
            "handle of another kind: expected lock, found queue"
        );
        let e = Error::TooLarge { len: 10, max: 4 };
        assert_eq!(e.to_string(), "too large: 10 bytes where at most 4 fit");
    }
}
