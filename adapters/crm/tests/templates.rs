//! The shipped Tave / VSCO Workspace template's newest-first scan, against the niche
//! sandbox, for varying address books: an incremental pull never loses a record
//! modified at or after its mark, whatever the page size and however many records share
//! a timestamp, and brings nothing older than the mark less the overlap nor any other
//! kind of entry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::json;
use syncledger_crm::custom::template;
use syncledger_crm::{Credentials, CrmAdapter, CrmError, CustomAdapter, CustomOptions, Entity};
use syncledger_sandbox::{Dialect, NicheSandboxConfig, Sandbox};

/// 2030-01-01T00:00:00Z; entries are modified 30 s apart, so the template's 60 s
/// overlap reaches two steps back.
const BASE: i64 = 1_893_456_000;
const STEP: i64 = 30;

fn at(step: u8) -> DateTime<Utc> {
    Utc.timestamp_opt(BASE + i64::from(step) * STEP, 0)
        .single()
        .unwrap_or_default()
}

fn options() -> CustomOptions {
    CustomOptions {
        requests_per_minute: None,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        // The sandbox listens on loopback.
        outbound: syncledger_crm::outbound::outbound::OutboundPolicy::development(),
        ..CustomOptions::default()
    }
}

/// Every contact an incremental pull since `since` brings, by id.
async fn scan(
    entries: &[(u8, bool)],
    page: usize,
    since: DateTime<Utc>,
) -> Result<
    (
        BTreeMap<String, DateTime<Utc>>,
        BTreeMap<String, (u8, bool)>,
    ),
    CrmError,
> {
    let mut config = NicheSandboxConfig::new(Dialect::Tave);
    config.records = 0;
    config.max_page_size = page;
    let key = config.api_key.clone();
    let sandbox = Sandbox::start_niche(config)
        .await
        .map_err(|e| CrmError::Config(e.to_string()))?;
    let http = reqwest::Client::new();
    let mut made = BTreeMap::new();
    for (i, (step, person)) in entries.iter().enumerate() {
        let kind = if *person { "person" } else { "company" };
        let record = json!({"kind": kind, "firstName": format!("P{i}"), "name": format!("C{i}"),
            "email": format!("e{i}@example.org"), "modified": at(*step).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        let stored: serde_json::Value = http
            .post(format!("{}/_sandbox/records", sandbox.base_url()))
            .json(&record)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| CrmError::Config("control API".into()))?
            .json()
            .await
            .map_err(|_| CrmError::Config("control API".into()))?;
        let id = stored["id"].as_str().unwrap_or_default().to_owned();
        made.insert(id, (*step, *person));
    }
    let mut spec = template("tave").ok_or(CrmError::Config("no template".into()))??;
    spec.base_url = format!("{}/api/v2", sandbox.base_url());
    let adapter = CustomAdapter::new(spec, options())?;
    let credentials = Credentials::ApiKey(SecretString::from(key));
    let mut pulled = BTreeMap::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = adapter
            .pull_page(&credentials, Entity::Contacts, cursor, Some(since))
            .await?;
        for r in page.records {
            pulled.insert(r.id, r.updated_at);
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    sandbox.shutdown().await;
    Ok((pulled, made))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_descending_scan_loses_nothing_at_or_after_its_mark(
        entries in proptest::collection::vec((0u8..8, proptest::bool::weighted(0.7)), 1..28),
        page in 1usize..6,
        mark in 0u8..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        prop_assume!(runtime.is_ok());
        let Ok(runtime) = runtime else { return Ok(()) };
        let outcome = runtime.block_on(scan(&entries, page, at(mark)));
        prop_assert!(outcome.is_ok(), "{:?}", outcome.err());
        let Ok((pulled, made)) = outcome else { return Ok(()) };
        let wanted: BTreeSet<&String> = made
            .iter()
            .filter(|(_, (step, person))| *person && *step >= mark)
            .map(|(id, _)| id)
            .collect();
        let got: BTreeSet<&String> = pulled.keys().collect();
        prop_assert!(wanted.is_subset(&got), "lost {:?}", wanted.difference(&got).collect::<Vec<_>>());
        for (id, modified) in &pulled {
            let (step, person) = made.get(id).copied().unwrap_or((0, false));
            prop_assert!(person, "{id} is not a person");
            prop_assert!(*modified >= at(mark) - chrono::Duration::seconds(60));
            prop_assert!(step + 2 >= mark);
        }
    }
}
