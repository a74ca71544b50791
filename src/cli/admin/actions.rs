//! `leasehold admin leases|tokens|keys ...`: the admin actions that are not a license's own: a
//! forced release (`/admin/leases`), the audit and regeneration of a signed token
//! (`/admin/tokens`), and the rotation of the signing key (`/admin/keys`).

use super::call::{encode, given, Call};
use clap::{Subcommand, ValueEnum};

/// The verbs on leases.
#[derive(Debug, Subcommand)]
pub enum Leases {
    /// Release a live lease now, whatever its client does.
    Release {
        /// The lease's id.
        lease_id: String,
    },
}

impl Leases {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Leases::Release { lease_id } => Call::delete(format!("/admin/leases/{}", encode(&lease_id))),
        }
    }
}

/// The verbs on tokens.
#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// Compare a token's claims with what the license says today.
    Audit {
        /// The token (a signed JWT).
        #[arg(long)]
        token: String,
    },
    /// Issue the token again with today's claims.
    Regenerate {
        /// The token (a signed JWT).
        #[arg(long)]
        token: String,
    },
}

impl Tokens {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        let (path, token) = match self {
            Tokens::Audit { token } => ("/admin/tokens/audit", token),
            Tokens::Regenerate { token } => ("/admin/tokens/regenerate", token),
        };
        Call::post(path.into(), given([("token", Some(token.into()))]))
    }
}

/// A signing algorithm.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Algorithm {
    /// RSA, 2048 bits: what every client verifies.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA on P-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

/// The verbs on signing keys.
#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Sign with a new key from now on; the old public keys stay published until their tokens expire.
    Rotate {
        /// The new key's algorithm [default: the current key's].
        #[arg(long, value_enum, ignore_case = true)]
        alg: Option<Algorithm>,
    },
}

impl Keys {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Keys::Rotate { alg } => {
                Call::post("/admin/keys/rotate".into(), given([("alg", alg.map(|a| a.as_str().into()))]))
            }
        }
    }
}
