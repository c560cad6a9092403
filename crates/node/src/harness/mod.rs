//! What every protocol's commands do alike, generic over the protocol's plug.

pub mod daemon;
pub mod demo;
pub mod figure;
pub mod flags;
pub mod loss_bench;
pub mod provision;
pub mod report;
