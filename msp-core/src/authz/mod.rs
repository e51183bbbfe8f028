//! Authorization policies over peer identities, addresses and requests
//! (feature `tls`). Being built: see issue 13.
