//! The embedded store on a disk that fills up under concurrent writers: every acknowledged
//! command survives (also a kill and a restart), no refused one is stored, the refusals are
//! 507 problem documents, `/readyz` says 503 meanwhile, and writes resume by themselves once
//! space is freed.
//!
//! The disk is a small tmpfs mounted by the test. That takes root; without it the test runs
//! itself again inside a user and mount namespace (`unshare --user --map-root-user --mount`),
//! where mounting a tmpfs is allowed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, clean_command, enrol_with_key, readyz, start_with, whole_feed};
use serde_json::{Value, json};

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop.
struct Tmpfs {
    folder: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let folder = tempfile::tempdir().expect("a folder to mount on");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(folder.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { folder })
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.folder.path())
            .status();
    }
}

/// Fills the file system holding `path` completely; returns the ballast file.
fn fill(folder: &Path) -> PathBuf {
    let ballast = folder.join("ballast");
    let mut file = std::fs::File::create(&ballast).expect("ballast file");
    let chunk = vec![0xA5_u8; 16 * 1024];
    while file.write_all(&chunk).and_then(|()| file.flush()).is_ok() {}
    // Whatever is left is smaller than a chunk: take it too.
    while file.write_all(&[0]).is_ok() {}
    ballast
}

fn filiera_on(data_dir: &Path) -> Command {
    let mut command = clean_command();
    command.env("FILIERA_DATA_DIR", data_dir);
    command
}

/// What one writer was told.
#[derive(Debug, Default)]
struct Outcomes {
    /// Acknowledged enrolments: id → whether its stage entry was acknowledged too.
    acknowledged: BTreeMap<String, bool>,
    /// Idempotency keys of enrolments refused for lack of space.
    refused_keys: Vec<String>,
    /// Refusals seen (507/503), enrolments and stage entries alike.
    refusals: u32,
}

async fn writer(
    client: reqwest::Client,
    base: String,
    name: usize,
    outcomes: Arc<Mutex<Outcomes>>,
    deadline: Instant,
) {
    let mut refusals = 0;
    for n in 0.. {
        if refusals >= 8 || Instant::now() > deadline {
            return;
        }
        let key = format!("disk-full-{name}-{n}");
        let (status, _, body) = enrol_with_key(&client, &base, "LOM-BG-BERGAMO", &key).await;
        match status {
            201 => {
                let id = body["id"].as_str().expect("an id").to_owned();
                let stage = client
                    .post(format!("{base}/v1/beneficiaries/{id}/stage"))
                    .json(&json!({"stage": "socio_occupational", "on": "2024-02-01"}))
                    .send()
                    .await
                    .expect("the server answers");
                let stage_status = stage.status().as_u16();
                let stage_body: Value = stage.json().await.unwrap_or(Value::Null);
                let entered = match stage_status {
                    200 => true,
                    507 | 503 => {
                        assert_refusal(stage_status, &stage_body);
                        refusals += 1;
                        outcomes.lock().unwrap().refusals += 1;
                        false
                    }
                    other => panic!("stage entry answered {other}: {stage_body}"),
                };
                outcomes.lock().unwrap().acknowledged.insert(id, entered);
            }
            507 | 503 => {
                assert_refusal(status, &body);
                refusals += 1;
                let mut outcomes = outcomes.lock().unwrap();
                outcomes.refusals += 1;
                outcomes.refused_keys.push(key);
            }
            other => panic!("enrolment answered {other}: {body}"),
        }
    }
}

/// A refusal for lack of space is a problem document that says so and what to do.
fn assert_refusal(status: u16, body: &Value) {
    assert_eq!(body["status"], status, "{body}");
    if status == 507 {
        assert_eq!(body["code"], "storage_full", "{body}");
        assert_eq!(body["reason"], "disk_full", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("free space"),
            "{body}"
        );
    }
}

/// Enrolments and stage entries in the feed: id → whether a stage was entered.
fn stored(feed: &[Value]) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for event in feed {
        let id = event["beneficiary_id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "Enrolled" => {
                assert!(out.insert(id, false).is_none(), "enrolled twice");
            }
            "StageEntered" => {
                let entered = out.get_mut(&id).expect("enrolled before");
                assert!(!*entered, "stage entered twice: {id}");
                *entered = true;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_write_and_writes_resume_when_space_returns() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return rerun_in_a_mount_namespace(
            "a_full_disk_loses_no_acknowledged_write_and_writes_resume_when_space_returns",
        );
    };
    let data_dir = disk.path().join("data");
    let client = common::client();
    let server = start_with(filiera_on(&data_dir), &client).await;
    let base = server.base.clone();

    // Writers run while the disk fills up, until each has been refused a few times.
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let writers: Vec<_> = (0..4)
        .map(|name| {
            tokio::spawn(writer(
                client.clone(),
                base.clone(),
                name,
                outcomes.clone(),
                deadline,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ballast = tokio::task::spawn_blocking({
        let folder = disk.path().to_owned();
        move || fill(&folder)
    })
    .await
    .unwrap();
    for writer in writers {
        writer.await.expect("writer");
    }
    let (acknowledged, refused_keys, refusals) = {
        let outcomes = outcomes.lock().unwrap();
        (
            outcomes.acknowledged.clone(),
            outcomes.refused_keys.clone(),
            outcomes.refusals,
        )
    };
    assert!(
        !acknowledged.is_empty(),
        "nothing was written before the disk filled"
    );
    assert!(
        refusals >= 4,
        "the full disk refused only {refusals} commands"
    );

    // Meanwhile the service says it cannot commit, and why.
    let (status, body, took) = readyz(&client, &base).await;
    assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "disk_full", "{body}");
    assert_eq!(body["code"], "not_ready", "{body}");

    // Reads still work, and show exactly what was acknowledged.
    let before_restart = stored(&whole_feed(&client, &base).await);
    assert_eq!(before_restart, acknowledged);

    // Space comes back: readiness recovers by itself (no command needed), then writes resume,
    // all without a restart.
    std::fs::remove_file(&ballast).expect("free the space");
    let recovered = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = readyz(&client, &base).await;
        if status == 200 {
            break;
        }
        assert_eq!(body["reason"], "disk_full", "{body}");
        assert!(
            Instant::now() < recovered,
            "/readyz did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resumed = Instant::now() + Duration::from_secs(15);
    let retried_key = refused_keys
        .first()
        .cloned()
        .unwrap_or_else(|| "fresh".into());
    let retried_id = loop {
        let (status, _, body) =
            enrol_with_key(&client, &base, "LOM-BG-BERGAMO", &retried_key).await;
        if status == 201 {
            // A refused command bound nothing: its key now stores a new enrolment.
            break body["id"].as_str().unwrap().to_owned();
        }
        assert!(matches!(status, 503 | 507), "{status}: {body}");
        assert!(Instant::now() < resumed, "writes did not resume: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, body, _) = readyz(&client, &base).await;
    assert_eq!(status, 200, "{body}");

    // Killed and restarted: every acknowledged command is there, no refused one.
    drop(server);
    let server: Server = start_with(filiera_on(&data_dir), &client).await;
    let after_restart = stored(&whole_feed(&client, &server.base).await);
    let mut expected = acknowledged.clone();
    expected.insert(retried_id.clone(), false);
    assert_eq!(after_restart, expected);
    let ids: BTreeSet<_> = after_restart.keys().collect();
    assert!(ids.contains(&retried_id));
    eprintln!(
        "{} acknowledged enrolments kept, {refusals} refusals, {} refused enrolments absent",
        acknowledged.len(),
        refused_keys.len()
    );
}

/// Runs `test` of this binary again inside a new user and mount namespace, where the test may
/// mount a tmpfs without being root, and asserts that it passed there.
fn rerun_in_a_mount_namespace(test: &str) {
    assert!(
        std::env::var_os("FILIERA_TEST_IN_NAMESPACE").is_none(),
        "cannot mount a tmpfs, even in a user namespace"
    );
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--nocapture"])
        .env("FILIERA_TEST_IN_NAMESPACE", "1")
        .status()
        .expect("unshare (util-linux) runs: mounting a tmpfs needs root or a user namespace");
    assert!(status.success(), "the test failed in its namespace");
}
