//! The HTTP policy for slow calls: one client, HTTP/1.1 unless asked otherwise, a short
//! connect timeout, a long total deadline per call chosen by resolution, TCP keep-alive
//! so NAT entries survive the silent render, and no read timeout that could cut a call
//! that is merely slow. Downloads of result URLs get their own short deadline and never
//! carry the API key.

use std::sync::Once;
use std::time::Duration;

use reqwest::Client;

use crate::error::{CallError, ErrorClass};
use crate::output::image_extension;
use crate::provider::{Generated, Job, Provider};
use crate::secret::ApiKey;

#[derive(Debug, Clone, Copy)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    pub http2: bool,
    pub concurrency: usize,
}

/// Keep-alive probes every 30 s: well under the idle limits of NAT tables and firewalls.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

pub fn client(policy: HttpPolicy) -> Result<Client, reqwest::Error> {
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
    builder.build()
}

/// Makes calls on behalf of the runner: one provider, one key, one client.
pub struct Caller {
    client: Client,
    provider: Box<dyn Provider>,
    key: Option<ApiKey>,
    download_timeout: Duration,
}

impl Caller {
    pub fn new(client: Client, provider: Box<dyn Provider>, key: Option<ApiKey>, download_timeout: Duration) -> Caller {
        Caller { client, provider, key, download_timeout }
    }

    /// One generation, bounded by `deadline` from the first byte sent to the last byte
    /// of the body received.
    pub async fn generate(&self, job: &Job<'_>, deadline: Duration) -> Result<Generated, CallError> {
        let result = async {
            let req = self.provider.request(&self.client, self.key.as_ref(), job).timeout(deadline);
            let resp = req.send().await.map_err(|e| transport(e, deadline))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_body(resp).await.map_err(|e| transport(e, deadline).with_status(status.as_u16()))?;
            self.provider.parse(status, &headers, &body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    /// Fetches a result URL. Every failure is class `download`: it is retried as a
    /// download, never as a new generation.
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, CallError> {
        let as_download = |e: CallError| CallError { class: ErrorClass::Download, ..e };
        let result = async {
            let resp = self
                .client
                .get(url)
                .timeout(self.download_timeout)
                .send()
                .await
                .map_err(|e| as_download(transport(e, self.download_timeout)))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(CallError::new(ErrorClass::Download, format!("result URL answered HTTP {status}"))
                    .with_status(status.as_u16()));
            }
            let body =
                read_body(resp).await.map_err(|e| as_download(transport(e, self.download_timeout)).with_status(200))?;
            if image_extension(&body).is_none() {
                return Err(CallError::new(
                    ErrorClass::Download,
                    format!("result URL did not return a PNG, JPEG or WebP image ({} bytes)", body.len()),
                )
                .with_status(200));
            }
            Ok(body)
        }
        .await;
        result.map_err(|e| self.masked(e))
    }

    fn masked(&self, mut e: CallError) -> CallError {
        if let Some(key) = &self.key {
            e.message = key.mask(&e.message);
        }
        e
    }
}

/// The whole body in one buffer sized from Content-Length up front: collecting chunks
/// and joining them would hold a 4K answer (8 MB of base64) twice.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    const MAX_PREALLOCATION: u64 = 64 << 20;
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(MAX_PREALLOCATION) as usize);
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
    let what = if e.is_timeout() {
        format!("no complete answer within the {:.1}s deadline", deadline.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while the body was being received".to_owned()
    } else {
        "the request failed".to_owned()
    };
    // The URL in reqwest's text is the endpoint: no secret in it (keys go in headers).
    CallError::new(class, format!("{what}: {}", chain.join(": ")))
}
