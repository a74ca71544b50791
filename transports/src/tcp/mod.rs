//! The binary TCP protocol (SPEC section 6, byte layout in `docs/PROTOCOL.md`): length-prefixed
//! frames with a version and a request id, bincode payloads, authentication first, pipelined
//! requests answered in any order.
//!
//! [`frame`] cuts the byte stream into frames; [`messages`] says what their payloads mean;
//! [`serve`] owns sockets and connections (limits, timeouts, shutdown); [`operations`] turns a
//! request into engine calls and the engine's answer into a response with a signed token;
//! [`client`] is the Rust client.

pub mod client;
pub mod frame;
pub mod messages;
pub mod operations;
mod server;

pub use client::{Auth, Client, ClientConfig, ClientError};
pub use operations::TcpState;
pub use server::{serve, TcpConfig};
