//! Loom model of the signer pool's batch queue (engine::tokens::queue): every request pushed is
//! handed to exactly one worker or given back to its caller, a waiting worker is woken by a push
//! (no lost wake-up), a full queue refuses instead of blocking, and closing the queue lets every
//! worker drain it and stop (loom reports a deadlock if one would wait for ever).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p leasehold-engine --release --test loom_signer`.
#![cfg(loom)]

use leasehold_engine::tokens::queue::{BatchQueue, Refused};
use loom::sync::Arc;
use loom::thread;

/// Workers take batches until the queue is closed and empty; returns what each took.
fn spawn_worker(queue: &Arc<BatchQueue<u32>>, max_batch: usize) -> thread::JoinHandle<Vec<u32>> {
    let queue = Arc::clone(queue);
    thread::spawn(move || {
        let mut taken = Vec::new();
        let mut batch = Vec::new();
        while queue.pop_batch(max_batch, &mut batch) {
            assert!(!batch.is_empty(), "a batch was handed out empty");
            assert!(batch.len() <= max_batch, "a batch exceeded its bound");
            taken.append(&mut batch);
        }
        taken
    })
}

/// Explores interleavings with at most `PREEMPTIONS` forced thread switches each (as tokio's
/// loom models do): the bugs a queue like this can have show up within two or three.
fn model(test: impl Fn() + Sync + Send + 'static) {
    const PREEMPTIONS: usize = 3;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(test);
}

#[test]
fn every_request_reaches_exactly_one_worker_and_workers_stop_at_close() {
    model(|| {
        let queue = Arc::new(BatchQueue::new(4, 2));
        let workers = [spawn_worker(&queue, 1), spawn_worker(&queue, 2)];
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || assert_eq!(queue.push(3), Ok(()), "a queue with room refused"))
        };
        for item in [1, 2] {
            assert_eq!(queue.push(item), Ok(()), "a queue with room refused");
        }
        producer.join().unwrap();
        queue.close();
        let mut taken: Vec<u32> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        taken.sort_unstable();
        assert_eq!(taken, vec![1, 2, 3], "a request was lost or signed twice");
        assert!(queue.is_empty());
    });
}

#[test]
fn a_request_wakes_a_waiting_worker_without_waiting_for_close() {
    model(|| {
        let queue = Arc::new(BatchQueue::new(4, 2));
        let (signed, answers) = loom::sync::mpsc::channel();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (queue, signed) = (Arc::clone(&queue), signed.clone());
                thread::spawn(move || {
                    let mut batch = Vec::new();
                    while queue.pop_batch(1, &mut batch) {
                        for item in batch.drain(..) {
                            signed.send(item).unwrap();
                        }
                    }
                })
            })
            .collect();
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || assert_eq!(queue.push(2), Ok(())))
        };
        assert_eq!(queue.push(1), Ok(()));
        // Both answers must come while the queue is open: a lost wake-up deadlocks here.
        let mut got = [answers.recv().unwrap(), answers.recv().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        producer.join().unwrap();
        queue.close();
        for worker in workers {
            worker.join().unwrap();
        }
    });
}

#[test]
fn a_full_queue_refuses_and_nothing_is_lost_or_duplicated() {
    model(|| {
        let queue = Arc::new(BatchQueue::new(1, 1));
        let worker = spawn_worker(&queue, 4);
        let push = |queue: &BatchQueue<u32>, item| match queue.push(item) {
            Ok(()) => None,
            Err(Refused::Full(back)) => Some(back),
            Err(Refused::Closed(_)) => panic!("closed before close()"),
        };
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || push(&queue, 2))
        };
        let mut refused: Vec<u32> = push(&queue, 1).into_iter().collect();
        refused.extend(producer.join().unwrap());
        queue.close();
        let taken = worker.join().unwrap();
        let mut all: Vec<u32> = taken.iter().chain(refused.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2], "every request is either signed once or refused once");
        assert!(!taken.is_empty(), "the first request always finds room");
    });
}

#[test]
fn close_refuses_late_requests_and_drains_early_ones() {
    model(|| {
        let queue = Arc::new(BatchQueue::new(2, 1));
        let worker = spawn_worker(&queue, 1);
        let late = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.push(2))
        };
        assert_eq!(queue.push(1), Ok(()));
        queue.close();
        let late = late.join().unwrap();
        let mut taken = worker.join().unwrap();
        taken.sort_unstable();
        match late {
            Ok(()) => assert_eq!(taken, vec![1, 2]),
            Err(refused) => {
                assert_eq!(refused, Refused::Closed(2));
                assert_eq!(taken, vec![1]);
            }
        }
    });
}

/// The pool's worker loop: it waits for a request only while it holds no finished one; while
/// it holds some it takes more only if they wait (`try_pop_batch`), and answers what it holds
/// as soon as none does. Every request is answered exactly once, and the workers stop at close.
#[test]
fn a_worker_holding_answers_never_waits_and_answers_every_request_once() {
    model(|| {
        let queue = Arc::new(BatchQueue::new(4, 2));
        let (answered, answers) = loom::sync::mpsc::channel();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (queue, answered) = (Arc::clone(&queue), answered.clone());
                thread::spawn(move || {
                    let (mut next, mut held) = (Vec::new(), Vec::new());
                    loop {
                        if held.is_empty() {
                            queue.pop_batch(1, &mut next);
                        } else {
                            queue.try_pop_batch(1, &mut next);
                        }
                        match next.pop() {
                            Some(item) => held.push(item),
                            None if held.is_empty() => return,
                            None => held.drain(..).for_each(|item| answered.send(item).unwrap()),
                        }
                    }
                })
            })
            .collect();
        drop(answered);
        for item in [1, 2, 3] {
            assert_eq!(queue.push(item), Ok(()), "a queue with room refused");
        }
        queue.close();
        for worker in workers {
            worker.join().unwrap();
        }
        let mut all: Vec<u32> = std::iter::from_fn(|| answers.try_recv().ok()).collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3], "a request was lost or answered twice");
    });
}
