//! gRPC client plumbing shared by the config stream ([`crate::source`]) and the usage reporter
//! ([`crate::reporter`]): how to reach the control plane ([`ConnectOptions`]), the endpoint
//! (connect timeout, HTTP/2 keep-alive), the `authorization: Bearer <join token>` metadata and
//! exponential backoff with full jitter between attempts.
//!
//! Both clients open their own HTTP/2 connection per attempt, so a reconnect can land on another
//! control-plane replica behind a load balancer.
//!
//! TLS ([`ClientTls`]): an `https://` endpoint is reached over TLS (rustls, aws-lc-rs). The
//! control plane's certificate is verified against the CA bundle given
//! (`--control-plane-ca`), or the system's roots when none is; a client certificate and key
//! (`--tls-cert`, `--tls-key`) are presented when the control plane asks for one (mutual TLS).
//! The files are read and checked once, at start ([`ClientTls::from_files`]), so a missing,
//! unparsable or mismatched file stops the process with an error naming it; a handshake that
//! fails later (unknown issuer, refused client certificate) is a connection failure like any
//! other: logged, and retried with backoff.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Timeouts, keep-alive and backoff of a connection to the control plane.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Time allowed to establish the TCP/HTTP/2 connection and to get the stream's response headers.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval; a peer that does not answer within `keepalive_timeout` is dropped,
    /// so a silently cut network is noticed even when no message is due.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// First reconnect delay cap; the cap doubles on every failed attempt up to `backoff_max`.
    /// The actual delay is drawn uniformly from `[0, cap]` (full jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A stream that stayed up at least this long resets the backoff.
    pub stable_after: Duration,
    /// The config stream is closed and reopened after about this long (±10 %), so a fleet
    /// spreads over control-plane replicas that were added or restarted. `None`: never.
    pub max_stream_lifetime: Option<Duration>,
    /// A usage batch left unacknowledged this long makes the reporter drop the stream and
    /// resend everything unacknowledged on a new one (a control plane that is stuck or lost
    /// a batch).
    pub ack_timeout: Duration,
}

/// Default cap of the reconnect delay ([`ConnectOptions::backoff_max`]).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: DEFAULT_BACKOFF_MAX,
            stable_after: Duration::from_secs(10),
            max_stream_lifetime: Some(Duration::from_secs(30 * 60)),
            ack_timeout: Duration::from_secs(120),
        }
    }
}

/// Largest message accepted from the control plane (a snapshot with many thousands of virtual
/// keys is a few MB; tonic's default of 4 MB would be too tight).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The endpoint for `url` (`http://host:port` or `https://host:port`) with the options'
/// timeouts and keep-alive, and TLS for `https`: `tls` when given, else the system's roots.
pub(crate) fn endpoint(
    url: &str,
    opts: &ConnectOptions,
    tls: Option<&ClientTls>,
) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid control plane endpoint {url:?}: {e}"))?;
    let endpoint = match (endpoint.uri().scheme_str(), tls) {
        (Some("https"), Some(tls)) => endpoint
            .tls_config(tls.client_config())
            .map_err(|e| format!("TLS setup for {url:?}: {}", error_chain(&e)))?,
        (Some("https"), None) => endpoint
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(|e| {
                format!(
                    "TLS setup for {url:?} without a control-plane CA (--control-plane-ca): \
                     cannot use the system's CA certificates: {}",
                    error_chain(&e)
                )
            })?,
        (Some("http"), Some(_)) => {
            return Err(TlsConfigError::PlaintextEndpoint {
                endpoint: url.to_owned(),
            }
            .to_string());
        }
        (Some("http"), None) => endpoint,
        _ => {
            return Err(format!(
                "invalid control plane endpoint {url:?}: expected http://host:port or \
                 https://host:port"
            ));
        }
    };
    Ok(endpoint
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// Checks, before anything connects, that `url` is a usable control plane endpoint and fits the
/// TLS settings: TLS settings need `https://` (they are never silently dropped on a plaintext
/// link).
pub fn check_endpoint(url: &str, tls: Option<&ClientTls>) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid control plane endpoint {url:?}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) if tls.is_some() => Err(TlsConfigError::PlaintextEndpoint {
            endpoint: url.to_owned(),
        }
        .to_string()),
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!(
            "invalid control plane endpoint {url:?}: expected http://host:port or \
             https://host:port"
        )),
    }
}

/// Why TLS settings could not be used. Every message names the file and its role, and never
/// quotes key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the {what} {}: {error}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("the {what} {} is not valid PEM: {reason}", .path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the {what} {} contains no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)",
        .path.display()
    )]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the {what} {} holds a certificate that cannot be used: {reason}", .path.display())]
    BadCertificate {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the {what} {} contains no private key (expected an unencrypted PEM `PRIVATE KEY`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        .path.display()
    )]
    NoPrivateKey { what: &'static str, path: PathBuf },
    #[error("the {what} {} holds a private key that cannot be used: {reason}", .path.display())]
    UnsupportedKey {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the certificate {} and the private key {} do not belong together: {reason}",
        .cert.display(),
        .key.display()
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("a client certificate needs its key and a key its certificate: give both or neither")]
    IncompleteIdentity,
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName { name: String, reason: String },
    #[error(
        "control plane endpoint {endpoint:?} is plaintext http://, but TLS settings (CA, client \
         certificate or server name) are given: use https://"
    )]
    PlaintextEndpoint { endpoint: String },
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

fn bad_pem(path: &Path, what: &'static str, e: &pem::Error) -> TlsConfigError {
    TlsConfigError::BadPem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn parse_certificates(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, what, &e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The PEM certificates in `path` (at least one); `what` names the file in errors, e.g.
/// "gRPC TLS certificate file".
pub fn load_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    parse_certificates(&read_file(path, what)?, path, what)
}

/// The CA certificates in `path` as a root store; every certificate must be usable as a trust
/// anchor.
pub fn load_root_store(path: &Path, what: &'static str) -> Result<RootCertStore, TlsConfigError> {
    root_store_from_pem(&read_file(path, what)?, path, what)
}

fn root_store_from_pem(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(pem, path, what)? {
        roots
            .add(cert)
            .map_err(|e| TlsConfigError::BadCertificate {
                what,
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
    }
    Ok(roots)
}

/// The first private key in `path` (PKCS#8, PKCS#1 or SEC1 PEM).
pub fn load_private_key(
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    parse_private_key(&read_file(path, what)?, path, what)
}

fn parse_private_key(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            what,
            path: path.to_owned(),
        },
        e => bad_pem(path, what, &e),
    })
}

/// A certificate chain and its private key, checked to belong together (the key's public key is
/// the one in the first certificate). `cert_what` and `key_what` name the files in errors.
pub fn load_identity(
    cert_path: &Path,
    cert_what: &'static str,
    key_path: &Path,
    key_what: &'static str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let cert_pem = read_file(cert_path, cert_what)?;
    let key_pem = read_file(key_path, key_what)?;
    identity_from_pem(
        (&cert_pem, cert_path, cert_what),
        (&key_pem, key_path, key_what),
    )
}

/// (PEM bytes, the file they came from, what the file is for)
type PemSource<'a> = (&'a [u8], &'a Path, &'static str);

fn identity_from_pem(
    (cert_pem, cert_path, cert_what): PemSource<'_>,
    (key_pem, key_path, key_what): PemSource<'_>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let certs = parse_certificates(cert_pem, cert_path, cert_what)?;
    let key = parse_private_key(key_pem, key_path, key_what)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsConfigError::UnsupportedKey {
            what: key_what,
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    let mismatch = |reason: String| TlsConfigError::KeyMismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason,
    };
    match rustls::sign::CertifiedKey::new(certs.clone(), signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(mismatch(
                "the key's public key is not the certificate's".to_owned(),
            ));
        }
        Err(e) => return Err(mismatch(e.to_string())),
    }
    Ok((certs, key))
}

/// TLS towards the control plane (for `https://` endpoints): the CA bundle that signs the control
/// plane's certificate (`None`: the system's roots), the client certificate and key presented
/// for mutual TLS, and the name the control plane's certificate must carry (default: the
/// endpoint's host). Cheap to clone; its `Debug` shows file names only.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
    server_name: Option<String>,
    ca_path: Option<PathBuf>,
    cert_path: Option<PathBuf>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_path)
            .field("client_cert", &self.cert_path)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Reads and checks the files: `ca` (PEM, one or more CA certificates), `cert` and `key`
    /// (PEM client certificate chain and its private key; both or neither) and the optional
    /// server name. Errors name the file at fault.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: Option<&str>,
    ) -> Result<ClientTls, TlsConfigError> {
        let mut tls = ClientTls::default();
        if let Some(path) = ca {
            const WHAT: &str = "control-plane CA file";
            let pem = read_file(path, WHAT)?;
            root_store_from_pem(&pem, path, WHAT)?;
            tls.ca = Some(Certificate::from_pem(pem));
            tls.ca_path = Some(path.to_owned());
        }
        match (cert, key) {
            (Some(cert), Some(key)) => {
                const CERT: &str = "client certificate file";
                const KEY: &str = "client key file";
                let cert_pem = read_file(cert, CERT)?;
                let key_pem = read_file(key, KEY)?;
                identity_from_pem((&cert_pem, cert, CERT), (&key_pem, key, KEY))?;
                tls.identity = Some(Identity::from_pem(cert_pem, key_pem));
                tls.cert_path = Some(cert.to_owned());
            }
            (None, None) => {}
            _ => return Err(TlsConfigError::IncompleteIdentity),
        }
        if let Some(name) = server_name {
            ServerName::try_from(name).map_err(|e| TlsConfigError::ServerName {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
            tls.server_name = Some(name.to_owned());
        }
        Ok(tls)
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether a CA bundle replaces the system's roots.
    pub fn has_ca(&self) -> bool {
        self.ca.is_some()
    }

    fn client_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        config
    }
}

/// Adds `authorization: Bearer <token>` to a request. The token never appears in errors or logs.
pub(crate) fn authorize<T>(req: &mut tonic::Request<T>, token: Option<&str>) -> Result<(), String> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the join token contains characters not allowed in a header".to_owned())?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(())
}

/// True when the server refused the request because it does not accept gzip-compressed
/// messages; the caller then retries without compressing what it sends.
pub(crate) fn rejects_compression(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unimplemented && status.message().contains("compress")
}

/// A status as one log-friendly line, with the transport error behind it when there is one
/// (a refused TLS handshake surfaces as `Unavailable` whose cause says why).
pub(crate) fn status_text(status: &tonic::Status) -> String {
    let mut out = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    if let Some(source) = std::error::Error::source(status) {
        let cause = error_chain(source);
        if !status.message().contains(&cause) {
            out.push_str(" (");
            out.push_str(&cause);
            out.push(')');
        }
    }
    out
}

/// An error and its sources, joined (tonic's transport errors hide the cause in the chain); a
/// source whose text is already there is not repeated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `error` (a failure to open a stream to `url`) with the likely TLS misconfiguration behind it,
/// when its text points at one. The hints are worded as possibilities: a refused handshake and a
/// control plane going away can look alike from this side.
pub(crate) fn with_tls_hint(error: String, url: &str, tls: Option<&ClientTls>) -> String {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let has = |needle: &str| error.contains(needle);
    // How a refused handshake or a closed TLS session looks once h2 is on top.
    let closed = has("connection closed") || has("broken pipe") || has("canceled");
    let hint = if !https {
        // A TLS listener answers the HTTP/2 preface with a TLS alert, which h2 reads as a bad
        // frame, or closes the connection.
        (has("frame with invalid size") || closed)
            .then_some("if the control plane serves TLS, use an https:// endpoint")
    } else if has("NotValidForName") {
        Some(
            "the control plane's certificate does not name this endpoint's host: use the name it \
             was issued for, or set --control-plane-server-name",
        )
    } else if has("UnknownIssuer") || has("BadSignature") {
        Some(if tls.is_some_and(ClientTls::has_ca) {
            "the control plane's certificate is not signed by the CA in --control-plane-ca"
        } else {
            "the control plane's certificate is not signed by a system CA: set \
             --control-plane-ca to the CA that signed it"
        })
    } else if has("UnknownCA") || has("alert: BadCertificate") || has("CertificateUnknown") {
        Some(
            "the control plane refused this node's client certificate: it must be signed by the \
             CA in the control plane's --grpc-client-ca",
        )
    } else if has("CertificateRequired") || closed {
        Some(if tls.is_some_and(ClientTls::has_client_certificate) {
            "if the control plane requires client certificates (mutual TLS), this node's \
             --tls-cert must be signed by the CA in the control plane's --grpc-client-ca"
        } else {
            "if the control plane requires client certificates (mutual TLS), set --tls-cert and \
             --tls-key"
        })
    } else {
        None
    };
    match hint {
        Some(hint) => format!("{error} (hint: {hint})"),
        None => error,
    }
}

/// Exponential backoff with full jitter: attempt `n` waits a uniform random time in
/// `[0, min(max, initial * 2^n)]`.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(opts: &ConnectOptions) -> Backoff {
        Backoff {
            initial: opts.backoff_initial.max(Duration::from_millis(1)),
            max: opts.backoff_max.max(opts.backoff_initial),
            attempt: 0,
        }
    }

    /// The cap of the next delay (before jitter).
    pub(crate) fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; advances the backoff.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let cap = u64::try_from(self.cap().as_millis()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::random_range(0..=cap))
    }

    /// Failed attempts since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `d` scaled by a random factor in `[0.9, 1.1]`, so that timers set at the same moment on many
/// nodes do not fire together.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter_and_resets() {
        let opts = ConnectOptions {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ..ConnectOptions::default()
        };
        let mut b = Backoff::new(&opts);
        let mut caps = Vec::new();
        for _ in 0..12 {
            let cap = b.cap();
            caps.push(cap.as_millis());
            let d = b.next_delay();
            assert!(d <= cap, "{d:?} > {cap:?}");
        }
        assert_eq!(
            caps,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.attempts(), 12);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.cap(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
        // Full jitter: delays spread over the whole range, not just near the cap.
        let mut b = Backoff::new(&ConnectOptions {
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(10),
            ..ConnectOptions::default()
        });
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(7)));
    }

    #[test]
    fn endpoint_and_authorization() {
        let opts = ConnectOptions::default();
        assert!(endpoint("http://127.0.0.1:9090", &opts, None).is_ok());
        assert!(endpoint("not a url", &opts, None).is_err());
        assert!(endpoint("127.0.0.1:9090", &opts, None).is_err());
        let mut req = tonic::Request::new(());
        authorize(&mut req, Some("jt-secret")).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            "Bearer jt-secret"
        );
        let mut req = tonic::Request::new(());
        authorize(&mut req, None).unwrap();
        assert!(req.metadata().get("authorization").is_none());
        let err = authorize(&mut tonic::Request::new(()), Some("bad\nvalue")).unwrap_err();
        assert!(
            !err.contains("bad"),
            "the token leaked into the error: {err}"
        );
    }

    #[test]
    fn https_endpoints_use_the_tls_settings_and_http_refuses_them() {
        let pki = test_pki::generate();
        let opts = ConnectOptions::default();
        let tls = ClientTls::from_files(
            Some(&pki.ca),
            Some(&pki.client_cert),
            Some(&pki.client_key),
            Some("localhost"),
        )
        .unwrap();
        assert!(tls.has_ca() && tls.has_client_certificate());
        assert!(endpoint("https://127.0.0.1:9090", &opts, Some(&tls)).is_ok());
        assert!(endpoint("https://[::1]:9090", &opts, Some(&tls)).is_ok());
        let err = endpoint("http://127.0.0.1:9090", &opts, Some(&tls)).unwrap_err();
        assert!(err.contains("use https://"), "{err}");
        assert!(check_endpoint("https://cp.internal:8081", Some(&tls)).is_ok());
        assert!(check_endpoint("https://cp.internal:8081", None).is_ok());
        assert!(check_endpoint("http://cp.internal:8081", None).is_ok());
        let err = check_endpoint("http://cp.internal:8081", Some(&tls)).unwrap_err();
        assert!(err.contains("plaintext http://"), "{err}");
        for bad in ["cp.internal:8081", "ftp://cp:21", "not a url", "https://"] {
            assert!(check_endpoint(bad, None).is_err(), "{bad}");
        }
        // Debug shows file names, never key material.
        let debug = format!("{tls:?}");
        assert!(debug.contains("client.pem"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn tls_file_errors_name_the_file_and_the_problem() {
        let pki = test_pki::generate();
        let dir = pki.dir.path();
        let missing = dir.join("missing.pem");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM\n").unwrap();
        let truncated = dir.join("truncated.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let not_a_cert = dir.join("not-a-cert.pem");
        std::fs::write(
            &not_a_cert,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let load = |ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>| {
            ClientTls::from_files(ca, cert, key, None).unwrap_err()
        };

        let e = load(Some(&missing), None, None);
        assert!(matches!(e, TlsConfigError::Read { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("control-plane CA file") && msg.contains("missing.pem"),
            "{msg}"
        );

        let e = load(Some(&garbage), None, None);
        assert!(matches!(e, TlsConfigError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");

        let e = load(Some(&truncated), None, None);
        assert!(matches!(e, TlsConfigError::BadPem { .. }), "{e}");

        let e = load(Some(&not_a_cert), None, None);
        assert!(matches!(e, TlsConfigError::BadCertificate { .. }), "{e}");

        // A private key where the CA should be: no certificate in it.
        let e = load(Some(&pki.client_key), None, None);
        assert!(matches!(e, TlsConfigError::NoCertificate { .. }), "{e}");
        assert!(!e.to_string().contains("PRIVATE KEY-----"), "{e}");

        let e = load(None, Some(&pki.client_cert), None);
        assert!(matches!(e, TlsConfigError::IncompleteIdentity), "{e}");
        let e = load(None, None, Some(&pki.client_key));
        assert!(matches!(e, TlsConfigError::IncompleteIdentity), "{e}");

        let e = load(None, Some(&missing), Some(&pki.client_key));
        assert!(e.to_string().contains("client certificate file"), "{e}");
        let e = load(None, Some(&pki.client_cert), Some(&missing));
        assert!(e.to_string().contains("client key file"), "{e}");

        // A certificate where the key should be.
        let e = load(None, Some(&pki.client_cert), Some(&pki.client_cert));
        assert!(matches!(e, TlsConfigError::NoPrivateKey { .. }), "{e}");
        assert!(e.to_string().contains("client key file"), "{e}");

        // A PEM private-key block that holds no key.
        let junk_key = dir.join("junk-key.pem");
        std::fs::write(
            &junk_key,
            "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load(None, Some(&pki.client_cert), Some(&junk_key));
        assert!(matches!(e, TlsConfigError::UnsupportedKey { .. }), "{e}");
        assert!(e.to_string().contains("junk-key.pem"), "{e}");

        // The key of another certificate.
        let e = load(None, Some(&pki.client_cert), Some(&pki.server_key));
        assert!(matches!(e, TlsConfigError::KeyMismatch { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("client.pem")
                && msg.contains("server-key.pem")
                && msg.contains("do not belong together"),
            "{msg}"
        );

        let e =
            ClientTls::from_files(Some(&pki.ca), None, None, Some("not a host name!")).unwrap_err();
        assert!(matches!(e, TlsConfigError::ServerName { .. }), "{e}");

        // What works: CA only (TLS), CA and client certificate (mutual TLS), an IP server name.
        assert!(ClientTls::from_files(Some(&pki.ca), None, None, None).is_ok());
        assert!(
            ClientTls::from_files(
                None,
                Some(&pki.client_cert),
                Some(&pki.client_key),
                Some("10.0.0.5")
            )
            .is_ok()
        );
        // The shared loaders, as the control plane's listener uses them.
        assert_eq!(load_root_store(&pki.ca, "CA").unwrap().len(), 1);
        assert!(load_identity(&pki.server_cert, "cert", &pki.server_key, "key").is_ok());
    }

    #[test]
    fn tls_hints_point_at_the_likely_misconfiguration() {
        let pki = test_pki::generate();
        let ca_only = ClientTls::from_files(Some(&pki.ca), None, None, None).unwrap();
        let mutual = ClientTls::from_files(
            Some(&pki.ca),
            Some(&pki.client_cert),
            Some(&pki.client_key),
            None,
        )
        .unwrap();
        let https = "https://cp:8081";
        let hint = |error: &str, url: &str, tls: Option<&ClientTls>| {
            with_tls_hint(error.to_owned(), url, tls)
        };
        assert!(
            hint(
                "connection error: received fatal alert: CertificateRequired",
                https,
                Some(&ca_only)
            )
            .ends_with("set --tls-cert and --tls-key)")
        );
        assert!(
            hint(
                "operation was canceled: connection closed",
                https,
                Some(&mutual)
            )
            .contains("--grpc-client-ca")
        );
        assert!(
            hint("received fatal alert: UnknownCA", https, Some(&mutual))
                .contains("--grpc-client-ca")
        );
        assert!(
            hint("invalid peer certificate: UnknownIssuer", https, None)
                .contains("set --control-plane-ca")
        );
        assert!(
            hint(
                "invalid peer certificate: UnknownIssuer",
                https,
                Some(&ca_only)
            )
            .contains("not signed by the CA in --control-plane-ca")
        );
        assert!(
            hint(
                "invalid peer certificate: NotValidForName",
                https,
                Some(&ca_only)
            )
            .contains("--control-plane-server-name")
        );
        assert!(
            hint(
                "http2 error: frame with invalid size",
                "http://cp:8081",
                None
            )
            .contains("use an https:// endpoint")
        );
        // Nothing to add to an unrelated failure.
        let refused = "connect: tcp connect error: Connection refused (os error 111)";
        assert_eq!(hint(refused, https, Some(&mutual)), refused);
        assert_eq!(hint(refused, "http://cp:8081", None), refused);
        assert_eq!(
            hint("Unauthenticated: bad join token", https, None),
            "Unauthenticated: bad join token"
        );
    }
}

/// Certificates for TLS tests, made with rcgen: a CA, a server certificate for
/// `localhost`/`127.0.0.1` and a client certificate signed by it, and a client certificate from
/// another CA.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::path::PathBuf;

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    pub(crate) struct Pki {
        pub dir: tempfile::TempDir,
        pub ca: PathBuf,
        pub server_cert: PathBuf,
        pub server_key: PathBuf,
        pub client_cert: PathBuf,
        pub client_key: PathBuf,
        pub other_ca: PathBuf,
        pub other_client_cert: PathBuf,
        pub other_client_key: PathBuf,
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let main = ca("Tollgate test CA");
        let other = ca("Some other CA");
        let (server_cert, server_key) = leaf(
            &main,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &main,
            &["data-plane-1"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_cert, other_key) =
            leaf(&other, &["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
        Pki {
            ca: write("ca.pem", &main.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
            other_ca: write("other-ca.pem", &other.pem()),
            other_client_cert: write("other-client.pem", &other_cert),
            other_client_key: write("other-client-key.pem", &other_key),
            dir,
        }
    }

    /// A TLS-terminating proxy in front of a plaintext server (the fake control plane): it
    /// serves `server.pem` and, when `mutual`, requires a client certificate signed by `ca.pem`.
    /// Refused handshakes are recorded with rustls' reason.
    pub(crate) struct TlsProxy {
        pub addr: std::net::SocketAddr,
        pub refused: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TlsProxy {
        pub(crate) fn endpoint(&self) -> String {
            format!("https://{}", self.addr)
        }

        pub(crate) fn refusals(&self) -> Vec<String> {
            self.refused.lock().unwrap().clone()
        }
    }

    impl Drop for TlsProxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub(crate) async fn tls_proxy(
        pki: &Pki,
        backend: std::net::SocketAddr,
        mutual: bool,
    ) -> TlsProxy {
        use std::sync::Arc;
        use tokio_rustls::rustls;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let roots = super::load_root_store(&pki.ca, "CA").unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        let (certs, key) =
            super::load_identity(&pki.server_cert, "cert", &pki.server_key, "key").unwrap();
        let mut config = builder.with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let refused = Arc::clone(&refused);
            let accepted = Arc::clone(&accepted);
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let refused = Arc::clone(&refused);
                    let accepted = Arc::clone(&accepted);
                    tokio::spawn(async move {
                        match acceptor.accept(tcp).await {
                            Ok(mut tls) => {
                                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                if let Ok(mut upstream) =
                                    tokio::net::TcpStream::connect(backend).await
                                {
                                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream)
                                        .await;
                                }
                            }
                            Err(e) => refused.lock().unwrap().push(e.to_string()),
                        }
                    });
                }
            }
        });
        TlsProxy {
            addr,
            refused,
            accepted,
            task,
        }
    }
}
