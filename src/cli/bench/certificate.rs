//! The certificate of the bench's TLS server: a CA of the bench's own and a certificate for
//! 127.0.0.1 that it signs, made at start (rcgen) into a scratch directory, and the client
//! settings that trust that CA.

use leasehold_transports::tcp::client::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::PathBuf;

/// The name the certificate carries: the loopback address the bench's servers listen on.
const SERVER_NAME: &str = "127.0.0.1";

/// A CA and the server certificate it signed, as PEM files in a scratch directory.
pub struct BenchCertificate {
    dir: tempfile::TempDir,
}

impl BenchCertificate {
    /// Makes the CA and the server's certificate and key.
    pub fn make() -> Result<BenchCertificate, String> {
        let failed = |e: rcgen::Error| format!("making the bench's certificate: {e}");
        let dir = tempfile::tempdir().map_err(|e| format!("a scratch directory for the certificate: {e}"))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca.distinguished_name.push(DnType::CommonName, "leasehold bench CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().map_err(failed)?;
        let ca = ca.self_signed(&ca_key).map_err(failed)?;
        let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(failed)?;
        leaf.distinguished_name.push(DnType::CommonName, "leasehold bench server");
        let leaf_key = KeyPair::generate().map_err(failed)?;
        let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).map_err(failed)?;
        let certificate = BenchCertificate { dir };
        let write = |path: PathBuf, pem: String| {
            std::fs::write(&path, pem).map_err(|e| format!("writing {}: {e}", path.display()))
        };
        write(certificate.ca_file(), ca.pem())?;
        write(certificate.cert_file(), leaf.pem())?;
        write(certificate.key_file(), leaf_key.serialize_pem())?;
        Ok(certificate)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A TLS client that trusts the CA and expects the server's name.
    pub fn client(&self) -> Result<ClientTls, String> {
        ClientTls::from_ca_file(&self.ca_file(), SERVER_NAME).map_err(|e| format!("the bench's TLS client: {e}"))
    }
}
