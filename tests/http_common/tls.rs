//! Certificates made at test time (rcgen): a CA of the test's own and the server certificates it
//! signs, for the TLS tests.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// A CA of the test's own and what it signs.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The CA's certificate.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, "Leasehold test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let der = params.clone().self_signed(&key).expect("the CA certificate").der().clone();
        TestCa { params, key, der }
    }

    /// The CA's certificate as a PEM file in `dir` (made if missing).
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("a directory");
        let file = dir.join("ca.pem");
        let pem = self.params.clone().self_signed(&self.key).expect("the CA certificate").pem();
        std::fs::write(&file, pem).expect("the CA is written");
        file
    }

    /// A certificate for 127.0.0.1 named `name`, written with its key into `dir`: (certificate
    /// PEM, key PEM, certificate DER).
    pub fn leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let issuer = self.params.clone().self_signed(&self.key).expect("the CA certificate");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &issuer, &self.key).expect("the leaf certificate");
        let (cert_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).expect("the certificate is written");
        std::fs::write(&key_file, key.serialize_pem()).expect("the key is written");
        (cert_file, key_file, cert.der().clone())
    }
}
