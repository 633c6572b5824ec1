//! Cross-crate tests of p2pchat: simulator scenarios, loopback and private-Tor end-to-end
//! tests live under `tests/tests/` as later issues add them.
#![forbid(unsafe_code)]
