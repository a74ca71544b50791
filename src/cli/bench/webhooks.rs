//! `--webhooks N`: checkout throughput with no webhook and with `N` webhooks subscribed to every
//! event, measured back to back while an admin client changes the directory at a steady rate, so
//! both runs record the same events and only the second delivers them. The receiver is a hyper
//! server in the bench's process that answers every delivery at once and counts them.

use super::driver::{Failure, Plan};
use super::http::{Connection, Workload};
use super::report::{Ratio, Report};
use super::server::UnderTest;
use super::{measure_protocol, seed, BenchArgs, BenchError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Directory changes per second during both runs, each one event for every subscribed webhook.
pub const EVENTS_PER_S: u64 = 100;

/// Counts the deliveries posted to it and answers each with 204.
struct Receiver {
    addr: SocketAddr,
    deliveries: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    fn start() -> std::io::Result<Receiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("webhook-receiver")
            .enable_all()
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let deliveries = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&deliveries);
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let counted = Arc::clone(&counted);
                        async move {
                            // Counted once the whole body arrived, as a receiver would before acking.
                            if request.into_body().collect().await.is_ok() {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut answer = Response::new(Full::new(Bytes::new()));
                            *answer.status_mut() = StatusCode::NO_CONTENT;
                            Ok::<_, Infallible>(answer)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Receiver { addr, deliveries, runtime: Some(runtime) })
    }

    fn delivered(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Measures consume over every protocol of `args` with 0 webhooks, then with `args.webhooks`,
/// and adds both runs, the deliveries and the ratio of the two to `report`.
pub async fn measure(
    report: &mut Report,
    server: &UnderTest,
    identities: &Arc<Vec<seed::Identity>>,
    args: &BenchArgs,
    plan: Plan,
    progress: &ProgressBar,
) -> Result<(), BenchError> {
    let receiver = Receiver::start().map_err(|e| BenchError::Baseline(format!("webhook receiver: {e}")))?;
    let mut admin = Connection::new(server.http);
    let churn = Churn::start(server.http, server.admin_token.clone());
    for &protocol in &args.protocol {
        let mut throughput = [0.0; 2];
        for (side, webhooks) in [0, args.webhooks].into_iter().enumerate() {
            let mut subscribed = Vec::new();
            for i in 0..webhooks {
                subscribed.push(subscribe(&mut admin, &server.admin_token, receiver.addr, i).await?);
            }
            let before = (receiver.delivered(), churn.changes());
            let label = format!("consume+{webhooks}wh");
            let measured =
                measure_protocol(report, server, identities, args, protocol, Workload::Consume, &label, plan, progress)
                    .await?;
            let (delivered, changes) = (receiver.delivered() - before.0, churn.changes() - before.1);
            for id in subscribed {
                unsubscribe(&mut admin, &server.admin_token, &id).await?;
            }
            if !measured {
                break;
            }
            let run = report.runs.last().expect("the run just measured");
            throughput[side] = run.throughput_per_s;
            report.notes.push(format!(
                "{} consume with {webhooks} webhooks on `*`: {changes} directory changes and {delivered} deliveries \
                 received during the run and its warm-up",
                run.protocol
            ));
        }
        if throughput[0] > 0.0 {
            let protocol = &report.runs.last().expect("the run just measured").protocol;
            report.ratios.push(Ratio {
                name: format!("{protocol} checkouts with {} webhooks ÷ with none", args.webhooks),
                value: throughput[1] / throughput[0],
                at_least: Some(0.9),
                at_most: None,
            });
        }
    }
    churn.stop().await;
    Ok(())
}

/// Subscribes the `i`th webhook to every event; its id.
async fn subscribe(admin: &mut Connection, token: &str, receiver: SocketAddr, i: usize) -> Result<String, BenchError> {
    let body =
        json!({"url": format!("http://{receiver}/hooks/{i}"), "events": ["*"], "description": "leasehold bench"});
    let answer = admin
        .send(Method::POST, "/admin/webhooks", Some(token), Some(Bytes::from(body.to_string())))
        .await
        .map_err(|Failure(why)| BenchError::Server(format!("subscribing a webhook: {why}")))?;
    let created: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    match (answer.status, created.get("id").and_then(Value::as_str)) {
        (StatusCode::CREATED, Some(id)) => Ok(id.to_owned()),
        (status, _) => Err(BenchError::Server(format!("subscribing a webhook: {status} {created}"))),
    }
}

async fn unsubscribe(admin: &mut Connection, token: &str, id: &str) -> Result<(), BenchError> {
    let path = format!("/admin/webhooks/{id}");
    let answer = admin
        .send(Method::DELETE, &path, Some(token), None)
        .await
        .map_err(|Failure(why)| BenchError::Server(format!("deleting webhook {id}: {why}")))?;
    if answer.status != StatusCode::NO_CONTENT {
        return Err(BenchError::Server(format!("deleting webhook {id}: {}", answer.status)));
    }
    Ok(())
}

/// An admin client creating a product [`EVENTS_PER_S`] times a second, each an event.
struct Churn {
    made: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Churn {
    fn start(http: SocketAddr, token: String) -> Churn {
        let made = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&made);
        let task = tokio::spawn(async move {
            let mut admin = Connection::new(http);
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / EVENTS_PER_S));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let run = uuid::Uuid::new_v4().simple().to_string();
            for n in 0u64.. {
                tick.tick().await;
                let body = json!({"name": format!("bench-churn-{run}-{n}"), "features": []});
                let answer = admin
                    .send(Method::POST, "/admin/products", Some(&token), Some(Bytes::from(body.to_string())))
                    .await;
                if matches!(answer, Ok(a) if a.status == StatusCode::CREATED) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Churn { made, task }
    }

    fn changes(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
