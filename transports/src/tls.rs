//! TLS for both transports (SPEC section 13): a certificate chain and its private key from PEM
//! files, served with rustls (aws-lc, as the signer and the outgoing connections), and read
//! again on demand (`leasehold serve` does it on SIGHUP) without dropping a connection: every
//! handshake asks [`ReloadableCertificate`] for the certificate in force, so connections made
//! before a reload keep the session they have and new ones get the new certificate. A reload
//! that fails (a missing file, a bad PEM, a key that is not the certificate's) changes nothing.

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates, the server's first, then the chain up to (not including) a root.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
}

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The certificate handshakes are answered with, replaceable while serving.
#[derive(Debug)]
pub struct ReloadableCertificate {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner())))
    }
}

impl ReloadableCertificate {
    /// Reads the files again and, if they hold a usable certificate and key, serves them from
    /// the next handshake on; otherwise keeps the current ones and says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// A server's TLS: its acceptor and the certificate it answers with.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadableCertificate>,
}

impl ServerTls {
    /// TLS 1.2 and 1.3 with the certificate and key in `files`, for clients speaking `alpn`
    /// (HTTP/1.1 for the HTTP server; nothing for the TCP protocol).
    pub fn new(files: TlsFiles, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let certificate = Arc::new(ReloadableCertificate { current: RwLock::new(Arc::new(load(&files)?)), files });
        ServerTls::serving(certificate, alpn)
    }

    /// The same certificate (reloaded together) for clients speaking `alpn`.
    pub fn with_alpn(&self, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        ServerTls::serving(Arc::clone(&self.certificate), alpn)
    }

    fn serving(certificate: Arc<ReloadableCertificate>, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate })
    }

    /// The acceptor of this server's connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate, to reload.
    pub fn certificate(&self) -> &Arc<ReloadableCertificate> {
        &self.certificate
    }
}

/// The cryptography rustls uses here: aws-lc, as everywhere in Leasehold.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The connector of the server's outgoing HTTP (identity providers' keys, webhooks): `https://`
/// checked against the web's root certificates and those in `extra_roots_pem` (a deployment's
/// own CA), `http://` in the clear.
pub fn https_connector(
    extra_roots_pem: Option<&str>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError(format!("the CA file: {e}")))?;
            roots.add(cert).map_err(|e| TlsError(format!("the CA file: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError("the CA file holds no PEM certificate".into()));
        }
    }
    let config = client_config(roots)?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    Ok(HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().wrap_connector(connector))
}

/// The settings of a TLS client that trusts `roots`: every client of Leasehold's (the Rust
/// client, the outgoing HTTP) speaks the same protocol versions with the same provider.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Whether `first_byte`, the first byte a client sent, can start a TLS handshake (a TLS
/// record of type handshake); a plain-text request starts with a letter.
pub fn starts_handshake(first_byte: u8) -> bool {
    first_byte == 0x16
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError(format!("{} and {}: {e}", files.cert.display(), files.key.display())))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("reading {}: {e}", path.display())))
}

/// The PEM certificates in `path`; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
        .ok_or_else(|| TlsError(format!("{} holds no PEM private key", path.display())))
}
