//! Captured task output with a byte cap: the first and the last bytes are kept, the
//! middle is counted and dropped.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use proto::admin::{OutputPart, OutputView};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes the stream accepts per `check-write` permit; the guest may write any amount in
/// total, in pieces of at most this many bytes.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

/// One output stream (stdout or stderr) of one task.
///
/// Contract: a write never fails and never blocks the guest. Of everything written, the
/// first `cap / 2` bytes and the last `cap - cap / 2` bytes are kept; bytes in between are
/// counted in [`CapturedOutput::dropped_bytes`] and discarded, so host memory per stream
/// stays below `cap`.
#[derive(Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    head: Vec<u8>,
    head_max: usize,
    tail: VecDeque<u8>,
    tail_max: usize,
    dropped_bytes: u64,
}

/// What a [`CappedOutput`] kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    /// Bytes written between `head` and `tail` and not kept.
    pub dropped_bytes: u64,
}

impl CapturedOutput {
    /// Every byte written, in order, when nothing was dropped.
    pub fn is_complete(&self) -> bool {
        self.dropped_bytes == 0
    }

    /// The last `n` bytes kept (across head and tail when nothing was dropped).
    pub fn last_bytes(&self, n: usize) -> Vec<u8> {
        let mut all = if self.is_complete() {
            self.head.clone()
        } else {
            Vec::new()
        };
        all.extend_from_slice(&self.tail);
        let start = all.len().saturating_sub(n);
        all.split_off(start)
    }

    pub fn total_bytes(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.dropped_bytes
    }

    /// What was kept, each piece at its place in the stream.
    pub fn view(&self) -> OutputView<'_> {
        capture_view(&self.head, self.dropped_bytes, (&self.tail, &[]))
    }
}

/// A task's stdout and stderr, readable while it runs.
#[derive(Clone)]
pub struct OutputStreams {
    pub stdout: CappedOutput,
    pub stderr: CappedOutput,
}

impl OutputStreams {
    /// Two streams of at most `cap_bytes` kept bytes each.
    pub fn new(cap_bytes: usize) -> OutputStreams {
        OutputStreams {
            stdout: CappedOutput::new(cap_bytes),
            stderr: CappedOutput::new(cap_bytes),
        }
    }
}

impl CappedOutput {
    pub fn new(cap_bytes: usize) -> CappedOutput {
        let head_max = cap_bytes / 2;
        let capture = Capture {
            head: Vec::new(),
            head_max,
            tail: VecDeque::new(),
            tail_max: cap_bytes - head_max,
            dropped_bytes: 0,
        };
        CappedOutput {
            inner: Arc::new(Mutex::new(capture)),
        }
    }

    pub fn captured(&self) -> CapturedOutput {
        let c = self.lock();
        CapturedOutput {
            head: c.head.clone(),
            tail: c.tail.iter().copied().collect(),
            dropped_bytes: c.dropped_bytes,
        }
    }

    /// What is kept so far, as a reader asks for it ([`OutputView::select`]); at most
    /// `max` bytes are copied, under the lock the task's writes take.
    pub fn select(&self, from: Option<u64>, max: usize) -> OutputPart {
        let c = self.lock();
        capture_view(&c.head, c.dropped_bytes, c.tail.as_slices()).select(from, max)
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        // A poisoned lock only means a writer panicked mid-append; the bytes are still bytes.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, mut bytes: &[u8]) {
        let mut c = self.lock();
        let to_head = bytes.len().min(c.head_max - c.head.len());
        c.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() > c.tail_max {
            let skip = bytes.len() - c.tail_max;
            c.dropped_bytes += skip as u64;
            bytes = &bytes[skip..];
        }
        let overflow = (c.tail.len() + bytes.len()).saturating_sub(c.tail_max);
        c.tail.drain(..overflow);
        c.dropped_bytes += overflow as u64;
        c.tail.extend(bytes);
    }
}

/// A capture in the stream: the head at 0, then `dropped` bytes, then the tail (in two
/// slices, as a ring buffer holds it).
fn capture_view<'a>(head: &'a [u8], dropped: u64, tail: (&'a [u8], &'a [u8])) -> OutputView<'a> {
    let tail_at = head.len() as u64 + dropped;
    let (a, b) = tail;
    OutputView {
        pieces: vec![(0, head), (tail_at, a), (tail_at + a.len() as u64, b)],
        end: tail_at + (a.len() + b.len()) as u64,
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_cap() {
        let out = CappedOutput::new(16);
        out.append(b"hello ");
        out.append(b"world");
        let got = out.captured();
        assert!(got.is_complete());
        assert_eq!(got.last_bytes(100), b"hello world");
        assert_eq!(got.total_bytes(), 11);
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_middle() {
        let out = CappedOutput::new(8);
        for chunk in [&b"abcdef"[..], b"ghijkl", b"mnopqrstuvwxyz"] {
            out.append(chunk);
        }
        let got = out.captured();
        assert_eq!(got.head, b"abcd");
        assert_eq!(got.tail, b"wxyz");
        assert_eq!(got.dropped_bytes, 26 - 8);
        assert_eq!(got.total_bytes(), 26);
        assert_eq!(got.last_bytes(3), b"xyz");
    }

    #[test]
    fn a_part_places_head_and_tail_around_what_was_dropped() {
        let out = CappedOutput::new(8);
        out.append(b"abcdefghijklmnopqrstuvwxyz");
        let part = out.select(None, 100);
        assert_eq!(part.end, 26);
        assert_eq!(part.pieces[0].offset, 0);
        assert_eq!(part.pieces[0].bytes, b"abcd");
        assert_eq!(part.pieces[1].offset, 22);
        assert_eq!(part.pieces[1].bytes, b"wxyz");
        assert_eq!(part.dropped_since(0), 18);
        let short = out.select(Some(2), 3);
        assert_eq!(short.text_since(2), b"cd\n[... 18 bytes not kept ...]\nw");
        assert_eq!(short.end, 23, "the next read goes on after the w");
        out.append(b"!");
        assert_eq!(out.select(Some(part.end), 100).text_since(part.end), b"!");
    }
}
