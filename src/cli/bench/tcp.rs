//! The TCP side of the load generator: Leasehold's own client ([`leasehold_transports::tcp`]),
//! one connection per seeded consumer in use (over TLS when the server serves it), with several
//! workers pipelining requests on each connection.

use super::driver::{Failure, Outcome, Worker};
use super::http::{Workload, ITEM};
use super::seed::Identity;
use leasehold_engine::LeaseId;
use leasehold_transports::tcp::client::{Auth, Client, ClientConfig, ClientError, ClientTls};
use leasehold_transports::tcp::messages::{Consume, Denied, Release, Renew, TokenChoice};
use std::net::SocketAddr;
use std::sync::Arc;

/// Opens `connections` authenticated connections (connection `i` acts for identity `i`), over
/// `tls` when given, and puts `pipeline` workers on each.
pub async fn workers(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    identities: &[Identity],
    connections: usize,
    pipeline: usize,
    workload: Workload,
) -> Result<Vec<TcpWorker>, String> {
    let mut workers = Vec::with_capacity(connections * pipeline);
    for connection in 0..connections {
        let identity = &identities[connection % identities.len()];
        let auth = Auth::ApiKey(identity.api_key.clone());
        let client = match tls {
            None => Client::connect(addr, auth).await,
            Some(tls) => Client::connect_tls(addr, auth, ClientConfig::default(), tls.clone()).await,
        };
        let client = client.map_err(|e| format!("connecting to {addr}: {e}"))?;
        let client = Arc::new(client);
        for slot in 0..pipeline.max(1) {
            workers.push(TcpWorker {
                client: Arc::clone(&client),
                workload,
                hw: format!("bench-tcp-{connection}-{slot}"),
                lease: None,
                renewed: false,
            });
        }
    }
    Ok(workers)
}

/// One of the workers sharing a pipelined connection, on a hardware id of its own.
pub struct TcpWorker {
    client: Arc<Client>,
    workload: Workload,
    hw: String,
    lease: Option<LeaseId>,
    renewed: bool,
}

fn failed(e: ClientError) -> Failure {
    Failure::new(match e {
        ClientError::Timeout => "timeout".to_owned(),
        ClientError::Failure(f) => format!("{:?}", f.code),
        _ => "io".to_owned(),
    })
}

fn denied(d: Denied) -> Failure {
    Failure::new(d.code)
}

impl TcpWorker {
    async fn checkout(&self) -> Result<LeaseId, Failure> {
        let granted = self.client.consume(Consume::new(ITEM).hw(&self.hw)).await.map_err(failed)?.map_err(denied)?;
        Ok(granted.lease_id)
    }

    async fn renew(&self, lease: LeaseId) -> Result<LeaseId, Failure> {
        let granted = self.client.renew(Renew::new(lease)).await.map_err(failed)?.map_err(denied)?;
        Ok(granted.lease_id)
    }
}

impl Worker for TcpWorker {
    async fn step(&mut self) -> Outcome {
        match self.workload {
            Workload::Check => {
                let request = Consume::new(ITEM).hw(&self.hw).token(TokenChoice::Omit);
                self.client.check(request).await.map_err(failed)?.map(drop).map_err(denied)
            }
            Workload::Consume => self.checkout().await.map(drop),
            Workload::ConsumeUnsigned => {
                let request = Consume::new(ITEM).hw(&self.hw).token(TokenChoice::Omit);
                self.client.consume(request).await.map_err(failed)?.map(drop).map_err(denied)
            }
            Workload::Renew => match self.lease.take() {
                Some(lease) => self.renew(lease).await.map(|next| self.lease = Some(next)),
                None => self.checkout().await.map(|lease| self.lease = Some(lease)),
            },
            Workload::Cycle => match self.lease.take() {
                None => {
                    self.renewed = false;
                    self.checkout().await.map(|lease| self.lease = Some(lease))
                }
                Some(lease) if !self.renewed => {
                    self.renewed = true;
                    self.renew(lease).await.map(|next| self.lease = Some(next))
                }
                Some(lease) => {
                    self.client.release(Release::new(lease)).await.map_err(failed)?.map(drop).map_err(denied)
                }
            },
        }
    }
}
