//! HTTP/1.1 load generator for the benchmarks (`scripts/bench.sh`, `BENCHMARKS.md`).
//!
//! ```text
//! loadgen --url URL [-H 'Name: value']... [--body TEXT | --body-file PATH]
//!         (--rate R [--connections C] | --concurrency N)
//!         [--duration 20s] [--warmup 3s] [--timeout 10s] [--threads 1]
//!         [--host HOST] [--sigv4 AKID:SECRET[:TOKEN] [--region us-east-1]]
//!         [--label NAME] [--json-out FILE]
//! ```
//!
//! * **Open loop** (`--rate`): requests are due at fixed times `start + i / rate`, whether or not
//!   earlier ones have finished, and are handed to a pool of `--connections` keep-alive
//!   connections. Latency is measured from the time a request was *due*, not from when a
//!   connection became free, so a stalled server shows up in the percentiles instead of hiding
//!   behind a slower send rate (no coordinated omission). The schedule is kept by a dedicated OS
//!   thread (`std::thread::sleep`, ~50 µs slack) rather than Tokio's 1 ms timer wheel. The time
//!   from the actual send is reported separately as `service`.
//! * **Closed loop** (`--concurrency`): N connections each send the next request as soon as the
//!   previous one has been read to the end — the maximum throughput mode.
//!
//! Every response body is read to its last byte (streams included); `ttfb` is the time to the
//! first body byte. Requests due during `--warmup` are sent but not counted. The report is
//! human-readable text followed by one JSON line (also appended to `--json-out`).
//!
//! `--sigv4` signs the request once at start (SigV4, service `bedrock`) so it can go straight to
//! the Bedrock double; the signature stays valid for five minutes. `--host` sets the `Host`
//! header (and the signed host) when the URL points at a proxy in front of the signed upstream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{ArgGroup, Parser};
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tollgate_tests::Credentials;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Open-loop (fixed rate) or closed-loop (max throughput) HTTP/1.1 load generator",
    group(ArgGroup::new("mode").required(true).args(["rate", "concurrency"]))
)]
struct Args {
    /// Target URL (http only).
    #[arg(long)]
    url: String,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Open loop: requests per second, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: keep-alive connections serving the schedule.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Closed loop: connections each sending back to back.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Measured time (e.g. 20s, 1500ms, 1m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Load applied before measuring.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-request timeout (counted as an error).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `Host` header to send (and sign) instead of the URL's authority.
    #[arg(long)]
    host: Option<String>,
    /// Sign the request with SigV4 (service `bedrock`) using these credentials.
    #[arg(long, value_name = "AKID:SECRET[:TOKEN]")]
    sigv4: Option<String>,
    /// SigV4 region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Name of the run in the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Append the JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 20s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The one request every worker sends.
struct Template {
    method: Method,
    uri: Uri,
    connect_to: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    fn from_args(args: &Args) -> Result<Template, String> {
        let uri: Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err("--url must be http://HOST:PORT/PATH".into());
        }
        let authority = uri.authority().ok_or("--url has no host")?.clone();
        let connect_to = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{}:80", authority.host())
        };
        let method: Method = args.method.parse().map_err(|e| format!("--method: {e}"))?;
        let body = match (&args.body, &args.body_file) {
            (Some(b), _) => Bytes::from(b.clone()),
            (None, Some(p)) => Bytes::from(
                std::fs::read(p).map_err(|e| format!("--body-file {}: {e}", p.display()))?,
            ),
            (None, None) => Bytes::new(),
        };
        let mut headers = HeaderMap::new();
        let host = args.host.clone().unwrap_or_else(|| authority.to_string());
        headers.insert(
            HOST,
            HeaderValue::from_str(&host).map_err(|e| format!("--host: {e}"))?,
        );
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("header {h:?} is not `Name: value`"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| format!("header {h:?}: {e}"))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|e| format!("header {h:?}: {e}"))?;
            headers.append(name, value);
        }
        if let Some(spec) = &args.sigv4 {
            let mut parts = spec.splitn(3, ':');
            let creds = match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(s), None) => Credentials::new(a, s),
                (Some(a), Some(s), Some(t)) => Credentials::new(a, s).with_session_token(t),
                _ => return Err("--sigv4 expects AKID:SECRET[:TOKEN]".into()),
            };
            if args.warmup + args.duration + args.timeout > Duration::from_secs(280) {
                return Err(
                    "with --sigv4 the whole run must stay under the 5-minute signature window"
                        .into(),
                );
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            tollgate_tests::sigv4::sign(
                method.as_str(),
                path,
                &mut headers,
                &body,
                &creds,
                &args.region,
                time::OffsetDateTime::now_utc(),
            );
        }
        Ok(Template {
            method,
            uri,
            connect_to,
            headers,
            body,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let path = self
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = path;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// What one request ended with.
enum Outcome {
    /// Read to the end: status, body bytes, time to first body byte.
    Done {
        status: u16,
        bytes: u64,
        ttfb: Duration,
    },
    /// Connection, protocol or timeout error.
    Failed(String),
}

#[derive(Default)]
struct Samples {
    /// Latency from the due time (open loop) or send time (closed loop), ns.
    latency: Vec<u64>,
    /// Time to first body byte, from the same origin, ns.
    ttfb: Vec<u64>,
    /// Latency from the actual send, ns.
    service: Vec<u64>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    bytes: u64,
    first_error: Option<String>,
    statuses: std::collections::BTreeMap<u16, u64>,
    /// Last completion in the measured window.
    last_end: Option<Instant>,
    /// Every exchange, warm-up and errors included (for CPU-per-request figures).
    total: u64,
}

impl Samples {
    fn record(&mut self, origin: Instant, sent: Instant, end: Instant, outcome: Outcome) {
        self.last_end = Some(self.last_end.map_or(end, |l| l.max(end)));
        match outcome {
            Outcome::Done {
                status,
                bytes,
                ttfb,
            } => {
                *self.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    self.ok += 1;
                } else {
                    self.non_2xx += 1;
                }
                self.bytes += bytes;
                self.latency.push(nanos(end - origin));
                self.service.push(nanos(end - sent));
                self.ttfb.push(nanos(sent - origin + ttfb));
            }
            Outcome::Failed(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latency.extend(other.latency);
        self.ttfb.extend(other.ttfb);
        self.service.extend(other.service);
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.total += other.total;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.last_end = match (self.last_end, other.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One keep-alive connection, re-established after an error.
struct Conn {
    target: Arc<Template>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: Arc<Template>) -> Conn {
        Conn {
            target,
            sender: None,
        }
    }

    async fn ready_sender(&mut self) -> Result<&mut http1::SendRequest<Full<Bytes>>, String> {
        if let Some(s) = self.sender.as_mut()
            && s.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(&self.target.connect_to)
                .await
                .map_err(|e| format!("connect {}: {e}", self.target.connect_to))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// Sends the request and reads the whole response; returns the outcome and the send time.
    async fn exchange(&mut self, timeout: Duration) -> (Instant, Outcome) {
        let req = self.target.request();
        let sent = Instant::now();
        let fut = async {
            let sender = self.ready_sender().await?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut bytes = 0u64;
            let mut ttfb = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e}"))?;
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    ttfb.get_or_insert_with(|| sent.elapsed());
                    bytes += data.len() as u64;
                }
            }
            let ttfb = ttfb.unwrap_or_else(|| sent.elapsed());
            Ok::<_, String>(Outcome::Done {
                status,
                bytes,
                ttfb,
            })
        };
        let outcome = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!("timeout after {timeout:?}")),
        };
        if matches!(outcome, Outcome::Failed(_)) {
            self.sender = None;
        }
        (sent, outcome)
    }
}

/// Open loop: a scheduler thread releases due times at the fixed rate; connections take them.
async fn open_loop(args: &Args, target: Arc<Template>, rate: f64) -> (Samples, Duration, u64) {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let total = ((args.warmup + args.duration).as_secs_f64() * rate).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let late = Arc::new(AtomicU64::new(0));
    let late_sched = Arc::clone(&late);
    let scheduler = std::thread::Builder::new()
        .name("loadgen-schedule".into())
        .spawn(move || {
            for i in 0..total {
                let due = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > Duration::from_millis(1) {
                    late_sched.fetch_add(1, Ordering::Relaxed);
                }
                if tx.send(due).is_err() {
                    return;
                }
            }
        })
        .expect("spawn scheduler thread");
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..args.connections.max(1) {
        let rx = Arc::clone(&rx);
        let target = Arc::clone(&target);
        let timeout = args.timeout;
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let mut samples = Samples::default();
            loop {
                let due = { rx.lock().await.recv().await };
                let Some(due) = due else { break };
                let (sent, outcome) = conn.exchange(timeout).await;
                samples.total += 1;
                if due >= measure_from && due < end {
                    samples.record(due, sent, Instant::now(), outcome);
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for w in workers {
        if let Ok(s) = w.await {
            all.merge(s);
        }
    }
    let _ = scheduler.join();
    let elapsed = all
        .last_end
        .map_or(args.duration, |l| l.saturating_duration_since(measure_from))
        .max(args.duration);
    (all, elapsed, late.load(Ordering::Relaxed))
}

/// Closed loop: each connection sends back to back.
async fn closed_loop(
    args: &Args,
    target: Arc<Template>,
    concurrency: usize,
) -> (Samples, Duration) {
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let target = Arc::clone(&target);
        let timeout = args.timeout;
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let mut samples = Samples::default();
            while Instant::now() < end {
                let (sent, outcome) = conn.exchange(timeout).await;
                let done = Instant::now();
                samples.total += 1;
                // Count what completed inside the window, so the rate is not diluted by the
                // tail of the last requests.
                if sent >= measure_from && done <= end {
                    samples.record(sent, sent, done, outcome);
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for w in workers {
        if let Ok(s) = w.await {
            all.merge(s);
        }
    }
    (all, args.duration)
}

/// utime + stime of this process in clock ticks (`/proc/self/stat`), if readable.
fn own_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn percentiles(values: &mut [u64]) -> Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort_unstable();
    let at = |q: f64| -> f64 {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1] as f64 / 1000.0
    };
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64 / 1000.0;
    json!({
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": *values.last().expect("non-empty") as f64 / 1000.0,
        "mean": (mean * 10.0).round() / 10.0,
    })
}

fn fmt_row(name: &str, p: &Value) -> String {
    let ms = |k: &str| {
        p.get(k)
            .and_then(Value::as_f64)
            .map_or_else(|| "-".to_owned(), |us| format!("{:.3}", us / 1000.0))
    };
    format!(
        "  {name:<8} p50 {:>8} ms  p90 {:>8} ms  p99 {:>8} ms  p99.9 {:>8} ms  max {:>8} ms",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("p999"),
        ms("max")
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match Template::from_args(&args) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(rate) = args.rate
        && (!rate.is_finite() || rate <= 0.0)
    {
        eprintln!("loadgen: --rate must be positive");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut samples, elapsed, late) = runtime.block_on(async {
        match (args.rate, args.concurrency) {
            (Some(rate), _) => open_loop(&args, Arc::clone(&target), rate).await,
            (None, Some(n)) => {
                let (s, e) = closed_loop(&args, Arc::clone(&target), n).await;
                (s, e, 0)
            }
            (None, None) => unreachable!("clap requires --rate or --concurrency"),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let client_cpu_ticks = own_cpu_ticks();

    let completed = samples.ok + samples.non_2xx;
    let rps = completed as f64 / elapsed.as_secs_f64();
    let latency = percentiles(&mut samples.latency);
    let ttfb = percentiles(&mut samples.ttfb);
    let service = percentiles(&mut samples.service);
    let statuses: serde_json::Map<String, Value> = samples
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let (mode, level) = match (args.rate, args.concurrency) {
        (Some(r), _) => ("open", json!({"rate": r, "connections": args.connections})),
        (None, n) => ("closed", json!({"concurrency": n})),
    };
    let report = json!({
        "label": args.label,
        "url": args.url,
        "mode": mode,
        "load": level,
        "duration_s": elapsed.as_secs_f64(),
        "requests": completed,
        "completed_total": samples.total,
        "ok": samples.ok,
        "non_2xx": samples.non_2xx,
        "errors": samples.errors,
        "first_error": samples.first_error,
        "statuses": statuses,
        "late_sends": late,
        "rps": (rps * 10.0).round() / 10.0,
        "bytes": samples.bytes,
        "latency_us": latency,
        "ttfb_us": ttfb,
        "service_us": service,
        "client_cpu_ticks": client_cpu_ticks,
    });

    let title = if args.label.is_empty() {
        args.url.clone()
    } else {
        format!("{} ({})", args.label, args.url)
    };
    println!("{title}");
    match (args.rate, args.concurrency) {
        (Some(r), _) => println!(
            "  open loop: {r} req/s scheduled over {} connections, {:.1}s measured after {:.1}s warm-up",
            args.connections,
            args.duration.as_secs_f64(),
            args.warmup.as_secs_f64()
        ),
        (None, Some(n)) => println!(
            "  closed loop: {n} connections, {:.1}s measured after {:.1}s warm-up",
            args.duration.as_secs_f64(),
            args.warmup.as_secs_f64()
        ),
        (None, None) => {}
    }
    println!(
        "  {completed} responses ({} 2xx, {} non-2xx), {} errors, {rps:.1} req/s, {} body bytes",
        samples.ok, samples.non_2xx, samples.errors, samples.bytes
    );
    if let Some(e) = &samples.first_error {
        println!("  first error: {e}");
    }
    if late > 0 {
        println!("  {late} sends were more than 1 ms behind schedule (client overloaded)");
    }
    println!("{}", fmt_row("latency", &latency));
    println!("{}", fmt_row("ttfb", &ttfb));
    println!("{}", fmt_row("service", &service));
    let line = report.to_string();
    println!("{line}");
    if let Some(path) = &args.json_out {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("loadgen: --json-out {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if completed == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
