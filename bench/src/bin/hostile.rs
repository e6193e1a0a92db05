//! `make hostile`: prints the reliability table.
fn main() {
    println!("hostile: not implemented yet");
}
