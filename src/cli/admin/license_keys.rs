//! `leasehold admin license-keys ...`: the platform's license keys (`/license-keys`): issue a key
//! to a customer, audit its key token, issue a fresh one, revoke it.

use super::call::{encode, given, Call};
use super::parse;
use clap::Subcommand;
use serde_json::{json, Value};

const KEY_NOTE: &str = "Hand the keyToken to the customer: their application activates it.";

/// The verbs on license keys.
#[derive(Debug, Subcommand)]
pub enum LicenseKeys {
    /// Issue a license key of a product's tier to a customer (their person licensee is found by
    /// the address, or made); prints the license and its key token.
    Issue {
        /// The product's name.
        #[arg(long)]
        product: String,
        /// The tier.
        #[arg(long)]
        tier: String,
        /// The customer's e-mail address.
        #[arg(long)]
        customer: String,
        /// The license ends then (RFC 3339 or YYYY-MM-DD) [default: perpetual].
        #[arg(long, value_name = "TIME", value_parser = parse::time)]
        valid_until: Option<String>,
    },
    /// Compare the key token last issued with the license now, and list the activated machines.
    Audit {
        /// The license's id.
        license: String,
    },
    /// Issue a fresh key token from the license as it is now.
    Regenerate {
        /// The license's id.
        license: String,
    },
    /// Revoke the key's license: its next validation, activation or heartbeat is refused.
    Revoke {
        /// The license's id.
        license: String,
        /// Why (recorded in the license's status and its event).
        #[arg(long)]
        reason: Option<String>,
    },
}

impl LicenseKeys {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            LicenseKeys::Issue { product, tier, customer, valid_until } => {
                let body = given([
                    ("product", Some(product.into())),
                    ("tier", Some(tier.into())),
                    ("customer", Some(customer.into())),
                    ("validUntil", valid_until.map(Value::from)),
                ]);
                Call::post("/license-keys".into(), body).with_note(KEY_NOTE)
            }
            LicenseKeys::Audit { license } => {
                Call::post(format!("/license-keys/{}/audit", encode(&license)), json!({}))
            }
            LicenseKeys::Regenerate { license } => {
                Call::post(format!("/license-keys/{}/regenerate", encode(&license)), json!({})).with_note(KEY_NOTE)
            }
            LicenseKeys::Revoke { license, reason } => Call::post(
                format!("/license-keys/{}/revoke", encode(&license)),
                given([("reason", reason.map(Value::from))]),
            ),
        }
    }
}
