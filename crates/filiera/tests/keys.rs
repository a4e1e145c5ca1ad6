//! `filiera keys rotate` on the embedded store: identities stored under the old master key
//! read back under the new one, and the old key no longer opens the vault.

mod common;

use std::process::Stdio;

use common::{clean_command, client, start_with};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_keeps_every_identity_readable_with_the_new_key_only() {
    let data = tempfile::tempdir().unwrap();
    let embedded = || {
        let mut command = clean_command();
        command.env("FILIERA_DATA_DIR", data.path());
        command
    };
    let client = client();
    let person = json!({"fiscal_code": "BNCGLI75E44F205X", "given_name": "Giulia",
                        "family_name": "Bianchi"});
    let server = start_with(embedded(), &client).await;
    let enrolled: Value = client
        .post(format!("{}/v1/beneficiaries", server.base))
        .json(&json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10",
                      "referral": "self", "person": person}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = enrolled["id"].as_str().expect("enrolled").to_owned();
    drop(server);

    let key_file = data.path().join("master.key");
    let old_key = std::fs::read_to_string(&key_file).expect("the generated key file");
    let rotated = embedded()
        .args(["keys", "rotate"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(rotated.status.success());
    let outcome: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(outcome, json!({"version": 2, "data_keys": 1}));
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());

    // The new key reads the identity.
    let server = start_with(embedded(), &client).await;
    let read: Value = client
        .get(format!("{}/v1/beneficiaries/{id}/person", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, person);
    drop(server);

    // The old key no longer opens the vault: serve refuses to start, naming the problem.
    let refused = embedded()
        .env("FILIERA_MASTER_KEY", old_key.trim())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("wrong master key"), "{stderr}");
    // A configured key needs the new one named.
    let no_new = embedded()
        .env("FILIERA_MASTER_KEY", new_key.trim())
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(!no_new.status.success());
    assert!(String::from_utf8_lossy(&no_new.stderr).contains("--new-key-file"));
}

/// The data folder holds the embedded database and the generated secrets: created by filiera,
/// it is its owner's only.
#[test]
fn a_data_folder_filiera_creates_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("filiera-data");
    let status = clean_command()
        .env("FILIERA_DATA_DIR", &data)
        .arg("migrate")
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}
