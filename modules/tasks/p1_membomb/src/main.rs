//! Allocates 1 MiB blocks, touching each and reporting every 8 MiB, until the allocator fails (which aborts).
fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = blocks.len() as u8;
        blocks.push(std::hint::black_box(block));
        if blocks.len() % 8 == 0 {
            println!("{} MiB", blocks.len());
        }
    }
}
