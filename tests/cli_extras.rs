//! Issue 13, the command line's extras: shell completions made from the clap definition,
//! and a URL whose scheme does not match what its port speaks (https to a plain-HTTP
//! port, http to a TLS port) named as such, not as a TLS or parse error.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

async fn completions(shell: &str) -> std::process::Output {
    bin().args(["completions", shell]).output().await.unwrap()
}

#[tokio::test]
async fn the_bash_script_knows_the_commands_and_the_run_flags() {
    let o = completions("bash").await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let script = String::from_utf8(o.stdout).unwrap();
    for word in ["run", "status", "resume", "report", "completions", "--engine", "--base-url", "--concurrency"] {
        assert!(script.contains(word), "{word} is not in the bash script");
    }
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test]
async fn every_shell_clap_complete_knows_gets_a_script() {
    for (shell, mark) in [
        ("zsh", "#compdef bulkgen"),
        ("fish", "complete -c bulkgen"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[bulkgen]"),
    ] {
        let o = completions(shell).await;
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains(mark) && script.contains("engine"), "{shell}: {script}");
    }
}

#[tokio::test]
async fn an_unknown_or_missing_shell_is_a_usage_error() {
    let o = completions("tcsh").await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    assert!(["bash", "zsh", "fish", "powershell", "elvish"].iter().all(|s| err.contains(s)), "{err}");
    let o = bin().arg("completions").output().await.unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("<SHELL>"), "{}", text(&o));
}

/// The bash script, sourced by bash, registers a completion for bulkgen and completes a
/// subcommand and a run flag (skipped where there is no bash).
#[tokio::test]
async fn bash_sources_the_script_and_completes_with_it() {
    if std::process::Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("no bash here: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulkgen.bash");
    std::fs::write(&path, completions("bash").await.stdout).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source {path:?} && complete -p bulkgen && COMP_WORDS=({line}) && COMP_CWORD={} && \
             _bulkgen bulkgen {} {} && echo \"${{COMPREPLY[@]}}\"",
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let o = std::process::Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{line}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let out = complete("bulkgen sta");
    assert!(out.starts_with("complete ") && out.contains(" bulkgen\n"), "{out}");
    assert_eq!(out.lines().last(), Some("status"), "{out}");
    assert_eq!(complete("bulkgen run m.csv --eng").lines().last(), Some("--engine"));
}

/// A reader that goes away (`bulkgen completions bash | head -1`) ends the command
/// quietly: exit 0, no panic, nothing on stderr.
#[tokio::test]
async fn a_reader_that_goes_away_ends_it_quietly() {
    let mut child = bin().args(["completions", "bash"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A server that speaks TLS (rustls) on 127.0.0.1:0, as a TLS port answers a client that
/// writes plain HTTP to it. It has no certificate: a plain-HTTP client never gets as far
/// as a handshake, and one that tries gets a handshake failure.
fn tls_port() -> std::net::SocketAddr {
    use std::io::Read;
    use std::sync::Arc;
    #[derive(Debug)]
    struct NoCert;
    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert)),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let mut tls = rustls::ServerConnection::new(config).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut bytes = &buf[..n];
                    while !bytes.is_empty() {
                        if tls.read_tls(&mut bytes).is_err() {
                            return;
                        }
                    }
                    let failed = tls.process_new_packets().is_err();
                    while tls.wants_write() {
                        if tls.write_tls(&mut stream).is_err() {
                            return;
                        }
                    }
                    if failed {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn manifest_of(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    manifest(dir, n).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_port_says_so_at_the_preflight() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), 3);
    let url = sim.base_url().replace("http://", "https://");
    let port = sim.base_url().rsplit(':').next().unwrap().to_owned();
    let out = dir.path().join("out");
    let o = run_cmd(&url, &manifest, &out, &[]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot reach {url}/v1/models")), "{err}");
    assert!(
        err.contains(&format!(
            "the server at 127.0.0.1:{port} answered in plain HTTP, not TLS: use http:// for this URL (or check the port)"
        )),
        "{err}"
    );
    // Loopback: http:// needs no --allow-plain-http there, so the message does not ask for it.
    assert!(!err.contains("--allow-plain-http") && !err.contains("InvalidContentType"), "{err}");
    assert!(!out.exists(), "nothing is created before the preflight passes");

    // `bulkgen models --base-url` asks the same endpoint the same way.
    let o = bin().args(["models", "--base-url", &url]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("answered in plain HTTP, not TLS"), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0);
    assert_eq!(sim.stats().list_requests, 0);
}

/// Without the preflight the run's calls meet the same port: the pause note, the stop
/// reason and results.csv say what it means, and nothing reaches the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_port_says_so_during_a_run() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), 2);
    let url = sim.base_url().replace("http://", "https://");
    let out = dir.path().join("out");
    let args = ["--no-preflight", "--max-wait", "300ms", "-q"];
    let o = tokio::time::timeout(Duration::from_secs(60), run_cmd(&url, &manifest, &out, &args).output())
        .await
        .expect("the run stops after --max-wait")
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has been unreachable") && err.contains("answered in plain HTTP, not TLS"), "{err}");
    for row in results(&out) {
        assert_eq!(row["status"], "pending", "{row:?}");
    }
    let o = bin().args(["status", "-o"]).arg(&out).output().await.unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("answered in plain HTTP, not TLS"), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_tls_port_says_so() {
    let tls = tls_port();
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), 2);
    let url = format!("http://{tls}");
    let out = dir.path().join("out");
    let expected =
        format!("the server at {tls} answered in TLS, not plain HTTP: use https:// for this URL (or check the port)");

    let o = run_cmd(&url, &manifest, &out, &[]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot reach {url}/v1/models: {expected}")), "{err}");
    assert!(!out.exists());

    // During a run (no preflight) each call fails the same way, and results.csv says why.
    let args = ["--no-preflight", "--max-attempts", "2", "-q"];
    let o = run_cmd(&url, &manifest, &out, &args).output().await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for row in results(&out) {
        assert_eq!(row["status"], "failed", "{row:?}");
        assert!(row["error"].contains(&expected), "{row:?}");
    }
}

/// nginx answers plain HTTP on its TLS port with a 400 page (Go's servers likewise): an
/// answer, yet the same mistake, so the preflight names it instead of letting every row
/// fail as an invalid request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_nginxs_tls_port_says_so_at_the_preflight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let page = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n\
                        <body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was \
                        sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), 2);
    let out = dir.path().join("out");
    let o = run_cmd(&format!("http://{addr}"), &manifest, &out, &[]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("the server at {addr} answered in TLS, not plain HTTP: use https://")), "{err}");
    assert!(!out.exists());
}
