//! Lease ids carry their license's partition (SPEC section 14): a renewal or a release can be
//! routed to the node that owns the license from the lease id alone.

use leasehold_engine::journal::{Journal, MemoryJournal};
use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind};
use leasehold_engine::{
    ConsumeRequest, Decision, Engine, NewConsumer, NewLicense, NewLicensee, NewProduct, RenewRequest,
};
use std::sync::Arc;

#[tokio::test]
async fn leases_granted_and_renewed_carry_their_licenses_partition() {
    let journal = Arc::new(MemoryJournal::new()) as Arc<dyn Journal>;
    let engine = Engine::builder().journal(journal).workers(1).build().unwrap_or_else(|e| panic!("engine: {e}"));
    let licensee = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await
        .unwrap_or_else(|e| panic!("licensee: {e}"));
    let new_consumer = NewConsumer {
        name: "builder".into(),
        kind: ConsumerKind::User,
        licensees: vec![licensee.id],
        email: None,
        external_id: None,
    };
    let (consumer, _key) = engine.create_consumer(new_consumer).await.unwrap_or_else(|e| panic!("consumer: {e}"));
    let product = NewProduct { name: "ThreeDee".into(), features: vec![], tiers: vec![] };
    engine.create_product(product).await.unwrap_or_else(|e| panic!("product: {e}"));
    let credit = Credit { dimension: Dimension::Seats, qty: 100, enforcement: Enforcement::Enforced };
    let mut licenses = Vec::new();
    for _ in 0..20 {
        let license = engine.create_license(NewLicense::new(licensee.id, "ThreeDee", credit)).await;
        licenses.push(license.unwrap_or_else(|e| panic!("license: {e}")).id);
    }
    for license in licenses {
        let mut request = ConsumeRequest::new(consumer.id, "ThreeDee");
        request.filters.license = Some(license);
        let Ok(Decision::Granted(grant)) = engine.consume(request).await else { panic!("no lease on {license}") };
        let renewed = engine.renew(RenewRequest::new(consumer.id, grant.lease.id)).await;
        let Ok(Decision::Granted(renewed)) = renewed else { panic!("no renewal on {license}: {renewed:?}") };
        for partitions in [1, 7, 64, 4_096] {
            assert_eq!(grant.lease.id.partition(partitions), license.partition(partitions));
            assert_eq!(renewed.lease.id.partition(partitions), license.partition(partitions));
        }
    }
}
