//! `leasehold admin products ...`: what is sold, its features and tiers (`/admin/products`).
//! A product is defined by flags (`--feature`, `--tier 'Pro:render,simulate'`) or, for what
//! the flags cannot say (a tier that includes another, prices), by a JSON file.

use super::call::{column, encode, given, Call, Column};
use super::{parse, PageArgs};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

/// A listing's columns.
const COLUMNS: &[Column] =
    &[column("NAME", "/name"), column("FEATURES", "/features"), column("TIERS", "/tiers"), column("ID", "/id")];

/// The verbs on products.
#[derive(Debug, Subcommand)]
pub enum Products {
    /// Create a product.
    Create {
        /// Its name (also an item name clients may ask for).
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        name: Option<String>,
        #[command(flatten)]
        definition: Definition,
    },
    /// List products.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one product.
    Get {
        /// The product's name.
        name: String,
    },
    /// Add features and add or replace tiers; a changed tier reaches its licenses' next tokens.
    #[command(group(ArgGroup::new("changes").required(true).multiple(true)
        .args(["features", "display_only_features", "tiers", "file"])))]
    Update {
        /// The product's name.
        name: String,
        #[command(flatten)]
        definition: Definition,
    },
}

/// Features and tiers given by flags, or the whole body as a file.
#[derive(Debug, Args)]
pub struct Definition {
    /// A feature (repeat for several).
    #[arg(long = "feature", value_name = "NAME")]
    features: Vec<String>,
    /// A feature listed for marketing but never put in a token (repeat for several).
    #[arg(long = "display-only-feature", value_name = "NAME")]
    display_only_features: Vec<String>,
    /// A tier and its features, as 'Pro:render,simulate' (repeat for several).
    #[arg(long = "tier", value_name = "NAME:FEATURES", value_parser = parse::tier)]
    tiers: Vec<Value>,
    /// The request body as a JSON file instead of the flags (SPEC section 9's shape).
    #[arg(long, value_name = "FILE", value_parser = parse::json_file,
          conflicts_with_all = ["features", "display_only_features", "tiers"])]
    file: Option<Value>,
}

impl Products {
    /// The request this verb stands for.
    pub fn call(self) -> Call {
        match self {
            Products::Create { name, definition } => Call::post("/admin/products".into(), definition.body(name)),
            Products::List { page } => Call::get("/admin/products".into()).listing(&page, COLUMNS),
            Products::Get { name } => Call::get(path(&name)),
            Products::Update { name, definition } => Call::patch(path(&name), definition.body(None)),
        }
    }
}

impl Definition {
    /// The body: the file's, or the product `name` (when given) with the flags' features and
    /// tiers.
    fn body(self, name: Option<String>) -> Value {
        if let Some(file) = self.file {
            return file;
        }
        let feature = |display_only: bool| move |name: String| json!({"name": name, "display_only": display_only});
        let features: Vec<Value> = (self.features.into_iter().map(feature(false)))
            .chain(self.display_only_features.into_iter().map(feature(true)))
            .collect();
        given([
            ("name", name.map(Value::from)),
            ("features", (!features.is_empty()).then(|| features.into())),
            ("tiers", (!self.tiers.is_empty()).then(|| self.tiers.into())),
        ])
    }
}

fn path(name: &str) -> String {
    format!("/admin/products/{}", encode(name))
}
