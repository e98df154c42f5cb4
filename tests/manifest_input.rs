//! Manifests as people save them (issue 13): Excel's semicolon CSV, tab-separated files,
//! `--delimiter`, text that is not UTF-8, and prompts longer than the model takes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;

fn prompts(rows: &[(&str, &str)]) -> HashMap<String, String> {
    rows.iter().map(|(id, p)| ((*id).to_owned(), (*p).to_owned())).collect()
}

/// Every row done, its prompt read whole, its image made for that prompt.
fn assert_done(out: &Path, want: &HashMap<String, String>) {
    let rows = results(out);
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "done", "{r:?}");
        assert_eq!(&r["prompt"], &want[&r["id"]], "{r:?}");
    }
    assert_images_match(out, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excel_semicolon_manifest_with_a_bom_runs_to_the_end_and_a_rerun_sends_nothing() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("excel.csv");
    // As Excel saves "CSV UTF-8" where the decimal separator is a comma.
    let body = "\u{feff}id;prompt;size;note\r\n\
                a;a red fox, sitting;1K;x\r\n\
                b;\"a blue; quoted \"\"bird\"\"\";2K;y\r\n\
                c;a green hill, 3,5 km away;1K;z\r\n";
    std::fs::write(&manifest, body).unwrap();
    let want =
        prompts(&[("a", "a red fox, sitting"), ("b", "a blue; quoted \"bird\""), ("c", "a green hill, 3,5 km away")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("read as semicolon-separated"), "{}", text(&o));
    assert_done(&out, &want);
    assert_eq!(results(&out).iter().map(|r| r["note"].as_str()).collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_each_generated_once(&sim.stats(), &want);

    // The checkpoint's sync reads it the same way: nothing changed, nothing sent.
    let before = sim.stats().requests;
    let again = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("3 already done, 0 to run"), "{}", text(&again));
    assert_eq!(sim.stats().requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_separated_manifest_runs_to_the_end() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("prompts.tsv");
    std::fs::write(&manifest, "prompt\tid\nstill life; pears, apples\tp1\nnight sky, stars\tp2\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("read as tab-separated"), "{}", text(&o));
    assert_done(&out, &prompts(&[("p1", "still life; pears, apples"), ("p2", "night sky, stars")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiter_reaches_the_run_resume_and_repair() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("one-column.csv");
    // One column: every delimiter fits the header, and prompts hold commas and semicolons.
    std::fs::write(&manifest, "prompt\na cat, a dog; a bird\ntwo, three\n").unwrap();
    let want = prompts(&[("row-1", "a cat, a dog; a bird"), ("row-2", "two, three")]);
    let out = dir.path().join("out");

    let comma = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(comma.status.code(), Some(2), "{}", text(&comma));
    assert!(String::from_utf8_lossy(&comma.stderr).contains("an unquoted comma?"), "{}", text(&comma));
    assert_eq!(sim.stats().requests, 0);

    let tab = run(&sim, &manifest, &out, &["--delimiter", "tab"]).await;
    assert_eq!(tab.status.code(), Some(0), "{}", text(&tab));
    assert_done(&out, &want);
    let made = sim.stats().requests;

    // resume takes --delimiter from the stored flags.
    let resumed = bin().args(["resume", "-o"]).arg(&out).output().await.unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("2 already done, 0 to run"), "{}", text(&resumed));

    // repair rebuilds a lost checkpoint from the images, reading the manifest the same way.
    std::fs::remove_file(out.join("bulkgen.db")).unwrap();
    let repaired = bin().arg("repair").arg(&manifest).arg("-o").arg(&out).args(["--delimiter", "tab"]).output();
    let repaired = repaired.await.unwrap();
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    // Then the same command again, as repair says.
    let rerun = run(&sim, &manifest, &out, &["--delimiter", "tab"]).await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    assert!(String::from_utf8_lossy(&rerun.stderr).contains("2 already done, 0 to run"), "{}", text(&rerun));
    assert_done(&out, &want);
    assert_eq!(sim.stats().requests, made, "nothing was paid for twice");

    // A delimiter that does not fit the header says which one does.
    let semicolon = dir.path().join("semicolon.csv");
    std::fs::write(&semicolon, "id;prompt\na;b\n").unwrap();
    let o = run(&sim, &semicolon, &dir.path().join("out2"), &["--delimiter", ","]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("columns found: id;prompt"), "{stderr}");
    assert!(stderr.contains("give --delimiter ; or leave the flag out"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_no_delimiter_fits_names_its_columns_and_suggests_delimiter() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("no-prompt.csv");
    std::fs::write(&manifest, "id;text;size\na;a cat;1K\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&manifest.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("has no `prompt` column (columns found, split at each semicolon: id, text, size)"),
        "{stderr}"
    );
    assert!(stderr.contains("--delimiter ,|;|tab"), "{stderr}");
    assert_eq!(sim.stats().requests, 0);
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latin1_manifest_names_the_column_line_and_row_and_says_to_resave_as_csv_utf8() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("latin1.csv");
    // "café" and "crème" in Latin-1, as Excel's plain "CSV" saves them in western locales.
    std::fs::write(&manifest, b"id;prompt;size\nok;a plain prompt;1K\ncafe;un caf\xe9 cr\xe8me;1K\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "line 3: undecodable text in column `prompt` (column 2), row cafe: not UTF-8; re-save the file as \
             \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8)"
        ),
        "{stderr}"
    );
    assert_eq!(sim.stats().requests, 0);
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_over_the_models_limit_is_refused_before_anything_is_sent() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("long.csv");
    // Two bytes a character: the limit counts characters, not bytes.
    let at_limit = "é".repeat(32_000);
    let over = "é".repeat(32_001);
    std::fs::write(&manifest, format!("id,prompt\nfits,{at_limit}\ntoo-long,{over}\nshort,a cat\n")).unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("manifest {} has 1 problem(s); nothing was sent", manifest.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "line 3: row too-long: the prompt is 32001 characters long, over the 32000 that model gpt-image-2 takes"
        ),
        "{stderr}"
    );
    assert_eq!(sim.stats().requests, 0, "nothing was sent, not even the preflight");
    assert!(!out.exists());

    // The limit is the catalogue's: a --models-file entry sets it for its model.
    let models = dir.path().join("models.toml");
    std::fs::write(
        &models,
        "[[model]]\nname = \"tiny-relay-model\"\ndialect = \"openai\"\nsizes = { kind = \"list\", sizes = \
         [\"1024x1024\"] }\nmax_prompt_chars = 5\nsource = \"a test\"\nas_of = \"2026-11-24\"\n",
    )
    .unwrap();
    let models_arg = models.display().to_string();
    let o = run(&sim, &manifest, &out, &["--model", "tiny-relay-model", "--models-file", &models_arg]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("has 2 problem(s)"), "{stderr}");
    assert!(!stderr.contains("row short"), "a 5-character prompt fits: {stderr}");
    assert!(stderr.contains("over the 5 that model tiny-relay-model takes"), "{stderr}");
    assert_eq!(sim.stats().requests, 0);
}
