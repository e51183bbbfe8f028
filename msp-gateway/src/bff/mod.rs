//! Backends for frontends: aggregate endpoints and per-client shaping.
//! Being built: see issue 12.
