//! [`Expect`]: what a call of the `c_api` body may return, from what its
//! arguments were (see `c_api.rs`).

use std::ffi::{CStr, c_int};

use multiproc::ffi::*;

use super::c_api::Arg;

/// What a call may return, from what its arguments were.
pub(super) struct Expect {
    name: &'static str,
    /// Codes for bad arguments checked before anything happens: one of
    /// them must come back.
    early: Vec<c_int>,
    /// Codes for bad arguments checked only once the call got that far (a
    /// state error may come first): never `MP_OK` then.
    late: Vec<c_int>,
}

impl Expect {
    pub(super) fn new(name: &'static str) -> Expect {
        Expect {
            name,
            early: Vec::new(),
            late: Vec::new(),
        }
    }

    /// A pointer (object) argument.
    pub(super) fn arg(mut self, a: Arg) -> Expect {
        match a {
            Arg::Null => self.early.push(MP_ERR_NULL),
            Arg::Wrong => self.early.push(MP_ERR_INVALID),
            Arg::Live => {}
        }
        self
    }

    /// A bad argument refused first with `code`, if `bad`.
    pub(super) fn early(mut self, bad: bool, code: c_int) -> Expect {
        if bad {
            self.early.push(code);
        }
        self
    }

    /// A bad argument refused with `code` once the call gets to it, if
    /// `bad`.
    pub(super) fn late(mut self, bad: bool, code: c_int) -> Expect {
        if bad {
            self.late.push(code);
        }
        self
    }

    /// A timeout argument (invalid when negative and not -1).
    pub(super) fn timeout(self, t: i64) -> Expect {
        self.early(t < 0 && t != MP_WAIT_FOREVER, MP_ERR_INVALID)
    }

    /// Checks `status` against the arguments and the codes the call's doc
    /// names for good arguments (`documented`, `MP_OK` included).
    pub(super) fn check(&self, status: c_int, documented: &[c_int]) {
        let ok = if !self.early.is_empty() {
            self.early.contains(&status)
        } else if !self.late.is_empty() {
            status != MP_OK && (self.late.contains(&status) || documented.contains(&status))
        } else {
            documented.contains(&status)
        };
        if !ok {
            // SAFETY: mp_last_error never returns NULL; a valid C string.
            let last = unsafe { CStr::from_ptr(mp_last_error()) };
            panic!(
                "{}: status {status} ({last:?}); bad arguments refused first: {:?}, \
                 refused later: {:?}; documented for good ones: {documented:?}",
                self.name, self.early, self.late
            );
        }
    }
}
