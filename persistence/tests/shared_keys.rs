//! The cluster's signing keys in the JetStream bucket `lh-keys`, on a real 3-server NATS
//! cluster: nodes that start together agree on one ring, a rotation on any node reaches every
//! other, rotations at once both land, and a damaged ring is refused.

mod common;

use common::nats::Cluster;
use leasehold_engine::time::Timestamp;
use leasehold_engine::tokens::{Algorithm, KeyRing, SigningKey, Verifier};
use leasehold_persistence::shared_keys::{SharedKeys, SharedKeysError, KEYS_BUCKET};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIFETIME_S: u64 = 3_600;

fn now() -> Timestamp {
    use leasehold_engine::time::{Clock as _, SystemClock};
    SystemClock.now()
}

async fn node(cluster: &Cluster, seed: Algorithm) -> Result<SharedKeys, SharedKeysError> {
    let client = cluster.client().await;
    let seed = move || SigningKey::generate(seed).map(KeyRing::new).map_err(|e| e.to_string());
    SharedKeys::open(client, tokio::runtime::Handle::current(), 3, LIFETIME_S, seed).await
}

async fn rotate(keys: &Arc<SharedKeys>, alg: Algorithm) -> String {
    let keys = Arc::clone(keys);
    tokio::task::spawn_blocking(move || keys.rotate(alg, now())).await.expect("the rotation ran").expect("rotated")
}

/// Waits until `keys` signs with `kid`.
async fn until_current(keys: &SharedKeys, kid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys.ring().current().kid() != kid {
        assert!(Instant::now() < deadline, "the ring never took {kid}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kids(keys: &SharedKeys) -> Vec<String> {
    keys.ring().jwks(now()).keys.into_iter().filter_map(|k| k.kid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_ring_and_every_rotation_reaches_every_node() {
    let cluster = Cluster::start();
    // Two nodes start at once on an empty bucket, each with a key of its own to seed it.
    let (a, b) = tokio::join!(node(&cluster, Algorithm::ES256), node(&cluster, Algorithm::EdDSA));
    let (a, b) = (Arc::new(a.expect("node a")), Arc::new(b.expect("node b")));
    let seeded = a.ring().current().kid().to_owned();
    assert_eq!(b.ring().current().kid(), seeded, "both nodes sign with the one key that seeded the bucket");
    let late = node(&cluster, Algorithm::RS256).await.expect("a node joining later");
    assert_eq!(late.ring().current().kid(), seeded, "a node joining later takes the cluster's ring, not its own");

    // A token from one node verifies against another node's keys.
    let mut claims = leasehold_engine::claims::Claims::new();
    claims.insert("exp".into(), serde_json::json!(now().as_secs() + 600));
    let token = b.ring().sign(&claims).expect("signed");
    let verifier = Verifier::from_jwks(&a.ring().jwks(now())).expect("a JWKS");
    verifier.verify(&token, now()).expect("node b's token verifies with node a's keys");

    // A rotation on one node reaches the others; the retired key stays published everywhere.
    let rotated = rotate(&b, Algorithm::ES256).await;
    assert_eq!(b.ring().current().kid(), rotated);
    until_current(&a, &rotated).await;
    until_current(&late, &rotated).await;
    assert_eq!(kids(&a), vec![rotated.clone(), seeded.clone()]);
    assert_eq!(kids(&late), kids(&a));
    let verifier = Verifier::from_jwks(&late.ring().jwks(now())).expect("a JWKS");
    verifier.verify(&token, now()).expect("a token of the retired key still verifies");

    // Two rotations at once on two nodes: both land, one after the other.
    let (first, second) = tokio::join!(rotate(&a, Algorithm::ES256), rotate(&b, Algorithm::ES256));
    let deadline = Instant::now() + Duration::from_secs(10);
    while kids(&a) != kids(&b) || kids(&a) != kids(&late) {
        assert!(
            Instant::now() < deadline,
            "the nodes never agreed: {:?} / {:?} / {:?}",
            kids(&a),
            kids(&b),
            kids(&late)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let agreed = kids(&a);
    assert!([&first, &second].contains(&&agreed[0]), "one of the two rotations signs now: {agreed:?}");
    for kid in [&first, &second, &rotated, &seeded] {
        assert!(agreed.contains(kid), "{kid} is missing from {agreed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_ring_is_refused_and_the_nodes_keep_theirs() {
    let cluster = Cluster::start();
    let a = node(&cluster, Algorithm::ES256).await.expect("node a");
    let kid = a.ring().current().kid().to_owned();
    let js = async_nats::jetstream::new(cluster.client().await);
    let bucket = js.get_key_value(KEYS_BUCKET).await.expect("the bucket");
    bucket.put("ring", "not a ring".into()).await.expect("written");
    match node(&cluster, Algorithm::ES256).await {
        Err(SharedKeysError::Damaged(_)) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a damaged ring was taken"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.ring().current().kid(), kid, "a node keeps signing with the ring it had");
}
