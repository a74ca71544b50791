//! The Leasehold server a bench drives: a `leasehold serve` child process the bench starts on
//! a fresh data directory (and stops at the end), the same server hosted in the bench's own
//! process (`--in-process`, as an embedder would), or a server already running elsewhere.

use super::certificate::BenchCertificate;
use super::http::Target;
use super::issuer::Issuer;
use crate::cli::config::{FileConfig, ServeArgs, Settings};
use crate::cli::serve;
use clap::Parser;
use leasehold_engine::tokens::Algorithm;
use leasehold_transports::tcp::client::ClientTls;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// How the bench starts (or hosts) a server.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    /// Its durability (`--durability`).
    pub durability: &'a str,
    /// An identity provider it trusts.
    pub issuer: Option<&'a Issuer>,
    /// The algorithm of its signing key (`--signing-alg`; the server's default otherwise).
    pub signing_alg: Option<Algorithm>,
    /// The CPUs a started server runs on (a `taskset` list such as `0-3`).
    pub cores: Option<&'a str>,
    /// The certificate a started server serves TLS with.
    pub certificate: Option<&'a BenchCertificate>,
}

/// How long a started server may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server under test.
pub struct UnderTest {
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its TCP protocol address, when it listens for one.
    pub tcp: Option<SocketAddr>,
    /// Its admin token (for seeding).
    pub admin_token: String,
    /// The TLS client for its certificate, when it serves TLS.
    pub tls: Option<ClientTls>,
    child: Option<Child>,
    hosted: Option<Hosted>,
    // Removed when the bench ends, after the server has stopped.
    _data_dir: Option<tempfile::TempDir>,
    durability: Option<String>,
}

/// A server running on a thread of the bench's own process.
struct Hosted {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Hosted {
    /// Stops the server (it drains its connections and closes its journal) and waits for it.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `leasehold serve`'s arguments, parsed as the command line would be (so that the same
/// `LEASEHOLD_*` variables apply to a hosted server as to a started one).
#[derive(Parser)]
struct HostedArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

impl UnderTest {
    /// A server already running at `addr`.
    pub fn running(addr: &str, admin_token: String) -> Result<UnderTest, String> {
        let http = super::socket_addr(addr)?;
        std::net::TcpStream::connect_timeout(&http, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach {http}: {e}"))?;
        Ok(UnderTest {
            http,
            tcp: None,
            admin_token,
            tls: None,
            child: None,
            hosted: None,
            _data_dir: None,
            durability: None,
        })
    }

    /// Hosts the server in this process, on a thread with a runtime of its own (the engine
    /// and the signer start their own threads), with a fresh data directory, as `launch` says
    /// (its cores and certificate apply to started servers only), and `admin_token` as its
    /// admin token.
    pub fn host(launch: &Launch<'_>, admin_token: Option<String>) -> Result<UnderTest, String> {
        let durability = launch.durability;
        let data_dir = tempfile::tempdir().map_err(|e| format!("creating a data directory: {e}"))?;
        let admin_token = admin_token.unwrap_or_else(|| format!("bench-{}", uuid::Uuid::new_v4().simple()));
        let dir = data_dir.path().to_str().ok_or("the data directory's path is not UTF-8")?;
        let argv =
            ["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--durability", durability, "--data-dir", dir];
        let args = HostedArgs::try_parse_from(argv).map_err(|e| format!("the hosted server's settings: {e}"))?;
        let mut settings = Settings::resolve(&args.serve, FileConfig::default(), None)
            .map_err(|e| format!("the hosted server: {e}"))?;
        settings.file_admin_token = Some(admin_token.clone());
        settings.identity = launch.issuer.map(Issuer::config);
        if let Some(alg) = launch.signing_alg {
            settings.signing_alg = alg;
        }

        let (started_tx, started_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("leasehold-main".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("starting the server's runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = match serve::start(&settings).await {
                        Ok(started) => started,
                        Err(e) => {
                            let _ = started_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok((started.http_addr, started.tcp_addr)));
                    if let Err(e) = started.serve_until(async move { drop(stopped.await) }).await {
                        tracing::warn!(error = %e, "the hosted server stopped with an error");
                    }
                });
            })
            .map_err(|e| format!("starting the server's thread: {e}"))?;
        let mut hosted = Hosted { stop: Some(stop), thread: Some(thread) };
        let (http, tcp) = match started_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(e)) => {
                hosted.stop();
                return Err(e);
            }
            Err(_) => return Err("the hosted server did not start".into()),
        };
        Ok(UnderTest {
            http,
            tcp: Some(tcp),
            admin_token,
            tls: None,
            child: None,
            hosted: Some(hosted),
            _data_dir: Some(data_dir),
            durability: Some(durability.to_owned()),
        })
    }

    /// Starts `leasehold serve` (this very executable) on loopback ports chosen by the system,
    /// with a fresh data directory, as `launch` says: on its cores (through `taskset`), serving
    /// TLS on both ports with its certificate when given.
    pub fn start(launch: &Launch<'_>) -> Result<UnderTest, String> {
        let durability = launch.durability;
        let exe = std::env::current_exe().map_err(|e| format!("finding the leasehold executable: {e}"))?;
        let data_dir = tempfile::tempdir().map_err(|e| format!("creating a data directory: {e}"))?;
        let admin_token = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let mut command = match launch.cores {
            Some(cores) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["--cpu-list", cores]).arg(exe);
                taskset
            }
            None => Command::new(exe),
        };
        command
            .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--durability", durability, "--data-dir"])
            .arg(data_dir.path().join("data"));
        if let Some(alg) = launch.signing_alg {
            command.args(["--signing-alg", alg.as_str()]);
        }
        if let Some(issuer) = launch.issuer {
            let config = data_dir.path().join("leasehold.toml");
            std::fs::write(&config, issuer.config_toml()).map_err(|e| format!("writing the server's settings: {e}"))?;
            command.arg("--config").arg(config);
        }
        let tls = match launch.certificate {
            Some(certificate) => {
                command.arg("--tls-cert").arg(certificate.cert_file()).arg("--tls-key").arg(certificate.key_file());
                Some(certificate.client()?)
            }
            None => None,
        };
        let mut child = command
            .env("LEASEHOLD_ADMIN_TOKEN", &admin_token)
            .env("LEASEHOLD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting leasehold serve: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from leasehold serve")?;
        // The banner is read on a thread of its own so that a silent server times out; the
        // thread keeps draining stdout after the banner, or the server's next line would fail
        // on a closed pipe.
        let (lines, banner) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines.send(line);
            }
        });
        let mut http = None;
        let mut tcp = None;
        while http.is_none() || tcp.is_none() {
            let Ok(line) = banner.recv_timeout(START_TIMEOUT) else { break };
            if line.starts_with("Stop with") {
                break;
            }
            if line.starts_with("HTTP") {
                http = address_in(&line);
            } else if line.starts_with("TCP") {
                tcp = address_in(&line);
            }
        }
        let Some(http) = http else {
            let _ = child.kill();
            return Err("leasehold serve printed no HTTP address".into());
        };
        Ok(UnderTest {
            http,
            tcp,
            admin_token,
            tls,
            child: Some(child),
            hosted: None,
            _data_dir: Some(data_dir),
            durability: Some(durability.to_owned()),
        })
    }

    /// Where HTTP clients connect, and how.
    pub fn target(&self) -> Target {
        Target { addr: self.http, tls: self.tls.clone() }
    }

    /// One line saying what is measured.
    pub fn describe(&self) -> String {
        match (&self.child, &self.hosted, &self.durability) {
            (Some(child), _, Some(durability)) => {
                format!("server: leasehold serve (pid {}) started by the bench, durability {durability}", child.id())
            }
            (None, Some(_), Some(durability)) => {
                format!("server: hosted in the bench's own process (--in-process), durability {durability}")
            }
            _ => format!("server: running at {}", self.http),
        }
    }

    /// The started server's resident memory, from `/proc` (Linux only); not known for a hosted
    /// server, whose process is the load generator's too.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for UnderTest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut hosted) = self.hosted.take() {
            hosted.stop();
        }
    }
}

/// The first `scheme://host:port` or `host:port` socket address in a banner line.
fn address_in(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .map(|word| {
            let word = word.trim_start_matches("http://").trim_start_matches("https://").trim_start_matches("tcp://");
            word.trim_end_matches(['/', ',', ')'])
        })
        .find_map(|word| word.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_lines_give_their_address() {
        let http = "HTTP listening on http://127.0.0.1:41234  (/authz/, /admin/)";
        assert_eq!(address_in(http), Some(SocketAddr::from(([127, 0, 0, 1], 41234))));
        assert_eq!(address_in("TCP listening on 127.0.0.1:7070"), Some(SocketAddr::from(([127, 0, 0, 1], 7070))));
        assert_eq!(address_in("Data in ./leasehold-data"), None);
    }
}
