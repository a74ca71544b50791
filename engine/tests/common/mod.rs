//! Shared by the engine's tests that drive a whole engine on a journal and a manual clock: the
//! engine, and a seat license of a fresh licensee with a consumer of it, a seat per hardware id
//! and leases of a minute.

use leasehold_engine::ids::{ConsumerId, LicenseId};
use leasehold_engine::journal::Journal;
use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind, SessionAnchor};
use leasehold_engine::{Engine, ManualClock, NewConsumer, NewLicense, NewLicensee, NewProduct};
use std::sync::Arc;

/// An engine on one worker, recording to `journal`, on `clock`.
pub fn engine_on(journal: Arc<dyn Journal>, clock: Arc<ManualClock>) -> Engine {
    Engine::builder().journal(journal).clock(clock).workers(1).build().expect("an engine")
}

/// A license of `seats` enforced seats on product `product` (created here), one seat per
/// hardware id, leases of 60 s; the license and a consumer that may use it.
pub async fn seat_license(engine: &Engine, product: &str, seats: u64) -> (LicenseId, ConsumerId) {
    let licensee = NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None };
    let licensee = engine.create_licensee(licensee).await.expect("a licensee");
    let consumer = NewConsumer {
        name: "cad".into(),
        kind: ConsumerKind::Device,
        licensees: vec![licensee.id],
        email: None,
        external_id: None,
    };
    let (consumer, _) = engine.create_consumer(consumer).await.expect("a consumer");
    engine
        .create_product(NewProduct { name: product.into(), features: vec![], tiers: vec![] })
        .await
        .expect("a product");
    let credit = Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced };
    let mut new = NewLicense::new(licensee.id, product, credit);
    new.model.session_anchors = vec![SessionAnchor::Hw];
    new.model.lease_time_online_s = 60;
    (engine.create_license(new).await.expect("a license").id, consumer.id)
}
