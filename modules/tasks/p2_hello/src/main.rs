//! Prints `hello from p2` and its arguments; exits 0.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("hello from p2");
    println!("args: {}", args.join(" "));
}
