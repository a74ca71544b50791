//! The hash maps of the hot path use foldhash instead of std's SipHash: a checkout hashes ids
//! in half a dozen maps. Keys are ids the server made, or client input that is only looked up,
//! never inserted by a client, and the seed is random per process, so the faster hasher gives up
//! no flooding resistance that matters here.

/// A `HashMap` with the fast hasher.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `DashMap` with the fast hasher.
pub type ConcurrentMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;
