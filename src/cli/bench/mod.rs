//! `leasehold bench`: the load generator. It drives Leasehold over HTTP (the Enterprise
//! `/authz/` and the Scale dialects) and over its binary TCP protocol (pipelined) with the
//! workloads consume, check, renew and cycle, and measures the
//! baselines that make its numbers comparable across noisy machines: a hyper hello-world
//! server, raw RS256 signing on every core, and a Redis server running the same seat lease in
//! Lua, all in the same run and at the same concurrency.
//!
//! The server under test is started by the bench (a `leasehold serve` child process on a fresh
//! data directory), hosted in the bench's own process (`--in-process`), or a running one
//! (`--server`, with its admin token for seeding). With `--tls` the bench starts a second server
//! that serves both protocols over TLS, and runs each workload against it right after the same
//! run in plain text.

mod baselines;
mod certificate;
mod driver;
mod http;
mod issuer;
mod report;
mod seed;
mod server;
mod tcp;
mod webhooks;

use clap::Args;
use driver::{drive, Plan};
use http::{ApiWorker, Authz, HelloWorker, Scale, Workload};
use indicatif::ProgressBar;
use leasehold_engine::tokens::Algorithm;
use report::{Ratio, Report, Run};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The workload name of consumes authenticated by identity tokens.
const TOKEN_CONSUME: &str = "consume-idtoken";

/// How the bench talks to Leasehold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The Enterprise `/authz/` API over HTTP/1.1, one request in flight per connection.
    Authz,
    /// The Scale `/licensing/actions/` API over HTTP/1.1, one request in flight per connection
    /// (it has no check without a lease, so it runs every workload but `check`).
    Scale,
    /// The binary TCP protocol, `--pipeline` requests in flight per connection.
    Tcp,
}

/// Options of `leasehold bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Protocols to drive, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "authz,scale,tcp")]
    protocol: Vec<Protocol>,
    /// Workloads to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "check,consume,renew,cycle")]
    workload: Vec<Workload>,
    /// Licenses to seed (each with its own licensee).
    #[arg(long, default_value_t = 1_000)]
    licenses: usize,
    /// Consumers to seed, spread over the licensees (default: one per license).
    #[arg(long)]
    consumers: Option<usize>,
    /// Client connections (HTTP: each with one request in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests in flight on each TCP connection (and on each Redis connection).
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// The running server's TCP protocol address (with --server; default: none, TCP skipped).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// How long to measure each run, e.g. `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Stop each run after this many measured requests (if sooner than --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Send at this total rate instead of as fast as answers come (open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Benchmark a running server at this address (`host:port` or `http://host:port`) instead of
    /// starting one; seeding needs its admin token (--admin-token or LEASEHOLD_ADMIN_TOKEN).
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Host the server in the bench's own process (on threads of its own, as an embedder would)
    /// instead of starting `leasehold serve` as a child process.
    #[arg(long, conflicts_with = "server")]
    in_process: bool,
    /// The running server's admin token.
    #[arg(long, env = "LEASEHOLD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Durability of the server the bench starts (and of the Redis baseline's append-only file:
    /// sync = appendfsync always, batched = everysec, none = no AOF).
    #[arg(long, default_value = "sync")]
    durability: String,
    /// Skip the baselines (hello-world, RS256 ceiling, Redis).
    #[arg(long)]
    no_baselines: bool,
    /// Also measure checkouts with this many webhooks subscribed to every event, right after the
    /// same run with none, while an admin client makes directory changes (0: not measured).
    #[arg(long, default_value_t = 0)]
    webhooks: usize,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also measure `/authz/` consumes by consumers that send an identity provider's token
    /// instead of an API key (an issuer of the bench's own, trusted by the server it starts),
    /// right after the API-key consumes (workload `consume-idtoken`).
    #[arg(long)]
    identity_tokens: bool,
    /// Also run each protocol's workloads over TLS, each right after the same run in plain text,
    /// against a second server the bench starts with a certificate it makes (`authz+tls`,
    /// `scale+tls`, `tcp+tls` in the report).
    #[arg(long, conflicts_with_all = ["server", "in_process"])]
    tls: bool,
    /// Algorithm of the signing key of the server the bench starts: RS256, ES256 or EdDSA
    /// [default: the server's, RS256].
    #[arg(long, value_name = "ALG", value_parser = crate::cli::config::parse_algorithm, conflicts_with = "server")]
    signing_alg: Option<Algorithm>,
    /// The CPUs the server the bench starts runs on, a list such as `0-3` or `0,2` (through
    /// `taskset`; the server sizes its threads to them).
    #[arg(long, value_name = "CPUS", conflicts_with_all = ["server", "in_process"])]
    server_cores: Option<String>,
    /// The CPUs the load generator (this process) runs on, such as `4-7`.
    #[arg(long, value_name = "CPUS")]
    client_cores: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}`; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The server under test could not be started or reached.
    #[error("server under test: {0}")]
    Server(String),
    /// Seeding failed.
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    /// A baseline could not be measured.
    #[error("baseline: {0}")]
    Baseline(String),
    /// A bad option.
    #[error("{0}")]
    Usage(String),
}

/// Runs the bench and prints its report.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    // One client thread: the load generator shares the cores with the server it measures, and a
    // multi-threaded runtime's workers wake each other to steal the answers' tasks. It costs the
    // client less CPU per request, which leaves more of the machine to the server it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(|e| BenchError::Server(format!("starting the client runtime: {e}")))?;
    let report = runtime.block_on(bench(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn bench(args: &BenchArgs) -> Result<Report, BenchError> {
    if args.connections == 0 {
        return Err(BenchError::Usage("--connections must be at least 1".into()));
    }
    let plan = Plan { duration: args.duration, requests: args.requests, warmup: args.warmup, rate_per_s: args.rate };
    let progress = ProgressBar::new(0);
    let mut report = Report::default();
    if let Some(cores) = &args.client_cores {
        pin_this_process(cores).map_err(BenchError::Usage)?;
        report.notes.push(format!("load generator on CPUs {cores}"));
    }

    let issuer = match (args.identity_tokens, &args.server) {
        (false, _) => None,
        (true, Some(_)) => {
            return Err(BenchError::Usage(
                "--identity-tokens needs a server the bench starts (its issuer must be trusted)".into(),
            ))
        }
        (true, None) => Some(issuer::Issuer::start().map_err(BenchError::Server)?),
    };
    let server = match &args.server {
        Some(addr) => {
            let admin = args.admin_token.clone().ok_or_else(|| {
                BenchError::Usage("--server needs the admin token (--admin-token or LEASEHOLD_ADMIN_TOKEN)".into())
            })?;
            server::UnderTest::running(addr, admin).map_err(BenchError::Server)?
        }
        None if args.in_process => {
            server::UnderTest::host(&launch(args, issuer.as_ref(), None), args.admin_token.clone())
                .map_err(BenchError::Server)?
        }
        None => server::UnderTest::start(&launch(args, issuer.as_ref(), None)).map_err(BenchError::Server)?,
    };
    report.notes.push(server.describe());
    if let Some(alg) = args.signing_alg {
        report.notes.push(format!("the server signs with {alg}"));
    }
    if let Some(cores) = &args.server_cores {
        report.notes.push(format!("server on CPUs {cores}"));
    }
    let consumers = args.consumers.unwrap_or(args.licenses);
    eprintln!("seeding {} licenses and {consumers} consumers ...", args.licenses);
    let identities = Arc::new(seed::seed(server.target(), &server.admin_token, args.licenses, consumers).await?);
    let token_identities = match &issuer {
        Some(issuer) => {
            eprintln!("signing {consumers} identity-token consumers in ...");
            Some(Arc::new(seed::token_identities(server.http, issuer, args.licenses, consumers).await?))
        }
        None => None,
    };
    if let Some(rss) = server.rss_bytes() {
        report.notes.push(format!("server RSS after seeding: {:.1} MiB", rss as f64 / (1 << 20) as f64));
    }
    let secured = if args.tls { Some(Secured::start(args, consumers).await?) } else { None };
    if let Some(secured) = &secured {
        report.notes.push(format!("TLS runs: {}, serving TLS 1.3 on both ports", secured.server.describe()));
    }

    for &protocol in &args.protocol {
        for &workload in &args.workload {
            if protocol == Protocol::Scale && workload == Workload::Check {
                report.notes.push("Scale check skipped: the Scale API has no check without a lease".into());
                continue;
            }
            if protocol != Protocol::Tcp && workload == Workload::ConsumeUnsigned {
                report.notes.push(format!("{protocol:?} consume-unsigned skipped: only TCP omits the token"));
                continue;
            }
            // A ratio's two sides are measured minutes apart otherwise, and a shared machine
            // changes speed within a minute: the signing ceiling is measured right before and
            // right after the signed `/authz/` checkouts it divides, and hello-world and the half
            // load right after the `/authz/` checks.
            let authz = protocol == Protocol::Authz;
            let pair_ceiling = authz && workload == Workload::Consume && !args.no_baselines;
            if pair_ceiling {
                measure_ceiling(&mut report, plan).await?;
            }
            let label = workload.name();
            if !measure_protocol(&mut report, &server, &identities, args, protocol, workload, label, plan, &progress)
                .await?
            {
                report.notes.push("TCP skipped: the server under test has no TCP address (--tcp)".into());
                break;
            }
            if let Some(secured) = &secured {
                // Right after the plain run it is compared with.
                let (server, identities) = (&secured.server, &secured.identities);
                measure_protocol(&mut report, server, identities, args, protocol, workload, label, plan, &progress)
                    .await?;
            }
            if let Some(tokens) = token_identities.as_ref().filter(|_| authz && workload == Workload::Consume) {
                // Right after the API-key run it is compared with, on the same licenses.
                let workers = authz_workers(&server, workload, tokens, args.connections);
                measure_leasehold(&mut report, "authz", TOKEN_CONSUME, workers, plan, &progress).await;
            }
            if pair_ceiling {
                measure_ceiling(&mut report, plan).await?;
            }
            if authz && workload == Workload::Check {
                if !args.no_baselines {
                    measure_hello(&mut report, args, plan, &progress).await?;
                }
                measure_half_load(&mut report, &server, &identities, args, plan, &progress).await;
            }
        }
    }

    if args.webhooks > 0 {
        webhooks::measure(&mut report, &server, &identities, args, plan, &progress).await?;
    }
    if !args.no_baselines {
        run_baselines(args, plan, &progress, &mut report).await?;
    }
    if let Some(rss) = server.rss_bytes() {
        report.notes.push(format!("server RSS at the end: {:.1} MiB", rss as f64 / (1 << 20) as f64));
    }
    add_ratios(&mut report, args.signing_alg);
    Ok(report)
}

/// The second server of `--tls`, which serves both protocols over TLS, and its seeded
/// identities.
struct Secured {
    server: server::UnderTest,
    identities: Arc<Vec<seed::Identity>>,
    // Its files stay until the server has stopped (the server drops first).
    _certificate: certificate::BenchCertificate,
}

impl Secured {
    async fn start(args: &BenchArgs, consumers: usize) -> Result<Secured, BenchError> {
        let certificate = certificate::BenchCertificate::make().map_err(BenchError::Server)?;
        let server = server::UnderTest::start(&launch(args, None, Some(&certificate))).map_err(BenchError::Server)?;
        eprintln!("seeding the TLS server ...");
        let identities = Arc::new(seed::seed(server.target(), &server.admin_token, args.licenses, consumers).await?);
        Ok(Secured { server, identities, _certificate: certificate })
    }
}

/// How the bench's servers start.
fn launch<'a>(
    args: &'a BenchArgs,
    issuer: Option<&'a issuer::Issuer>,
    certificate: Option<&'a certificate::BenchCertificate>,
) -> server::Launch<'a> {
    server::Launch {
        durability: &args.durability,
        issuer,
        signing_alg: args.signing_alg,
        cores: args.server_cores.as_deref(),
        certificate,
    }
}

/// Keeps this process (every thread it has and will start) on `cores`, through `taskset`.
fn pin_this_process(cores: &str) -> Result<(), String> {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cores, &pid])
        .output()
        .map_err(|e| format!("--client-cores needs taskset (util-linux): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("--client-cores {cores}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The latency target is held at half the saturating load of unsigned decisions, measured
/// right after that load (unless the whole bench runs at a `--rate` of its own).
async fn measure_half_load(
    report: &mut Report,
    server: &server::UnderTest,
    identities: &Arc<Vec<seed::Identity>>,
    args: &BenchArgs,
    plan: Plan,
    progress: &ProgressBar,
) {
    let (Some(check), None) = (report.find("leasehold", "authz", "check").cloned(), args.rate) else { return };
    let half = Plan { rate_per_s: Some(check.throughput_per_s / 2.0), ..plan };
    let workers = authz_workers(server, Workload::Check, identities, args.connections);
    // The p99 of this run includes the machine's own stalls; the probe says how many there were.
    let probe = baselines::StallProbe::start().ok();
    let measured = drive("authz check @ half load", workers, half, progress).await;
    report.runs.push(Run::new("leasehold", "authz", "check", args.connections, half.rate_per_s, &measured));
    if let Some(stalls) = probe.map(baselines::StallProbe::finish) {
        report.notes.push(format!(
            "during the half-load run a thread sleeping 1 ms at a time woke more than {} ms late {} times in {} \
             sleeps (latest {:.1} ms late): the machine's own stalls, which that run's latencies include",
            baselines::StallProbe::LATE.as_millis(),
            stalls.late,
            stalls.sleeps,
            stalls.longest.as_secs_f64() * 1_000.0,
        ));
    }
}

/// The hello-world baseline: a minimal hyper server driven by the same client at the same
/// concurrency.
async fn measure_hello(
    report: &mut Report,
    args: &BenchArgs,
    plan: Plan,
    progress: &ProgressBar,
) -> Result<(), BenchError> {
    let hello =
        baselines::HelloServer::start().map_err(|e| BenchError::Baseline(format!("hello-world server: {e}")))?;
    let workers: Vec<_> = (0..args.connections).map(|_| HelloWorker::new(hello.addr)).collect();
    let measured = drive("hello-world", workers, plan, progress).await;
    report.runs.push(Run::new("hello-world", "http", "hello", args.connections, args.rate, &measured));
    Ok(())
}

/// One more measurement of the RS256 signing ceiling (on every core, no client running); the
/// report's ceiling is the mean of all of them.
async fn measure_ceiling(report: &mut Report, plan: Plan) -> Result<(), BenchError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("measuring the RS256 signing ceiling on {threads} threads ...");
    let duration = plan.duration;
    let per_s = tokio::task::spawn_blocking(move || baselines::rs256_ceiling(threads, duration))
        .await
        .map_err(|e| BenchError::Baseline(e.to_string()))?
        .map_err(BenchError::Baseline)?;
    report.add_ceiling_sample("rs256-sign", threads, per_s);
    Ok(())
}

/// Runs `workload` over `protocol` and records it as Leasehold's under the workload name
/// `label` (and the protocol's name with `+tls` when the server serves TLS); false when the
/// server under test has no address for `protocol`.
#[allow(clippy::too_many_arguments)]
async fn measure_protocol(
    report: &mut Report,
    server: &server::UnderTest,
    identities: &Arc<Vec<seed::Identity>>,
    args: &BenchArgs,
    protocol: Protocol,
    workload: Workload,
    label: &str,
    plan: Plan,
    progress: &ProgressBar,
) -> Result<bool, BenchError> {
    let name = |base: &str| if server.tls.is_some() { format!("{base}+tls") } else { base.to_owned() };
    match protocol {
        Protocol::Authz => {
            let workers = authz_workers(server, workload, identities, args.connections);
            measure_leasehold(report, &name("authz"), label, workers, plan, progress).await;
        }
        Protocol::Scale => {
            let workers: Vec<_> = (0..args.connections)
                .map(|i| {
                    let api = Scale::new(server.target(), format!("bench-scale-{i}"));
                    ApiWorker::new(api, workload, Arc::clone(identities), i, args.connections)
                })
                .collect();
            measure_leasehold(report, &name("scale"), label, workers, plan, progress).await;
        }
        Protocol::Tcp => {
            let Some(addr) = server.tcp.or(args.tcp) else { return Ok(false) };
            let tls = server.tls.as_ref();
            let workers = tcp::workers(addr, tls, identities, args.connections, args.pipeline, workload)
                .await
                .map_err(BenchError::Server)?;
            measure_leasehold(report, &name("tcp"), label, workers, plan, progress).await;
        }
    }
    Ok(true)
}

/// Drives `workers` (one per request in flight) and records the run as Leasehold's over
/// `protocol`.
async fn measure_leasehold<W: driver::Worker>(
    report: &mut Report,
    protocol: &str,
    workload: &str,
    workers: Vec<W>,
    plan: Plan,
    progress: &ProgressBar,
) {
    let in_flight = workers.len();
    let measured = drive(&format!("{protocol} {workload}"), workers, plan, progress).await;
    report.runs.push(Run::new("leasehold", protocol, workload, in_flight, plan.rate_per_s, &measured));
}

/// `connections` workers on the Enterprise API, each on a hardware id of its own.
fn authz_workers(
    server: &server::UnderTest,
    workload: Workload,
    identities: &Arc<Vec<seed::Identity>>,
    connections: usize,
) -> Vec<ApiWorker<Authz>> {
    (0..connections)
        .map(|i| {
            let api = Authz::new(server.target(), format!("bench-hw-{i}"));
            ApiWorker::new(api, workload, Arc::clone(identities), i, connections)
        })
        .collect()
}

async fn run_baselines(
    args: &BenchArgs,
    plan: Plan,
    progress: &ProgressBar,
    report: &mut Report,
) -> Result<(), BenchError> {
    // Measured beside the runs they divide when those ran; otherwise here, for the table.
    if report.find("hello-world", "http", "hello").is_none() {
        measure_hello(report, args, plan, progress).await?;
    }
    if report.ceiling("rs256-sign").is_none() {
        measure_ceiling(report, plan).await?;
    }

    let fsync = match args.durability.split(':').next() {
        Some("sync") => "always",
        Some("batched") => "everysec",
        _ => "none",
    };
    let dir = tempfile::tempdir().map_err(|e| BenchError::Baseline(e.to_string()))?;
    match baselines::RedisServer::start(fsync, dir.path()) {
        Ok(redis) => {
            report
                .notes
                .push(format!("redis-server with appendfsync {fsync} (Leasehold durability {})", args.durability));
            // The same shape as the TCP runs: `connections` connections, `pipeline` in flight on each.
            for &workload in &args.workload {
                let workers =
                    baselines::redis_workers(&redis.url(), workload, args.licenses, args.connections, args.pipeline)
                        .await
                        .map_err(BenchError::Baseline)?;
                let in_flight = workers.len();
                let measured = drive(&format!("redis-lua {}", workload.name()), workers, plan, progress).await;
                report.runs.push(Run::new("redis-lua", "resp", workload.name(), in_flight, args.rate, &measured));
            }
        }
        Err(why) => report.notes.push(format!("Redis baseline skipped: {why}")),
    }
    Ok(())
}

/// The report's ratios; `signing_alg` is the server's (`None`: RS256), which decides whether a
/// signed checkout is held to the RS256 ceiling or to the unsigned rates.
fn add_ratios(report: &mut Report, signing_alg: Option<Algorithm>) {
    let cheap_signatures = signing_alg.is_some_and(|alg| alg != Algorithm::RS256);
    let mut ratios = Vec::new();
    let rsa = report.ceiling("rs256-sign").map(|c| c.per_s);
    let hello = report.find("hello-world", "http", "hello").map(|r| r.throughput_per_s);
    if let (Some(consume), Some(check), true) =
        (report.find("leasehold", "authz", "consume"), report.find("leasehold", "authz", "check"), cheap_signatures)
    {
        ratios.push(Ratio {
            name: format!(
                "{} signed checkouts over HTTP ÷ unsigned HTTP checks",
                signing_alg.map_or("", Algorithm::as_str)
            ),
            value: consume.throughput_per_s / check.throughput_per_s,
            at_least: Some(0.5),
            at_most: None,
        });
    }
    if let (Some(consume), Some(rsa), false) = (report.find("leasehold", "authz", "consume"), rsa, cheap_signatures) {
        ratios.push(Ratio {
            name: "signed checkouts over HTTP ÷ RS256 ceiling".into(),
            value: consume.throughput_per_s / rsa,
            at_least: Some(0.8),
            at_most: None,
        });
    }
    if let (Some(tokens), Some(keys)) =
        (report.find("leasehold", "authz", TOKEN_CONSUME), report.find("leasehold", "authz", "consume"))
    {
        ratios.push(Ratio {
            name: "signed checkouts with identity tokens ÷ with API keys".into(),
            value: tokens.throughput_per_s / keys.throughput_per_s,
            at_least: None,
            at_most: None,
        });
    }
    if let (Some(check), Some(hello)) = (report.find("leasehold", "authz", "check"), hello) {
        ratios.push(Ratio {
            name: "unsigned decisions over HTTP ÷ hello-world".into(),
            value: check.throughput_per_s / hello,
            at_least: Some(0.5),
            at_most: None,
        });
    }
    if let Some(half) =
        report.runs.iter().find(|r| r.protocol == "authz" && r.workload == "check" && r.rate_per_s.is_some())
    {
        ratios.push(Ratio {
            name: "p99 of unsigned decisions at half load, ms".into(),
            value: half.latency_us.p99 as f64 / 1_000.0,
            at_least: None,
            at_most: Some(5.0),
        });
    }
    if let (Some(tcp), Some(http)) =
        (report.find("leasehold", "tcp", "check"), report.find("leasehold", "authz", "check"))
    {
        ratios.push(Ratio {
            name: "pipelined TCP checks ÷ HTTP checks".into(),
            value: tcp.throughput_per_s / http.throughput_per_s,
            at_least: Some(3.0),
            at_most: None,
        });
    }
    for workload in ["consume", "consume-unsigned", "check", "renew", "cycle"] {
        if let (Some(ours), Some(redis)) =
            (report.find("leasehold", "tcp", workload), report.find("redis-lua", "resp", workload))
        {
            // Redis signs nothing: the unsigned workloads compare like with like; an RS256
            // signature costs more than the whole Redis call, a cheap one does not.
            let at_least = match workload {
                "check" | "consume-unsigned" => Some(1.0),
                "consume" if cheap_signatures => Some(0.7),
                _ => None,
            };
            ratios.push(Ratio {
                name: format!("TCP {workload} ÷ Redis + Lua {workload} (same in-flight requests)"),
                value: ours.throughput_per_s / redis.throughput_per_s,
                at_least,
                at_most: None,
            });
        }
    }
    for (protocol, workload) in
        [("authz", "check"), ("authz", "consume"), ("scale", "consume"), ("tcp", "check"), ("tcp", "consume")]
    {
        let secured = report.find("leasehold", &format!("{protocol}+tls"), workload);
        if let (Some(secured), Some(plain)) = (secured, report.find("leasehold", protocol, workload)) {
            ratios.push(Ratio {
                name: format!("{protocol} {workload} over TLS ÷ in plain text"),
                value: secured.throughput_per_s / plain.throughput_per_s,
                at_least: None,
                at_most: None,
            });
        }
    }
    // Ratios measured beside their runs (the webhooks' own) follow these.
    ratios.append(&mut report.ratios);
    report.ratios = ratios;
}

/// The address part of `http://host:port` or `host:port`.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim_start_matches("http://").trim_end_matches('/');
    use std::net::ToSocketAddrs;
    trimmed
        .to_socket_addrs()
        .map_err(|e| format!("`{text}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn server_addresses_read_with_or_without_a_scheme() {
        assert_eq!(socket_addr("http://127.0.0.1:8080/"), Ok(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(socket_addr("127.0.0.1:7070"), Ok(SocketAddr::from(([127, 0, 0, 1], 7070))));
        assert!(socket_addr("nowhere").is_err());
    }
}
