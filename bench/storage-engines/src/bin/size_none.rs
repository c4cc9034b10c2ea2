//! Baseline for the binary-size comparison: writes and reads a file.
fn main() {
    let p = std::env::temp_dir().join("size-none");
    std::fs::write(&p, b"v").unwrap();
    println!("{:?}", std::fs::read(&p).unwrap());
}
