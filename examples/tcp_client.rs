//! A client of the binary TCP protocol: checks out a lease, verifies its token against the
//! server's JWKS, heartbeats it twice and releases it.
//!
//! Against the demo server:
//!
//! ```text
//! cargo run --release -- serve --demo --data-dir /tmp/leasehold-demo
//! # it prints "TCP listening on 127.0.0.1:7070" and "Demo consumer API key: lh_..."; then:
//! cargo run --release --example tcp_client -- lh_... [127.0.0.1:7070] [ThreeDee] [laptop-1]
//! ```
//!
//! Arguments: the consumer API key (or set `LEASEHOLD_API_KEY`), then optionally the server's TCP
//! address, the item and the hardware id. The demo license has 3 seats, one per hardware id: run
//! it with four different hardware ids at once and the fourth is refused.

use leasehold::client::{Auth, Client, Consume, Release, Renew};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let api_key = match args.next().or_else(|| std::env::var("LEASEHOLD_API_KEY").ok()) {
        Some(key) => key,
        None => {
            eprintln!("usage: tcp_client <consumer API key> [address] [item] [hardware id]");
            std::process::exit(2);
        }
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7070".into());
    let item = args.next().unwrap_or_else(|| "ThreeDee".into());
    let hw = args.next().unwrap_or_else(|| "laptop-1".into());

    let client = Client::connect(addr.as_str(), Auth::ApiKey(api_key)).await?;
    println!("connected to {addr} as consumer {:?}", client.authenticated().and_then(|a| a.consumer));

    let grant = match client.consume(Consume::new(item.as_str()).hw(hw.as_str())).await? {
        Ok(grant) => grant,
        Err(denied) => {
            println!("{item} on {hw} refused: {} ({})", denied.code, denied.message);
            return Ok(());
        }
    };
    let claims = client.verify(grant.token.as_deref().unwrap_or_default()).await?;
    println!(
        "checked out lease {} of license {} until {} (token verified: {claims:?})",
        grant.lease_id, grant.license, grant.expires_at_s
    );

    let mut lease = grant.lease_id;
    for beat in 1..=2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match client.renew(Renew::new(lease)).await? {
            Ok(renewed) => {
                println!(
                    "heartbeat {beat}: lease {} replaces {lease}, until {}",
                    renewed.lease_id, renewed.expires_at_s
                );
                lease = renewed.lease_id;
            }
            Err(denied) => println!("heartbeat {beat} refused: {} ({})", denied.code, denied.message),
        }
    }

    match client.release(Release::new(lease)).await? {
        Ok(released) => {
            println!("released lease {}; {:?} left on the credit", released.lease_id, released.remaining_qty)
        }
        Err(denied) => println!("release refused: {} ({})", denied.code, denied.message),
    }
    Ok(())
}
