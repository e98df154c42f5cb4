//! Issue 13, the command line's extras: shell completions made from the clap definition,
//! and a URL whose scheme does not match what its port speaks (https to a plain-HTTP
//! port, http to a TLS port) named as such, not as a TLS or parse error.

mod common;

use std::process::Stdio;

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
