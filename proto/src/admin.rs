//! Exchanges beyond the offer protocol that are not the operator's (for those, see
//! [`crate::operator`]): module upload into the master's store, and a task's output from
//! its agent.
//!
//! Module upload: a client (`wasmos run`) sends a module to the master's store on the
//! `master/upload` queryable as a sequence of [`crate::ModuleChunk`] queries, index 0
//! first and in order, each answered with an [`UploadReply`]. Chunk 0 of a module the
//! store already holds is answered with `Stored` at once, so nothing more is sent.

use serde::{Deserialize, Serialize};

use crate::ids::ModuleHash;

/// The master's answer to one uploaded chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UploadReply {
    /// Chunk taken; send chunk `next_index` next.
    Continue { next_index: u32 },
    /// The whole module is in the store and its bytes hash to `sha256`.
    Stored { sha256: ModuleHash, size_bytes: u64 },
    /// The upload failed; start again from chunk 0 after fixing what `message` says.
    Error { message: String },
}

/// A request on an agent's `agents/<id>/logs` queryable: what a task wrote, running or
/// ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub task_id: crate::ids::TaskId,
    /// `None`: the last [`LOG_STREAM_BYTES_MAX`] kept bytes of each stream. `Some`: what
    /// was written at or after these offsets, the first [`LOG_STREAM_BYTES_MAX`] of it
    /// (a follower asks again from each part's `end`).
    pub from: Option<LogOffsets>,
}

/// Byte offsets into a task's two output streams, counted from the task's first byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOffsets {
    pub stdout: u64,
    pub stderr: u64,
}

/// Most bytes of each stream in one [`LogsReply::Output`].
pub const LOG_STREAM_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LogsReply {
    Output(TaskOutput),
    /// No output to give, and why ("not on this agent").
    Error {
        message: String,
    },
}

/// What a task wrote, as asked; `state` tells whether more may come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub state: crate::task::TaskState,
    pub stdout: OutputPart,
    pub stderr: OutputPart,
}

impl TaskOutput {
    /// Nothing (more) to read, at `from`: a task that has written nothing yet, or whose
    /// output cannot be had.
    pub fn empty(state: crate::task::TaskState, from: LogOffsets) -> TaskOutput {
        TaskOutput {
            state,
            stdout: OutputPart::new([], from.stdout),
            stderr: OutputPart::new([], from.stderr),
        }
    }

    /// Both streams as a reader asks for them ([`OutputView::select`]).
    pub fn select(&self, from: Option<LogOffsets>, max: usize) -> TaskOutput {
        TaskOutput {
            state: self.state,
            stdout: self.stdout.select(from.map(|f| f.stdout), max),
            stderr: self.stderr.select(from.map(|f| f.stderr), max),
        }
    }

    /// A stream came back cut at [`LOG_STREAM_BYTES_MAX`]: its agent holds more already,
    /// and a follower asks again without pausing.
    pub fn is_cut_short(&self) -> bool {
        let full = |part: &OutputPart| part.kept_bytes() >= LOG_STREAM_BYTES_MAX as u64;
        full(&self.stdout) || full(&self.stderr)
    }

    /// Where a follower asks from next.
    pub fn ends(&self) -> LogOffsets {
        LogOffsets {
            stdout: self.stdout.end,
            stderr: self.stderr.end,
        }
    }
}

/// Kept bytes of one output stream. Executors cap what they keep, so a stream may have
/// gaps: bytes between pieces, and between where the reader asked from and the first
/// piece, were written but dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPart {
    /// In offset order, not overlapping, none empty.
    pub pieces: Vec<OutputPiece>,
    /// The offset after the last byte this part covers: where a follower asks from next.
    pub end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPiece {
    /// Offset of `bytes[0]` in the stream.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl OutputPart {
    /// A stream of `end` bytes of which these pieces are kept (empty pieces are skipped).
    pub fn new(pieces: impl IntoIterator<Item = OutputPiece>, end: u64) -> OutputPart {
        let pieces: Vec<OutputPiece> = pieces.into_iter().filter(|p| !p.bytes.is_empty()).collect();
        debug_assert!(
            pieces
                .windows(2)
                .all(|w| w[0].offset + w[0].bytes.len() as u64 <= w[1].offset)
        );
        debug_assert!(
            pieces
                .last()
                .is_none_or(|p| p.offset + p.bytes.len() as u64 <= end)
        );
        OutputPart { pieces, end }
    }

    /// Bytes kept.
    pub fn kept_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.bytes.len() as u64).sum()
    }

    /// Bytes written from `from` to `end` that are not kept.
    pub fn dropped_since(&self, from: u64) -> u64 {
        let kept: u64 = self
            .pieces
            .iter()
            .map(|p| (p.offset + p.bytes.len() as u64).saturating_sub(p.offset.max(from)))
            .sum();
        self.end.saturating_sub(from).saturating_sub(kept)
    }

    /// The kept bytes from offset `from` on, for people: each gap (also one at the end)
    /// is said in line as `[... N bytes not kept ...]`.
    pub fn text_since(&self, from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = from;
        let gap = |out: &mut Vec<u8>, bytes: u64| {
            if !out.is_empty() && out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("[... {bytes} bytes not kept ...]\n").as_bytes());
        };
        for piece in &self.pieces {
            if piece.offset > at {
                gap(&mut out, piece.offset - at);
            }
            let skip = at.saturating_sub(piece.offset) as usize;
            out.extend_from_slice(piece.bytes.get(skip..).unwrap_or_default());
            at = at.max(piece.offset + piece.bytes.len() as u64);
        }
        if self.end > at {
            gap(&mut out, self.end - at);
        }
        out
    }

    /// For people: the last `tail` lines if given, else everything from `from` on.
    pub fn text(&self, from: u64, tail: Option<usize>) -> Vec<u8> {
        match tail {
            Some(n) => self.last_lines(n),
            None => self.text_since(from),
        }
    }

    /// The last `n` lines of the kept bytes (a final newline ends the last line); a gap
    /// among them is said as in [`OutputPart::text_since`].
    pub fn last_lines(&self, n: usize) -> Vec<u8> {
        let first = self.pieces.first().map_or(self.end, |p| p.offset);
        let mut bytes = self.text_since(first);
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let start = match n {
            0 => bytes.len(),
            n => (body.iter().enumerate().rev())
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 1)
                .map_or(0, |(i, _)| i + 1),
        };
        bytes.split_off(start)
    }

    /// The kept bytes as a borrowed [`OutputView`].
    pub fn view(&self) -> OutputView<'_> {
        OutputView {
            pieces: self
                .pieces
                .iter()
                .map(|p| (p.offset, p.bytes.as_slice()))
                .collect(),
            end: self.end,
        }
    }

    /// See [`OutputView::select`].
    pub fn select(&self, from: Option<u64>, max: usize) -> OutputPart {
        self.view().select(from, max)
    }
}

/// Kept bytes of a stream, borrowed (from a part, or from a capture under its lock):
/// `(offset, bytes)` pieces in offset order, and the stream's length.
#[derive(Clone, Debug, Default)]
pub struct OutputView<'a> {
    pub pieces: Vec<(u64, &'a [u8])>,
    pub end: u64,
}

impl OutputView<'_> {
    /// The last `max` kept bytes for `None`; for `Some(from)`, those at offsets `from`
    /// and after, at most `max` of them. Copies at most `max` bytes.
    pub fn select(&self, from: Option<u64>, max: usize) -> OutputPart {
        match from {
            None => self.last(max),
            Some(from) => self.since(from, max),
        }
    }

    fn last(&self, max: usize) -> OutputPart {
        let mut left = max;
        let mut pieces = Vec::new();
        for (offset, bytes) in self.pieces.iter().rev() {
            if left == 0 {
                break;
            }
            let cut = bytes.len().saturating_sub(left);
            left -= bytes.len() - cut;
            pieces.push(OutputPiece {
                offset: offset + cut as u64,
                bytes: bytes[cut..].to_vec(),
            });
        }
        pieces.reverse();
        OutputPart::new(pieces, self.end)
    }

    /// When `max` cuts the bytes short, `end` is just after the last byte given, so that
    /// asking again from `end` goes on (and a gap after it is seen by that next read). A
    /// reader ahead of the stream keeps its offset: it never reads a byte twice.
    fn since(&self, from: u64, max: usize) -> OutputPart {
        let mut left = max;
        let mut at = from;
        let mut pieces = Vec::new();
        for (offset, bytes) in &self.pieces {
            if offset + bytes.len() as u64 <= from {
                continue;
            }
            if left == 0 {
                return OutputPart::new(pieces, at);
            }
            let skip = from.saturating_sub(*offset) as usize;
            let take = (bytes.len() - skip).min(left);
            left -= take;
            pieces.push(OutputPiece {
                offset: offset + skip as u64,
                bytes: bytes[skip..skip + take].to_vec(),
            });
            at = offset + (skip + take) as u64;
            if skip + take < bytes.len() {
                return OutputPart::new(pieces, at);
            }
        }
        OutputPart::new(pieces, self.end.max(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(offset: u64, bytes: &[u8]) -> OutputPiece {
        OutputPiece {
            offset,
            bytes: bytes.to_vec(),
        }
    }

    /// `abcd`, 10 bytes dropped, `wxyz`: 18 written.
    fn gapped() -> OutputPart {
        OutputPart::new([piece(0, b"abcd"), piece(14, b"wxyz")], 18)
    }

    #[test]
    fn last_takes_the_end_across_the_gap() {
        let part = gapped().select(None, 6);
        assert_eq!(part.pieces, vec![piece(2, b"cd"), piece(14, b"wxyz")]);
        assert_eq!(part.end, 18);
        assert_eq!(part.dropped_since(2), 10);
    }

    #[test]
    fn since_reads_forward_and_cuts_where_the_reader_goes_on() {
        let first = gapped().select(Some(1), 5);
        assert_eq!(first.pieces, vec![piece(1, b"bcd"), piece(14, b"wx")]);
        assert_eq!(first.end, 16);
        assert_eq!(first.dropped_since(1), 10);
        let second = gapped().select(Some(first.end), 5);
        assert_eq!(second.pieces, vec![piece(16, b"yz")]);
        assert_eq!(second.end, 18);
        assert_eq!(gapped().select(Some(18), 5), OutputPart::new([], 18));
    }

    #[test]
    fn a_budget_spent_at_a_piece_boundary_leaves_the_gap_to_the_next_read() {
        let part = gapped().select(Some(0), 4);
        assert_eq!(part.pieces, vec![piece(0, b"abcd")]);
        assert_eq!(part.end, 4);
        let next = gapped().select(Some(part.end), 4);
        assert_eq!(
            next.text_since(part.end),
            b"[... 10 bytes not kept ...]\nwxyz"
        );
    }

    #[test]
    fn text_says_each_gap_where_it_is() {
        assert_eq!(
            gapped().text_since(0),
            b"abcd\n[... 10 bytes not kept ...]\nwxyz"
        );
        assert_eq!(
            gapped().select(None, 2).text_since(0),
            b"[... 16 bytes not kept ...]\nyz"
        );
        assert_eq!(gapped().text_since(15), b"xyz");
        let dropped_at_the_end = OutputPart::new([piece(0, b"ab\n")], 10);
        assert_eq!(
            dropped_at_the_end.text_since(0),
            b"ab\n[... 7 bytes not kept ...]\n"
        );
    }

    #[test]
    fn the_last_lines_start_after_the_nth_newline_from_the_end() {
        let text = OutputPart::new([piece(0, b"one\ntwo\nthree\n")], 14);
        assert_eq!(text.last_lines(0), b"");
        assert_eq!(text.last_lines(1), b"three\n");
        assert_eq!(text.last_lines(2), b"two\nthree\n");
        assert_eq!(text.last_lines(5), b"one\ntwo\nthree\n");
        let unfinished = OutputPart::new([piece(0, b"a\nb")], 3);
        assert_eq!(unfinished.last_lines(1), b"b");
        assert_eq!(OutputPart::default().last_lines(3), b"");
    }

    #[test]
    fn a_reader_ahead_of_the_stream_keeps_its_offset() {
        // An OCI task's logs are deleted just before its end is reported: a follower must
        // not be sent back to 0 to read everything again.
        assert_eq!(gapped().select(Some(30), 5), OutputPart::new([], 30));
    }

    #[test]
    fn last_lines_do_not_splice_lines_across_a_gap() {
        let part = OutputPart::new([piece(0, b"one\ntw"), piece(10, b"ee\nfour\n")], 18);
        assert_eq!(
            part.last_lines(4),
            b"tw\n[... 4 bytes not kept ...]\nee\nfour\n"
        );
    }
}
