//! Helpers shared by the replication integration tests that inject network faults.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub(crate) mod proxy;
