//! Self-service sign-up through the real engine (SPEC section 13), on a manual clock: a
//! set-password token works once and not after it expires; a claim needs a password set first,
//! is made once and answered again; addresses are one account whatever their case.

use leasehold_engine::engine::SET_PASSWORD_TTL_S;
use leasehold_engine::journal::MemoryJournal;
use leasehold_engine::model::Tier;
use leasehold_engine::time::Timestamp;
use leasehold_engine::{AdminError, Engine, ManualClock, NewProduct};
use std::sync::Arc;

#[test]
fn set_password_tokens_work_once_until_they_expire_and_claims_are_made_once() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
        let journal = Arc::new(MemoryJournal::new());
        let engine =
            Engine::builder().journal(journal).clock(Arc::clone(&clock) as _).workers(1).build().expect("an engine");
        let tier = Tier { name: "Solo".into(), max_users: Some(3), ..Tier::default() };
        let product = NewProduct { name: "Studio".into(), features: Vec::new(), tiers: vec![tier] };
        engine.create_product(product).await.expect("a product");

        // A token left a day unused no longer works.
        let (_, late) = engine.register("Ada@Home.example", "Studio", "Solo").await.expect("registered");
        clock.advance_secs(SET_PASSWORD_TTL_S);
        assert!(matches!(engine.set_password(&late, "h1".into()).await, Err(AdminError::Expired(_))));

        // A fresh one works, once; the address is one account whatever its case.
        let (_, token) = engine.register("ada@home.EXAMPLE", "Studio", "Solo").await.expect("registered");
        let account = engine.set_password(&token, "h2".into()).await.expect("a password");
        assert_eq!(account.email, "ada@home.example");
        assert!(matches!(engine.set_password(&token, "h3".into()).await, Err(AdminError::Conflict(_))));
        assert!(matches!(engine.set_password("lhs_unknown", "h3".into()).await, Err(AdminError::NotFound(_))));

        // The claim makes the tier's license once; asking again answers it again.
        let first = engine.claim_license(account.consumer).await.expect("a claim");
        assert!(first.created);
        assert_eq!(first.license.credit.qty, 3);
        assert!(first.license.license_key.is_some());
        let again = engine.claim_license(account.consumer).await.expect("the same claim");
        assert!(!again.created);
        assert_eq!(again.license.id, first.license.id);

        // A registration whose token was not used yet is no claim; once used, it is a second one.
        let (_, second) = engine.register("ada@home.example", "Studio", "Solo").await.expect("registered");
        assert_eq!(engine.claim_license(account.consumer).await.expect("the first again").license.id, first.license.id);
        let reset = engine.set_password(&second, "h4".into()).await.expect("a new password");
        assert_eq!((reset.consumer, reset.password_hash.as_str()), (account.consumer, "h4"));
        let other = engine.claim_license(account.consumer).await.expect("a second claim");
        assert!(other.created && other.license.id != first.license.id);

        // Registering needs a product and tier that exist.
        assert!(matches!(engine.register("b@home.example", "Studio", "Gold").await, Err(AdminError::Invalid(_))));
        assert!(matches!(engine.register("b@home.example", "Nothing", "Solo").await, Err(AdminError::Invalid(_))));
        assert!(matches!(engine.register("not an address", "Studio", "Solo").await, Err(AdminError::Invalid(_))));
    });
}
