//! The manager's wire format: one request frame per [`Connection`] message,
//! answered by one reply frame. Hand-written and strictly validated: the
//! server decodes bytes from any process that knows the key, so every
//! malformed frame is an [`Error::Invalid`] naming what is wrong, never a
//! panic and never a guess.
//!
//! ```text
//! request: version u8 (= 1), kind u8 (= 'Q'), request id u64, object id u64,
//!          method u16, field count u16, then per field: length u32 + bytes
//! reply:   version u8 (= 1), kind u8 (= 'R'), request id u64, status i32
//!          (0, or a negative C status), field count u16, then the fields
//! ```
//!
//! All integers are little-endian. A failed call's reply carries the error
//! text in field 0 (and, for [`Error::TooLarge`], the two sizes as u64 in
//! fields 1 and 2). A frame must end exactly after its last field.
//!
//! [`Connection`]: crate::connection::Connection

use crate::error::{Error, Result, Status};

/// The protocol version this build speaks; a frame of another is refused.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest frame the server reads and the client sends, in bytes. A
/// request with a longer value fails with [`Error::TooLarge`] before it is
/// sent.
pub const MAX_FRAME: usize = 16 << 20;

/// The most fields one frame may carry.
pub const MAX_FIELDS: usize = 4096;

/// The object id of the server itself, whose methods are [`control`].
pub const CONTROL_OBJECT: u64 = 0;

/// The server's own methods.
pub mod control {
    /// `[type name, init]` -> `[object id]`; the caller holds one reference.
    pub const CREATE: u16 = 1;
    /// `[object id]` -> `[type name]`; the caller takes a reference.
    pub const ATTACH: u16 = 2;
    /// `[object id]`: the caller takes another reference.
    pub const INCREF: u16 = 3;
    /// `[object id]`: the caller gives one back; the last one frees it.
    pub const DECREF: u16 = 4;
    /// Stop serving (after this reply).
    pub const SHUTDOWN: u16 = 5;
    /// `-> [server pid]`.
    pub const PING: u16 = 6;
    /// `[request ring handle, reply ring handle]`: move this client to
    /// shared-memory rings. Answered twice on the socket: "send the
    /// descriptor", then, after the memfd arrived by `SCM_RIGHTS`,
    /// "attached" (see the `transport` module of the manager).
    pub const UPGRADE: u16 = 7;
}

const KIND_REQUEST: u8 = b'Q';
const KIND_REPLY: u8 = b'R';
const REQUEST_HEADER: usize = 1 + 1 + 8 + 8 + 2 + 2;
const REPLY_HEADER: usize = 1 + 1 + 8 + 4 + 2;

/// A decoded request: which object, which method, with which arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Echoed in the reply, so a client can tell replies apart.
    pub request_id: u64,
    /// The object the call is for; [`CONTROL_OBJECT`]
    /// for the server itself.
    pub object: u64,
    /// The method, numbered by the object's type.
    pub method: u16,
    /// The argument fields, borrowed from the frame.
    pub args: Vec<&'a [u8]>,
}

/// The encoded length of a frame with these fields after a header of `header` bytes.
fn frame_len(header: usize, fields: &[&[u8]]) -> usize {
    header + fields.iter().map(|f| 4 + f.len()).sum::<usize>()
}

fn check_fields(header: usize, fields: &[&[u8]]) -> Result<()> {
    if fields.len() > MAX_FIELDS {
        return Err(Error::Invalid(format!(
            "{} fields in one frame, at most {MAX_FIELDS} are allowed",
            fields.len()
        )));
    }
    let len = frame_len(header, fields);
    if len > MAX_FRAME {
        return Err(Error::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(())
}

fn put_fields(out: &mut Vec<u8>, fields: &[&[u8]]) {
    out.extend_from_slice(&(fields.len() as u16).to_le_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
}

/// Encodes a request into `out` (cleared first). [`Error::TooLarge`] when
/// it would exceed [`MAX_FRAME`], [`Error::Invalid`] for more than
/// [`MAX_FIELDS`] fields.
pub fn encode_request(
    out: &mut Vec<u8>,
    request_id: u64,
    object: u64,
    method: u16,
    args: &[&[u8]],
) -> Result<()> {
    check_fields(REQUEST_HEADER, args)?;
    out.clear();
    out.reserve(frame_len(REQUEST_HEADER, args));
    out.push(PROTOCOL_VERSION);
    out.push(KIND_REQUEST);
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&object.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    put_fields(out, args);
    Ok(())
}

/// Encodes a successful reply carrying `fields` into `out` (cleared first).
/// Fails as [`encode_request`] does for a reply too large to send.
pub fn encode_reply(out: &mut Vec<u8>, request_id: u64, fields: &[&[u8]]) -> Result<()> {
    check_fields(REPLY_HEADER, fields)?;
    out.clear();
    out.reserve(frame_len(REPLY_HEADER, fields));
    reply_header(out, request_id, 0);
    put_fields(out, fields);
    Ok(())
}

/// Encodes the reply of a failed call into `out` (cleared first).
pub fn encode_error(out: &mut Vec<u8>, request_id: u64, err: &Error) {
    out.clear();
    reply_header(out, request_id, err.status() as i32);
    let mut text = err.to_string();
    text.truncate(MAX_FRAME / 2);
    match err {
        Error::TooLarge { len, max } => put_fields(
            out,
            &[
                text.as_bytes(),
                &(*len as u64).to_le_bytes(),
                &(*max as u64).to_le_bytes(),
            ],
        ),
        _ => put_fields(out, &[text.as_bytes()]),
    }
}

fn reply_header(out: &mut Vec<u8>, request_id: u64, status: i32) {
    out.push(PROTOCOL_VERSION);
    out.push(KIND_REPLY);
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
}

/// Reads a frame front to back; every read is checked against the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(malformed(format!(
                "{what} needs {n} bytes at offset {}, only {left} remain",
                self.pos
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returns N bytes"))
    }

    fn header(&mut self, kind: u8) -> Result<u64> {
        let [version, found] = self.array::<2>("the header")?;
        if version != PROTOCOL_VERSION {
            return Err(Error::Version {
                expected: PROTOCOL_VERSION.into(),
                found: version.into(),
            });
        }
        if found != kind {
            return Err(malformed(format!(
                "frame kind {found:#04x} where {kind:#04x} was expected"
            )));
        }
        Ok(u64::from_le_bytes(self.array("the request id")?))
    }

    fn fields(&mut self) -> Result<Vec<&'a [u8]>> {
        let count = u16::from_le_bytes(self.array("the field count")?) as usize;
        if count > MAX_FIELDS {
            return Err(malformed(format!(
                "{count} fields, at most {MAX_FIELDS} are allowed"
            )));
        }
        let mut fields = Vec::with_capacity(count);
        for i in 0..count {
            let len = u32::from_le_bytes(self.array("a field length")?) as usize;
            fields.push(self.take(len, &format!("field {i}"))?);
        }
        if self.pos != self.bytes.len() {
            return Err(malformed(format!(
                "{} bytes after the last field",
                self.bytes.len() - self.pos
            )));
        }
        Ok(fields)
    }
}

fn malformed(why: String) -> Error {
    Error::Invalid(format!("malformed manager frame: {why}"))
}

/// The request id of a frame that may be malformed, if its header is
/// readable (so an error reply can name it); 0 otherwise.
pub fn request_id_of(frame: &[u8]) -> u64 {
    frame
        .get(2..10)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Decodes a request frame. Errors: [`Error::Version`] for another
/// protocol version, [`Error::Invalid`] for anything else malformed.
pub fn decode_request(frame: &[u8]) -> Result<Request<'_>> {
    let mut r = Reader {
        bytes: frame,
        pos: 0,
    };
    let request_id = r.header(KIND_REQUEST)?;
    let object = u64::from_le_bytes(r.array("the object id")?);
    let method = u16::from_le_bytes(r.array("the method")?);
    let args = r.fields()?;
    Ok(Request {
        request_id,
        object,
        method,
        args,
    })
}

/// Decodes a reply frame to the request `expected_id`: its fields, or the
/// error the server reported. A reply to another request, or a malformed
/// one, is [`Error::Invalid`] (the client then treats the connection as
/// broken).
pub fn decode_reply(frame: &[u8], expected_id: u64) -> Result<Result<Vec<&[u8]>>> {
    let mut r = Reader {
        bytes: frame,
        pos: 0,
    };
    let id = r.header(KIND_REPLY)?;
    if id != expected_id {
        return Err(malformed(format!(
            "reply to request {id} where {expected_id} was awaited"
        )));
    }
    let status = i32::from_le_bytes(r.array("the status")?);
    let fields = r.fields()?;
    if status == 0 {
        return Ok(Ok(fields));
    }
    let Some(status) = Status::from_code(status) else {
        return Err(malformed(format!("unknown status {status}")));
    };
    let text = String::from_utf8_lossy(fields.first().copied().unwrap_or_default()).into_owned();
    Ok(Err(error_from_reply(status, text, &fields)))
}

/// Rebuilds, on the client, the error the server reported.
fn error_from_reply(status: Status, text: String, fields: &[&[u8]]) -> Error {
    let size = |i: usize| {
        fields
            .get(i)
            .and_then(|b| <[u8; 8]>::try_from(*b).ok())
            .map_or(0, |b| u64::from_le_bytes(b) as usize)
    };
    match status {
        Status::Timeout => Error::Timeout,
        Status::Full => Error::Full,
        Status::Empty => Error::Empty,
        Status::Closed => Error::Closed,
        Status::TooLarge => Error::TooLarge {
            len: size(1),
            max: size(2),
        },
        Status::OwnerDied => Error::OwnerDied,
        Status::NotOwner => Error::NotOwner,
        Status::Value => Error::Value(text),
        Status::Broken => Error::Broken,
        Status::NotFound => Error::NotFound(text),
        Status::Kind => Error::Kind {
            expected: "the proxy's type",
            found: text,
        },
        Status::Auth => Error::Auth(text),
        Status::Eof => Error::Eof,
        Status::State => Error::State(text),
        Status::Invalid | Status::Null | Status::Version => Error::Invalid(text),
        Status::Os => Error::os("manager server", std::io::Error::other(text)),
        Status::Ok | Status::Internal => Error::Internal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let mut buf = Vec::new();
        encode_request(&mut buf, 7, 42, 3, &[b"key", b"", b"value"]).unwrap();
        let req = decode_request(&buf).unwrap();
        assert_eq!(
            req,
            Request {
                request_id: 7,
                object: 42,
                method: 3,
                args: vec![b"key".as_slice(), b"", b"value"],
            }
        );
        assert_eq!(request_id_of(&buf), 7);
    }

    #[test]
    fn replies_round_trip_values_and_errors() {
        let mut buf = Vec::new();
        encode_reply(&mut buf, 9, &[b"a", b"bc"]).unwrap();
        assert_eq!(
            decode_reply(&buf, 9).unwrap().unwrap(),
            vec![b"a".as_slice(), b"bc"]
        );
        encode_error(&mut buf, 9, &Error::NotFound("object 5".into()));
        let err = decode_reply(&buf, 9).unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(t) if t.contains("object 5")),
            "{err}"
        );
        encode_error(&mut buf, 9, &Error::TooLarge { len: 10, max: 4 });
        let err = decode_reply(&buf, 9).unwrap().unwrap_err();
        assert!(matches!(err, Error::TooLarge { len: 10, max: 4 }), "{err}");
        assert!(matches!(decode_reply(&buf, 8), Err(Error::Invalid(_))));
    }

    #[test]
    fn every_truncation_of_a_request_is_refused() {
        let mut buf = Vec::new();
        encode_request(&mut buf, 1, 2, 3, &[b"abc", b"de"]).unwrap();
        for cut in 0..buf.len() {
            let err = decode_request(&buf[..cut]).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "cut {cut}: {err}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        let err = decode_request(&longer).unwrap_err();
        assert!(err.to_string().contains("after the last field"), "{err}");
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let mut buf = Vec::new();
        encode_request(&mut buf, 1, 2, 3, &[]).unwrap();
        let mut other_version = buf.clone();
        other_version[0] = 9;
        assert!(matches!(
            decode_request(&other_version),
            Err(Error::Version {
                expected: 1,
                found: 9
            })
        ));
        let mut reply_kind = buf.clone();
        reply_kind[1] = KIND_REPLY;
        let err = decode_request(&reply_kind).unwrap_err();
        assert!(err.to_string().contains("frame kind"), "{err}");
        let mut huge_count = buf.clone();
        let n = huge_count.len();
        huge_count[n - 2..].copy_from_slice(&u16::MAX.to_le_bytes());
        let err = decode_request(&huge_count).unwrap_err();
        assert!(err.to_string().contains("fields"), "{err}");
        let mut lying_len = Vec::new();
        encode_request(&mut lying_len, 1, 2, 3, &[b"x"]).unwrap();
        let at = REQUEST_HEADER;
        lying_len[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_request(&lying_len).unwrap_err();
        assert!(err.to_string().contains("field 0"), "{err}");
    }

    #[test]
    fn too_large_is_refused_before_sending() {
        let big = vec![0u8; MAX_FRAME];
        let mut buf = Vec::new();
        let err = encode_request(&mut buf, 1, 2, 3, &[&big]).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { max: MAX_FRAME, .. }),
            "{err}"
        );
    }
}
