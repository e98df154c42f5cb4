//! The HTTP policy for slow calls: one client, HTTP/1.1 unless asked otherwise, a short
//! connect timeout, a long total deadline per call chosen by resolution, TCP keep-alive
//! so NAT entries survive the silent render, and no read timeout that could cut a call
//! that is merely slow. Downloads of result URLs get their own short deadline and never
//! carry the API key.
//!
//! What a hostile or broken endpoint can send is bounded here:
//! - every body (answers, downloads, model lists) is read up to `--max-response-bytes`:
//!   a Content-Length over the cap is refused before a byte is read, and a body that
//!   passes it while it streams is dropped there (with its connection);
//! - API calls follow no redirect: the key would go wherever the Location points
//!   (reqwest strips `Authorization` on a cross-host redirect, but not `x-goog-api-key`);
//! - result URLs are fetched with another client that holds no key, over http(s) only,
//!   never from a link-local or cloud metadata address (checked on the URL, on every
//!   redirect, and on what DNS answers for a name).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Once;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::{Client, Url};

use crate::error::{CallError, ErrorClass};
use crate::output::check_image;
use crate::provider::batch::BatchWire;
use crate::provider::{Generated, Job, Provider, gemini};
use crate::secret::ApiKey;

#[derive(Debug, Clone, Copy)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    pub http2: bool,
    pub concurrency: usize,
}

/// Keep-alive probes every 30 s: well under the idle limits of NAT tables and firewalls.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

fn builder(policy: HttpPolicy) -> reqwest::ClientBuilder {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = Client::builder()
        .user_agent(concat!("bulkgen/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(policy.connect_timeout)
        .tcp_keepalive(TCP_KEEPALIVE)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(policy.concurrency)
        .pool_idle_timeout(Duration::from_secs(50));
    if !policy.http2 {
        builder = builder.http1_only();
    }
    builder
}

/// The client for API calls (generation, preflight, model lists): it follows no
/// redirect, so the key goes only where `--base-url` says (a 3xx comes back as an answer
/// and is refused by the caller, naming the Location).
pub fn client(policy: HttpPolicy) -> Result<Client, reqwest::Error> {
    builder(policy).redirect(reqwest::redirect::Policy::none()).build()
}

/// Redirects a download may follow: a CDN or storage link often redirects once or twice.
const MAX_DOWNLOAD_REDIRECTS: usize = 5;

/// The client for result URLs. It is never given the key (the requests it makes carry no
/// header of it), follows at most a few redirects and only to http(s) addresses that are
/// not link-local or metadata, and resolves names through [`GuardedResolver`], so a name
/// that points at a metadata address is refused before anything connects.
pub fn download_client(policy: HttpPolicy) -> Result<Client, reqwest::Error> {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_DOWNLOAD_REDIRECTS {
            let e = format!("more than {MAX_DOWNLOAD_REDIRECTS} redirects");
            return attempt.error(e);
        }
        match check_download_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => {
                let e = format!("a redirect to {}: {why}", attempt.url());
                attempt.error(e)
            }
        }
    });
    builder(policy).redirect(redirects).dns_resolver(std::sync::Arc::new(GuardedResolver)).build()
}

/// How much of a response a call may read.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Deadline of one download of a result URL.
    pub download_timeout: Duration,
    /// `--max-response-bytes`: the most bytes of one body, answer or download.
    pub max_response_bytes: u64,
}

/// The most an answer that carries no image may be (a Files API answer): 1 MiB.
const SMALL_ANSWER_BYTES: u64 = 1 << 20;

/// Makes calls on behalf of the runner: one provider, one key, the API client and the
/// keyless download client.
pub struct Caller {
    client: Client,
    downloads: Client,
    provider: Box<dyn Provider>,
    key: Option<ApiKey>,
    limits: CallLimits,
}

impl Caller {
    /// `client` from [`client`], `downloads` from [`download_client`].
    pub fn new(
        client: Client,
        downloads: Client,
        provider: Box<dyn Provider>,
        key: Option<ApiKey>,
        limits: CallLimits,
    ) -> Caller {
        Caller { client, downloads, provider, key, limits }
    }

    /// One generation (of `job.n` images), bounded by `deadline` from the first byte sent
    /// to the last byte of the body received.
    pub async fn generate(&self, job: &Job<'_>, deadline: Duration) -> Result<Vec<Generated>, CallError> {
        let result = async {
            let req = self.provider.request(&self.client, self.key.as_ref(), job);
            let (status, headers, body) = exchange(req, deadline, self.limits.max_response_bytes, "the answer").await?;
            self.provider.parse(status, &headers, &body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// Uploads one reference image with Gemini's Files API (two requests: start, then
    /// the bytes with "upload, finalize"), each bounded by `deadline`. The bytes go only
    /// to the endpoint the user named: an upload URL on another origin is refused.
    pub async fn upload_gemini(
        &self,
        base: &Url,
        display_name: &str,
        mime: &str,
        bytes: bytes::Bytes,
        deadline: Duration,
    ) -> Result<gemini::FileInfo, CallError> {
        let result = async {
            let key = self.key.as_ref();
            let start = gemini::upload_start(base, &self.client, key, display_name, mime, bytes.len() as u64);
            let (status, headers, body) = exchange(start, deadline, SMALL_ANSWER_BYTES, "the upload's answer").await?;
            let url = gemini::upload_url(status, &headers, &body)?;
            if url.origin() != base.origin() {
                return Err(CallError::new(
                    ErrorClass::BadResponse,
                    format!(
                        "the Files API named an upload URL on another address ({}); references are sent only to \
                         --base-url",
                        url.origin().ascii_serialization()
                    ),
                )
                .with_should_retry(Some(false)));
            }
            let finalize = gemini::upload_bytes(url, &self.client, mime, bytes);
            let (status, headers, body) =
                exchange(finalize, deadline, SMALL_ANSWER_BYTES, "the upload's answer").await?;
            gemini::parse_file(status, &headers, &body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// Fetches a result URL, without the key. Every failure is class `download`: it is
    /// retried as a download, never as a new generation.
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, CallError> {
        let timeout = self.limits.download_timeout;
        let as_download = |e: CallError| CallError { class: ErrorClass::Download, ..e };
        let result = async {
            // A URL that is refused as written is refused every time: no retry this run.
            let parsed = Url::parse(url).map_err(|e| {
                CallError::new(ErrorClass::Download, format!("the result URL {url:?} is not a URL: {e}"))
                    .with_should_retry(Some(false))
            })?;
            check_download_url(&parsed).map_err(|why| {
                CallError::new(ErrorClass::Download, format!("the result URL {url} is not fetched: {why}"))
                    .with_should_retry(Some(false))
            })?;
            let resp = self
                .downloads
                .get(parsed)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| as_download(transport(e, timeout)))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(CallError::new(ErrorClass::Download, format!("result URL answered HTTP {status}"))
                    .with_status(status.as_u16()));
            }
            let body = read_body(resp, self.limits.max_response_bytes)
                .await
                .map_err(|e| e.into_call_error("the download", ErrorClass::Download, timeout).with_status(200))?;
            if let Err(why) = check_image(&body) {
                return Err(
                    CallError::new(ErrorClass::Download, format!("the result URL's body {why}")).with_status(200)
                );
            }
            Ok(body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// One Batch API or Files API request (`build` makes it with the client and the key),
    /// bounded by `deadline`; the answer's body when it is a success (at most 16 MiB: a
    /// page of jobs), else the error as `wire` classifies it.
    pub async fn batch_call(
        &self,
        wire: &BatchWire,
        build: impl FnOnce(&Client, Option<&ApiKey>) -> reqwest::RequestBuilder,
        deadline: Duration,
        what: &str,
    ) -> Result<Vec<u8>, CallError> {
        let result = async {
            let req = build(&self.client, self.key.as_ref());
            let (status, headers, body) = exchange(req, deadline, BATCH_ANSWER_BYTES, what).await?;
            if !status.is_success() {
                return Err(wire.classify(status, &headers, &body));
            }
            Ok(body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// Uploads a Batch API input file (JSONL): Gemini's Files API, or OpenAI's `/v1/files`
    /// with purpose `batch`. Returns the file's name (`files/...`) or id.
    pub async fn upload_batch_input(
        &self,
        wire: &BatchWire,
        base: &Url,
        display_name: &str,
        bytes: bytes::Bytes,
        deadline: Duration,
    ) -> Result<String, CallError> {
        const JSONL: &str = "application/jsonl";
        match wire.dialect {
            crate::catalog::Dialect::Gemini => {
                Ok(self.upload_gemini(base, display_name, JSONL, bytes, deadline).await?.name)
            }
            crate::catalog::Dialect::Openai => {
                let name = format!("{display_name}.jsonl");
                let body = self
                    .batch_call(
                        wire,
                        |c, k| wire.upload_openai(c, k, "batch", &name, JSONL, bytes),
                        deadline,
                        "the upload's answer",
                    )
                    .await?;
                wire.parse_openai_file(&body)
            }
        }
    }

    /// Uploads a reference image to OpenAI's Files API for batch edits (purpose `vision`).
    pub async fn upload_openai_image(
        &self,
        wire: &BatchWire,
        name: &str,
        mime: &str,
        bytes: bytes::Bytes,
        deadline: Duration,
    ) -> Result<String, CallError> {
        let body = self
            .batch_call(
                wire,
                |c, k| wire.upload_openai(c, k, "vision", name, mime, bytes),
                deadline,
                "the upload's answer",
            )
            .await?;
        wire.parse_openai_file(&body)
    }

    /// Opens a result file for streaming: its lines are read with [`Lines`], each at most
    /// `--max-response-bytes`, no chunk waited for longer than `idle`.
    pub async fn open_result_file(&self, wire: &BatchWire, file: &str, idle: Duration) -> Result<Lines, CallError> {
        let result = async {
            let req = wire.download(&self.client, self.key.as_ref(), file);
            let resp = tokio::time::timeout(idle, req.send())
                .await
                .map_err(|_| {
                    CallError::new(ErrorClass::Timeout, format!("the result file {file} did not start within {idle:?}"))
                })?
                .map_err(|e| transport(e, idle))?;
            if let Some(e) = refused_redirect(&resp) {
                return Err(e);
            }
            let status = resp.status();
            if !status.is_success() {
                let headers = resp.headers().clone();
                let body = read_body(resp, SMALL_ANSWER_BYTES).await.unwrap_or_default();
                return Err(wire.classify(status, &headers, &body));
            }
            Ok(Lines {
                resp,
                buf: Vec::new(),
                start: 0,
                scanned: 0,
                cap: self.limits.max_response_bytes,
                idle,
                ended: false,
                read: 0,
            })
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// Belt and braces: `CallError::new` masked every key already; text appended to a
    /// message afterwards is masked here.
    fn masked(&self, mut e: CallError) -> CallError {
        e.message = crate::secret::mask(&e.message);
        if let Some(key) = &self.key {
            e.message = key.mask(&e.message);
        }
        e
    }
}

/// The most a Batch API answer (a job, a page of jobs) may be.
const BATCH_ANSWER_BYTES: u64 = 16 << 20;

/// A result file as a stream of lines, read chunk by chunk: only the line being read is
/// held (and the rest of its chunk), never the file.
pub struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    /// How far past `start` is known to hold no newline: each byte is searched once, not
    /// again after every chunk (a 100 KB line over 64 chunks was searched 64 times).
    scanned: usize,
    cap: u64,
    idle: Duration,
    ended: bool,
    /// Bytes received so far.
    pub read: u64,
}

impl Lines {
    /// The next non-empty line (without its newline), None at the end of the file.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        loop {
            let from = self.start.max(self.scanned);
            if let Some(at) = memchr::memchr(b'\n', &self.buf[from..]).map(|i| from + i) {
                let line = self.buf[self.start..at].to_vec();
                self.start = at + 1;
                self.scanned = self.start;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.ended {
                let rest = self.buf[self.start..].to_vec();
                self.start = self.buf.len();
                return Ok((!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest));
            }
            // Keep only the unfinished line before reading more.
            self.buf.drain(..self.start);
            self.start = 0;
            self.scanned = self.buf.len();
            if self.buf.len() as u64 > self.cap {
                return Err(CallError::new(
                    ErrorClass::BadResponse,
                    format!(
                        "a line of the result file passed --max-response-bytes {} (raise it if images this large \
                         are expected)",
                        bytes_text(self.cap)
                    ),
                ));
            }
            match tokio::time::timeout(self.idle, self.resp.chunk()).await {
                Err(_) => {
                    return Err(CallError::new(
                        ErrorClass::Timeout,
                        format!("the result file stalled: nothing received for {:?}", self.idle),
                    ));
                }
                Ok(Err(e)) => return Err(transport(e, self.idle)),
                Ok(Ok(None)) => self.ended = true,
                Ok(Ok(Some(chunk))) => {
                    self.read += chunk.len() as u64;
                    self.buf.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// One API request, bounded by `deadline` from the first byte sent to the last byte of
/// the body received: a redirect is refused (never followed), the body read up to `cap`.
async fn exchange(
    req: reqwest::RequestBuilder,
    deadline: Duration,
    cap: u64,
    what: &str,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), CallError> {
    let resp = req.timeout(deadline).send().await.map_err(|e| transport(e, deadline))?;
    let status = resp.status();
    if let Some(e) = refused_redirect(&resp) {
        return Err(e);
    }
    let headers = resp.headers().clone();
    let body = read_body(resp, cap)
        .await
        .map_err(|e| e.into_call_error(what, ErrorClass::BadResponse, deadline).with_status(status.as_u16()))?;
    Ok((status, headers, body))
}

/// What to do about an API redirect.
pub const FOLLOW_NO_REDIRECT: &str = "API calls follow no redirect, since it would take the API key to another \
     address: if you trust the address the redirect names, give its API root (the part before /v1 or /v1beta) as \
     --base-url and run the same command again; otherwise check --base-url";

/// An API answer that is a redirect (3xx with a Location), as an error naming where it
/// points. Class `not_found`, which stops the run: a base URL that redirects is one every
/// call would get (retrying cannot help), and the fix is the user's, in --base-url, as for
/// an endpoint that does not exist. A 3xx without a Location is no redirect: it is read
/// as any other answer (and is a bad response).
pub fn refused_redirect(resp: &reqwest::Response) -> Option<CallError> {
    let status = resp.status();
    if !status.is_redirection() {
        return None;
    }
    let location = resp.headers().get(LOCATION)?;
    let to = location
        .to_str()
        .ok()
        .and_then(|l| resp.url().join(l).ok())
        .map_or_else(|| format!("{:?}", String::from_utf8_lossy(location.as_bytes())), |u| u.to_string());
    Some(
        CallError::new(
            ErrorClass::NotFound,
            format!("{} redirects (HTTP {}) to {to}, which was not followed", resp.url(), status.as_u16()),
        )
        .with_status(status.as_u16())
        .with_advice(FOLLOW_NO_REDIRECT),
    )
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    Transport(reqwest::Error),
    /// Over the cap: `declared` is the Content-Length that was refused before reading,
    /// else `read` bytes came before the cap was passed.
    TooLarge {
        cap: u64,
        declared: Option<u64>,
        read: u64,
    },
}

impl BodyError {
    /// As the error of a call; `what` is "the answer" or "the download". A body over the
    /// cap is of class `class`; a broken transfer keeps its own (timeout, network),
    /// except in a download, where every failure is class `download`.
    pub fn into_call_error(self, what: &str, class: ErrorClass, deadline: Duration) -> CallError {
        match self {
            BodyError::Transport(e) if class == ErrorClass::Download => CallError { class, ..transport(e, deadline) },
            BodyError::Transport(e) => transport(e, deadline),
            too_large => CallError::new(
                class,
                format!(
                    "{}; if bodies this large are expected, raise --max-response-bytes",
                    too_large.describe(what, "--max-response-bytes")
                ),
            ),
        }
    }

    /// The error in words: `what` is the body ("the answer"), `limit` names the cap.
    pub fn describe(&self, what: &str, limit: &str) -> String {
        match self {
            BodyError::Transport(e) => format!("{what} was not received whole: {e}"),
            BodyError::TooLarge { cap, declared: Some(n), .. } => format!(
                "{what} is {} (Content-Length), more than {limit} {}: refused before reading it",
                bytes_text(*n),
                bytes_text(*cap)
            ),
            BodyError::TooLarge { cap, declared: None, read } => format!(
                "{what} passed {limit} {} while it streamed: reading stopped at {} and the connection was dropped",
                bytes_text(*cap),
                bytes_text(*read)
            ),
        }
    }
}

/// At most 64 MiB is set aside before the first byte comes, whatever Content-Length says.
const MAX_PREALLOCATION: u64 = 64 << 20;

/// The whole body in one buffer, at most `cap` bytes. A Content-Length over the cap is
/// refused before anything is read; otherwise the buffer is sized from it up front
/// (collecting chunks and joining them would hold a 4K answer, 8 MB of base64, twice),
/// never past the cap, and the count is checked at every chunk: the body is dropped the
/// moment it passes the cap, and hyper closes a connection whose body was not read to
/// its end. The buffer grows by doubling, clamped to the cap, so it never holds more
/// than `cap` bytes of capacity.
pub async fn read_body(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, BodyError> {
    let declared = resp.content_length();
    if let Some(n) = declared.filter(|n| *n > cap) {
        return Err(BodyError::TooLarge { cap, declared: Some(n), read: 0 });
    }
    let cap_usize = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(cap).min(MAX_PREALLOCATION) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        let needed = body.len().saturating_add(chunk.len());
        if needed > cap_usize {
            return Err(BodyError::TooLarge { cap, declared: None, read: needed as u64 });
        }
        if needed > body.capacity() {
            let grown = body.capacity().saturating_mul(2).clamp(needed, cap_usize);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `n` bytes as a person reads them: `1 MiB`, `128 MiB`, `10000000000 bytes (9.3 GiB)`.
pub fn bytes_text(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{n} bytes ({:.1} {unit})", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// Whether a result URL may be fetched: http or https, and not a literal link-local or
/// metadata address (names are checked when they resolve, by [`GuardedResolver`]).
pub fn check_download_url(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("its scheme is {other:?}; only http and https result URLs are fetched")),
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("it has no host".to_owned()),
    };
    match forbidden(ip) {
        true => Err(metadata_text(ip)),
        false => Ok(()),
    }
}

fn metadata_text(ip: IpAddr) -> String {
    format!(
        "{ip} is a link-local or cloud metadata address, from which result URLs are never fetched (an answer that \
         points there is trying to reach the machine's credentials)"
    )
}

/// Link-local and cloud metadata addresses: 169.254.0.0/16 (RFC 3927; AWS, GCP and Azure
/// metadata at 169.254.169.254), fe80::/10 (RFC 4291, 2.5.6), AWS's IPv6 metadata
/// fd00:ec2::254 (AWS EC2 user guide, "Instance metadata service"), and 169.254.0.0/16
/// written as IPv6: IPv4-mapped or -compatible (RFC 4291, 2.5.5) or NAT64's
/// 64:ff9b::/96 (RFC 6052).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let embedded = v6
                .to_ipv4()
                .filter(|_| s[..5] == [0; 5])
                .or_else(|| nat64.then(|| std::net::Ipv4Addr::from(u32::from(s[6]) << 16 | u32::from(s[7]))));
            s[0] & 0xffc0 == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || embedded.is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// `addrs` for `host`, or why none of them may be used: one forbidden address refuses
/// the name (a name that also points at metadata is not one to trust).
pub fn guard_addresses(host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    match addrs.iter().find(|a| forbidden(a.ip())) {
        Some(bad) => Err(format!("{host} resolves to {}", metadata_text(bad.ip()))),
        None => Ok(addrs),
    }
}

/// The system resolver, refusing names that resolve to a link-local or metadata address
/// (for downloads only: an API base URL is the user's own choice).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs = guard_addresses(&host, addrs)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A URL whose scheme is not what the server at its port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeMismatch {
    /// `https://` to a port that speaks plain HTTP: the server answered the TLS
    /// ClientHello in plain text, which rustls reads as a record of no known type.
    PlainHttpPort,
    /// `http://` to a port that speaks TLS: the answer did not start with `HTTP/` (a TLS
    /// alert record, as rustls and OpenSSL servers send), or it is the page nginx and Go
    /// send back for the purpose.
    TlsPort,
}

/// The answers servers give to plain HTTP on their TLS port (nginx's 400 page, Go's
/// net/http), in lower case.
const PLAIN_HTTP_TO_TLS_PAGES: [&str; 2] =
    ["the plain http request was sent to https port", "client sent an http request to an https server"];

/// Whether a failed request met a server speaking the other protocol than its URL's
/// scheme. The https case is told by the rustls error itself
/// (`InvalidMessage(InvalidContentType)`, found by walking the source chain, through the
/// `io::Error`s that hyper-rustls wraps it in); the http case by hyper's parse error for a
/// status line that is not HTTP (hyper's error type is not one bulkgen depends on, so
/// that one is read from its text).
pub fn scheme_mismatch(e: &reqwest::Error) -> Option<SchemeMismatch> {
    let scheme = e.url().map(Url::scheme);
    let mut chain: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = chain {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            let plain = matches!(tls, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
            return (plain && scheme != Some("http")).then_some(SchemeMismatch::PlainHttpPort);
        }
        if scheme == Some("http") && err.to_string() == "invalid HTTP version parsed" {
            return Some(SchemeMismatch::TlsPort);
        }
        // io::Error's own source() skips the error it wraps: look inside it instead.
        chain = match err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    None
}

/// Whether an HTTP answer to an `http://` URL is a TLS server's page saying it got plain
/// HTTP (nginx answers 400 with one, so the request would look merely invalid).
pub fn tls_port_page(url: &Url, status: reqwest::StatusCode, body: &[u8]) -> bool {
    if url.scheme() != "http" || !status.is_client_error() {
        return false;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    PLAIN_HTTP_TO_TLS_PAGES.iter().any(|page| text.contains(page))
}

impl SchemeMismatch {
    /// What it means and what to do, for `url`.
    pub fn describe(self, url: &Url) -> String {
        let host = url.host_str().unwrap_or("?");
        let at = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        match self {
            SchemeMismatch::PlainHttpPort => {
                // Plain http carries the key in clear text: only to loopback unless the
                // user says so (the rule of --base-url, config::parse_base_url).
                let mut plain = url.clone();
                let clear_text =
                    plain.set_scheme("http").is_ok() && crate::config::parse_base_url(plain.as_str(), false).is_err();
                format!(
                    "the TLS handshake with {at} failed: the server at {at} answered in plain HTTP, not TLS: use \
                     http:// for this URL (or check the port){}",
                    if clear_text {
                        "; plain http to a host that is not loopback also needs --allow-plain-http, as the key then \
                         travels in clear text"
                    } else {
                        ""
                    }
                )
            }
            SchemeMismatch::TlsPort => format!(
                "the server at {at} answered in TLS, not plain HTTP: use https:// for this URL (or check the port)"
            ),
        }
    }
}

/// A transport failure (no usable HTTP answer) as an error class.
fn transport(e: reqwest::Error, deadline: Duration) -> CallError {
    // A connect that failed (refused, DNS, TLS handshake, connect timeout) reached nobody.
    let class = if e.is_connect() {
        ErrorClass::Unreachable
    } else if e.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Network
    };
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !chain.iter().any(|c: &String| c.contains(&text)) {
            chain.push(text);
        }
        source = s.source();
    }
    let mismatch = scheme_mismatch(&e).zip(e.url()).map(|(m, url)| m.describe(url));
    let what = if let Some(mismatch) = &mismatch {
        let verb = if e.is_connect() { "cannot connect" } else { "the request failed" };
        format!("{verb}: {mismatch}")
    } else if e.is_timeout() {
        format!("no complete answer within the {:.1}s deadline", deadline.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while the body was being received".to_owned()
    } else if e.is_redirect() {
        "a redirect was not followed".to_owned()
    } else {
        "the request failed".to_owned()
    };
    // The URL in reqwest's text is the endpoint: no secret in it (keys go in headers).
    let message = match mismatch {
        // What it means first, so the cut of a long message keeps it; the raw chain after.
        Some(_) => format!("{what} ({})", chain.join(": ")),
        None => format!("{what}: {}", chain.join(": ")),
    };
    CallError::new(class, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_are_forbidden_however_written() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "169.253.255.255", "::1", "fec0::1", "fd00:ec2::253", "2001:db8::1"] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn download_urls_are_http_or_https_and_never_a_metadata_address() {
        let check = |u: &str| check_download_url(&u.parse().unwrap());
        assert_eq!(check("https://cdn.example/x.png"), Ok(()));
        assert_eq!(check("http://127.0.0.1:8080/x.png"), Ok(()));
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/x",
            "http://[::ffff:a9fe:a9fe]/x",
            // WHATWG URL parsing reads a bare number as an IPv4 address.
            "http://2852039166/x",
            "http://0xa9.0xfe.0xa9.0xfe/x",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("link-local or cloud metadata address"), "{bad}: {e}");
        }
        for bad in ["file:///etc/passwd", "ftp://cdn.example/x.png", "gopher://x/"] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("only http and https"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_name_that_resolves_to_a_metadata_address_is_refused() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(guard_addresses("cdn.example", vec![a("93.184.216.34:0")]), Ok(vec![a("93.184.216.34:0")]));
        let e = guard_addresses("evil.example", vec![a("93.184.216.34:0"), a("169.254.169.254:0")]).unwrap_err();
        assert!(e.starts_with("evil.example resolves to 169.254.169.254") && e.contains("metadata"), "{e}");
        let e = guard_addresses("evil6.example", vec![a("[fd00:ec2::254]:0")]).unwrap_err();
        assert!(e.contains("fd00:ec2::254"), "{e}");
    }

    #[tokio::test]
    async fn the_guarded_resolver_resolves_ordinary_names() {
        use reqwest::dns::Resolve;
        let addrs: Vec<SocketAddr> = GuardedResolver.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn a_scheme_mismatch_names_the_other_scheme_and_the_clear_text_rule() {
        let url = |u: &str| Url::parse(u).unwrap();
        let local = SchemeMismatch::PlainHttpPort.describe(&url("https://127.0.0.1:8900/v1/models"));
        assert!(local.contains("the server at 127.0.0.1:8900 answered in plain HTTP, not TLS: use http://"), "{local}");
        assert!(!local.contains("--allow-plain-http"), "loopback needs no opt-in: {local}");
        let localhost = SchemeMismatch::PlainHttpPort.describe(&url("https://localhost:8900/"));
        assert!(!localhost.contains("--allow-plain-http"), "{localhost}");
        // Elsewhere plain http is refused for the key's sake unless the user opts in.
        let remote = SchemeMismatch::PlainHttpPort.describe(&url("https://relay.example/v1"));
        assert!(remote.contains("the server at relay.example:443 answered in plain HTTP"), "{remote}");
        assert!(remote.contains("--allow-plain-http") && remote.contains("clear text"), "{remote}");
        let tls = SchemeMismatch::TlsPort.describe(&url("http://10.0.0.5:443/v1/models"));
        assert_eq!(
            tls,
            "the server at 10.0.0.5:443 answered in TLS, not plain HTTP: use https:// for this URL (or check the port)"
        );
    }

    #[test]
    fn tls_servers_pages_for_plain_http_are_told_from_other_answers() {
        let url = |u: &str| Url::parse(u).unwrap();
        let (http, https) = (url("http://127.0.0.1:443/v1/models"), url("https://127.0.0.1:443/v1/models"));
        let nginx = b"<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head></html>";
        let go = b"Client sent an HTTP request to an HTTPS server.\n";
        let bad = reqwest::StatusCode::BAD_REQUEST;
        assert!(tls_port_page(&http, bad, nginx) && tls_port_page(&http, bad, go));
        assert!(!tls_port_page(&https, bad, nginx), "an https URL got an answer: TLS worked");
        assert!(!tls_port_page(&http, reqwest::StatusCode::OK, nginx));
        assert!(!tls_port_page(&http, bad, br#"{"error":{"message":"Invalid size"}}"#));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_text(1 << 20), "1 MiB");
        assert_eq!(bytes_text(128 << 20), "128 MiB");
        assert_eq!(bytes_text(10_000_000_000), "10000000000 bytes (9.3 GiB)");
        assert_eq!(bytes_text(512), "512 bytes");
        assert_eq!(bytes_text(1536), "1536 bytes (1.5 KiB)");
    }
}
