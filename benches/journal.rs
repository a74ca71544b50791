//! Placeholder until the journal bench lands.
fn main() {}
