//! `--engine batch` before anything is sent: the plan's batch cost beside the online one,
//! and the settings and rows a batch run refuses (exit 2, nothing sent).

mod common;

use common::*;

fn gemini_manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("m.csv");
    std::fs::write(&path, "id,prompt,size\na,one,1K\nb,two,2K\nc,three,4K\nd,four,4K\n").unwrap();
    path
}

#[tokio::test]
async fn a_batch_dry_run_shows_the_batch_cost_beside_the_online_cost() {
    let dir = tempfile::tempdir().unwrap();
    let m = gemini_manifest(dir.path());
    let o = bin()
        .env_remove("BULKGEN_API_KEY")
        .args(["run", "--provider", "gemini", "--engine", "batch", "--dry-run", "-o"])
        .arg(dir.path().join("out"))
        .arg(&m)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    // The catalogue's gemini-3-pro-image prices: online 0.134 (1K, 2K) and 0.24 (4K),
    // batch half of each.
    let online = 0.134 * 2.0 + 0.24 * 2.0;
    let batch = 0.067 * 2.0 + 0.12 * 2.0;
    assert!(
        said.contains(&format!("estimated cost with --engine batch: ${batch:.3} (online: ${online:.3})")),
        "{said}"
    );
}

#[tokio::test]
async fn batch_runs_refuse_what_the_batch_api_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A model the catalogue does not list as offered in batch (an aggregator's).
    let agg = dir.path().join("agg.csv");
    std::fs::write(&agg, "id,prompt,model\nx,one,nano-banana-pro\n").unwrap();
    let o = bin().args(["run", "--engine", "batch", "--dry-run", "-o"]).arg(&out).arg(&agg).output().await.unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("line 2") && said.contains("nano-banana-pro") && said.contains("Batch API"), "{said}");
    // A result URL cannot come back in a result file.
    let o = bin()
        .args(["run", "--engine", "batch", "--response-format", "url", "--model", "nano-banana-pro", "-o"])
        .arg(&out)
        .arg(&agg)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--response-format"), "{}", text(&o));
    // --max-cost needs a batch price for every model and class a batch run may make.
    let unpriced = dir.path().join("unpriced.csv");
    std::fs::write(&unpriced, "id,prompt,model\nx,one,gemini-3.1-flash-image\n").unwrap();
    let o = bin()
        .args(["run", "--provider", "gemini", "--engine", "batch", "--max-cost", "5", "--batch-fallback", "none"])
        .args(["--base-url", "http://127.0.0.1:9", "--no-preflight", "-o"])
        .arg(&out)
        .arg(&unpriced)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("gemini-3.1-flash-image:1K:batch"), "{}", text(&o));
}
