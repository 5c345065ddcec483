//! Writes a line and exits with code 3 (`proc_exit`).
fn main() {
    println!("about to exit with 3");
    std::process::exit(3);
}
