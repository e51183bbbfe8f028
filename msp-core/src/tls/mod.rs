//! Mutual TLS between services with SPIFFE workload identities (feature
//! `tls`). Being built: see issue 13.
