//! The wire format of the pool: tasks (parent to worker, one per chunk of
//! items, through the worker's SPSC ring) and the messages of the
//! supervisor's inbox (results from workers, notices from the parent).
//!
//! ```text
//! task:    'T', seq u64, fn, count u32, count x (len u32, bytes)
//!          fn: 1, len u16, name bytes        (a registered name)
//!            | 2, call u64, f u64            (addresses: fork workers only)
//! result:  'R', slot u32, seq u64, first u32, last u8, count u32,
//!          count x (status u8, len u32, bytes)
//!          status: 0 ok (bytes: the result), 1 failed, 2 panicked (bytes: message)
//! died:    'D', slot u32, generation u64     (the watcher saw the worker end)
//! nudge:   'N'                               (new tasks are pending)
//! stop:    'S'                               (terminate)
//! ```
//!
//! All integers little-endian. A task's results may come back in several
//! result messages (parts) when they do not fit one; `first` is the index
//! of the part's first item within the task, `last` is 1 on the final part.
//! Messages come from this crate's own processes, yet parsing checks every
//! length: a malformed message is an [`Error::Internal`], never a read out
//! of bounds.

use super::registry::FnRef;
use crate::error::{Error, Result};

const TAG_TASK: u8 = b'T';
pub(crate) const TAG_RESULT: u8 = b'R';
pub(crate) const TAG_DIED: u8 = b'D';
pub(crate) const TAG_NUDGE: u8 = b'N';
pub(crate) const TAG_STOP: u8 = b'S';

const FN_NAMED: u8 = 1;
const FN_ADDRESS: u8 = 2;

/// Bytes of a result message before its items.
pub(crate) const RESULT_HEADER: usize = 1 + 4 + 8 + 4 + 1 + 4;
/// Bytes before each item's bytes in a task.
pub(crate) const TASK_ITEM_HEADER: usize = 4;
/// Bytes before each item's bytes in a result.
pub(crate) const RESULT_ITEM_HEADER: usize = 5;

/// What happened to one item in a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemStatus {
    /// Bytes: the encoded result.
    Ok = 0,
    /// Bytes: the error message the function returned.
    Failed = 1,
    /// Bytes: the panic message.
    Panicked = 2,
}

fn malformed(what: &str) -> Error {
    Error::Internal(format!("malformed pool message: {what}"))
}

/// A little-endian reader over a message.
#[derive(Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| malformed(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
}

/// Starts a task message; add items with [`push_item`] / [`begin_item`],
/// then [`finish_task`].
pub(crate) fn begin_task(seq: u64, func: &FnRef, out: &mut Vec<u8>) -> usize {
    out.push(TAG_TASK);
    out.extend_from_slice(&seq.to_le_bytes());
    match func {
        FnRef::Named(name) => {
            out.push(FN_NAMED);
            // Names are at most MAX_ENTRY_NAME (255) bytes.
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        FnRef::Address { call, f } => {
            out.push(FN_ADDRESS);
            out.extend_from_slice(&(*call as u64).to_le_bytes());
            out.extend_from_slice(&(*f as u64).to_le_bytes());
        }
    }
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    count_at
}

/// Reserves an item's length word; returns where it is, for [`end_item`].
pub(crate) fn begin_item(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    at
}

/// Writes the length of the item begun at `at`.
pub(crate) fn end_item(out: &mut [u8], at: usize) -> Result<()> {
    let len = out.len() - at - 4;
    let len = u32::try_from(len).map_err(|_| Error::TooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes the item count of a task begun by [`begin_task`].
pub(crate) fn finish_task(out: &mut [u8], count_at: usize, count: u32) {
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
}

/// A function reference inside a task message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FnView<'a> {
    Named(&'a [u8]),
    Address { call: u64, f: u64 },
}

impl FnView<'_> {
    pub(crate) fn to_owned(self) -> Result<FnRef> {
        match self {
            FnView::Named(name) => std::str::from_utf8(name)
                .map(|s| FnRef::Named(s.to_owned()))
                .map_err(|_| malformed("function name is not UTF-8")),
            FnView::Address { call, f } => Ok(FnRef::Address {
                call: call as usize,
                f: f as usize,
            }),
        }
    }
}

/// A parsed task: its sequence number, function, and items.
pub(crate) struct TaskView<'a> {
    pub(crate) seq: u64,
    pub(crate) func: FnView<'a>,
    pub(crate) count: u32,
    items: Reader<'a>,
}

impl<'a> TaskView<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<TaskView<'a>> {
        let mut r = Reader { bytes, at: 0 };
        if r.u8("tag")? != TAG_TASK {
            return Err(malformed("not a task"));
        }
        let seq = r.u64("seq")?;
        let func = match r.u8("fn kind")? {
            FN_NAMED => {
                let len = r.u16("name length")?;
                FnView::Named(r.take(len.into(), "name")?)
            }
            FN_ADDRESS => FnView::Address {
                call: r.u64("call")?,
                f: r.u64("f")?,
            },
            _ => return Err(malformed("unknown fn kind")),
        };
        let count = r.u32("count")?;
        Ok(TaskView {
            seq,
            func,
            count,
            items: r,
        })
    }

    /// The next item's bytes.
    pub(crate) fn next_item(&mut self) -> Result<&'a [u8]> {
        let len = self.items.u32("item length")?;
        self.items.take(len as usize, "item")
    }
}

/// Starts a result message (part) of task `seq` from worker `slot`,
/// beginning at the task's item `first`; returns where the count goes.
pub(crate) fn begin_result(slot: u32, seq: u64, first: u32, out: &mut Vec<u8>) {
    out.clear();
    out.push(TAG_RESULT);
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Reserves a result item's status and length; returns where they are.
pub(crate) fn begin_result_item(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; RESULT_ITEM_HEADER]);
    at
}

/// Writes the status and length of the result item begun at `at`.
pub(crate) fn end_result_item(out: &mut [u8], at: usize, status: ItemStatus) {
    let len = (out.len() - at - RESULT_ITEM_HEADER) as u32;
    out[at] = status as u8;
    out[at + 1..at + 5].copy_from_slice(&len.to_le_bytes());
}

/// Writes the count and the last-part flag of a result message.
pub(crate) fn finish_result(out: &mut [u8], count: u32, last: bool) {
    out[17] = last.into();
    out[18..22].copy_from_slice(&count.to_le_bytes());
}

/// A parsed result message (part).
#[derive(Debug)]
pub(crate) struct ResultView<'a> {
    pub(crate) slot: u32,
    pub(crate) seq: u64,
    pub(crate) first: u32,
    pub(crate) last: bool,
    pub(crate) count: u32,
    items: Reader<'a>,
}

impl<'a> ResultView<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<ResultView<'a>> {
        let mut r = Reader { bytes, at: 0 };
        if r.u8("tag")? != TAG_RESULT {
            return Err(malformed("not a result"));
        }
        Ok(ResultView {
            slot: r.u32("slot")?,
            seq: r.u64("seq")?,
            first: r.u32("first")?,
            last: r.u8("last")? != 0,
            count: r.u32("count")?,
            items: r,
        })
    }

    /// The next item: its status and the range of its bytes in the message.
    pub(crate) fn next_item(&mut self) -> Result<(ItemStatus, std::ops::Range<usize>)> {
        let status = match self.items.u8("status")? {
            0 => ItemStatus::Ok,
            1 => ItemStatus::Failed,
            2 => ItemStatus::Panicked,
            _ => return Err(malformed("unknown item status")),
        };
        let len = self.items.u32("item length")? as usize;
        let start = self.items.at;
        self.items.take(len, "item")?;
        Ok((status, start..start + len))
    }
}

/// The death notice of worker `slot` in its `generation`.
pub(crate) fn died(slot: u32, generation: u64) -> [u8; 13] {
    let mut m = [0u8; 13];
    m[0] = TAG_DIED;
    m[1..5].copy_from_slice(&slot.to_le_bytes());
    m[5..13].copy_from_slice(&generation.to_le_bytes());
    m
}

/// Parses a death notice: (slot, generation).
pub(crate) fn parse_died(bytes: &[u8]) -> Result<(u32, u64)> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8("tag")? != TAG_DIED {
        return Err(malformed("not a death notice"));
    }
    Ok((r.u32("slot")?, r.u64("generation")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trip() {
        let mut m = Vec::new();
        let count_at = begin_task(7, &FnRef::Named("sq".into()), &mut m);
        for item in [&b"ab"[..], b"", b"xyz"] {
            let at = begin_item(&mut m);
            m.extend_from_slice(item);
            end_item(&mut m, at).unwrap();
        }
        finish_task(&mut m, count_at, 3);
        let mut t = TaskView::parse(&m).unwrap();
        assert_eq!((t.seq, t.count), (7, 3));
        assert_eq!(t.func, FnView::Named(b"sq"));
        assert_eq!(t.next_item().unwrap(), b"ab");
        assert_eq!(t.next_item().unwrap(), b"");
        assert_eq!(t.next_item().unwrap(), b"xyz");
        assert!(t.next_item().is_err(), "past the end");
        for cut in 0..m.len() {
            let parsed = TaskView::parse(&m[..cut])
                .and_then(|mut t| (0..3).try_for_each(|_| t.next_item().map(drop)));
            assert!(parsed.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn result_round_trip_and_truncation() {
        let mut m = Vec::new();
        begin_result(3, 9, 2, &mut m);
        let at = begin_result_item(&mut m);
        m.extend_from_slice(b"ok");
        end_result_item(&mut m, at, ItemStatus::Ok);
        let at = begin_result_item(&mut m);
        m.extend_from_slice(b"boom");
        end_result_item(&mut m, at, ItemStatus::Panicked);
        finish_result(&mut m, 2, true);
        let mut r = ResultView::parse(&m).unwrap();
        assert_eq!(
            (r.slot, r.seq, r.first, r.last, r.count),
            (3, 9, 2, true, 2)
        );
        let (s, range) = r.next_item().unwrap();
        assert_eq!((s, &m[range]), (ItemStatus::Ok, &b"ok"[..]));
        let (s, range) = r.next_item().unwrap();
        assert_eq!((s, &m[range]), (ItemStatus::Panicked, &b"boom"[..]));
        for cut in 0..m.len() {
            let parsed = ResultView::parse(&m[..cut])
                .and_then(|mut r| r.next_item().and_then(|_| r.next_item()));
            assert!(parsed.is_err(), "cut at {cut}");
        }
        assert_eq!(parse_died(&died(4, 11)).unwrap(), (4, 11));
    }
}
