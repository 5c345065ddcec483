//! Reading the files a command is given (modules, job files, configurations), bounded.

use std::io::{self, Read};
use std::path::Path;

/// The file's bytes; over `max` bytes it is an error (`FileTooLarge`), found without
/// reading more than `max + 1` of them, so that a device that never ends (`/dev/zero`)
/// or a huge file cannot fill memory. Its size is not asked first: a device has none.
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("over the limit of {max} bytes"),
        ));
    }
    Ok(bytes)
}
