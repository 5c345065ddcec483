//! Prints `hello from p1`, its arguments and `$GREETING`, then writes `hello.txt` in its
//! sandbox and reads it back.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("hello from p1");
    println!("args: {}", args.join(" "));
    println!("GREETING={}", std::env::var("GREETING").unwrap_or_default());
    std::fs::write("hello.txt", "written by p1_hello").expect("write in the sandbox");
    let back = std::fs::read_to_string("hello.txt").expect("read back");
    println!("file: {back}");
}
