//! The providers' Batch APIs, both dialects (wire-formats.md "Gemini Batch API" and
//! "OpenAI Batch API"): the JSONL line of a row, the requests that create, get, list and
//! cancel a job and fetch its result file, and how their answers and each result line
//! read. The engine that drives them is `runner/batch.rs`.
//!
//! Sources: google-genai 3.4.0 `batches.py` (`_CreateBatchJobParameters_to_mldev` sends
//! `{"batch": {"displayName", "inputConfig": {"fileName"}}}`; `_BatchJob_from_mldev` reads
//! `name`, `metadata.displayName`, `metadata.state`, `metadata.output.responsesFile`;
//! `_ListBatchJobsResponse_from_mldev` reads `operations` and `nextPageToken`;
//! `_transformers.t_job_state` maps `BATCH_STATE_*` to `JOB_STATE_*`), openai-python
//! 3.54.0 (`types/batch.py`, `batch_create_params.py`, `resources/batches.py`,
//! `resources/files.py`).

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Generated, Job, gemini, openai};
use crate::catalog::Dialect;
use crate::error::{CallError, ErrorClass};
use crate::secret::ApiKey;

/// A job's state, both vocabularies read into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Queued or being validated.
    Pending,
    Running,
    /// Being wrapped up (OpenAI `finalizing`): results soon.
    Finalizing,
    Succeeded,
    Failed,
    Cancelling,
    Cancelled,
    Expired,
    /// A state this bulkgen does not know: polled again, never taken as the end.
    Unknown,
}

impl JobState {
    /// `BATCH_STATE_*` (the REST API), `JOB_STATE_*` (the SDK and docs), and OpenAI's
    /// statuses.
    pub fn parse(s: &str) -> JobState {
        let s = s.trim();
        let tail = s.strip_prefix("BATCH_STATE_").or_else(|| s.strip_prefix("JOB_STATE_")).unwrap_or(s);
        match tail.to_ascii_lowercase().as_str() {
            "pending" | "queued" | "validating" => JobState::Pending,
            "running" | "in_progress" => JobState::Running,
            "finalizing" => JobState::Finalizing,
            "succeeded" | "completed" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelling" => JobState::Cancelling,
            "cancelled" | "canceled" => JobState::Cancelled,
            "expired" => JobState::Expired,
            _ => JobState::Unknown,
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Expired)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Finalizing => "finalizing",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelling => "cancelling",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
            JobState::Unknown => "unknown",
        }
    }
}

/// What the provider says of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// `batches/...` (Gemini) or `batch_...` (OpenAI).
    pub name: String,
    /// The bulkgen token it carries (display name / metadata), if any.
    pub token: Option<String>,
    pub state: JobState,
    /// The state as spelled.
    pub raw_state: String,
    /// Results (Gemini: the only file; OpenAI: the successes).
    pub result_file: Option<String>,
    /// OpenAI: the per-line errors.
    pub error_file: Option<String>,
    pub succeeded: u64,
    pub failed: u64,
    /// The job's own error, for a failed job.
    pub error: Option<String>,
}

/// The display-name prefix (Gemini) and metadata key (OpenAI) a job's token goes in.
pub const TOKEN_PREFIX: &str = "bulkgen-";
pub const TOKEN_KEY: &str = "bulkgen_token";

/// One dialect's Batch API at one endpoint.
#[derive(Debug, Clone)]
pub struct BatchWire {
    pub dialect: Dialect,
    base: Url,
}

impl BatchWire {
    pub fn new(dialect: Dialect, base: &Url) -> BatchWire {
        BatchWire { dialect, base: base.clone() }
    }

    /// What a job is made for: OpenAI, the endpoint every line calls (an edit for a row with
    /// references); Gemini, the model.
    pub fn endpoint(&self, model: &str, edit: bool) -> String {
        match (self.dialect, edit) {
            (Dialect::Openai, true) => "/v1/images/edits".into(),
            (Dialect::Openai, false) => "/v1/images/generations".into(),
            (Dialect::Gemini, _) => model.trim_start_matches("models/").to_owned(),
        }
    }

    /// The JSONL line of one row (with its newline): `key` is the row's id.
    pub fn line(&self, key: &str, endpoint: &str, job: &Job<'_>) -> Vec<u8> {
        let v = match self.dialect {
            // wire-formats.md: `{"key": ..., "request": GenerateContentRequest}`.
            Dialect::Gemini => serde_json::json!({"key": key, "request": gemini::body(job)}),
            // openai-python: a line is `{"custom_id", "method", "url", "body"}`.
            Dialect::Openai => serde_json::json!({
                "custom_id": key, "method": "POST", "url": endpoint, "body": openai::batch_body(job),
            }),
        };
        let mut line = serde_json::to_vec(&v).expect("JSON serializes");
        line.push(b'\n');
        line
    }

    fn url(&self, path: &str) -> Url {
        super::endpoint(&self.base, path)
    }

    fn with_key(&self, req: RequestBuilder, key: Option<&ApiKey>) -> RequestBuilder {
        match self.dialect {
            Dialect::Gemini => gemini::with_key(req, key),
            Dialect::Openai => openai::with_key(req, key),
        }
    }

    /// OpenAI Files API: `POST /v1/files`, multipart `purpose` and `file`
    /// (openai-python `files.create`). Batch inputs go with purpose `batch`; reference
    /// images for batch edits with purpose `vision`.
    pub fn upload_openai(
        &self,
        client: &Client,
        key: Option<&ApiKey>,
        purpose: &str,
        file_name: &str,
        mime: &str,
        bytes: bytes::Bytes,
    ) -> RequestBuilder {
        use reqwest::multipart::{Form, Part};
        let len = bytes.len() as u64;
        let part = Part::stream_with_length(reqwest::Body::from(bytes), len)
            .file_name(file_name.to_owned())
            .mime_str(mime)
            .expect("a valid mime type");
        let form = Form::new().text("purpose", purpose.to_owned()).part("file", part);
        self.with_key(client.post(self.url("/v1/files")).multipart(form), key)
    }

    /// Creates a job from an uploaded input file, marked with `token`.
    pub fn create(
        &self,
        client: &Client,
        key: Option<&ApiKey>,
        endpoint: &str,
        input_file: &str,
        token: &str,
    ) -> RequestBuilder {
        match self.dialect {
            Dialect::Gemini => {
                let url = self.url(&format!("/v1beta/models/{endpoint}:batchGenerateContent"));
                let body = serde_json::json!({"batch": {
                    "displayName": format!("{TOKEN_PREFIX}{token}"),
                    "inputConfig": {"fileName": input_file},
                }});
                self.with_key(client.post(url).json(&body), key)
            }
            Dialect::Openai => {
                let body = serde_json::json!({
                    "input_file_id": input_file,
                    "endpoint": endpoint,
                    "completion_window": "24h",
                    "metadata": {TOKEN_KEY: token},
                });
                self.with_key(client.post(self.url("/v1/batches")).json(&body), key)
            }
        }
    }

    pub fn get(&self, client: &Client, key: Option<&ApiKey>, name: &str) -> RequestBuilder {
        let path = match self.dialect {
            Dialect::Gemini => format!("/v1beta/{}", name_path(name, "batches/")),
            Dialect::Openai => format!("/v1/batches/{name}"),
        };
        self.with_key(client.get(self.url(&path)), key)
    }

    /// One page of the account's jobs (100 at a time, the largest page both take).
    pub fn list(&self, client: &Client, key: Option<&ApiKey>, page: Option<&str>) -> RequestBuilder {
        let (path, query): (&str, Vec<(&str, &str)>) = match self.dialect {
            Dialect::Gemini => {
                ("/v1beta/batches", [("pageSize", "100")].into_iter().chain(page.map(|p| ("pageToken", p))).collect())
            }
            Dialect::Openai => {
                ("/v1/batches", [("limit", "100")].into_iter().chain(page.map(|p| ("after", p))).collect())
            }
        };
        let mut url = self.url(path);
        url.query_pairs_mut().extend_pairs(query);
        self.with_key(client.get(url), key)
    }

    pub fn cancel(&self, client: &Client, key: Option<&ApiKey>, name: &str) -> RequestBuilder {
        let path = match self.dialect {
            Dialect::Gemini => format!("/v1beta/{}:cancel", name_path(name, "batches/")),
            Dialect::Openai => format!("/v1/batches/{name}/cancel"),
        };
        self.with_key(client.post(self.url(&path)), key)
    }

    /// The request for a result file (streamed by the caller).
    pub fn download(&self, client: &Client, key: Option<&ApiKey>, file: &str) -> RequestBuilder {
        match self.dialect {
            // wire-formats.md: `GET {base}/download/v1beta/{files/id}:download?alt=media`.
            Dialect::Gemini => {
                let mut url = self.base.clone();
                let base_path = url.path().trim_end_matches('/').to_owned();
                let root =
                    base_path.strip_suffix("/v1beta").or_else(|| base_path.strip_suffix("/v1")).unwrap_or(&base_path);
                url.set_path(&format!("{root}/download/v1beta/{}:download", name_path(file, "files/")));
                url.set_query(Some("alt=media"));
                self.with_key(client.get(url), key)
            }
            Dialect::Openai => self.with_key(client.get(self.url(&format!("/v1/files/{file}/content"))), key),
        }
    }

    /// The class of an error answer to any of these requests.
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
        match self.dialect {
            Dialect::Gemini => gemini::classify(status, headers, body),
            Dialect::Openai => openai::classify(status, headers, body),
        }
    }

    /// The id of an uploaded OpenAI file (`FileObject.id`).
    pub fn parse_openai_file(&self, body: &[u8]) -> Result<String, CallError> {
        let v: Value = json(body, "the Files API's answer")?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| CallError::new(ErrorClass::BadResponse, "the Files API's answer names no file `id`"))
    }

    /// A job, from a create or get answer.
    pub fn parse_job(&self, body: &[u8]) -> Result<JobStatus, CallError> {
        let v: Value = json(body, "the Batch API's answer")?;
        self.job_of(&v).ok_or_else(|| {
            CallError::new(
                ErrorClass::BadResponse,
                format!("the Batch API's answer is not a job: {}", super::snippet(body)),
            )
        })
    }

    /// One page of jobs, and the next page's token.
    pub fn parse_list(&self, body: &[u8]) -> Result<(Vec<JobStatus>, Option<String>), CallError> {
        let v: Value = json(body, "the Batch API's job list")?;
        let (items, next) = match self.dialect {
            Dialect::Gemini => (
                v.get("operations").or_else(|| v.get("batches")),
                v.get("nextPageToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned),
            ),
            Dialect::Openai => {
                let more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
                let last = v.get("last_id").and_then(Value::as_str).map(str::to_owned).or_else(|| {
                    v.get("data")
                        .and_then(Value::as_array)
                        .and_then(|d| d.last())
                        .and_then(|j| j.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                (v.get("data"), if more { last } else { None })
            }
        };
        let jobs = items
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|j| self.job_of(j)).collect())
            .unwrap_or_default();
        Ok((jobs, next))
    }

    fn job_of(&self, v: &Value) -> Option<JobStatus> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let count = |v: Option<&Value>| -> u64 {
            match v {
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
                _ => 0,
            }
        };
        match self.dialect {
            Dialect::Gemini => {
                let name = text(v.get("name"))?;
                let meta = v.get("metadata");
                let at = |k: &str| meta.and_then(|m| m.get(k)).or_else(|| v.get(k));
                let raw_state = text(at("state")).unwrap_or_default();
                let token = text(at("displayName").or_else(|| at("display_name")))
                    .and_then(|d| d.strip_prefix(TOKEN_PREFIX).map(str::to_owned));
                // The results file, wherever it is reported: metadata.output.responsesFile,
                // response.responsesFile, dest.fileName / output.responsesFile.
                let result_file = [
                    meta.and_then(|m| m.get("output")).and_then(|o| o.get("responsesFile")),
                    v.get("response").and_then(|r| r.get("responsesFile")),
                    v.get("dest").and_then(|d| d.get("fileName").or_else(|| d.get("file_name"))),
                    v.get("output").and_then(|o| o.get("responsesFile")),
                    meta.and_then(|m| m.get("dest")).and_then(|d| d.get("fileName")),
                ]
                .into_iter()
                .flatten()
                .find_map(|f| f.as_str().filter(|s| !s.is_empty()).map(str::to_owned));
                let stats = at("batchStats");
                let error = v
                    .get("error")
                    .map(|e| e.get("message").and_then(Value::as_str).map_or_else(|| e.to_string(), str::to_owned));
                Some(JobStatus {
                    name,
                    token,
                    state: JobState::parse(&raw_state),
                    raw_state,
                    result_file,
                    error_file: None,
                    succeeded: count(stats.and_then(|s| s.get("successfulRequestCount"))),
                    failed: count(stats.and_then(|s| s.get("failedRequestCount"))),
                    error,
                })
            }
            Dialect::Openai => {
                let name = text(v.get("id"))?;
                let raw_state = text(v.get("status")).unwrap_or_default();
                let counts = v.get("request_counts");
                let error = v
                    .get("errors")
                    .and_then(|e| e.get("data"))
                    .and_then(Value::as_array)
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        d.iter()
                            .take(3)
                            .map(|e| {
                                let m = e.get("message").and_then(Value::as_str).unwrap_or("?");
                                match e.get("line").and_then(Value::as_u64) {
                                    Some(line) => format!("line {line}: {m}"),
                                    None => m.to_owned(),
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    });
                Some(JobStatus {
                    name,
                    token: text(v.get("metadata").and_then(|m| m.get(TOKEN_KEY))),
                    state: JobState::parse(&raw_state),
                    raw_state,
                    result_file: text(v.get("output_file_id")).filter(|s| !s.is_empty()),
                    error_file: text(v.get("error_file_id")).filter(|s| !s.is_empty()),
                    succeeded: count(counts.and_then(|c| c.get("completed"))),
                    failed: count(counts.and_then(|c| c.get("failed"))),
                    error,
                })
            }
        }
    }

    /// One result line: the row's key, and its image or the error, classified as an
    /// online answer would be. Err: the line cannot be read at all (no key).
    pub fn parse_line(&self, line: &[u8]) -> Result<(String, Result<Generated, CallError>), String> {
        let no_headers = HeaderMap::new();
        match self.dialect {
            Dialect::Gemini => {
                #[derive(Deserialize)]
                struct Line<'a> {
                    key: Option<String>,
                    #[serde(borrow)]
                    response: Option<&'a RawValue>,
                    #[serde(borrow)]
                    error: Option<&'a RawValue>,
                }
                let l: Line = serde_json::from_slice(line).map_err(|e| format!("not a result line: {e}"))?;
                let key = l.key.ok_or("a result line without `key`")?;
                let result = match (l.response, l.error) {
                    (_, Some(error)) if error.get() != "null" => Err(line_error(self, error.get().as_bytes())),
                    (Some(r), _) => gemini::parse_answer(StatusCode::OK, &no_headers, r.get().as_bytes()),
                    _ => Err(CallError::new(ErrorClass::BadResponse, "a result line with neither response nor error")),
                };
                Ok((key, result))
            }
            Dialect::Openai => {
                #[derive(Deserialize)]
                struct Line<'a> {
                    custom_id: Option<String>,
                    #[serde(borrow)]
                    response: Option<Response<'a>>,
                    error: Option<Value>,
                }
                #[derive(Deserialize)]
                struct Response<'a> {
                    status_code: Option<u16>,
                    #[serde(borrow)]
                    body: Option<&'a RawValue>,
                }
                let l: Line = serde_json::from_slice(line).map_err(|e| format!("not a result line: {e}"))?;
                let key = l.custom_id.ok_or("a result line without `custom_id`")?;
                let result = match (l.response, l.error) {
                    (_, Some(e)) if !e.is_null() => Err(openai_line_error(&e)),
                    (Some(Response { status_code, body: Some(body) }), _) => {
                        let status = StatusCode::from_u16(status_code.unwrap_or(200)).unwrap_or(StatusCode::OK);
                        openai::parse_answer(status, &no_headers, body.get().as_bytes())
                    }
                    _ => Err(CallError::new(ErrorClass::BadResponse, "a result line with neither response nor error")),
                };
                Ok((key, result))
            }
        }
    }
}

/// `batches/abc` as a path: the name as given, or with `prefix` when it lacks it.
fn name_path(name: &str, prefix: &str) -> String {
    if name.starts_with(prefix) { name.to_owned() } else { format!("{prefix}{name}") }
}

fn json(body: &[u8], what: &str) -> Result<Value, CallError> {
    serde_json::from_slice(body).map_err(|e| {
        CallError::new(ErrorClass::BadResponse, format!("{what} is not JSON ({e}): {}", super::snippet(body)))
    })
}

/// A Gemini per-line `error` (a `google.rpc.Status`: code, message, status), classified as
/// the same error answered online.
fn line_error(wire: &BatchWire, error: &[u8]) -> CallError {
    let code = serde_json::from_slice::<Value>(error)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_u64))
        .and_then(|c| StatusCode::from_u16(u16::try_from(c).ok()?).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = b"{\"error\":".to_vec();
    body.extend_from_slice(error);
    body.push(b'}');
    wire.classify(code, &HeaderMap::new(), &body)
}

/// An OpenAI per-line `error` (`{"code", "message"}`): a request the batch never ran
/// (`batch_expired`, `batch_cancelled`) is transient; others are the job's refusal of the
/// line.
fn openai_line_error(e: &Value) -> CallError {
    let code = e.get("code").and_then(Value::as_str).unwrap_or("");
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    let class = match code {
        "batch_expired" | "batch_cancelled" => ErrorClass::Timeout,
        "rate_limit_exceeded" => ErrorClass::RateLimited,
        "server_error" | "internal_error" => ErrorClass::Server,
        _ => ErrorClass::InvalidRequest,
    };
    CallError::new(class, format!("batch line error {code}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_state_vocabularies_are_read() {
        for (s, want) in [
            ("BATCH_STATE_PENDING", JobState::Pending),
            ("JOB_STATE_PENDING", JobState::Pending),
            ("JOB_STATE_SUCCEEDED", JobState::Succeeded),
            ("BATCH_STATE_EXPIRED", JobState::Expired),
            ("validating", JobState::Pending),
            ("in_progress", JobState::Running),
            ("completed", JobState::Succeeded),
            ("cancelling", JobState::Cancelling),
            ("cancelled", JobState::Cancelled),
            ("BATCH_STATE_SOMETHING_NEW", JobState::Unknown),
        ] {
            assert_eq!(JobState::parse(s), want, "{s}");
        }
        assert!(!JobState::Unknown.is_final() && !JobState::Cancelling.is_final());
    }

    #[test]
    fn the_gemini_result_file_is_found_wherever_it_is_reported() {
        let w = BatchWire::new(Dialect::Gemini, &"http://127.0.0.1:1".parse().unwrap());
        for v in [
            r#"{"name":"batches/1","metadata":{"state":"BATCH_STATE_SUCCEEDED","displayName":"bulkgen-t1","output":{"responsesFile":"files/r"}}}"#,
            r#"{"name":"batches/1","done":true,"metadata":{"state":"JOB_STATE_SUCCEEDED","displayName":"bulkgen-t1"},"response":{"@type":"x","responsesFile":"files/r"}}"#,
            r#"{"name":"batches/1","state":"JOB_STATE_SUCCEEDED","displayName":"bulkgen-t1","dest":{"fileName":"files/r"}}"#,
        ] {
            let j = w.parse_job(v.as_bytes()).unwrap();
            assert_eq!(
                (j.state, j.result_file.as_deref(), j.token.as_deref()),
                (JobState::Succeeded, Some("files/r"), Some("t1")),
                "{v}"
            );
        }
    }
}
