//! TLS for both ports, from the PEM files named by `RIPCORD_TLS_CERT` and `RIPCORD_TLS_KEY`.
//! Both are read and checked against each other at start, so that a bad file stops the
//! server with an error that names the setting, rather than failing every handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The certificate and key both ports serve with.
#[derive(Clone)]
pub struct Tls {
    http: Arc<rustls::ServerConfig>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Tls {
    /// TLS from the configuration: `None` when neither setting is given.
    pub fn load(config: &Config) -> anyhow::Result<Option<Tls>> {
        let (cert_path, key_path) = match (&config.tls_cert, &config.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => anyhow::bail!(
                "RIPCORD_TLS_CERT and RIPCORD_TLS_KEY go together: set both, or neither to serve \
                 plain text"
            ),
        };
        let cert_pem = read("RIPCORD_TLS_CERT", cert_path)?;
        let key_pem = read("RIPCORD_TLS_KEY", key_path)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                anyhow::anyhow!(
                    "RIPCORD_TLS_CERT: {} is not a PEM certificate chain: {error}",
                    cert_path.display()
                )
            })?;
        anyhow::ensure!(
            !chain.is_empty(),
            "RIPCORD_TLS_CERT: {} holds no PEM certificate",
            cert_path.display()
        );
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
            anyhow::anyhow!(
                "RIPCORD_TLS_KEY: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {error}",
                key_path.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut http = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| {
                anyhow::anyhow!(
                    "RIPCORD_TLS_KEY ({}) does not fit RIPCORD_TLS_CERT ({}): {error}",
                    key_path.display(),
                    cert_path.display()
                )
            })?;
        // HTTP/1.1 only, as over plain text: the drain on stop and the streams are built on
        // its connection semantics.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Tls {
            http: Arc::new(http),
            cert_pem,
            key_pem,
        }))
    }

    /// The server configuration for HTTP.
    pub fn http(&self) -> rustls::ServerConfig {
        rustls::ServerConfig::clone(&self.http)
    }

    /// The certificate chain, PEM, for servers that build their own configuration.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The private key, PEM.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }
}

fn read(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{setting}: reading {}", path.display()))
}
