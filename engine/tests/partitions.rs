//! Lease ids carry their license's partition (SPEC section 14): a renewal or a release can be
//! routed to the node that owns the license from the lease id alone.

mod common;

use common::{engine_on, seat_license};
use leasehold_engine::journal::MemoryJournal;
use leasehold_engine::{ConsumeRequest, Decision, ManualClock, RenewRequest, Timestamp};
use std::sync::Arc;

#[tokio::test]
async fn leases_granted_and_renewed_carry_their_licenses_partition() {
    let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
    let engine = engine_on(Arc::new(MemoryJournal::new()), clock);
    for n in 0..20 {
        let product = format!("product-{n}");
        let (license, consumer) = seat_license(&engine, &product, 2).await;
        let request = ConsumeRequest::new(consumer, product.as_str()).on_hardware("hw-1");
        let Ok(Decision::Granted(grant)) = engine.consume(request).await else { panic!("no lease on {license}") };
        let renewed = engine.renew(RenewRequest::new(consumer, grant.lease.id)).await;
        let Ok(Decision::Granted(renewed)) = renewed else { panic!("no renewal on {license}: {renewed:?}") };
        for partitions in [1, 7, 64, 4_096] {
            assert_eq!(grant.lease.id.partition(partitions), license.partition(partitions));
            assert_eq!(renewed.lease.id.partition(partitions), license.partition(partitions));
        }
    }
}
