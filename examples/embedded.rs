//! Hosting the engine in-process: a 3-seat license, three consumers take the seats, a fourth is
//! refused, one releases, and the fourth is then granted.
//!
//! Run with `cargo run --example embedded`.

use leasehold::{
    ConsumeRequest, ConsumerKind, Credit, Decision, Dimension, Enforcement, Engine, LicenseeKind, NewConsumer,
    NewLicense, NewLicensee, NewProduct, ReleaseRequest,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().build()?;

    let acme = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await?;
    engine.create_product(NewProduct { name: "ThreeDee".into(), features: vec![], tiers: vec![] }).await?;
    let seats = Credit { dimension: Dimension::Seats, qty: 3, enforcement: Enforcement::Enforced };
    let license = engine.create_license(NewLicense::new(acme.id, "ThreeDee", seats)).await?;
    println!("license {} for {}: {} seats", license.id, acme.name, license.credit.qty);

    let mut consumers = Vec::new();
    for name in ["ada", "brian", "chen", "dana"] {
        let new = NewConsumer {
            name: name.into(),
            kind: ConsumerKind::User,
            licensees: vec![acme.id],
            email: None,
            external_id: None,
        };
        let (consumer, _api_key) = engine.create_consumer(new).await?;
        consumers.push(consumer);
    }

    let mut leases = Vec::new();
    for consumer in &consumers {
        match engine.consume(ConsumeRequest::new(consumer.id, "ThreeDee")).await? {
            Decision::Granted(grant) => {
                println!(
                    "{:>6}: granted lease {} until {}s",
                    consumer.name,
                    grant.lease.id,
                    grant.lease.expires_at.as_secs()
                );
                leases.push((consumer, grant.lease.id));
            }
            Decision::Denied(denial) => println!("{:>6}: refused, {denial}", consumer.name),
        }
    }

    let (first, lease_id) = leases[0];
    engine.release(ReleaseRequest::new(first.id, lease_id)).await?;
    println!("{:>6}: released lease {lease_id}", first.name);

    let fourth = &consumers[3];
    match engine.consume(ConsumeRequest::new(fourth.id, "ThreeDee")).await? {
        Decision::Granted(grant) => println!("{:>6}: granted lease {} after the release", fourth.name, grant.lease.id),
        Decision::Denied(denial) => println!("{:>6}: still refused, {denial}", fourth.name),
    }
    let usage = engine.usage(license.id).await?;
    println!("usage: {} of {} seats in use", usage.seats_in_use, license.credit.qty);
    Ok(())
}
