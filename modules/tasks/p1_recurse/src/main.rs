//! Recurses without bound until the wasm call stack is exhausted. Only scalars are passed,
//! so the frames live on the wasm stack (not Rust's shadow stack in linear memory).
#[allow(unconditional_recursion, reason = "the point of this module")]
fn depth(n: u64) -> u64 {
    std::hint::black_box(depth(std::hint::black_box(n + 1))).wrapping_add(n)
}

fn main() {
    println!("recursing");
    println!("{}", depth(0));
}
