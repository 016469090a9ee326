//! TLS on the control plane's gRPC listener: the acceptor built from the PEM files, the
//! handshake of each connection (within the listener's handshake deadline), and the log line
//! that says why a handshake was refused.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tollgate_data_plane::grpc as dp_grpc;

use super::{ListenerStats, Wait};

/// The acceptor and whether client certificates are required (mutual TLS).
pub struct GrpcServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    mutual: bool,
}

impl GrpcServerTls {
    /// Reads and checks the certificate (chain) and key, and with `client_ca` requires client
    /// certificates signed by one of its CAs. Serves `h2` by ALPN.
    pub fn from_files(
        cert_path: &Path,
        key_path: &Path,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<GrpcServerTls> {
        let (certs, key) = dp_grpc::load_identity(
            cert_path,
            "gRPC TLS certificate file",
            key_path,
            "gRPC TLS key file",
        )
        .context("invalid gRPC TLS settings")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match client_ca {
            Some(ca) => {
                let roots = dp_grpc::load_root_store(ca, "gRPC client CA file")
                    .context("invalid gRPC TLS settings")?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .with_context(|| {
                    format!("the gRPC client CA file {} cannot be used", ca.display())
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).with_context(|| {
            format!(
                "the gRPC TLS certificate {} cannot be used with the key {}",
                cert_path.display(),
                key_path.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(GrpcServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mutual: client_ca.is_some(),
        })
    }

    /// `mutual` or `tls`, for the start-up log.
    pub fn mode(&self) -> &'static str {
        if self.mutual { "mutual" } else { "tls" }
    }

    /// The TLS handshake of one accepted connection, finished by `deadline`. A refused or late
    /// handshake is logged with the peer's address and the reason, and gives `None`.
    pub(super) async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
        stats: &ListenerStats,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout_at(deadline, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            // Closed before saying anything (a TCP health check, a port scan).
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(peer = %peer, error = %e, "gRPC connection closed before the TLS handshake");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    peer = %peer,
                    error = %e,
                    mutual_tls = self.mutual,
                    "refused a gRPC connection: TLS handshake failed{}",
                    handshake_hint(&e).map(|h| format!(" ({h})")).unwrap_or_default()
                );
                None
            }
            Err(_) => {
                stats.count_timeout(Wait::Handshake);
                tracing::debug!(
                    peer = %peer,
                    "refused a gRPC connection: TLS handshake timed out"
                );
                None
            }
        }
    }
}

/// What a refused handshake most likely means, from rustls' reason.
fn handshake_hint(e: &std::io::Error) -> Option<&'static str> {
    use rustls::{AlertDescription, CertificateError, Error};
    let reason = e.get_ref()?.downcast_ref::<Error>()?;
    Some(match reason {
        Error::NoCertificatesPresented => {
            "the data plane presented no client certificate: set its --tls-cert and --tls-key"
        }
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "the data plane's client certificate is not signed by a CA in --grpc-client-ca",
        Error::InvalidCertificate(_) => "the data plane's client certificate is not acceptable",
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "not a TLS client: is the data plane using an http:// endpoint instead of https://?"
        }
        Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        ) => {
            "the data plane does not trust this listener's certificate: check its --control-plane-ca"
        }
        _ => return None,
    })
}
