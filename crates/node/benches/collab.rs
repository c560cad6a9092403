//! Placeholder until the node crate's collab bench lands.
fn main() {}
