//! Service discovery for tower.
//!
//! (Crate documentation is written as the modules land.)

pub mod balance;
pub mod client;
pub mod discover;
pub mod health;
pub mod outlier;
pub mod registry;
