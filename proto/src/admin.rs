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

    /// The kept bytes, in order, with the gaps left out.
    pub fn concat(&self) -> Vec<u8> {
        self.pieces
            .iter()
            .flat_map(|p| p.bytes.iter().copied())
            .collect()
    }

    /// The last `max` kept bytes.
    pub fn last(&self, max: usize) -> OutputPart {
        let mut left = max;
        let mut pieces = Vec::new();
        for p in self.pieces.iter().rev() {
            if left == 0 {
                break;
            }
            let cut = p.bytes.len().saturating_sub(left);
            left -= p.bytes.len() - cut;
            pieces.push(OutputPiece {
                offset: p.offset + cut as u64,
                bytes: p.bytes[cut..].to_vec(),
            });
        }
        pieces.reverse();
        OutputPart::new(pieces, self.end)
    }

    /// What is kept at offsets `from` and after, at most `max` bytes of it; when that cuts
    /// it short, `end` is where the cut is, so that asking again from `end` goes on.
    pub fn since(&self, from: u64, max: usize) -> OutputPart {
        let mut left = max;
        let mut pieces = Vec::new();
        for p in &self.pieces {
            let p_end = p.offset + p.bytes.len() as u64;
            if p_end <= from {
                continue;
            }
            let skip = from.saturating_sub(p.offset) as usize;
            let take = (p.bytes.len() - skip).min(left);
            if take == 0 {
                return OutputPart::new(pieces, p.offset.max(from));
            }
            left -= take;
            pieces.push(OutputPiece {
                offset: p.offset + skip as u64,
                bytes: p.bytes[skip..skip + take].to_vec(),
            });
            if skip + take < p.bytes.len() {
                let cut = p.offset + (skip + take) as u64;
                return OutputPart::new(pieces, cut);
            }
        }
        OutputPart::new(pieces, self.end)
    }

    /// The kept bytes from offset `from` on, for people: each gap is said in line as
    /// `[... N bytes not kept ...]`.
    pub fn text_since(&self, from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = from;
        for piece in &self.pieces {
            if piece.offset > at {
                let newline = if at > 0 { "\n" } else { "" };
                let gap = format!("{newline}[... {} bytes not kept ...]\n", piece.offset - at);
                out.extend_from_slice(gap.as_bytes());
            }
            let skip = at.saturating_sub(piece.offset) as usize;
            out.extend_from_slice(piece.bytes.get(skip..).unwrap_or_default());
            at = at.max(piece.offset + piece.bytes.len() as u64);
        }
        out
    }

    /// The last `n` lines of the kept bytes (a final newline ends the last line).
    pub fn last_lines(&self, n: usize) -> Vec<u8> {
        let mut bytes = self.concat();
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

    /// [`OutputPart::last`] for `None`, [`OutputPart::since`] for `Some(from)`.
    pub fn select(&self, from: Option<u64>, max: usize) -> OutputPart {
        match from {
            None => self.last(max),
            Some(from) => self.since(from, max),
        }
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
        let part = gapped().last(6);
        assert_eq!(part.pieces, vec![piece(2, b"cd"), piece(14, b"wxyz")]);
        assert_eq!(part.end, 18);
        assert_eq!(part.dropped_since(2), 10);
    }

    #[test]
    fn since_reads_forward_and_cuts_where_the_reader_goes_on() {
        let first = gapped().since(1, 5);
        assert_eq!(first.pieces, vec![piece(1, b"bcd"), piece(14, b"wx")]);
        assert_eq!(first.end, 16);
        assert_eq!(first.dropped_since(1), 10);
        let second = gapped().since(first.end, 5);
        assert_eq!(second.pieces, vec![piece(16, b"yz")]);
        assert_eq!(second.end, 18);
        assert_eq!(gapped().since(18, 5), OutputPart::new([], 18));
    }

    #[test]
    fn since_stops_at_a_piece_boundary_when_the_budget_is_spent() {
        let part = gapped().since(0, 4);
        assert_eq!(part.pieces, vec![piece(0, b"abcd")]);
        assert_eq!(part.end, 14);
        assert_eq!(gapped().since(part.end, 4).concat(), b"wxyz");
    }

    #[test]
    fn text_says_each_gap_where_it_is() {
        assert_eq!(
            gapped().text_since(0),
            b"abcd\n[... 10 bytes not kept ...]\nwxyz"
        );
        assert_eq!(
            gapped().last(2).text_since(0),
            b"[... 16 bytes not kept ...]\nyz"
        );
        assert_eq!(gapped().text_since(15), b"xyz");
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
    fn a_reader_ahead_of_the_writer_is_told_where_the_writer_is() {
        assert_eq!(gapped().since(30, 5), OutputPart::new([], 18));
    }
}
