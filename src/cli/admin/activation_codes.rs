//! `leasehold admin activation-codes ...`: batches of activation codes (product keys) made from a
//! license template (`/admin/activation-codes`).

use super::call::{column, encode, given, Call, Column};
use super::licenses::Terms;
use super::{parse, PageArgs};
use clap::Subcommand;
use serde_json::Value;

/// A listing's columns.
const COLUMNS: &[Column] = &[
    column("BATCH", "/batch"),
    column("PRODUCT", "/product"),
    column("TIER", "/tier"),
    column("ISSUED", "/issued"),
    column("REDEEMED", "/redeemed"),
    column("EXPIRES_AT", "/expires_at"),
];

const CODES_NOTE: &str = "The codes are shown only now: hand them to the reseller or shop that sells them.";

/// The verbs on batches of activation codes.
#[derive(Debug, Subcommand)]
pub enum ActivationCodes {
    /// Make a batch of codes; each redemption makes a license of these terms for the redeemer's
    /// licensee. The codes are shown once.
    Create {
        #[command(flatten)]
        terms: Box<Terms>,
        /// How many codes (1 to 10000).
        #[arg(long)]
        count: u32,
        /// How many consumers may redeem each code [default: 1].
        #[arg(long, value_name = "N")]
        uses_per_code: Option<u32>,
        /// Each license lasts this many seconds from its redemption [default: perpetual].
        #[arg(long, value_name = "SECONDS")]
        license_duration_s: Option<u64>,
        /// Every license of the batch ends then at the latest (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME", value_parser = parse::time)]
        valid_until: Option<String>,
        /// No code can be redeemed after this (RFC 3339 or YYYY-MM-DD) [default: never].
        #[arg(long, value_name = "TIME", value_parser = parse::time)]
        expires_at: Option<String>,
    },
    /// List the batches (never their codes).
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a batch: its terms and how many codes were redeemed.
    Get {
        /// The batch's id.
        batch: String,
    },
}

impl ActivationCodes {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            ActivationCodes::Create { terms, count, uses_per_code, license_duration_s, valid_until, expires_at } => {
                let body = given(terms.fields().into_iter().chain([
                    ("count", Some(count.into())),
                    ("uses_per_code", uses_per_code.map(Value::from)),
                    ("license_duration_s", license_duration_s.map(Value::from)),
                    ("valid_until", valid_until.map(Value::from)),
                    ("expires_at", expires_at.map(Value::from)),
                ]));
                Call::post("/admin/activation-codes".into(), body).with_note(CODES_NOTE)
            }
            ActivationCodes::List { page } => Call::get("/admin/activation-codes".into()).listing(&page, COLUMNS),
            ActivationCodes::Get { batch } => Call::get(format!("/admin/activation-codes/{}", encode(&batch))),
        }
    }
}
