//! `keys rotate-master`: data keys re-wrapped, old credentials still open with the new
//! master key and no longer with the old one.

use serde_json::Value;
use sqlx::Row;
use std::os::unix::fs::PermissionsExt;
use syncledger_store::Store;
use syncledger_testkit::binary::{describe, random_hex, stderr, TestEnv, Workspace};
use syncledger_vault::{ExposeSecret, MasterKey, Sealed, Vault, VaultError};

/// The credentials events of an integration, as sealed values, oldest first.
async fn sealed_credentials(store: &Store, integration_id: &str) -> Vec<Sealed> {
    let rows = sqlx::query(
        "SELECT CAST(payload AS TEXT) AS payload FROM events
          WHERE aggregate_id = $1 AND event_type IN ('CredentialsStored', 'CredentialsRotated')
          ORDER BY global_position",
    )
    .bind(integration_id)
    .fetch_all(&store.any)
    .await
    .expect("read the credentials events");
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload").expect("payload");
            let v: Value = serde_json::from_str(&payload).expect("payload JSON");
            serde_json::from_value(v["secret"].clone()).expect("payload.secret is sealed")
        })
        .collect()
}

/// The API key a sealed credential holds.
async fn open_api_key(vault: &Vault, workspace_id: &str, sealed: &Sealed) -> String {
    let plain = vault
        .open(workspace_id, sealed)
        .await
        .expect("the vault opens the credential");
    let v: Value = serde_json::from_slice(plain.expose_secret()).expect("credential JSON");
    v["api_key"].as_str().expect("api_key").to_string()
}

/// Serve, set an API key on a new integration, stop.
async fn with_api_key(env: &TestEnv, ws: &Workspace, id: Option<&str>) -> (String, String) {
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = match id {
        Some(id) => id.to_string(),
        None => api.create_integration("Main").await,
    };
    let key = format!("sk_live_{}", random_hex());
    api.set_api_key(&id, &key).await;
    server.stop_ok().await;
    (id, key)
}

/// After a rotation: both keys open under `current`, and `stale` opens neither.
async fn assert_rotated(
    env: &TestEnv,
    ws: &Workspace,
    id: &str,
    keys: &[String],
    current: MasterKey,
    stale: MasterKey,
) {
    let store = env.store().await;
    let sealed = sealed_credentials(&store, id).await;
    assert_eq!(sealed.len(), keys.len());
    let vault = Vault::new(store.any.clone(), current);
    for (sealed, key) in sealed.iter().zip(keys) {
        assert_eq!(&open_api_key(&vault, &ws.id, sealed).await, key);
    }
    let old = Vault::new(store.any.clone(), stale);
    for sealed in &sealed {
        let err = old.open(&ws.id, sealed).await.err();
        assert!(
            matches!(err, Some(VaultError::WrongMasterKey { .. })),
            "{err:?}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn rotate_master_rewraps_the_data_keys_and_replaces_the_key_file() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let (id, first) = with_api_key(&env, &ws, None).await;
    let old_copy = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(env.key_file(), old_copy.path().join("master.key")).expect("copy the key");
    let old_text = std::fs::read_to_string(env.key_file()).expect("read master.key");

    let out = env.run_ok(&["keys", "rotate-master"]).await;
    assert!(out.contains("re-wrapped 1 data key(s)"), "{out}");
    let new_text = std::fs::read_to_string(env.key_file()).expect("read master.key");
    assert_ne!(new_text, old_text);
    assert!(
        !out.contains(new_text.trim()),
        "the new key was printed: {out}"
    );
    let mode = std::fs::metadata(env.key_file())
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "master.key mode {mode:o}");
    assert!(!env.data_dir().join("master.key.new").exists());

    // The server restarts on the new key file and can still seal with the data key.
    let (_, second) = with_api_key(&env, &ws, Some(&id)).await;
    let current = MasterKey::load_or_create(None, env.data_dir()).expect("new key");
    let stale = MasterKey::load_or_create(None, old_copy.path()).expect("old key");
    assert_rotated(&env, &ws, &id, &[first, second], current, stale).await;
}

#[tokio::test]
async fn rotate_master_with_an_environment_key_prints_the_new_key() {
    let mut env = TestEnv::sqlite();
    let old = MasterKey::generate().to_base64();
    env.set_master_key(&old);
    let ws = env.create_workspace("Acme").await;
    let (id, first) = with_api_key(&env, &ws, None).await;

    let out = env.run_ok(&["keys", "rotate-master"]).await;
    assert!(out.contains("re-wrapped 1 data key(s)"), "{out}");
    let printed = out.lines().last().unwrap_or_default().trim().to_string();
    let current = MasterKey::from_base64(&printed).expect("the last line is the new key");
    assert_ne!(printed, old);
    assert!(!env.key_file().exists(), "a key file was written");
    assert!(!env.data_dir().join("master.key.new").exists());

    env.set_master_key(&printed);
    let (_, second) = with_api_key(&env, &ws, Some(&id)).await;
    let stale = MasterKey::from_base64(&old).expect("old key");
    assert_rotated(&env, &ws, &id, &[first, second], current, stale).await;
}

/// A master key that did not wrap this store's data keys (another store's, or the old one
/// after a rotation) is refused when a command or the server starts, naming both key ids,
/// never later as a failed credential read; a rotation says what to restart.
#[tokio::test]
async fn a_master_key_of_another_store_is_refused_at_start() {
    let mut env = TestEnv::sqlite();
    let right = MasterKey::generate().to_base64();
    env.set_master_key(&right);
    let ws = env.create_workspace("Acme").await;
    with_api_key(&env, &ws, None).await;
    let right_id = MasterKey::from_base64(&right)
        .expect("key")
        .id()
        .to_string();

    let wrong = MasterKey::generate();
    env.set_master_key(&wrong.to_base64());
    for args in [
        vec![
            "tokens",
            "create",
            "--workspace",
            ws.id.as_str(),
            "--role",
            "viewer",
        ],
        vec!["serve"],
    ] {
        let out = env.run(&args).await;
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let said = stderr(&out);
        assert!(
            said.contains("data keys are wrapped by master key")
                && said.contains(&right_id)
                && said.contains(wrong.id()),
            "{args:?}: {said}"
        );
    }

    env.set_master_key(&right);
    let out = env.run(&["keys", "rotate-master"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("restart every `syncledger serve` and `syncledger worker`"),
        "{}",
        describe(&out)
    );
}
