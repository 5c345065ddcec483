//! Calls the p1 socket functions on descriptor 99 (not open) and on 1 (stdout, not a
//! socket), both raw and through wasi-libc's `shutdown`, and prints each errno as
//! `<call> <fd>: <errno>`. Exits 0.

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "sock_shutdown"]
    fn wasi_sock_shutdown(fd: i32, how: i32) -> i32;
    #[link_name = "sock_accept"]
    fn wasi_sock_accept(fd: i32, flags: i32, fd_out: *mut i32) -> i32;
}

// wasi-libc, which Rust's std links on wasm32-wasip1.
unsafe extern "C" {
    fn shutdown(fd: i32, how: i32) -> i32;
    fn __errno_location() -> *mut i32;
}

/// wasi-libc's `SHUT_RDWR`.
const SHUT_RDWR: i32 = 3;
/// Repeated calls, to show that they stay quiet and cheap.
const REPEATS: usize = 1000;

fn libc_shutdown(fd: i32) -> (i32, i32) {
    // SAFETY: plain libc calls; errno is read right after the failing call.
    unsafe {
        *__errno_location() = 0;
        let ret = shutdown(fd, SHUT_RDWR);
        (ret, *__errno_location())
    }
}

fn main() {
    for fd in [99, 1] {
        // SAFETY: the import takes two integers.
        let errno = unsafe { wasi_sock_shutdown(fd, 3) };
        println!("sock_shutdown {fd}: {errno}");
        let mut out = -1;
        // SAFETY: `out` is a valid place for the accepted descriptor.
        let errno = unsafe { wasi_sock_accept(fd, 0, &mut out) };
        println!("sock_accept {fd}: {errno}");
        let (ret, errno) = libc_shutdown(fd);
        println!("shutdown {fd}: {ret} errno {errno}");
    }
    for _ in 0..REPEATS {
        // SAFETY: as above.
        unsafe { wasi_sock_shutdown(99, 3) };
    }
    println!("done");
}
