#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sqlx::{AnyPool, Row};
use syncledger_vault::{ExposeSecret, MasterKey, Sealed, Vault, VaultError};
use tempfile::TempDir;

const MIGRATION: &str = include_str!("../../../migrations/sqlite/0002_data_keys.sql");

struct Db {
    _dir: TempDir,
    path: PathBuf,
    pool: AnyPool,
}

async fn db() -> Db {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let pool = AnyPool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(MIGRATION).execute(&pool).await.unwrap();
    Db {
        _dir: dir,
        path,
        pool,
    }
}

fn opened(secret: &secrecy::SecretBox<Vec<u8>>) -> Vec<u8> {
    secret.expose_secret().clone()
}

async fn row(pool: &AnyPool, ws: &str) -> (String, String, String, Option<String>) {
    let row = sqlx::query(
        "SELECT key_id, master_key_id, wrapped_key, rotated_at FROM data_keys WHERE workspace_id = $1",
    )
    .bind(ws.to_owned())
    .fetch_one(pool)
    .await
    .unwrap();
    (
        row.get("key_id"),
        row.get("master_key_id"),
        row.get("wrapped_key"),
        row.get("rotated_at"),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decodes a base64 field, applies `f` to the bytes, re-encodes.
fn mutate(field: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut raw = STANDARD.decode(field).unwrap();
    f(&mut raw);
    STANDARD.encode(raw)
}

#[tokio::test]
async fn round_trip() {
    let db = db().await;
    // Every vault over one table must use the same master key.
    let master_b64 = MasterKey::generate().to_base64();
    let vault = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    for plaintext in [&b""[..], b"x", b"refresh-token-123", &[0u8; 4096][..]] {
        let sealed = vault.seal("ws-1", plaintext).await.unwrap();
        assert_eq!(
            opened(&vault.open("ws-1", &sealed).await.unwrap()),
            plaintext
        );
    }
    // A second vault over the same table (fresh cache) opens it too.
    let v1 = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    let sealed = v1.seal("ws-2", b"hello").await.unwrap();
    let v2 = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    assert_eq!(opened(&v2.open("ws-2", &sealed).await.unwrap()), b"hello");
}

#[tokio::test]
async fn workspaces_get_different_data_keys() {
    let db = db().await;
    let vault = Vault::new(db.pool.clone(), MasterKey::generate());
    let a = vault.seal("ws-a", b"same secret").await.unwrap();
    let b = vault.seal("ws-b", b"same secret").await.unwrap();
    let a2 = vault.seal("ws-a", b"same secret").await.unwrap();
    assert_ne!(a.key_id, b.key_id);
    assert_eq!(a.key_id, a2.key_id);
    assert_ne!(a.nonce, a2.nonce, "nonces must be fresh per seal");
    assert_ne!(a.ciphertext, a2.ciphertext);
    let (ka, ma, wa, _) = row(&db.pool, "ws-a").await;
    let (kb, mb, wb, _) = row(&db.pool, "ws-b").await;
    assert_eq!(ka, a.key_id);
    assert_eq!(kb, b.key_id);
    assert_eq!(ma, mb);
    assert_ne!(wa, wb);
    // Forcing ws-a's key id onto ws-b's ciphertext still fails: different key.
    let forged = Sealed {
        key_id: a.key_id.clone(),
        ..b.clone()
    };
    assert!(matches!(
        vault.open("ws-a", &forged).await,
        Err(VaultError::Tampered)
    ));
}

#[tokio::test]
async fn plaintext_never_stored() {
    let db = db().await;
    let master = MasterKey::generate();
    let master_b64 = master.to_base64();
    let master_raw = STANDARD.decode(&master_b64).unwrap();
    let vault = Vault::new(db.pool.clone(), master);
    let secret = b"sk_live_ZEBRA-0xC0FFEE-distinctive-secret-9d1f";
    let mut sealed = Vec::new();
    for ws in ["ws-1", "ws-2", "ws-3"] {
        let s = vault.seal(ws, secret).await.unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(!contains(json.as_bytes(), secret));
        assert!(!json.contains(&STANDARD.encode(secret)));
        assert!(!contains(format!("{s:?}").as_bytes(), secret));
        sealed.push((ws, s));
    }

    let check_files = |when: &str| {
        let mut checked = 0;
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = PathBuf::from(format!("{}{suffix}", db.path.display()));
            if let Ok(bytes) = std::fs::read(&p) {
                checked += 1;
                all.extend_from_slice(&bytes);
                assert!(!contains(&bytes, secret), "plaintext in {p:?} ({when})");
                assert!(
                    !contains(&bytes, &master_raw),
                    "master key in {p:?} ({when})"
                );
                assert!(
                    !contains(&bytes, master_b64.as_bytes()),
                    "master key in {p:?} ({when})"
                );
            }
        }
        assert!(checked >= 1);
        // Positive control: the rows really are in the files we scanned.
        for (_, s) in &sealed {
            assert!(
                contains(&all, s.key_id.as_bytes()),
                "key row not found ({when})"
            );
        }
    };
    check_files("pool open");
    for (ws, s) in &sealed {
        assert_eq!(opened(&vault.open(ws, s).await.unwrap()), secret);
    }
    db.pool.close().await;
    check_files("pool closed");
}

#[tokio::test]
async fn tampering_is_detected() {
    let db = db().await;
    let vault = Vault::new(db.pool.clone(), MasterKey::generate());
    let sealed = vault.seal("ws-1", b"oauth refresh token").await.unwrap();
    vault.seal("ws-2", b"other").await.unwrap();

    let flipped_ct = Sealed {
        ciphertext: mutate(&sealed.ciphertext, |b| b[0] ^= 0x01),
        ..sealed.clone()
    };
    let flipped_tag = Sealed {
        ciphertext: mutate(&sealed.ciphertext, |b| {
            let last = b.len() - 1;
            b[last] ^= 0x80
        }),
        ..sealed.clone()
    };
    let flipped_nonce = Sealed {
        nonce: mutate(&sealed.nonce, |b| b[5] ^= 0x10),
        ..sealed.clone()
    };
    let truncated = Sealed {
        ciphertext: mutate(&sealed.ciphertext, |b| {
            b.pop();
        }),
        ..sealed.clone()
    };
    let truncated_to_tag = Sealed {
        ciphertext: mutate(&sealed.ciphertext, |b| b.truncate(3)),
        ..sealed.clone()
    };
    for (name, bad) in [
        ("flipped ciphertext", &flipped_ct),
        ("flipped tag", &flipped_tag),
        ("flipped nonce", &flipped_nonce),
        ("truncated", &truncated),
        ("truncated below tag", &truncated_to_tag),
    ] {
        let err = vault.open("ws-1", bad).await.unwrap_err();
        assert!(matches!(err, VaultError::Tampered), "{name}: {err:?}");
    }
    let err = vault.open("ws-2", &sealed).await.unwrap_err();
    assert!(
        matches!(err, VaultError::Tampered),
        "other workspace: {err:?}"
    );

    let bad_b64 = Sealed {
        nonce: "@@@".into(),
        ..sealed.clone()
    };
    assert!(matches!(
        vault.open("ws-1", &bad_b64).await,
        Err(VaultError::Malformed(_))
    ));
    let short_nonce = Sealed {
        nonce: mutate(&sealed.nonce, |b| {
            b.pop();
        }),
        ..sealed.clone()
    };
    assert!(matches!(
        vault.open("ws-1", &short_nonce).await,
        Err(VaultError::Malformed(_))
    ));
    // The original still opens.
    assert_eq!(
        opened(&vault.open("ws-1", &sealed).await.unwrap()),
        b"oauth refresh token"
    );
}

#[tokio::test]
async fn rotate_master_rewraps_data_keys() {
    let db = db().await;
    let old = MasterKey::generate();
    let old_b64 = old.to_base64();
    let old_id = old.id().to_owned();
    let vault = Vault::new(db.pool.clone(), old);
    let s1 = vault.seal("ws-1", b"one").await.unwrap();
    let s2 = vault.seal("ws-2", b"two").await.unwrap();
    let (k1, m1, w1, r1) = row(&db.pool, "ws-1").await;
    assert_eq!(m1, old_id);
    assert_eq!(r1, None);

    let new = MasterKey::generate();
    let new_b64 = new.to_base64();
    let new_id = new.id().to_owned();
    assert_eq!(vault.rotate_master(new).await.unwrap(), 2);
    assert_eq!(vault.master_key_id().await, new_id);

    let (k1b, m1b, w1b, r1b) = row(&db.pool, "ws-1").await;
    assert_eq!(k1b, k1, "data key id is unchanged");
    assert_eq!(m1b, new_id);
    assert_ne!(w1b, w1);
    assert!(chrono::DateTime::parse_from_rfc3339(&r1b.unwrap()).is_ok());
    assert_eq!(row(&db.pool, "ws-2").await.1, new_id);

    // Old values still open, through the rotated vault and a fresh one.
    assert_eq!(opened(&vault.open("ws-1", &s1).await.unwrap()), b"one");
    let fresh = Vault::new(db.pool.clone(), MasterKey::from_base64(&new_b64).unwrap());
    assert_eq!(opened(&fresh.open("ws-2", &s2).await.unwrap()), b"two");
    // New data keys are wrapped by the new master.
    vault.seal("ws-3", b"three").await.unwrap();
    assert_eq!(row(&db.pool, "ws-3").await.1, new_id);

    // A vault still configured with the old master is refused clearly.
    let stale = Vault::new(db.pool.clone(), MasterKey::from_base64(&old_b64).unwrap());
    match stale.open("ws-1", &s1).await {
        Err(VaultError::WrongMasterKey { expected, found }) => {
            assert_eq!(expected, old_id);
            assert_eq!(found, new_id);
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    // ... and cannot rotate (nothing changes).
    match stale.rotate_master(MasterKey::generate()).await {
        Err(VaultError::WrongMasterKey { .. }) => {}
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    assert_eq!(row(&db.pool, "ws-1").await.1, new_id);
    assert_eq!(opened(&fresh.open("ws-1", &s1).await.unwrap()), b"one");
}

/// `keys rotate-master` run by another process while a server holds the
/// old master key in memory: the server must not create a data key wrapped
/// by the old master (it would be lost once the old key file is gone).
#[tokio::test]
async fn stale_vault_refuses_to_create_data_keys_after_rotation_elsewhere() {
    let db = db().await;
    let old = MasterKey::generate();
    let old_b64 = old.to_base64();
    let old_id = old.id().to_owned();
    // A: the running server. B: the rotating process, on the same store.
    let a = Vault::new(db.pool.clone(), old);
    let s1 = a.seal("ws-1", b"one").await.unwrap();
    let b = Vault::new(db.pool.clone(), MasterKey::from_base64(&old_b64).unwrap());
    let new = MasterKey::generate();
    let new_b64 = new.to_base64();
    let new_id = new.id().to_owned();
    assert_eq!(b.rotate_master(new).await.unwrap(), 1);
    assert_eq!(a.master_key_id().await, old_id, "A still holds the old key");

    match a.seal("ws-new", b"secret").await {
        Err(err @ VaultError::WrongMasterKey { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains("rotated by another process"), "{msg}");
            assert!(msg.contains("restart"), "{msg}");
            let VaultError::WrongMasterKey { expected, found } = err else {
                unreachable!()
            };
            assert_eq!(expected, old_id);
            assert_eq!(found, new_id);
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM data_keys WHERE workspace_id = $1")
        .bind("ws-new".to_owned())
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 0, "no data key was stored for the refused seal");
    // Refused again (nothing cached), and nothing changed for ws-1.
    assert!(matches!(
        a.seal("ws-new", b"secret").await,
        Err(VaultError::WrongMasterKey { .. })
    ));
    assert_eq!(row(&db.pool, "ws-1").await.1, new_id);

    // The rotating vault creates the key, under the new master.
    let sealed = b.seal("ws-new", b"secret").await.unwrap();
    assert_eq!(row(&db.pool, "ws-new").await.1, new_id);
    // A stale vault cannot open it either.
    assert!(matches!(
        a.open("ws-new", &sealed).await,
        Err(VaultError::WrongMasterKey { .. })
    ));

    // After a "restart" with the new key file, everything opens.
    let restarted = Vault::new(db.pool.clone(), MasterKey::from_base64(&new_b64).unwrap());
    assert_eq!(
        opened(&restarted.open("ws-new", &sealed).await.unwrap()),
        b"secret"
    );
    assert_eq!(opened(&restarted.open("ws-1", &s1).await.unwrap()), b"one");
}

#[tokio::test]
async fn shred_makes_data_unreadable() {
    let db = db().await;
    let master_b64 = MasterKey::generate().to_base64();
    let vault = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    let sealed = vault.seal("ws-1", b"gone soon").await.unwrap();
    let keep = vault.seal("ws-2", b"stays").await.unwrap();
    assert!(vault.open("ws-1", &sealed).await.is_ok());

    vault.shred("ws-1").await.unwrap();
    assert!(matches!(
        vault.open("ws-1", &sealed).await,
        Err(VaultError::KeyNotFound)
    ));
    let other = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    assert!(matches!(
        other.open("ws-1", &sealed).await,
        Err(VaultError::KeyNotFound)
    ));
    // Idempotent; other workspaces unaffected.
    vault.shred("ws-1").await.unwrap();
    assert_eq!(opened(&vault.open("ws-2", &keep).await.unwrap()), b"stays");
    // A new key for the workspace does not resurrect old data.
    let fresh = vault.seal("ws-1", b"new era").await.unwrap();
    assert_ne!(fresh.key_id, sealed.key_id);
    assert!(matches!(
        vault.open("ws-1", &sealed).await,
        Err(VaultError::KeyNotFound)
    ));
    assert_eq!(
        opened(&vault.open("ws-1", &fresh).await.unwrap()),
        b"new era"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_seals_agree_on_one_key() {
    let db = db().await;
    let master_b64 = MasterKey::generate().to_base64();

    // 16 seals through clones of one vault (shared cache) ...
    let vault = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    // ... and 16 through independent vaults (separate caches) racing in the DB.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let shared = vault.clone();
        tasks.push(tokio::spawn(async move {
            let msg = format!("shared-{i}");
            let s = shared.seal("ws-shared", msg.as_bytes()).await.unwrap();
            ("ws-shared", msg, s)
        }));
        let independent = Vault::new(
            db.pool.clone(),
            MasterKey::from_base64(&master_b64).unwrap(),
        );
        tasks.push(tokio::spawn(async move {
            let msg = format!("independent-{i}");
            let s = independent.seal("ws-race", msg.as_bytes()).await.unwrap();
            ("ws-race", msg, s)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }

    let fresh = Vault::new(
        db.pool.clone(),
        MasterKey::from_base64(&master_b64).unwrap(),
    );
    for (ws, msg, sealed) in &results {
        assert_eq!(
            opened(&fresh.open(ws, sealed).await.unwrap()),
            msg.as_bytes()
        );
        assert_eq!(
            opened(&vault.open(ws, sealed).await.unwrap()),
            msg.as_bytes()
        );
    }
    for ws in ["ws-shared", "ws-race"] {
        let ids: std::collections::HashSet<_> = results
            .iter()
            .filter(|(w, _, _)| *w == ws)
            .map(|(_, _, s)| s.key_id.clone())
            .collect();
        assert_eq!(ids.len(), 1, "{ws}: one data key");
    }
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM data_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 2);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_file_created_0600_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let first = MasterKey::load_or_create(None, &data_dir).unwrap();
    let file = data_dir.join("master.key");
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim(), first.to_base64());
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1);

    let second = MasterKey::load_or_create(None, &data_dir).unwrap();
    assert_eq!(second.to_base64(), first.to_base64());
    assert_eq!(second.id(), first.id());
    assert_eq!(mode(&file), 0o600);

    // An explicit value wins over the file.
    let other = MasterKey::generate();
    let from_env = MasterKey::load_or_create(Some(&other.to_base64()), &data_dir).unwrap();
    assert_eq!(from_env.id(), other.id());
    assert_ne!(from_env.id(), first.id());
}

#[test]
fn concurrent_key_file_creation_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let d = data_dir.clone();
            std::thread::spawn(move || MasterKey::load_or_create(None, &d).unwrap().to_base64())
        })
        .collect();
    let keys: std::collections::HashSet<_> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1);
}

#[test]
fn insecure_key_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.key");
    let key = MasterKey::generate();
    std::fs::write(&file, key.to_base64()).unwrap();
    for bad_mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bad_mode)).unwrap();
        let err = MasterKey::load_or_create(None, dir.path()).unwrap_err();
        match &err {
            VaultError::InsecureKeyFile { path } => assert!(path.ends_with("master.key")),
            other => panic!("expected InsecureKeyFile, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"));
        assert!(!msg.contains(&key.to_base64()));
    }
    // Untouched, and accepted once fixed.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = MasterKey::load_or_create(None, dir.path()).unwrap();
    assert_eq!(loaded.id(), key.id());
}

#[test]
fn garbage_key_file_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.key");
    std::fs::write(&file, "definitely not a key").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        MasterKey::load_or_create(None, dir.path()),
        Err(VaultError::InvalidMasterKey)
    ));
    std::fs::write(&file, "A".repeat(10_000)).unwrap();
    assert!(matches!(
        MasterKey::load_or_create(None, dir.path()),
        Err(VaultError::InvalidMasterKey)
    ));
}

#[test]
fn invalid_master_key_values_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        String::new(),
        "not base64 at all!!".to_owned(),
        "hunter2-password".to_owned(),
        STANDARD.encode([7u8; 31]),
        STANDARD.encode([7u8; 33]),
        STANDARD.encode([7u8; 64]),
        STANDARD.encode([7u8; 32]).trim_end_matches('=').to_owned() + "!",
    ];
    for value in &cases {
        let err = MasterKey::from_base64(value).unwrap_err();
        assert!(matches!(err, VaultError::InvalidMasterKey), "{err:?}");
        let err = MasterKey::load_or_create(Some(value), dir.path()).unwrap_err();
        assert!(matches!(err, VaultError::InvalidMasterKey));
        let msg = format!("{err} {err:?}");
        if !value.is_empty() {
            assert!(!msg.contains(value.as_str()), "error echoes input: {msg}");
        }
    }
    // A rejected env value never falls back to (or creates) a key file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Valid, with surrounding whitespace (e.g. a trailing newline).
    let ok = MasterKey::from_base64(&format!(" {}\n", STANDARD.encode([7u8; 32]))).unwrap();
    assert_eq!(ok.to_base64(), STANDARD.encode([7u8; 32]));
}

#[test]
fn master_key_id_and_debug() {
    let key = MasterKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
    assert_eq!(key.id().len(), 16);
    assert!(key.id().chars().all(|c| c.is_ascii_hexdigit()));
    // Deterministic: same bytes, same id; different bytes, different id.
    assert_eq!(
        MasterKey::from_base64(&key.to_base64()).unwrap().id(),
        key.id()
    );
    assert_ne!(MasterKey::generate().id(), key.id());

    let debug = format!("{key:?}");
    assert_eq!(debug, "MasterKey(<redacted>)");
    assert!(!debug.contains(&key.to_base64()));
    let generated = MasterKey::generate();
    let debug = format!("{generated:?} {:#?}", generated);
    assert!(!debug.contains(&generated.to_base64()));
}

#[tokio::test]
async fn vault_debug_and_errors_hide_secrets() {
    let db = db().await;
    let master = MasterKey::generate();
    let master_b64 = master.to_base64();
    let vault = Vault::new(db.pool.clone(), master);
    let secret = "xoxb-very-secret-slack-token";
    let sealed = vault.seal("ws-1", secret.as_bytes()).await.unwrap();
    let out = vault.open("ws-1", &sealed).await.unwrap();
    let text = format!("{vault:?} {out:?}");
    assert!(!text.contains(secret));
    assert!(!text.contains(&master_b64));
    let err = vault.open("ws-2", &sealed).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret));
    assert!(!text.contains(&master_b64));
}
