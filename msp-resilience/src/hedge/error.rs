//! Error types of the [`Hedge`](super::Hedge) middleware.

pub use super::config::HedgeConfigError;
