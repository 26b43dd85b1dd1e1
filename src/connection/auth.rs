//! Authentication with a shared key, as CPython's `deliver_challenge` and
//! `answer_challenge` (`Lib/multiprocessing/connection.py`).
//!
//! The challenger sends `#CHALLENGE#` and a random message; the other side
//! answers with an HMAC of the message under the key; the challenger
//! replies `#WELCOME#` or `#FAILURE#`. Every step is one framed message.
//! A listener challenges first, then answers the client's challenge.
//!
//! Two dialects, told apart by lengths:
//!
//! | | Python <= 3.11 (legacy) | Python >= 3.12 (and us) |
//! |---|---|---|
//! | challenge message | 20 random bytes | `{sha256}` + 40 random bytes |
//! | answer | raw HMAC-MD5 (16 bytes) | `{sha256}` + HMAC-SHA256 |
//!
//! The HMAC covers the whole message, the `{digest}` prefix included. A
//! legacy client takes our prefixed message as an opaque challenge and
//! answers with raw HMAC-MD5, which we accept (as CPython 3.12 does); a
//! legacy challenge (20 bytes) gets a raw HMAC-MD5 answer from us.

use std::time::Instant;

use hmac::{Hmac, Mac};

use super::conn::Connection;
use crate::error::{Error, Result};
use crate::sys;

/// Starts every challenge.
const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The challenger's reply to a right answer.
const WELCOME: &[u8] = b"#WELCOME#";
/// The challenger's reply to a wrong answer.
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in our challenges (CPython 3.12's `MESSAGE_LENGTH`).
const NONCE_LEN: usize = 40;
/// A challenge message of this length is a legacy one: answer raw HMAC-MD5.
const LEGACY_MESSAGE_LEN: usize = 20;
/// A raw HMAC-MD5 answer is this long.
const MD5_LEN: usize = 16;
/// No handshake message may be longer (CPython's `recv_bytes(256)`).
const MAX_MESSAGE: usize = 256;
/// The longest digest name CPython accepts inside `{...}` (`sha3_384`).
const MAX_DIGEST_NAME: usize = 8;

/// The HMAC digests we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
        }
    }

    /// Whether `tag` is the HMAC of `message`, compared in constant time.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message, tag),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message, tag),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message, tag),
        }
    }
}

/// Splits a challenge message or an answer into its digest and payload:
/// `None` for the legacy form (16 or 20 bytes, no prefix), else the digest
/// named by a `{name}` prefix. CPython's `_get_digest_name_and_payload`.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if message.len() == LEGACY_MESSAGE_LEN || message.len() == MD5_LEN {
        return Ok((None, message));
    }
    let name_end = message.strip_prefix(b"{").and_then(|rest| {
        rest.iter()
            .take(MAX_DIGEST_NAME + 1)
            .position(|b| *b == b'}')
    });
    let Some(name_len) = name_end else {
        return Err(Error::Auth(format!(
            "protocol error: a {}-byte handshake message with no {{digest}} prefix",
            message.len()
        )));
    };
    let name = &message[1..1 + name_len];
    let payload = &message[name_len + 2..];
    let digest = match name {
        b"md5" => Digest::Md5,
        b"sha256" => Digest::Sha256,
        b"sha384" => Digest::Sha384,
        other => {
            return Err(Error::Auth(format!(
                "unsupported digest `{}` (we speak md5, sha256, sha384)",
                String::from_utf8_lossy(other)
            )));
        }
    };
    Ok((Some(digest), payload))
}

/// Receives one handshake message of at most [`MAX_MESSAGE`] bytes.
fn recv_handshake(conn: &mut Connection, deadline: Option<Instant>, what: &str) -> Result<Vec<u8>> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    conn.recv_bytes_timeout(Some(MAX_MESSAGE), left)
        .map_err(|e| match e {
            Error::TooLarge { len, .. } => Error::Auth(format!(
                "protocol error: a {len}-byte {what}, at most {MAX_MESSAGE} expected"
            )),
            other => other,
        })
}

/// Challenges the peer to prove it knows `authkey` (CPython's
/// `deliver_challenge`): [`Error::Auth`] if it does not, after telling it
/// so. Waits for the peer at most until `deadline`.
pub(crate) fn deliver_challenge(
    conn: &mut Connection,
    authkey: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let mut message = b"{sha256}".to_vec();
    for _ in 0..NONCE_LEN / 8 {
        let random = sys::getrandom_u64().map_err(|e| Error::os("getrandom", e))?;
        message.extend_from_slice(&random.to_ne_bytes());
    }
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    let answer = recv_handshake(conn, deadline, "answer to our challenge")?;
    let verdict = match digest_and_payload(&answer) {
        Ok((digest, tag)) => {
            let digest = digest.unwrap_or(Digest::Md5);
            if digest.verify(authkey, &message, tag) {
                Ok(())
            } else {
                Err(Error::Auth(format!(
                    "the peer's {} answer to our challenge is wrong (another key?)",
                    digest.name()
                )))
            }
        }
        Err(e) => Err(e),
    };
    match verdict {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(e) => {
            // The peer learns why it is refused if it still listens; the
            // refusal stands either way.
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

/// Answers the peer's challenge with `authkey` (CPython's
/// `answer_challenge`): [`Error::Auth`] if the challenge is malformed or the
/// peer rejects the answer. Waits for the peer at most until `deadline`.
pub(crate) fn answer_challenge(
    conn: &mut Connection,
    authkey: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let challenge = recv_handshake(conn, deadline, "challenge")?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        let shown = &challenge[..challenge.len().min(32)];
        return Err(Error::Auth(format!(
            "protocol error: expected a challenge starting with #CHALLENGE#, got {:?}",
            String::from_utf8_lossy(shown)
        )));
    };
    if message.len() < LEGACY_MESSAGE_LEN {
        return Err(Error::Auth(format!(
            "challenge too short: {} bytes, at least {LEGACY_MESSAGE_LEN} expected",
            message.len()
        )));
    }
    let answer = match digest_and_payload(message)?.0 {
        None => Digest::Md5.mac(authkey, message),
        Some(digest) => {
            let mut answer = format!("{{{}}}", digest.name()).into_bytes();
            answer.extend(digest.mac(authkey, message));
            answer
        }
    };
    conn.send_bytes(&answer)?;
    let reply = recv_handshake(conn, deadline, "reply to our answer")?;
    if reply == WELCOME {
        Ok(())
    } else if reply == FAILURE {
        Err(Error::Auth(
            "the peer rejected our answer to its challenge (another key?)".into(),
        ))
    } else {
        Err(Error::Auth(format!(
            "protocol error: expected #WELCOME# or #FAILURE#, got {} bytes",
            reply.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_python_hmac() {
        // python3 -c "import hmac; print(hmac.new(b'key', b'msg', 'md5').hexdigest())"
        let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(Digest::Md5.mac(b"key", b"msg")),
            "18e3548c59ad40dd03907b7aeee71d67"
        );
        assert_eq!(
            hex(Digest::Sha256.mac(b"key", b"msg")),
            "2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628"
        );
        assert!(Digest::Sha256.verify(b"key", b"msg", &Digest::Sha256.mac(b"key", b"msg")));
        assert!(!Digest::Sha256.verify(b"kex", b"msg", &Digest::Sha256.mac(b"key", b"msg")));
        assert!(!Digest::Sha256.verify(b"key", b"msg", b"short"));
    }

    #[test]
    fn prefixes_and_legacy_lengths() {
        assert_eq!(digest_and_payload(&[7; 20]).unwrap(), (None, &[7; 20][..]));
        assert_eq!(digest_and_payload(&[7; 16]).unwrap(), (None, &[7; 16][..]));
        assert_eq!(
            digest_and_payload(b"{sha256}abc").unwrap(),
            (Some(Digest::Sha256), &b"abc"[..])
        );
        assert_eq!(
            digest_and_payload(b"{md5}").unwrap(),
            (Some(Digest::Md5), &b""[..])
        );
        for bad in [
            &b"no prefix here at all"[..],
            b"{sha3_256}x",
            b"{toolongname}x",
            b"{",
        ] {
            let err = digest_and_payload(bad).unwrap_err();
            assert!(matches!(err, Error::Auth(_)), "{bad:?}: {err}");
        }
    }
}
