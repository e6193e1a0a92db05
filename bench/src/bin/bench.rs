//! `make bench`: prints the figures table.
fn main() {
    println!("bench: not implemented yet");
}
