//! The top level of a WebAssembly binary, read just far enough to find the signature
//! section: the preamble, then each section's id and size, and a custom section's name.
//! Nothing inside other sections is read; wasmtime validates them when it compiles.

use std::ops::Range;

use crate::SIGNED_MODULE_BYTES_MAX;

/// The name of the custom section that holds the signature.
pub const SIGNATURE_SECTION_NAME: &str = "wasmos-signature";
/// The signature section's format version byte.
const FORMAT_VERSION: u8 = 1;
/// Version byte, public key, signature.
const PAYLOAD_BYTES: usize = 1 + 32 + 64;
/// Contents of the signature section: the name's length byte, the name, the payload.
const CONTENT_BYTES: usize = 1 + SIGNATURE_SECTION_NAME.len() + PAYLOAD_BYTES;
/// The whole signature section as written: id, size byte, contents.
pub const SIGNATURE_SECTION_BYTES: usize = 2 + CONTENT_BYTES;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Magic and version (a core module's or a component's; both are read the same way).
const PREAMBLE_BYTES: usize = 8;
const CUSTOM_SECTION_ID: u8 = 0;
/// A LEB128 u32 takes at most 5 bytes.
const LEB128_U32_BYTES_MAX: usize = 5;

// The encoding below writes every number as one LEB128 byte.
const _: () = assert!(CONTENT_BYTES < 0x80 && SIGNATURE_SECTION_NAME.len() < 0x80);

/// Why a module's structure cannot carry (or does not carry properly) a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it is {size_bytes} bytes, over the {SIGNED_MODULE_BYTES_MAX} byte limit")]
    TooLarge { size_bytes: usize },
    #[error(
        "it is not a WebAssembly binary (no \\0asm header; WAT text must be compiled to .wasm \
         to be signed)"
    )]
    NotWasm,
    #[error("a section runs past the end of the module (truncated?)")]
    Truncated,
    #[error("a section's size or a custom section's name length is not a LEB128 u32")]
    BadLeb128,
    #[error("a custom section's name runs past the end of its section")]
    BadCustomName,
    #[error("a section follows the signature section, which must be the last")]
    SignatureNotLast,
    #[error("it has two signature sections")]
    TwoSignatures,
    #[error("its signature section is not in the encoding `wasmos module sign` writes")]
    NonCanonical,
    #[error("its signature section has format version {0}, not 1")]
    UnknownVersion(u8),
}

/// What a signature section says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignaturePayload {
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

/// Where the signed bytes end, and the signature if there is one.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The module's bytes before the signature section (all of them when unsigned).
    pub unsigned_len: usize,
    pub signature: Option<SignaturePayload>,
}

/// One top-level section: its id and where it lies.
struct Section {
    id: u8,
    /// From the id byte to the end of the contents.
    whole: Range<usize>,
    contents: Range<usize>,
}

/// Reads the top level of `module`. The walk takes at least two bytes per section, so it
/// is bounded by the module's size, itself bounded by [`SIGNED_MODULE_BYTES_MAX`].
pub(crate) fn layout(module: &[u8]) -> Result<Layout, Malformed> {
    if module.len() > SIGNED_MODULE_BYTES_MAX {
        return Err(Malformed::TooLarge {
            size_bytes: module.len(),
        });
    }
    if module.len() < PREAMBLE_BYTES || !module.starts_with(WASM_MAGIC) {
        return Err(Malformed::NotWasm);
    }
    let mut signature: Option<Section> = None;
    let mut pos = PREAMBLE_BYTES;
    while pos < module.len() {
        let section = read_section(module, pos)?;
        let is_signature = is_signature_section(module, &section)?;
        if signature.is_some() {
            return Err(match is_signature {
                true => Malformed::TwoSignatures,
                false => Malformed::SignatureNotLast,
            });
        }
        pos = section.whole.end;
        if is_signature {
            signature = Some(section);
        }
    }
    match signature {
        None => Ok(Layout {
            unsigned_len: module.len(),
            signature: None,
        }),
        Some(section) => Ok(Layout {
            unsigned_len: section.whole.start,
            signature: Some(payload(&module[section.whole])?),
        }),
    }
}

fn read_section(module: &[u8], start: usize) -> Result<Section, Malformed> {
    let id = module[start];
    let (size, size_len) = read_leb128_u32(module, start + 1)?;
    let contents_start = start + 1 + size_len;
    let contents_end = usize::try_from(size)
        .ok()
        .and_then(|size| contents_start.checked_add(size))
        .filter(|end| *end <= module.len())
        .ok_or(Malformed::Truncated)?;
    Ok(Section {
        id,
        whole: start..contents_end,
        contents: contents_start..contents_end,
    })
}

fn is_signature_section(module: &[u8], section: &Section) -> Result<bool, Malformed> {
    if section.id != CUSTOM_SECTION_ID {
        return Ok(false);
    }
    let contents = &module[section.contents.clone()];
    let (name_len, len_bytes) = read_leb128_u32(contents, 0).map_err(|e| match e {
        Malformed::Truncated => Malformed::BadCustomName,
        other => other,
    })?;
    let name = usize::try_from(name_len)
        .ok()
        .and_then(|len| contents.get(len_bytes..len_bytes.checked_add(len)?))
        .ok_or(Malformed::BadCustomName)?;
    Ok(name == SIGNATURE_SECTION_NAME.as_bytes())
}

/// The payload of a whole signature section, which must be exactly what [`encode`] writes.
fn payload(whole: &[u8]) -> Result<SignaturePayload, Malformed> {
    let header_len = SIGNATURE_SECTION_BYTES - PAYLOAD_BYTES;
    if whole.len() != SIGNATURE_SECTION_BYTES {
        return Err(Malformed::NonCanonical);
    }
    let (header, body) = whole.split_at(header_len);
    if header != section_header() {
        return Err(Malformed::NonCanonical);
    }
    if body[0] != FORMAT_VERSION {
        return Err(Malformed::UnknownVersion(body[0]));
    }
    let mut public_key = [0; 32];
    public_key.copy_from_slice(&body[1..33]);
    let mut signature = [0; 64];
    signature.copy_from_slice(&body[33..PAYLOAD_BYTES]);
    Ok(SignaturePayload {
        public_key,
        signature,
    })
}

/// Id, size, name length and name: the bytes before the payload.
fn section_header() -> Vec<u8> {
    let mut header = vec![
        CUSTOM_SECTION_ID,
        CONTENT_BYTES as u8,
        SIGNATURE_SECTION_NAME.len() as u8,
    ];
    header.extend_from_slice(SIGNATURE_SECTION_NAME.as_bytes());
    header
}

/// The whole signature section for `payload`.
pub(crate) fn encode(payload: &SignaturePayload) -> Vec<u8> {
    let mut section = section_header();
    section.push(FORMAT_VERSION);
    section.extend_from_slice(&payload.public_key);
    section.extend_from_slice(&payload.signature);
    debug_assert_eq!(section.len(), SIGNATURE_SECTION_BYTES);
    section
}

/// An unsigned LEB128 u32 at `pos`, and how many bytes it took.
fn read_leb128_u32(bytes: &[u8], pos: usize) -> Result<(u32, usize), Malformed> {
    let mut value: u32 = 0;
    for i in 0..LEB128_U32_BYTES_MAX {
        let byte = *bytes.get(pos + i).ok_or(Malformed::Truncated)?;
        // The fifth byte holds the top 4 bits and no continuation.
        if i == LEB128_U32_BYTES_MAX - 1 && byte > 0x0f {
            return Err(Malformed::BadLeb128);
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(Malformed::BadLeb128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reads_u32_and_refuses_overflow() {
        assert_eq!(read_leb128_u32(&[0x72], 0), Ok((0x72, 1)));
        assert_eq!(read_leb128_u32(&[0xe5, 0x8e, 0x26], 0), Ok((624_485, 3)));
        assert_eq!(
            read_leb128_u32(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0),
            Ok((u32::MAX, 5))
        );
        assert_eq!(
            read_leb128_u32(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0),
            Err(Malformed::BadLeb128)
        );
        assert_eq!(read_leb128_u32(&[0x80, 0x80], 0), Err(Malformed::Truncated));
    }

    #[test]
    fn the_section_is_116_bytes_and_reads_back() {
        let payload = SignaturePayload {
            public_key: [7; 32],
            signature: [9; 64],
        };
        let section = encode(&payload);
        assert_eq!(section.len(), 116);
        assert_eq!(&section[..3], &[0, 114, 16]);
        assert_eq!(super::payload(&section), Ok(payload));
    }
}
