//! The `coebench` command line.

fn main() {
    println!("coebench {}", env!("CARGO_PKG_VERSION"));
}
