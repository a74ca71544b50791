//! `leasehold serve --demo`: a small data set to try the server with (a product with two
//! tiers, a licensee, a 3-seat license whose seats are counted per hardware id, and a consumer
//! with an API key), and the curl commands that use it.
//!
//! Running `--demo` again on the same data directory keeps the license and adds a new consumer,
//! because an API key is shown only when it is created.

use leasehold_engine::model::{
    ConsumerKind, Credit, Dimension, Enforcement, Feature, LicenseModel, LicenseeKind, SessionAnchor, Tier,
};
use leasehold_engine::{AdminError, Engine, LicenseId, NewConsumer, NewLicense, NewLicensee, NewProduct};

/// The demo product.
pub const PRODUCT: &str = "ThreeDee";
/// Seats of the demo license.
pub const SEATS: u64 = 3;

/// What `--demo` created.
pub struct Demo {
    /// The 3-seat license.
    pub license: LicenseId,
    /// The demo consumer's API key.
    pub api_key: String,
}

fn product() -> NewProduct {
    let feature = |name: &str| Feature { name: name.into(), display_only: false };
    NewProduct {
        name: PRODUCT.into(),
        features: vec![feature("render"), feature("simulate")],
        tiers: vec![
            Tier { name: "Basic".into(), features: vec!["render".into()], ..Tier::default() },
            Tier {
                name: "Pro".into(),
                includes: Some("Basic".into()),
                features: vec!["simulate".into()],
                ..Tier::default()
            },
        ],
    }
}

/// Seeds the demo data (or reuses the license of an earlier `--demo`).
pub async fn seed(engine: &Engine) -> Result<Demo, AdminError> {
    let existing = engine.directory().licenses().find(|l| *l.product_name == *PRODUCT).map(|l| (l.id, l.licensee));
    let (license, licensee) = match existing {
        Some(found) => found,
        None => {
            let licensee = engine
                .create_licensee(NewLicensee {
                    name: "Demo Corp".into(),
                    kind: LicenseeKind::Organization,
                    external_id: None,
                })
                .await?;
            if engine.directory().product_named(PRODUCT).is_none() {
                engine.create_product(product()).await?;
            }
            let seats = Credit { dimension: Dimension::Seats, qty: SEATS, enforcement: Enforcement::Enforced };
            let mut new = NewLicense::new(licensee.id, PRODUCT, seats);
            new.tier = Some("Pro".into());
            new.model = LicenseModel { session_anchors: vec![SessionAnchor::Hw], ..LicenseModel::default() };
            new.properties.insert("edition".into(), "demo".into());
            (engine.create_license(new).await?.id, licensee.id)
        }
    };
    let consumer = NewConsumer {
        name: "demo-user".into(),
        kind: ConsumerKind::User,
        licensees: vec![licensee],
        email: None,
        external_id: None,
    };
    let (_, api_key) = engine.create_consumer(consumer).await?;
    Ok(Demo { license, api_key })
}

/// The commands to try the demo with, against `base` (`http://host:port`), ready to paste into a
/// shell: every header is in double quotes, so the admin token's variable expands.
pub fn instructions(demo: &Demo, base: &str, admin_secret: Option<&str>) -> String {
    let admin = admin_secret.unwrap_or("$LEASEHOLD_ADMIN_TOKEN");
    let key = &demo.api_key;
    let license = demo.license;
    let admin_note = if admin_secret.is_some() { "" } else { " (with the admin token in $LEASEHOLD_ADMIN_TOKEN)" };
    format!(
        "Demo data: license {license} ({PRODUCT} Pro, {SEATS} seats, one per hardware id)\n\
         Demo consumer API key: {key}\n\
         \n\
         Try it:\n\
         \x20 # take a seat on laptop-1 (JSON shows the claims; .jwt gives the signed token):\n\
         \x20 curl -s -H \"Authorization: Bearer {key}\" \"{base}/authz/.json?{PRODUCT}&hw=laptop-1\"; echo\n\
         \x20 curl -s -H \"Authorization: Bearer {key}\" \"{base}/authz/.jwt?render&hw=laptop-1\"; echo\n\
         \x20 # fill the other seats; the fourth hardware id is refused (maxConcurrentSessionsExceed):\n\
         \x20 for hw in laptop-2 laptop-3 laptop-4; do curl -s -H \"Authorization: Bearer {key}\" \"{base}/authz/.txt?{PRODUCT}&hw=$hw\"; echo; done\n\
         \x20 # release laptop-1's lease (a lease's id is the \"jti\" of its answer):\n\
         \x20 jti=$(curl -s -H \"Authorization: Bearer {key}\" \"{base}/authz/.json?{PRODUCT}&hw=laptop-1\" | sed -n 's/.*\"jti\":\"\\([^\"]*\\)\".*/\\1/p')\n\
         \x20 curl -s -H \"Authorization: Bearer {key}\" \"{base}/authz/.json?release&$jti\"; echo\n\
         \x20 # the license and its live leases, as an administrator{admin_note}:\n\
         \x20 curl -s -H \"Authorization: Bearer {admin}\" \"{base}/admin/licenses/{license}\"; echo\n\
         \x20 curl -s -H \"Authorization: Bearer {admin}\" \"{base}/admin/licenses/{license}/leases\"; echo\n"
    )
}
