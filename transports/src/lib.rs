//! # leasehold-transports
//!
//! Leasehold's wire: turns bytes into engine calls and engine answers into bytes. The engine
//! decides, `leasehold-persistence` remembers; this crate only speaks.
//!
//! The path of an Enterprise checkout over HTTP:
//!
//! 1. [`http::serve`] accepts a connection and hands it to one of the engine's worker threads
//!    ([`leasehold_engine::Engine::workers`]), where hyper reads requests off it; a request
//!    crosses to another thread only to reach its license's actor (and the signer pool).
//! 2. [`http::routes`] picks the handler by path: `/authz/` ([`http::authz`]), `/admin/...`
//!    ([`http::admin`]) or `/healthz`.
//! 3. [`http::authz::query`] parses the 10Duke query grammar into `ConsumeRequest`s; the engine
//!    decides each; the claims are signed and written as JWT, JSON or text.
//!
//! The binary protocol ([`tcp`]) takes the same path without the text: [`tcp::serve`] places
//! each connection on a worker, [`tcp::frame`] cuts frames, [`tcp::messages`] decodes bincode
//! requests and [`tcp::operations`] asks the engine and signs the answer.

pub mod client_address;
pub mod geoip;
pub mod http;
pub mod identity;
pub mod listener;
pub mod mail;
pub mod tcp;
pub mod tls;
pub mod webhooks;
