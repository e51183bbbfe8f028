//! msp-gateway: the API gateway (crate docs in progress).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod auth;
pub mod config;
pub mod gateway;
pub mod proxy;
pub mod route;
pub mod upstream;

pub use crate::gateway::{Body, BuildError, Gateway};
