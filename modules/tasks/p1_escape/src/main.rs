//! Tries to leave its sandbox: `..`, absolute paths, a symlink it creates and a symlink
//! planted in the sandbox (`planted`, if the host put one there). Prints one line per
//! attempt: `ESCAPED <what>` if it read or wrote outside, `denied <what>` otherwise.
//! Exits 0 either way; the host checks the lines and the host filesystem.
use std::fs;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    /// WASI p1 `path_symlink(old_path, fd, new_path) -> errno`.
    fn path_symlink(
        old_ptr: *const u8,
        old_len: usize,
        fd: u32,
        new_ptr: *const u8,
        new_len: usize,
    ) -> u16;
}

/// The first preopened directory (the sandbox) is fd 3.
const SANDBOX_FD: u32 = 3;

fn symlink(target: &str, link: &str) -> bool {
    // SAFETY: both pointers and lengths come from live `&str`s.
    unsafe {
        path_symlink(
            target.as_ptr(),
            target.len(),
            SANDBOX_FD,
            link.as_ptr(),
            link.len(),
        ) == 0
    }
}

fn attempt(what: &str, escaped: bool) {
    println!("{} {what}", if escaped { "ESCAPED" } else { "denied" });
}

fn main() {
    for path in [
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "/../etc/passwd",
        "./../etc/hostname",
        "/proc/self/environ",
    ] {
        let read = fs::read(path).is_ok_and(|b| !b.is_empty());
        attempt(&format!("read {path}"), read);
    }
    for path in [
        "../escape.txt",
        "/../escape.txt",
        "../../tmp/wasmos-escape.txt",
    ] {
        attempt(&format!("write {path}"), fs::write(path, "escaped").is_ok());
    }
    let linked = symlink("../../../../../../../../etc", "mylink");
    let through = linked && fs::read("mylink/passwd").is_ok_and(|b| !b.is_empty());
    attempt("read through a symlink it made", through);
    let planted = fs::read("planted/passwd").is_ok_and(|b| !b.is_empty())
        || fs::read_dir("planted").is_ok_and(|mut d| d.next().is_some());
    attempt("read through the planted symlink", planted);
    let planted_write = fs::write("planted/wasmos-escape.txt", "escaped").is_ok();
    attempt("write through the planted symlink", planted_write);
    println!("escape attempts done");
}
