//! A real SMTP server for the tests that e-mail: Python's aiosmtpd, whose debugging handler
//! prints each message it receives.

use std::time::Duration;

/// A real SMTP server (Python's aiosmtpd) that prints each message it receives; `$LEASEHOLD_TEST_PYTHON`
/// has it (`scripts/test-all` installs it).
pub struct SmtpServer {
    child: std::process::Child,
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    messages: std::sync::mpsc::Receiver<String>,
}

impl SmtpServer {
    /// Starts one on a free port.
    pub fn start() -> SmtpServer {
        let python = super::test_python();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut child = std::process::Command::new(&python)
            .args(["-u", "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Debugging", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut message = String::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("END MESSAGE") {
                    let _ = send.send(std::mem::take(&mut message));
                } else {
                    message.push_str(&line);
                    message.push('\n');
                }
            }
        });
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return SmtpServer { child, port, messages };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start listening on {port}");
    }
}

impl SmtpServer {
    /// The next message received, as a mail client reads it (quoted-printable decoded), within
    /// ten seconds.
    pub fn next_message(&self) -> String {
        let message = self.messages.recv_timeout(Duration::from_secs(10)).expect("a message arrives");
        message.replace("=\n", "").replace("=3D", "=")
    }

    /// The `[smtp]` table of a configuration file that sends through this server.
    pub fn config(&self) -> String {
        format!("[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"Licensing <licenses@vendor.example>\"\n", self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
