//! Snapshots: restoring one gives exactly the state replaying the log gives, a damaged or
//! incomplete one falls back to the one before it, a version-1 one still restores, and the log
//! before the older kept snapshot is cut.

mod common;

use common::{
    append_all, append_together, encode_snapshot_v1, many_licenses_entries, replayed,
    without_fields_older_formats_lack, workload_entries,
};
use leasehold_engine::decide::LicenseEvent;
use leasehold_engine::journal::{Change, JournalEntry};
use leasehold_engine::replay::{Recovered, RecoveredSnapshot};
use leasehold_persistence::format::{
    decode_directory_part, decode_licenses_part, decode_snapshot_head, encode_directory_part, encode_licenses_part,
    partial_snapshot_file_name, seq_key, snapshot_file_name, snapshot_file_seq, SnapshotHead, LICENSES_PER_CHUNK,
    LOG_TREE, SNAPSHOT_DIR, SNAPSHOT_TREE,
};
use leasehold_persistence::{JournalConfig, SledJournal};
use std::path::Path;
use std::sync::Arc;

fn config() -> JournalConfig {
    JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() }
}

fn open(dir: &std::path::Path) -> (SledJournal, Recovered) {
    SledJournal::open(dir, config()).unwrap_or_else(|e| panic!("open: {e}"))
}

/// `state` through a snapshot's directory part and one license part, encoded and decoded.
fn through_parts(seq: u64, state: &Recovered) -> Recovered {
    let RecoveredSnapshot { directory, licenses } = state.to_snapshot();
    let directory = encode_directory_part(seq, &directory).unwrap_or_else(|e| panic!("encode: {e}"));
    let licenses = encode_licenses_part(seq, 1, &licenses).unwrap_or_else(|e| panic!("encode: {e}"));
    Recovered::from_snapshot(RecoveredSnapshot {
        directory: decode_directory_part(seq, &directory).unwrap_or_else(|e| panic!("decode: {e}")),
        licenses: decode_licenses_part(seq, 1, &licenses).unwrap_or_else(|e| panic!("decode: {e}")),
    })
}

/// Whether every license's state holds the very terms (the same allocation) the directory
/// does.
fn terms_shared(state: &Recovered) -> bool {
    state.licenses.iter().all(|(id, (license, _))| {
        state.directory.license(*id).is_some_and(|terms| Arc::ptr_eq(terms, license.license()))
    })
}

#[test]
fn a_snapshot_survives_encoding_and_restores_the_same_state() {
    let entries = workload_entries(7, 400);
    let state = Recovered::from_entries(&entries);
    let restored = through_parts(9, &state);
    assert_eq!(restored.to_snapshot(), state.to_snapshot());
    assert!(terms_shared(&restored), "the directory and the states hold separate copies of the terms");
}

#[test]
fn a_snapshot_at_any_point_plus_the_rest_of_the_log_equals_a_full_replay() {
    for seed in [1, 2, 3] {
        let entries = workload_entries(seed, 250);
        let kinds = |pred: fn(&LicenseEvent) -> bool| {
            entries.iter().filter(|e| matches!(&e.change, Change::License { event, .. } if pred(event))).count()
        };
        assert!(kinds(|e| matches!(e, LicenseEvent::LeaseIssued { replaces: Some(_), .. })) > 0, "no renewal");
        assert!(kinds(|e| matches!(e, LicenseEvent::LeaseReleased { .. })) > 0, "no release");
        assert!(kinds(|e| matches!(e, LicenseEvent::SeatAssigned(_))) > 0, "no seat assignment");
        let full = replayed(&entries);
        for cut in 0..=entries.len() {
            let mut restored = through_parts(cut as u64, &Recovered::from_entries(&entries[..cut]));
            for entry in &entries[cut..] {
                restored.apply(entry);
            }
            assert_eq!(restored.to_snapshot(), full, "seed {seed}: snapshot at {cut} + the rest differs from replay");
        }
    }
}

#[test]
fn a_snapshot_in_many_parts_restores_exactly_the_state_it_was_taken_from() {
    let entries = many_licenses_entries(2 * LICENSES_PER_CHUNK + 100);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_together(&journal, &entries);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(entries.len() as u64));
    }
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!(report.snapshot_seq, Some(entries.len() as u64));
    assert_eq!(report.replayed_entries, 0);
    // The directory, and three parts of licenses.
    assert_eq!(report.snapshot_parts, 4);
    assert!(report.snapshot_threads >= 1);
    let folded = Recovered::from_entries(&entries);
    assert_eq!(recovered.licenses.len(), 2 * LICENSES_PER_CHUNK + 100);
    assert_eq!(recovered.to_snapshot(), folded.to_snapshot());
    assert!(terms_shared(&recovered), "the directory and the states hold separate copies of the terms");
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let entries = workload_entries(11, 600);
    assert!(entries.len() > 300, "the workload should journal plenty: {}", entries.len());
    for cut in [1, entries.len() / 3, entries.len() / 2, entries.len() - 1, entries.len()] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        {
            let (journal, _) = open(dir.path());
            append_all(&journal, &entries[..cut]);
            assert_eq!(journal.snapshot_now().ok().flatten(), Some(cut as u64));
            append_all(&journal, &entries[cut..]);
        }
        let (journal, recovered) = open(dir.path());
        assert_eq!(journal.recovery_report().snapshot_seq, Some(cut as u64));
        assert_eq!(journal.recovery_report().replayed_entries, (entries.len() - cut) as u64);
        assert_eq!(recovered.to_snapshot(), replayed(&entries), "snapshot at {cut} + tail differs from replay");
    }
}

/// A journal in `dir` holding `entries`, with snapshots after the first third and two thirds of
/// them; their sequence numbers.
fn two_snapshots(dir: &Path, entries: &[JournalEntry]) -> (u64, u64) {
    let (a, b) = (entries.len() / 3, 2 * entries.len() / 3);
    let (journal, _) = open(dir);
    append_together(&journal, &entries[..a]);
    assert_eq!(journal.snapshot_now().ok().flatten(), Some(a as u64));
    append_together(&journal, &entries[a..b]);
    assert_eq!(journal.snapshot_now().ok().flatten(), Some(b as u64));
    append_together(&journal, &entries[b..]);
    (a as u64, b as u64)
}

/// Changes the snapshot tree of the sled database in `dir` with `change`.
fn tamper(dir: &Path, change: impl FnOnce(&sled::Tree)) {
    let db = leasehold_persistence::open_sled(dir).unwrap_or_else(|e| panic!("sled: {e}"));
    change(&db.open_tree(SNAPSHOT_TREE).unwrap_or_else(|e| panic!("tree: {e}")));
    db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
}

/// Where each part of the snapshot at `seq` in `dir` starts in its file, and how long it is.
fn part_extents(dir: &Path, seq: u64) -> Vec<(usize, usize)> {
    let db = leasehold_persistence::open_sled(dir).unwrap_or_else(|e| panic!("sled: {e}"));
    let snapshots = db.open_tree(SNAPSHOT_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
    let value = snapshots.get(seq_key(seq)).ok().flatten().unwrap_or_else(|| panic!("no manifest at {seq}"));
    let Ok(SnapshotHead::Manifest(manifest)) = decode_snapshot_head(seq, &value) else { panic!("not a manifest") };
    let mut offset = 0;
    manifest
        .part_lengths
        .iter()
        .map(|len| {
            let extent = (offset, *len as usize);
            offset += *len as usize;
            extent
        })
        .collect()
}

/// Changes the file of the snapshot at `seq` in `dir` with `change` (given its parts' extents).
fn tamper_file(dir: &Path, seq: u64, change: impl FnOnce(&mut Vec<u8>, &[(usize, usize)])) {
    let extents = part_extents(dir, seq);
    let path = dir.join(SNAPSHOT_DIR).join(snapshot_file_name(seq));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read: {e}"));
    change(&mut bytes, &extents);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write: {e}"));
}

/// Flips a bit in the middle of `bytes[from..from + len]`.
fn flip_a_bit(bytes: &mut [u8], (from, len): (usize, usize)) {
    bytes[from + len / 2] ^= 0x40;
}

/// The snapshots whose files (complete or not) are in `dir`, in order.
fn snapshot_files(dir: &Path) -> Vec<u64> {
    let entries = std::fs::read_dir(dir.join(SNAPSHOT_DIR)).unwrap_or_else(|e| panic!("read_dir: {e}"));
    let mut seqs: Vec<u64> =
        entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(snapshot_file_seq)).collect();
    seqs.sort_unstable();
    seqs
}

/// Damage done to the snapshot at a sequence number in a journal's directory.
type Damage = fn(&Path, u64);

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one() {
    let entries = many_licenses_entries(2 * LICENSES_PER_CHUNK);
    let damages: [(&str, Damage); 5] = [
        ("manifest", |dir, seq| {
            tamper(dir, |snapshots| {
                let mut value = snapshots.get(seq_key(seq)).ok().flatten().map(|v| v.to_vec()).unwrap_or_default();
                let whole = (0, value.len());
                flip_a_bit(&mut value, whole);
                snapshots.insert(seq_key(seq), value).unwrap_or_else(|e| panic!("insert: {e}"));
            })
        }),
        ("directory", |dir, seq| tamper_file(dir, seq, |bytes, extents| flip_a_bit(bytes, extents[0]))),
        ("licenses", |dir, seq| tamper_file(dir, seq, |bytes, extents| flip_a_bit(bytes, extents[2]))),
        ("a part cut off", |dir, seq| tamper_file(dir, seq, |bytes, extents| bytes.truncate(extents[2].0 + 1))),
        ("no file", |dir, seq| {
            std::fs::remove_file(dir.join(SNAPSHOT_DIR).join(snapshot_file_name(seq)))
                .unwrap_or_else(|e| panic!("remove: {e}"))
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (a, b) = two_snapshots(dir.path(), &entries);
        assert_eq!(part_extents(dir.path(), b).len(), 3, "the snapshot should have a directory and two license parts");
        damage(dir.path(), b);
        {
            let (journal, recovered) = open(dir.path());
            let report = journal.recovery_report();
            assert_eq!(report.snapshot_seq, Some(a), "{what}");
            assert_eq!(report.discarded_snapshots.len(), 1, "{what}");
            assert_eq!(report.discarded_snapshots[0].0, b, "{what}");
            assert_eq!(report.replayed_entries, entries.len() as u64 - a, "{what}");
            assert_eq!(recovered.to_snapshot(), replayed(&entries), "{what}");
        }
        assert_eq!(snapshot_files(dir.path()), vec![a], "{what}: the damaged snapshot's file is left");
    }
}

#[test]
fn a_snapshot_without_its_manifest_is_ignored() {
    let entries = many_licenses_entries(2 * LICENSES_PER_CHUNK);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (a, b) = two_snapshots(dir.path(), &entries);
    // What a crash between writing the file and writing the manifest leaves, and what a crash
    // while writing the file leaves.
    tamper(dir.path(), |snapshots| {
        assert!(snapshots.remove(seq_key(b)).ok().flatten().is_some(), "no manifest");
    });
    let unfinished = dir.path().join(SNAPSHOT_DIR).join(partial_snapshot_file_name(b + 1));
    std::fs::write(&unfinished, b"cut short").unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(snapshot_files(dir.path()), vec![a, b, b + 1]);
    {
        let (journal, recovered) = open(dir.path());
        let report = journal.recovery_report();
        assert_eq!(report.snapshot_seq, Some(a));
        assert_eq!(report.discarded_snapshots, vec![]);
        assert_eq!(recovered.to_snapshot(), replayed(&entries));
        // The next snapshot removes the unfinished ones' files.
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(entries.len() as u64));
    }
    assert_eq!(snapshot_files(dir.path()), vec![a, entries.len() as u64]);
}

#[test]
fn a_version_1_snapshot_still_restores() {
    let entries = workload_entries(29, 400);
    let cut = entries.len() / 2;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_all(&journal, &entries);
    }
    let v1 = encode_snapshot_v1(cut as u64, &Recovered::from_entries(&entries[..cut]));
    tamper(dir.path(), |snapshots| {
        snapshots.insert(seq_key(cut as u64), v1).unwrap_or_else(|e| panic!("insert: {e}"));
    });
    {
        let (journal, recovered) = open(dir.path());
        let report = journal.recovery_report();
        assert_eq!(report.snapshot_seq, Some(cut as u64));
        assert_eq!(report.snapshot_parts, 0);
        assert_eq!(report.replayed_entries, (entries.len() - cut) as u64);
        assert_eq!(
            without_fields_older_formats_lack(recovered.to_snapshot()),
            without_fields_older_formats_lack(replayed(&entries))
        );
        assert!(terms_shared(&recovered), "restoring a version-1 snapshot kept two copies of the terms");
        // The next snapshot is one of the current format, kept alongside.
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(entries.len() as u64));
    }
    assert_eq!(snapshot_files(dir.path()), vec![entries.len() as u64]);
    let (journal, recovered) = open(dir.path());
    assert_eq!(journal.recovery_report().snapshot_seq, Some(entries.len() as u64));
    assert_eq!(
        without_fields_older_formats_lack(recovered.to_snapshot()),
        without_fields_older_formats_lack(replayed(&entries))
    );
}

#[test]
fn the_log_is_cut_up_to_the_older_of_the_two_kept_snapshots() {
    let entries = workload_entries(17, 500);
    let marks = [entries.len() / 4, entries.len() / 2, 3 * entries.len() / 4];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        let mut done = 0;
        for mark in marks {
            append_all(&journal, &entries[done..mark]);
            done = mark;
            assert_eq!(journal.snapshot_now().ok().flatten(), Some(mark as u64));
        }
        append_all(&journal, &entries[done..]);
    }
    {
        let db = leasehold_persistence::open_sled(dir.path()).unwrap_or_else(|e| panic!("sled: {e}"));
        let snapshots: Vec<u64> = db
            .open_tree(SNAPSHOT_TREE)
            .unwrap_or_else(|e| panic!("tree: {e}"))
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(&*k).ok().map(u64::from_be_bytes))
            .collect();
        assert_eq!(snapshots, vec![marks[1] as u64, marks[2] as u64]);
        assert_eq!(snapshot_files(dir.path()), snapshots, "files of pruned snapshots are left");
        let log = db.open_tree(LOG_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
        let first = log.first().ok().flatten().and_then(|(k, _)| <[u8; 8]>::try_from(&*k).ok()).map(u64::from_be_bytes);
        assert_eq!(first, Some(marks[1] as u64 + 1));
    }
    let (_journal, recovered) = open(dir.path());
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn background_snapshots_follow_the_configured_interval() {
    let entries = workload_entries(19, 300);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let config = JournalConfig { snapshot_every_entries: Some(50), ..JournalConfig::default() };
        let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
        append_all(&journal, &entries);
    }
    let (journal, recovered) = open(dir.path());
    // Whichever snapshots the background thread managed to take, the state is the same.
    assert!(journal.recovery_report().snapshot_seq.is_some(), "no background snapshot was taken");
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn background_snapshots_wait_for_as_many_entries_as_the_state_holds() {
    let entries = workload_entries(23, 400);
    let cut = entries.len() * 3 / 4;
    let (first, rest) = entries.split_at(cut);
    let state = Recovered::from_entries(first);
    let size = state.licenses.len() + state.licenses.values().map(|(l, _)| l.leases().count()).sum::<usize>();
    assert!(size > 2 && rest.len() > size / 2, "the workload is too small for this test ({size} items)");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_all(&journal, first);
        let newest = journal.snapshot_now().unwrap_or_else(|e| panic!("snapshot: {e}"));
        assert_eq!(newest, Some(cut as u64));
    }
    {
        // Asked to snapshot after every entry: only the state's size (known from the snapshot
        // the journal opens with) holds the next one back.
        let config = JournalConfig { snapshot_every_entries: Some(1), ..JournalConfig::default() };
        let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
        append_all(&journal, &rest[..size / 2]);
        journal.close();
    }
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!(report.snapshot_seq, Some(cut as u64), "a snapshot came before the state's size in entries");
    assert_eq!(recovered.to_snapshot(), replayed(&entries[..cut + size / 2]));
}

/// The journal entries of an organization's changes (SPEC section 12): a credential, two groups
/// with members, an entitlement with a license in it, a member leaving, a group deleted, an
/// invitation accepted by a new user and one declined, and a batch of activation codes with a
/// code redeemed and its license then revoked, and a sign-up: registered, its password set, its
/// license claimed.
fn organization_entries() -> Vec<JournalEntry> {
    use leasehold_engine::engine::Acceptance;
    use leasehold_engine::journal::{Journal, MemoryJournal};
    use leasehold_engine::model::{Credit, Dimension, Enforcement, LicenseModel, LicenseTemplate, Role, Tier};
    use leasehold_engine::{
        Engine, EntitlementPatch, NewActivationBatch, NewCredential, NewEntitlement, NewGroup, ProductPatch,
    };
    use std::sync::Arc;
    common::runtime().block_on(async {
        let memory = Arc::new(MemoryJournal::new());
        let journal = Arc::clone(&memory) as Arc<dyn Journal>;
        let engine = Engine::builder().journal(journal).workers(1).build().unwrap_or_else(|e| panic!("engine: {e}"));
        let seats = common::seat_license(&engine, 2).await;
        let licensee = engine.license(seats.license).map(|l| l.licensee).unwrap_or_else(|| panic!("no license"));
        let kind = engine.directory().consumer(seats.consumer).map(|c| c.kind).unwrap_or_else(|| panic!("no consumer"));
        let credential = NewCredential { name: "it".into(), role: Role::OrgAdmin, licensee: Some(licensee) };
        engine.create_credential(credential).await.unwrap_or_else(|e| panic!("credential: {e}"));
        let mut groups = Vec::new();
        for name in ["a", "b"] {
            let group = engine.create_group(licensee, NewGroup { name: name.into(), kind }, None).await;
            let group = group.unwrap_or_else(|e| panic!("group: {e}")).id;
            engine.add_member(group, seats.consumer).await.unwrap_or_else(|e| panic!("member: {e}"));
            groups.push(group);
        }
        let new = NewEntitlement { name: "e".into(), groups: groups.clone() };
        let entitlement = engine.create_entitlement(licensee, new, None).await.unwrap_or_else(|e| panic!("{e}"));
        engine.set_entitlement(seats.license, Some(entitlement.id)).await.unwrap_or_else(|e| panic!("{e}"));
        engine.remove_member(groups[0], seats.consumer).await.unwrap_or_else(|e| panic!("{e}"));
        engine.delete_group(groups[1]).await.unwrap_or_else(|e| panic!("{e}"));
        let patch = EntitlementPatch { name: Some("renamed".into()), groups: Some(vec![groups[0]]) };
        engine.patch_entitlement(entitlement.id, patch).await.unwrap_or_else(|e| panic!("{e}"));
        for (email, accepts) in [("new@acme.example", true), ("no@acme.example", false)] {
            let made = engine.create_invitation(groups[0], email.into(), None, None).await;
            let (_, token) = made.unwrap_or_else(|e| panic!("invitation: {e}"));
            if accepts {
                let by = Acceptance::NewUser { name: "newcomer".into() };
                engine.accept_invitation(&token, by).await.unwrap_or_else(|e| panic!("accept: {e}"));
            } else {
                engine.decline_invitation(&token).await.unwrap_or_else(|e| panic!("decline: {e}"));
            }
        }
        let product = engine.license(seats.license).map(|l| l.product_name.to_string()).unwrap_or_default();
        let template = LicenseTemplate {
            product,
            tier: None,
            credit: Some(Credit { dimension: Dimension::Seats, qty: 1, enforcement: Enforcement::Enforced }),
            model: LicenseModel::default(),
            license_duration_s: Some(3_600),
            valid_until: None,
        };
        let batch = NewActivationBatch { template, count: 2, uses_per_code: 1, expires_at: None };
        let (_, codes) = engine.create_activation_codes(batch, None).await.unwrap_or_else(|e| panic!("batch: {e}"));
        let redeemed = engine.redeem_activation_code(&codes[0], seats.consumer, None).await;
        let redeemed = redeemed.unwrap_or_else(|e| panic!("redeem: {e}")).license;
        engine.revoke(redeemed.id, "refunded").await.unwrap_or_else(|e| panic!("revoke: {e}"));
        let product = engine.license(seats.license).map(|l| l.product_name.to_string()).unwrap_or_default();
        let tier = Tier { name: "solo".into(), max_users: Some(1), ..Tier::default() };
        let patch = ProductPatch { features: Vec::new(), tiers: vec![tier] };
        engine.patch_product(&product, patch).await.unwrap_or_else(|e| panic!("tier: {e}"));
        let (_, token) = engine.register("ada@home.example", &product, "solo").await.unwrap_or_else(|e| panic!("{e}"));
        let account = engine.set_password(&token, "$argon2id$stand-in".into()).await.unwrap_or_else(|e| panic!("{e}"));
        engine.claim_license(account.consumer).await.unwrap_or_else(|e| panic!("claim: {e}"));
        let issued = engine.issue_license_key("Buyer@Home.example", &product, "solo", None, None).await;
        let issued = issued.unwrap_or_else(|e| panic!("license key: {e}"));
        engine.record_key_token(issued.id, r#"{"licenseId":"it"}"#.into()).await.unwrap_or_else(|e| panic!("{e}"));
        // One seat: the second machine gets it once the first is deactivated.
        let mut clients = Vec::new();
        for machine in ["HWID-1", "HWID-2", "HWID-2"] {
            let activated = engine.activate_machine(&issued, machine, None, None).await;
            let (activation, decision) = activated.unwrap_or_else(|e| panic!("activation: {e}"));
            if let leasehold_engine::Decision::Granted(_) = decision {
                clients.push(activation.client_id);
            }
            if clients.len() == 1 && machine == "HWID-2" {
                engine.deactivate_machine(clients[0]).await.unwrap_or_else(|e| panic!("deactivation: {e}"));
            }
        }
        assert_eq!(clients.len(), 2, "the seat went to the second machine once the first was off");
        memory.entries()
    })
}

#[test]
fn organizations_activation_codes_sign_ups_and_license_keys_survive_a_snapshot_and_a_replay() {
    let entries = organization_entries();
    let full = replayed(&entries);
    assert_eq!((full.directory.credentials.len(), full.directory.groups.len()), (1, 1));
    assert_eq!(full.directory.invitations.iter().filter(|i| i.answer.is_some()).count(), 2);
    assert_eq!(full.directory.consumers.len(), 3, "the invited user and the signed-up person are there");
    assert_eq!(full.directory.entitlements.first().map(|e| e.name.as_str()), Some("renamed"));
    assert!(full.licenses.iter().any(|(_, state, _)| state.license.entitlement.is_some()));
    assert_eq!(full.directory.activation_batches.first().map(|b| b.redeemed()), Some(1));
    let revoked =
        full.licenses.iter().filter(|(_, s, _)| s.license.status != leasehold_engine::model::LicenseStatus::Active);
    let revoked = revoked.count();
    assert_eq!((full.directory.sign_ups.len(), full.directory.accounts.len()), (1, 1));
    assert!(full.directory.sign_ups[0].license.is_some(), "the claim is recorded");
    assert_eq!(revoked, 1, "the redeemed license has its state, and it changed");
    assert_eq!(full.directory.key_tokens.len(), 1);
    assert_eq!(full.directory.machine_activations.len(), 1, "one machine of the two is still activated");
    let buyer = full.directory.licensees.iter().find(|l| l.external_id.as_deref() == Some("buyer@home.example"));
    assert!(buyer.is_some(), "the customer's licensee came with the license key");
    for cut in 0..=entries.len() {
        let mut restored = through_parts(cut as u64, &Recovered::from_entries(&entries[..cut]));
        for entry in &entries[cut..] {
            restored.apply(entry);
        }
        assert_eq!(restored.to_snapshot(), full, "snapshot at {cut} + the rest differs from replay");
    }
}

#[test]
fn each_snapshot_built_on_the_one_before_restores_exactly_a_full_replay() {
    for entries in [organization_entries(), workload_entries(5, 80)] {
        snapshot_after_each_entry(&entries);
    }
}

/// Appends `entries` one at a time, each followed by a snapshot, and checks each snapshot
/// against a full replay.
fn snapshot_after_each_entry(entries: &[JournalEntry]) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for upto in 1..=entries.len() {
        {
            let (journal, _) = open(dir.path());
            append_all(&journal, &entries[upto - 1..upto]);
            assert_eq!(journal.snapshot_now().ok().flatten(), Some(upto as u64));
        }
        let (journal, recovered) = open(dir.path());
        let report = journal.recovery_report();
        assert_eq!((report.snapshot_seq, report.replayed_entries), (Some(upto as u64), 0));
        assert_eq!(recovered.to_snapshot(), replayed(&entries[..upto]), "the snapshot at {upto} differs from replay");
        assert!(terms_shared(&recovered), "the directory and the states hold separate copies of the terms");
    }
}

/// Entries deleting every `nth` license of `entries`' state that holds no lease, at the time of
/// the last entry.
fn deletions(entries: &[JournalEntry], nth: usize) -> Vec<JournalEntry> {
    let state = Recovered::from_entries(entries);
    let mut idle: Vec<_> =
        state.licenses.iter().filter(|(_, (s, _))| s.leases().count() == 0).map(|(id, _)| *id).collect();
    idle.sort_unstable();
    let at = entries.last().map(|e| e.at).unwrap_or_else(|| panic!("no entries"));
    idle.into_iter()
        .step_by(nth)
        .map(|license| JournalEntry { at, change: Change::License { license, event: LicenseEvent::Deleted } })
        .collect()
}

#[test]
fn a_snapshot_on_one_in_many_parts_copies_the_unchanged_licenses_and_folds_the_changed_ones() {
    let created = many_licenses_entries(3 * LICENSES_PER_CHUNK + 100);
    let cut = created.len() * 3 / 5;
    // The log after the first snapshot creates licenses (their ids fall between the older
    // ones'), leases some, and deletes licenses of both the snapshot and the log after it.
    let mut entries = created.clone();
    entries.extend(deletions(&created, 5));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_together(&journal, &entries[..cut]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(cut as u64));
        append_together(&journal, &entries[cut..]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(entries.len() as u64));
    }
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!((report.snapshot_seq, report.replayed_entries), (Some(entries.len() as u64), 0));
    let full = replayed(&entries);
    assert!(full.licenses.len() < Recovered::from_entries(&created).licenses.len(), "nothing was deleted");
    assert_eq!(report.snapshot_parts, 1 + full.licenses.len().div_ceil(LICENSES_PER_CHUNK) as u64);
    assert_eq!(recovered.to_snapshot(), full);
    assert!(terms_shared(&recovered), "the directory and the states hold separate copies of the terms");
}

#[test]
fn a_snapshot_found_damaged_when_the_next_is_built_is_replaced_by_one_built_on_the_one_before() {
    let entries = many_licenses_entries(2 * LICENSES_PER_CHUNK);
    let (a, b) = (entries.len() / 3, 2 * entries.len() / 3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_together(&journal, &entries[..a]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(a as u64));
        append_together(&journal, &entries[a..b]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(b as u64));
        // Its licenses cut off halfway (sled's lock keeps the manifest out of reach meanwhile).
        let file = dir.path().join(SNAPSHOT_DIR).join(snapshot_file_name(b as u64));
        let file = std::fs::OpenOptions::new().write(true).open(file).unwrap_or_else(|e| panic!("open: {e}"));
        let len = file.metadata().unwrap_or_else(|e| panic!("metadata: {e}")).len();
        file.set_len(len / 2).unwrap_or_else(|e| panic!("truncate: {e}"));
        append_together(&journal, &entries[b..]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(entries.len() as u64));
    }
    assert_eq!(snapshot_files(dir.path()), vec![a as u64, entries.len() as u64], "the damaged one is left");
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!((report.snapshot_seq, report.replayed_entries), (Some(entries.len() as u64), 0));
    assert_eq!(report.discarded_snapshots, vec![]);
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}
