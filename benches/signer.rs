//! Placeholder until the signer bench lands.
fn main() {}
