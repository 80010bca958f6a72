fn main() {
    println!("retrace {}", env!("CARGO_PKG_VERSION"));
}
