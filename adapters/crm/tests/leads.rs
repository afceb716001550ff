//! The write-only lead adapters (Light Blue, ShootQ) against their receivers, and against
//! a hostile host answering garbage: every outcome is a per-record result, never a panic,
//! and the key never shows.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use syncledger_crm::leads::{LightBlue, ShootQ, REFERENCE};
use syncledger_crm::outbound::outbound::OutboundPolicy;
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, Entity, LeadsAdapter, LeadsConfig, PushKind, PushOp,
};
use syncledger_sandbox::{LeadVendor, LeadsSandboxConfig, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(base: &str) -> LeadsConfig {
    let mut config = LeadsConfig::new(base);
    config.outbound = OutboundPolicy::development();
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    config
}

fn key(k: &str) -> Credentials {
    Credentials::ApiKey(SecretString::from(k.to_owned()))
}

fn lead(reference: Option<&str>, fields: &[(&str, &str)]) -> PushOp {
    let mut properties: syncledger_crm::types::Properties = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
        .collect();
    if let Some(r) = reference {
        properties.insert(REFERENCE.to_owned(), Some(r.to_owned()));
    }
    PushOp {
        kind: PushKind::Create,
        properties,
    }
}

/// Each result's remote id or error, in order.
fn outcomes(results: &[syncledger_crm::PushResult]) -> Vec<Result<String, String>> {
    results
        .iter()
        .map(|r| match (&r.remote_id, &r.error) {
            (Some(id), None) => Ok(id.clone()),
            (_, error) => Err(error.clone().unwrap_or_default()),
        })
        .collect()
}

#[tokio::test]
async fn light_blue_statuses_become_per_record_results() -> Result<(), CrmError> {
    let receiver = LeadsSandboxConfig::new(LeadVendor::LightBlue);
    let secret = receiver.api_key.clone();
    let sandbox = Sandbox::start_leads(receiver).await.expect("receiver");
    let adapter = LeadsAdapter::new(LightBlue::new(config(&sandbox.base_url()))?);
    let mut update = lead(Some("r9"), &[("ContactEmail", "u@example.org")]);
    update.kind = PushKind::Update { id: "r9".into() };
    let ops = vec![
        lead(Some("r1"), &[("ContactEmail", "ada@example.org")]),
        update,
        lead(None, &[("ContactEmail", "x@example.org")]),
        lead(Some("r2"), &[("ContactNameFirst", "  ")]),
        lead(Some("r1"), &[("ContactEmail", "ada@example.org")]),
    ];
    let results = adapter
        .push_batch(&key(&secret), Entity::Contacts, ops)
        .await?;
    let got = outcomes(&results);
    assert_eq!(got[0], Ok("r1".into()));
    assert!(got[1].as_ref().is_err_and(|e| e.contains("new leads only")));
    assert!(got[2].as_ref().is_err_and(|e| e.contains("no reference")));
    assert!(got[3].as_ref().is_err_and(|e| e.contains("status -3")));
    assert_eq!(got[4], Ok("r1".into()), "a duplicate (-4) is delivered");
    assert_eq!(sandbox.counters().get("POST /api.php"), Some(&3));

    let wrong = "lb-not-the-key";
    let results = adapter
        .push_batch(
            &key(wrong),
            Entity::Contacts,
            vec![lead(Some("r3"), &[("Message", "hi")])],
        )
        .await?;
    let error = results[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("status -1") && !error.contains(wrong),
        "{error}"
    );
    assert!(adapter
        .pull_page(&key(&secret), Entity::Contacts, None, None)
        .await
        .is_err_and(|e| e.to_string().contains("no read API")));
    sandbox.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shootq_views_the_form_once_and_maps_error_dicts() -> Result<(), CrmError> {
    let receiver = LeadsSandboxConfig::new(LeadVendor::ShootQ);
    let code = receiver.form_link_code.clone();
    let sandbox = Sandbox::start_leads(receiver).await.expect("receiver");
    let adapter = LeadsAdapter::new(ShootQ::new(config(&sandbox.base_url()))?);
    let ops = vec![
        lead(
            Some("r1"),
            &[("email", "ada@example.org"), ("first_name", "Ada")],
        ),
        lead(Some("r2"), &[("first_name", "Nomail")]),
        lead(
            Some("r3"),
            &[("email", "b@example.org"), ("colour", "blue")],
        ),
    ];
    let got = outcomes(
        &adapter
            .push_batch(&key(&code), Entity::Contacts, ops)
            .await?,
    );
    assert_eq!(got[0], Ok("r1".into()));
    assert!(got[1]
        .as_ref()
        .is_err_and(|e| e.contains("email: This field is required.")));
    assert!(got[2]
        .as_ref()
        .is_err_and(|e| e.contains("colour: Unknown field.")));
    let counters = sandbox.counters();
    assert_eq!(
        (counters.get("GET view"), counters.get("POST submit")),
        (Some(&1), Some(&3))
    );
    // A code that is not a plain path segment never reaches the wire.
    let results = adapter
        .push_batch(
            &key("../admin"),
            Entity::Contacts,
            vec![lead(Some("r4"), &[("email", "c@d.e")])],
        )
        .await?;
    assert!(results[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("form link code")));
    assert_eq!(sandbox.counters().get("GET view"), Some(&1));
    sandbox.shutdown().await;
    Ok(())
}

/// A host that answers each connection with the next of `answers` (status, body).
async fn hostile(answers: Vec<(u16, String)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 65536];
            let _ = socket.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn garbage_from_light_blue_fails_records_not_the_process() -> Result<(), CrmError> {
    let secret = "lb-secret-key-123";
    let answers = vec![
        (200, "OK".to_owned()),
        (200, String::new()),
        (200, "-".to_owned()),
        (200, "9".repeat(40)),
        (200, format!("-9 bad key {secret}")),
        (400, format!("{{\"message\": \"{secret}\"}}")),
        (503, "down".to_owned()),
    ];
    let base = hostile(answers).await;
    let adapter = LeadsAdapter::new(LightBlue::new(config(&base))?);
    let ops: Vec<PushOp> = (0..9)
        .map(|i| lead(Some(&format!("r{i}")), &[("Message", "hi")]))
        .collect();
    let results = adapter
        .push_batch(&key(secret), Entity::Contacts, ops)
        .await?;
    assert_eq!(results.len(), 9);
    for r in &results {
        let error = r.error.clone().unwrap_or_default();
        assert!(r.remote_id.is_none() && !error.is_empty(), "{r:?}");
        assert!(!error.contains(secret), "{error}");
    }
    let errors: Vec<String> = results.iter().filter_map(|r| r.error.clone()).collect();
    assert!(errors[0].contains("without a numeric status"), "{errors:?}");
    assert!(errors[4].contains("status -9"), "{errors:?}");
    // The 503 may have been applied: nothing more is sent after it.
    assert!(errors[7].starts_with("not sent"), "{errors:?}");
    Ok(())
}

#[tokio::test]
async fn garbage_from_shootq_fails_records_not_the_process() -> Result<(), CrmError> {
    let code = "studio-form-1";
    let answers = vec![
        (200, json!({"id": "../../admin"}).to_string()),
        (200, "[1, 2]".to_owned()),
        (200, json!({"id": 7}).to_string()),
        (400, json!({"email": [code], "x": {"y": 1}}).to_string()),
    ];
    let base = hostile(answers).await;
    let adapter = LeadsAdapter::new(ShootQ::new(config(&base))?);
    let ops: Vec<PushOp> = (0..3)
        .map(|i| lead(Some(&format!("r{i}")), &[("email", "a@b.c")]))
        .collect();
    let results = adapter
        .push_batch(&key(code), Entity::Contacts, ops)
        .await?;
    let errors: Vec<String> = results.iter().filter_map(|r| r.error.clone()).collect();
    assert_eq!(errors.len(), 3, "{results:?}");
    assert!(errors[0].contains("no usable id"), "{errors:?}");
    assert!(
        errors[2].contains("email: [redacted]; x: invalid"),
        "{errors:?}"
    );
    Ok(())
}
