//! Loom models of the state the router and the license actors share (engine::concurrency):
//! the find-or-start slot (and an idle actor parking its state back in it), the mailbox
//! admission bound, and the published lease gauge.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p leasehold-engine --release --test loom_seats`.
#![cfg(loom)]

use leasehold_engine::concurrency::{Admission, GaugeReading, LeaseGauge, Slot};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

#[test]
fn racing_requests_start_one_actor_and_all_reach_it() {
    loom::model(|| {
        let slot = Arc::new(Slot::<u32, u32>::dormant(7));
        let starts = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (slot, starts) = (Arc::clone(&slot), Arc::clone(&starts));
                thread::spawn(move || {
                    slot.get_or_start(|seed| {
                        starts.fetch_add(1, Ordering::SeqCst);
                        seed * 10
                    })
                })
            })
            .collect();
        let here = slot.get_or_start(|seed| {
            starts.fetch_add(1, Ordering::SeqCst);
            seed * 10
        });
        for racer in racers {
            assert_eq!(racer.join().unwrap(), Some(70));
        }
        assert_eq!(here, Some(70));
        assert_eq!(starts.load(Ordering::SeqCst), 1, "the actor started more than once");
    });
}

/// An idle actor (address 1) parks its latest state (8) while a request is admitted and looks
/// for the actor: either the request reaches the running actor and the park is refused, or the
/// park wins and the request starts a new actor (address 2) from exactly the parked state.
#[test]
fn parking_never_strands_an_admitted_request() {
    loom::model(|| {
        let slot = Arc::new(Slot::<u32, u32>::dormant(7));
        let admission = Arc::new(Admission::new(4));
        assert_eq!(slot.get_or_start(|_| 1), Some(1));
        let request = {
            let (slot, admission) = (Arc::clone(&slot), Arc::clone(&admission));
            thread::spawn(move || {
                assert!(admission.try_enter());
                slot.get_or_start(|seed| {
                    assert_eq!(seed, 8, "a new actor started from a stale state");
                    2
                })
            })
        };
        let parked = slot.park(&1, 8, || admission.waiting() == 0);
        let reached = request.join().unwrap();
        match parked {
            Ok(()) => assert_eq!(reached, Some(2), "the request was sent to the actor that parked"),
            Err(seed) => {
                assert_eq!(seed, 8, "a refused park must hand the state back");
                assert_eq!(reached, Some(1));
            }
        }
    });
}

/// A request to park from an actor that is no longer the running one changes nothing.
#[test]
fn a_stale_park_is_refused() {
    loom::model(|| {
        let slot = Slot::<u32, u32>::dormant(7);
        assert_eq!(slot.get_or_start(|_| 2), Some(2));
        assert_eq!(slot.park(&1, 0, || true), Err(0));
        assert_eq!(slot.running(), Some(2));
    });
}

#[test]
fn admission_never_lets_more_than_capacity_wait() {
    loom::model(|| {
        let admission = Arc::new(Admission::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (admission, inside) = (Arc::clone(&admission), Arc::clone(&inside));
                thread::spawn(move || {
                    if admission.try_enter() {
                        let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now_inside <= 1, "{now_inside} requests admitted past a bound of 1");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        admission.leave();
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        assert_eq!(admission.waiting(), 0, "a place was lost");
    });
}

#[test]
fn a_full_admission_refuses_exactly_the_excess() {
    loom::model(|| {
        let admission = Arc::new(Admission::new(1));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let admission = Arc::clone(&admission);
                thread::spawn(move || admission.try_enter())
            })
            .collect();
        let admitted = senders.into_iter().map(|s| s.join().unwrap()).filter(|a| *a).count();
        assert_eq!(admitted, 1);
        assert_eq!(admission.waiting(), 1);
    });
}

#[test]
fn an_observer_never_reads_more_seats_than_the_actor_published() {
    const SEATS: u64 = 2;
    loom::model(|| {
        let gauge = Arc::new(LeaseGauge::default());
        let actor = {
            let gauge = Arc::clone(&gauge);
            thread::spawn(move || {
                // Take both seats, release one, take it again: never more than SEATS.
                for seats_in_use in [1, 2, 1, 2] {
                    gauge.publish(GaugeReading { live_leases: seats_in_use, seats_in_use });
                }
            })
        };
        let reading = gauge.read();
        assert!(reading.seats_in_use <= SEATS && reading.live_leases <= SEATS);
        actor.join().unwrap();
        assert_eq!(gauge.read(), GaugeReading { live_leases: 2, seats_in_use: 2 });
    });
}
