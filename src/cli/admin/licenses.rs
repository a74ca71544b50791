//! `leasehold admin licenses ...`: licenses, their terms and lifecycle (create, update, revoke,
//! deactivate, delete), their live leases, named seats, offline tokens and the machines they
//! are locked to (`/admin/licenses`).
//!
//! Times are RFC 3339, or a date `YYYY-MM-DD` meaning that day's first instant (00:00:00 UTC).

use super::call::{column, encode, given, Call, Column};
use super::{parse, PageArgs};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Map, Value};

/// A listing's columns.
const COLUMNS: &[Column] = &[
    column("ID", "/id"),
    column("PRODUCT", "/product"),
    column("TIER", "/tier"),
    column("STATUS", "/status"),
    column("DIMENSION", "/credit/dimension"),
    column("QTY", "/credit/qty"),
    column("VALID_UNTIL", "/valid_until"),
    column("LICENSEE", "/licensee"),
];

/// The columns of a license's live leases.
const LEASE_COLUMNS: &[Column] = &[
    column("ID", "/id"),
    column("CONSUMER", "/consumer"),
    column("HW", "/hw"),
    column("MODE", "/mode"),
    column("EXPIRES_AT", "/expires_at"),
];

/// The columns of the machines a license has seen.
const MACHINE_COLUMNS: &[Column] = &[
    column("HW", "/hw"),
    column("LIVE_LEASES", "/live_leases"),
    column("FIRST_SEEN_AT", "/first_seen_at"),
    column("LAST_SEEN_AT", "/last_seen_at"),
];

/// Whether a license's credit refuses once spent, or only counts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Enforcement {
    /// Refused once spent.
    #[value(name = "ENFORCED")]
    Enforced,
    /// Counted, never refused.
    #[value(name = "METERED")]
    Metered,
}

impl Enforcement {
    fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforced => "ENFORCED",
            Enforcement::Metered => "METERED",
        }
    }
}

/// A license's status, to filter a listing on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Status {
    /// In force.
    Active,
    /// Suspended until reactivated.
    Deactivated,
    /// Ended for good.
    Revoked,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Deactivated => "deactivated",
            Status::Revoked => "revoked",
        }
    }
}

/// The verbs on licenses.
#[derive(Debug, Subcommand)]
pub enum Licenses {
    /// Create a license.
    Create(NewLicense),
    /// List licenses.
    List {
        /// Only this licensee's licenses.
        #[arg(long, value_name = "ID")]
        licensee: Option<String>,
        /// Only licenses of this product.
        #[arg(long, value_name = "NAME")]
        product: Option<String>,
        /// Only licenses with this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one license with its usage.
    Get {
        /// The license's id.
        id: String,
    },
    /// Change a license's terms; live leases keep theirs until they renew.
    Update {
        /// The license's id.
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// List a license's live leases.
    Leases {
        /// The license's id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a license for good.
    Revoke {
        /// The license's id.
        id: String,
        /// Why, as recorded and told to clients.
        #[arg(long)]
        reason: String,
    },
    /// Suspend a license (reactivate undoes it).
    Deactivate {
        /// The license's id.
        id: String,
    },
    /// Lift a deactivation.
    Reactivate {
        /// The license's id.
        id: String,
    },
    /// Assign a named seat to a consumer.
    Assign {
        /// The license's id.
        id: String,
        /// The consumer's id.
        #[arg(long, value_name = "ID")]
        consumer: String,
    },
    /// Take a named seat from a consumer.
    Unassign {
        /// The license's id.
        id: String,
        /// The consumer's id.
        #[arg(long, value_name = "ID")]
        consumer: String,
    },
    /// Issue an offline token for a consumer (a lease, as a client's checkout would).
    OfflineToken {
        /// The license's id.
        id: String,
        /// The consumer's id.
        #[arg(long, value_name = "ID")]
        consumer: String,
        /// The machine's hardware id (one is generated when absent).
        #[arg(long, value_name = "HW")]
        hw: Option<String>,
        /// The client version.
        #[arg(long)]
        version: Option<String>,
        /// How long the lease lasts, in seconds (at most the license's offline lease time).
        #[arg(long, value_name = "SECONDS")]
        duration_s: Option<u64>,
    },
    /// List the machines (hardware ids) a node-locked license has seen.
    Machines {
        /// The license's id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Release a machine's leases and free its slot, so the license can move to another.
    FreeMachine {
        /// The license's id.
        id: String,
        /// The machine's hardware id.
        hw: String,
    },
    /// Delete a license (refused while it has live leases, unless --force).
    Delete {
        /// The license's id.
        id: String,
        /// Release its live leases and delete it anyway.
        #[arg(long)]
        force: bool,
    },
}

/// What a license is of, its credit and its model: what `licenses create` and a batch of
/// activation codes take.
#[derive(Debug, Args)]
pub struct Terms {
    /// The product's name.
    #[arg(long, value_name = "NAME")]
    product: String,
    /// The product's tier.
    #[arg(long)]
    tier: Option<String>,
    #[command(flatten)]
    credit: Credit,
    /// Count use beyond the credit instead of refusing it (METERED).
    #[arg(long, requires = "credit")]
    metered: bool,
    /// A license model field, as max_hardware=1 or 'session_anchors=["hw"]' (repeat for several).
    #[arg(long = "model", value_name = "KEY=JSON", value_parser = parse::model_field)]
    model: Vec<(String, Value)>,
    /// The license model as a JSON file (each field optional; --model fields win over it).
    #[arg(long, value_name = "FILE", value_parser = parse::json_file)]
    model_file: Option<Value>,
}

impl Terms {
    /// The request's fields these terms fill.
    pub fn fields(self) -> [(&'static str, Option<Value>); 4] {
        let enforcement = if self.metered { Enforcement::Metered } else { Enforcement::Enforced };
        let credit = self.credit.dimension_and_qty().map(|(dimension, qty)| {
            given([
                ("dimension", Some(dimension.into())),
                ("qty", Some(qty.into())),
                ("enforcement", Some(enforcement.as_str().into())),
            ])
        });
        let mut model = match self.model_file {
            Some(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        model.extend(self.model);
        [
            ("product", Some(self.product.into())),
            ("tier", self.tier.map(Value::from)),
            ("credit", credit),
            ("model", (!model.is_empty()).then_some(Value::Object(model))),
        ]
    }
}

/// What `licenses create` takes.
#[derive(Debug, Args)]
pub struct NewLicense {
    /// The licensee's id.
    #[arg(long, value_name = "ID")]
    licensee: String,
    #[command(flatten)]
    terms: Terms,
    /// Valid from (RFC 3339 or YYYY-MM-DD) [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    valid_from: Option<String>,
    /// Valid until (RFC 3339 or YYYY-MM-DD), or `never` [default: never].
    #[arg(long, value_name = "TIME", value_parser = parse::until)]
    valid_until: Option<Value>,
    /// Generate a license key (shown in the answer).
    #[arg(long)]
    license_key: bool,
    /// A property put in tokens, as lang=en (repeat for several).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse::property)]
    properties: Vec<(String, String)>,
    /// The entitlement it joins (one of the licensee's).
    #[arg(long, value_name = "ID")]
    entitlement: Option<String>,
}

/// A new license's credit: one dimension and its quantity.
#[derive(Debug, Args)]
#[group(id = "credit", multiple = false)]
pub struct Credit {
    /// Concurrent seats (SEATS).
    #[arg(long, value_name = "N")]
    seats: Option<u64>,
    /// Uses (USE_COUNT).
    #[arg(long, value_name = "N")]
    uses: Option<u64>,
    /// Seconds of use (USE_TIME).
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
}

/// The terms `update` may change; at least one.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Changes {
    /// The credit's quantity (seats, uses or seconds; the dimension cannot change).
    #[arg(long, visible_alias = "seats", value_name = "N")]
    qty: Option<u64>,
    /// Whether the credit refuses once spent (ENFORCED) or only counts (METERED).
    #[arg(long, value_enum, ignore_case = true)]
    enforcement: Option<Enforcement>,
    /// Valid from (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    valid_from: Option<String>,
    /// Valid until (RFC 3339 or YYYY-MM-DD), or `never` for a perpetual license.
    #[arg(long, value_name = "TIME", value_parser = parse::until)]
    valid_until: Option<Value>,
    /// Move the license to another tier of its product.
    #[arg(long)]
    tier: Option<String>,
    /// A property put in tokens, as lang=en (repeat for several; they replace all the current ones).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse::property)]
    properties: Vec<(String, String)>,
    /// A license model field to change, as max_hardware=1 or 'session_anchors=["hw"]' (repeat for several).
    #[arg(long = "model", value_name = "KEY=JSON", value_parser = parse::model_field)]
    model: Vec<(String, Value)>,
    /// A feature this license gets on top of its tier (repeat for several).
    #[arg(long = "add-feature", value_name = "NAME")]
    add_features: Vec<String>,
    /// A feature of its tier this license does not get (repeat for several).
    #[arg(long = "remove-feature", value_name = "NAME")]
    remove_features: Vec<String>,
    /// The entitlement it moves to (one of its licensee's), or `none` to take it out of its own.
    #[arg(long, value_name = "ID", value_parser = parse::id_or_none)]
    entitlement: Option<Value>,
}

impl Licenses {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Licenses::Create(license) => Call::post("/admin/licenses".into(), license.body()),
            Licenses::List { licensee, product, status, page } => Call::get("/admin/licenses".into())
                .with_query("licensee", licensee)
                .with_query("product", product)
                .with_query("status", status.map(Status::as_str))
                .listing(&page, COLUMNS),
            Licenses::Get { id } => Call::get(path(&id, "")),
            Licenses::Update { id, changes } => Call::patch(path(&id, ""), changes.body()),
            Licenses::Leases { id, page } => Call::get(path(&id, "/leases")).listing(&page, LEASE_COLUMNS),
            Licenses::Revoke { id, reason } => {
                Call::post(path(&id, "/revoke"), given([("reason", Some(reason.into()))]))
            }
            Licenses::Deactivate { id } => Call::new(Method::POST, path(&id, "/deactivate")),
            Licenses::Reactivate { id } => Call::new(Method::POST, path(&id, "/reactivate")),
            Licenses::Assign { id, consumer } => {
                Call::post(path(&id, "/assignments"), given([("consumer", Some(consumer.into()))]))
            }
            Licenses::Unassign { id, consumer } => {
                Call::delete(path(&id, &format!("/assignments/{}", encode(&consumer))))
            }
            Licenses::OfflineToken { id, consumer, hw, version, duration_s } => Call::post(
                path(&id, "/offline-token"),
                given([
                    ("consumer", Some(consumer.into())),
                    ("hw", hw.map(Value::from)),
                    ("version", version.map(Value::from)),
                    ("duration_s", duration_s.map(Value::from)),
                ]),
            ),
            Licenses::Machines { id, page } => Call::get(path(&id, "/machines")).listing(&page, MACHINE_COLUMNS),
            Licenses::FreeMachine { id, hw } => Call::delete(path(&id, &format!("/machines/{}", encode(&hw)))),
            Licenses::Delete { id, force } => Call::delete(path(&id, "")).with_query("force", force.then_some(true)),
        }
    }
}

impl NewLicense {
    fn body(self) -> Value {
        given(self.terms.fields().into_iter().chain([
            ("licensee", Some(self.licensee.into())),
            ("valid_from", self.valid_from.map(Value::from)),
            ("valid_until", self.valid_until),
            ("license_key", self.license_key.then_some(Value::Bool(true))),
            ("properties", properties(self.properties)),
            ("entitlement", self.entitlement.map(Value::from)),
        ]))
    }
}

impl Credit {
    fn dimension_and_qty(&self) -> Option<(&'static str, u64)> {
        match (self.seats, self.uses, self.seconds) {
            (Some(qty), _, _) => Some(("SEATS", qty)),
            (_, Some(qty), _) => Some(("USE_COUNT", qty)),
            (_, _, Some(qty)) => Some(("USE_TIME", qty)),
            _ => None,
        }
    }
}

impl Changes {
    fn body(self) -> Value {
        let credit =
            given([("qty", self.qty.map(Value::from)), ("enforcement", self.enforcement.map(|e| e.as_str().into()))]);
        let features = given([("add", non_empty(self.add_features)), ("remove", non_empty(self.remove_features))]);
        let model: Map<String, Value> = self.model.into_iter().collect();
        given([
            ("credit", non_empty_object(credit)),
            ("valid_from", self.valid_from.map(Value::from)),
            ("valid_until", self.valid_until),
            ("tier", self.tier.map(Value::from)),
            ("properties", properties(self.properties)),
            ("model", non_empty_object(Value::Object(model))),
            ("features", non_empty_object(features)),
            ("entitlement", self.entitlement),
        ])
    }
}

/// `properties` as an object, when there are any.
fn properties(properties: Vec<(String, String)>) -> Option<Value> {
    non_empty_object(Value::Object(properties.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

fn non_empty(names: Vec<String>) -> Option<Value> {
    (!names.is_empty()).then(|| names.into())
}

fn non_empty_object(object: Value) -> Option<Value> {
    object.as_object().is_some_and(|fields| !fields.is_empty()).then_some(object)
}

/// The path of license `id`, then `rest`.
fn path(id: &str, rest: &str) -> String {
    format!("/admin/licenses/{}{rest}", encode(id))
}
