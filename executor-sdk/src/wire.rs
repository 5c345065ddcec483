//! How messages cross the module boundary: postcard bytes read in place (no copies, no
//! heap) and calls written straight into the output buffer.

use core::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// Why a message could not cross the boundary. The runtime turns each into a negative
/// return code (see [`Error::code`] and the README's ABI section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input is not a postcard encoding of the expected message, or a collection in it
    /// is larger than the SDK's fixed capacity for it (see the `*_MAX` constants).
    Malformed,
    /// The input names a message kind (enum variant) this ABI version does not know.
    UnknownVariant,
    /// The input has bytes after the message.
    TrailingBytes,
    /// The output buffer ([`crate::OUTPUT_BYTES_MAX`]) cannot hold the calls written.
    OutputFull,
    /// An event arrived before the module was started.
    NotStarted,
    /// The module gave up on this call (for example an input over one of its own
    /// capacities): the host counts a failure (an allocator host runs its built-in policy).
    Failed,
}

impl Error {
    /// The ABI return code for this error (always negative).
    pub const fn code(self) -> i64 {
        match self {
            Error::Malformed => -1,
            Error::UnknownVariant => -2,
            Error::TrailingBytes => -3,
            Error::OutputFull => -4,
            Error::NotStarted => -5,
            Error::Failed => -6,
        }
    }
}

impl From<postcard::Error> for Error {
    fn from(_: postcard::Error) -> Error {
        Error::Malformed
    }
}

/// Decodes one `T` from the front of `input`, returning the rest.
pub fn take<'a, T: Deserialize<'a>>(input: &'a [u8]) -> Result<(T, &'a [u8]), Error> {
    Ok(postcard::take_from_bytes(input)?)
}

/// A message the SDK can take from the front of an input: serde types (see
/// [`decode_via_serde!`](crate::decode_via_serde)) and hand-written decoders of messages
/// that hold a [`Seq`].
pub trait Decode<'a>: Sized {
    fn take(input: &'a [u8]) -> Result<(Self, &'a [u8]), Error>;

    /// Checks one value at the front of `input` exactly as [`Decode::take`] would
    /// (encoding, UTF-8, the SDK's capacities) without building it; returns the rest.
    /// Large messages override it to walk the bytes instead of building values.
    fn skip(input: &'a [u8]) -> Result<&'a [u8], Error> {
        Ok(Self::take(input)?.1)
    }

    /// Passes over one value at the front of `input` that was already checked by
    /// [`Decode::skip`] (an element of a [`Seq`]): the same end, without checking UTF-8
    /// or capacities again. Large messages walked often override it.
    fn pass(input: &'a [u8]) -> Result<&'a [u8], Error> {
        Self::skip(input)
    }
}

/// Skips a postcard varint of at most 10 bytes (a `u64` or `usize`).
pub fn skip_varint(input: &[u8]) -> Result<&[u8], Error> {
    const VARINT_BYTES_MAX: usize = 10;
    let end = input
        .iter()
        .take(VARINT_BYTES_MAX)
        .position(|b| b & 0x80 == 0)
        .ok_or(Error::Malformed)?;
    Ok(&input[end + 1..])
}

/// Skips a string: a varint length, then that many bytes of UTF-8.
pub fn skip_str(input: &[u8]) -> Result<&[u8], Error> {
    let (len, rest) = take_varint(input)?;
    let len = usize::try_from(len).map_err(|_| Error::Malformed)?;
    let bytes = rest.get(..len).ok_or(Error::Malformed)?;
    // Ids, kinds and attributes are nearly always ASCII: the cheaper test first.
    if !bytes.is_ascii() {
        core::str::from_utf8(bytes).map_err(|_| Error::Malformed)?;
    }
    Ok(&rest[len..])
}

/// Skips a sequence of at most `max` elements (an SDK capacity), each skipped by `element`.
pub fn skip_seq<'a>(
    input: &'a [u8],
    max: usize,
    element: impl Fn(&'a [u8]) -> Result<&'a [u8], Error>,
) -> Result<&'a [u8], Error> {
    let (len, mut rest) = take_varint(input)?;
    if len > max as u64 {
        return Err(Error::Malformed);
    }
    for _ in 0..len {
        rest = element(rest)?;
    }
    Ok(rest)
}

/// Skips `n` raw bytes (an `f64` is 8).
pub fn skip_bytes(input: &[u8], n: usize) -> Result<&[u8], Error> {
    input.get(n..).ok_or(Error::Malformed)
}

/// Implements [`Decode`] with serde for types that derive `Deserialize`.
#[macro_export]
macro_rules! decode_via_serde {
    ($($ty:ty),* $(,)?) => {
        $(impl<'a> $crate::wire::Decode<'a> for $ty {
            fn take(input: &'a [u8]) -> Result<(Self, &'a [u8]), $crate::Error> {
                $crate::wire::take::<$ty>(input)
            }
        })*
    };
}

decode_via_serde!(&'a str, u64, f64, bool);

/// Most bytes of a postcard varint holding a `u64`.
const VARINT_BYTES_MAX: usize = 10;

/// Decodes a postcard varint (a `u64`, a `usize`, an enum variant index or a sequence
/// length), by hand: the hot path of every walk over a large input.
pub fn take_varint(input: &[u8]) -> Result<(u64, &[u8]), Error> {
    // Lengths, counts and variant indexes nearly always fit in one byte.
    if let Some((&byte, rest)) = input.split_first()
        && byte & 0x80 == 0
    {
        return Ok((u64::from(byte), rest));
    }
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(VARINT_BYTES_MAX) {
        // The tenth byte may only hold the top bit of a u64.
        if i == VARINT_BYTES_MAX - 1 && byte > 1 {
            return Err(Error::Malformed);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &input[i + 1..]));
        }
    }
    Err(Error::Malformed)
}

/// A postcard string's bytes, in place, without checking that they are UTF-8: for
/// comparing or passing over strings of an input already checked (a [`Seq`]'s elements
/// were checked when it was taken). Byte order is `str` order.
pub fn take_str_bytes(input: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let (len, rest) = take_varint(input)?;
    let len = usize::try_from(len).map_err(|_| Error::Malformed)?;
    let bytes = rest.get(..len).ok_or(Error::Malformed)?;
    Ok((bytes, &rest[len..]))
}

/// Decodes a postcard string (varint length, UTF-8 bytes) in place, by hand.
pub fn take_str(input: &[u8]) -> Result<(&str, &[u8]), Error> {
    let (len, rest) = take_varint(input)?;
    let len = usize::try_from(len).map_err(|_| Error::Malformed)?;
    let bytes = rest.get(..len).ok_or(Error::Malformed)?;
    let text = core::str::from_utf8(bytes).map_err(|_| Error::Malformed)?;
    Ok((text, &rest[len..]))
}

/// Fails unless the whole input was consumed.
pub fn finish(rest: &[u8]) -> Result<(), Error> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::TrailingBytes)
    }
}

/// A postcard sequence left encoded in the input buffer and decoded one element at a time,
/// so that a module can walk thousands of offers or agents without a heap and without
/// holding them all. Every element was checked to decode when the sequence was taken, so
/// iteration yields exactly [`Seq::len`] elements. (Checking walks the bytes without
/// building values: see [`Decode::skip`].)
pub struct Seq<'a, T> {
    bytes: &'a [u8],
    len: usize,
    _element: PhantomData<fn() -> T>,
}

impl<T> Clone for Seq<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Seq<'_, T> {}

impl<T> core::fmt::Debug for Seq<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Seq({} elements, {} bytes)", self.len, self.bytes.len())
    }
}

impl<'a, T: Decode<'a>> Seq<'a, T> {
    /// Takes a sequence (varint length, then the elements) from the front of `input`.
    pub fn take(input: &'a [u8]) -> Result<(Seq<'a, T>, &'a [u8]), Error> {
        let (len, start) = take_varint(input)?;
        let mut rest = start;
        for _ in 0..len {
            rest = T::skip(rest)?;
        }
        let used = start.len() - rest.len();
        let len = usize::try_from(len).map_err(|_| Error::Malformed)?;
        Ok((
            Seq {
                bytes: &start[..used],
                len,
                _element: PhantomData,
            },
            rest,
        ))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> SeqIter<'a, T> {
        SeqIter {
            rest: self.bytes,
            left: self.len,
            _element: PhantomData,
        }
    }

    /// The element at `index`, decoding the ones before it (O(index)); see [`Indexed`]
    /// for O(1) access.
    pub fn get(&self, index: usize) -> Option<T> {
        self.iter().nth(index)
    }

    /// An index of where each element starts, for O(1) access and binary search. Fails
    /// (`Malformed`) when the sequence has more than `N` elements.
    pub fn indexed<const N: usize>(&self) -> Result<Indexed<'a, T, N>, Error> {
        let mut starts = heapless::Vec::new();
        let mut rest = self.bytes;
        for _ in 0..self.len {
            let start = (self.bytes.len() - rest.len()) as u32;
            starts.push(start).map_err(|_| Error::Malformed)?;
            // Checked when the sequence was taken.
            rest = T::pass(rest)?;
        }
        Ok(Indexed {
            bytes: self.bytes,
            starts,
            _element: PhantomData,
        })
    }
}

/// A [`Seq`] with the start of each element known: O(1) [`Indexed::get`], and
/// [`Indexed::find_by_key`] for sequences sorted by a leading string (the encoding of a
/// `BTreeMap<String, _>`, which `proto` and the master use for agents and frameworks).
pub struct Indexed<'a, T, const N: usize> {
    bytes: &'a [u8],
    starts: heapless::Vec<u32, N>,
    _element: PhantomData<fn() -> T>,
}

impl<'a, T: Decode<'a>, const N: usize> Indexed<'a, T, N> {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The encoded bytes from element `index` to the end of the sequence, for reading
    /// parts of an element without decoding all of it.
    pub fn element_bytes(&self, index: usize) -> Option<&'a [u8]> {
        let start = *self.starts.get(index)? as usize;
        self.bytes.get(start..)
    }

    pub fn get(&self, index: usize) -> Option<T> {
        Some(T::take(self.element_bytes(index)?).ok()?.0)
    }

    /// The leading string (map key) of element `index`, decoding nothing else.
    pub fn key(&self, index: usize) -> Option<&'a str> {
        Some(take_str(self.element_bytes(index)?).ok()?.0)
    }

    /// Binary search by leading string, for sequences sorted by it. Compares bytes (the
    /// order of `str`), so the keys it passes are not checked for UTF-8 again.
    pub fn find_by_key(&self, key: &str) -> Option<usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let probe = take_str_bytes(self.element_bytes(mid)?).ok()?.0;
            match probe.cmp(key.as_bytes()) {
                core::cmp::Ordering::Less => low = mid + 1,
                core::cmp::Ordering::Greater => high = mid,
                core::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

impl<'a, T: Decode<'a>> IntoIterator for &Seq<'a, T> {
    type Item = T;
    type IntoIter = SeqIter<'a, T>;
    fn into_iter(self) -> SeqIter<'a, T> {
        self.iter()
    }
}

pub struct SeqIter<'a, T> {
    rest: &'a [u8],
    left: usize,
    _element: PhantomData<fn() -> T>,
}

impl<'a, T: Decode<'a>> Iterator for SeqIter<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        // Cannot fail: `Seq::take` checked every element already.
        let (item, rest) = T::take(self.rest).ok()?;
        self.rest = rest;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The output buffer: messages are postcard-encoded into it back to back. When one does
/// not fit, it is dropped and the buffer is marked full; the runtime then reports
/// [`Error::OutputFull`] instead of a truncated answer.
pub struct Output<'o> {
    buf: &'o mut [u8],
    len: usize,
    full: bool,
}

impl<'o> Output<'o> {
    pub fn new(buf: &'o mut [u8]) -> Output<'o> {
        Output {
            buf,
            len: 0,
            full: false,
        }
    }

    /// Appends one message; `Err(OutputFull)` (and the buffer marked full) when it does
    /// not fit.
    pub fn push<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<(), Error> {
        if self.full {
            return Err(Error::OutputFull);
        }
        match postcard::to_slice(message, &mut self.buf[self.len..]) {
            Ok(used) => {
                self.len += used.len();
                Ok(())
            }
            Err(_) => {
                self.full = true;
                Err(Error::OutputFull)
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.full
    }
}
