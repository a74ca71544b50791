//! The Leasehold server a bench drives: a `leasehold serve` child process the bench starts on
//! a fresh data directory (and stops at the end), or a server already running elsewhere.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
    child: Option<Child>,
    // Removed when the bench ends, after the child has stopped.
    _data_dir: Option<tempfile::TempDir>,
    durability: Option<String>,
}

impl UnderTest {
    /// A server already running at `addr`.
    pub fn running(addr: &str, admin_token: String) -> Result<UnderTest, String> {
        let http = super::socket_addr(addr)?;
        std::net::TcpStream::connect_timeout(&http, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach {http}: {e}"))?;
        Ok(UnderTest { http, tcp: None, admin_token, child: None, _data_dir: None, durability: None })
    }

    /// Starts `leasehold serve` (this very executable) on loopback ports chosen by the system,
    /// with a fresh data directory and durability `durability`.
    pub fn start(durability: &str) -> Result<UnderTest, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding the leasehold executable: {e}"))?;
        let data_dir = tempfile::tempdir().map_err(|e| format!("creating a data directory: {e}"))?;
        let admin_token = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let mut child = Command::new(exe)
            .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--durability", durability, "--data-dir"])
            .arg(data_dir.path())
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
            child: Some(child),
            _data_dir: Some(data_dir),
            durability: Some(durability.to_owned()),
        })
    }

    /// One line saying what is measured.
    pub fn describe(&self) -> String {
        match (&self.child, &self.durability) {
            (Some(child), Some(durability)) => {
                format!("server: leasehold serve (pid {}) started by the bench, durability {durability}", child.id())
            }
            _ => format!("server: running at {}", self.http),
        }
    }

    /// The started server's resident memory, from `/proc` (Linux only).
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
    }
}

/// The first `scheme://host:port` or `host:port` socket address in a banner line.
fn address_in(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .map(|word| word.trim_start_matches("http://").trim_start_matches("tcp://").trim_end_matches(['/', ',', ')']))
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
