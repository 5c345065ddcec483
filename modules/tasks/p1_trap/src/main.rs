//! Executes `unreachable`.
fn main() {
    println!("about to trap");
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
}
