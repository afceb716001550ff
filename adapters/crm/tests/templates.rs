//! The shipped Tave / VSCO Workspace template's newest-first scan, against the niche
//! sandbox, for varying address books: an incremental pull never loses a record
//! modified at or after its mark, whatever the page size and however many records share
//! a timestamp, and brings nothing older than the mark less the overlap nor any other
//! kind of entry. The shipped Chatwoot template's companies: every company read exactly
//! once, whether the index pages or (one upstream version) lists everything on every
//! page, and an instance without companies named as such.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::json;
use syncledger_crm::custom::template;
use syncledger_crm::{Credentials, CrmAdapter, CrmError, CustomAdapter, CustomOptions, Entity};
use syncledger_sandbox::{CompaniesMode, Dialect, NicheSandboxConfig, Sandbox};

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

/// Every company a full read of the Chatwoot template's companies brings, in order,
/// and the list requests it took; `Err` when the pull fails or runs past 100 pages.
async fn companies(count: usize, mode: CompaniesMode) -> Result<(Vec<String>, u64), CrmError> {
    companies_with_faults(count, mode, &[]).await
}

/// As [`companies`], with `faults` (the sandboxes' fault JSON) injected first.
async fn companies_with_faults(
    count: usize,
    mode: CompaniesMode,
    faults: &[serde_json::Value],
) -> Result<(Vec<String>, u64), CrmError> {
    let mut config = NicheSandboxConfig::new(Dialect::Chatwoot);
    config.records = 0;
    config.companies = count;
    config.companies_mode = mode;
    let key = config.api_key.clone();
    let sandbox = Sandbox::start_niche(config)
        .await
        .map_err(|e| CrmError::Config(e.to_string()))?;
    let http = reqwest::Client::new();
    for fault in faults {
        http.post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(fault)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|_| CrmError::Config("control API".into()))?;
    }
    let spec = template("chatwoot").ok_or(CrmError::Config("no template".into()))??;
    let mut spec = spec.bind(&BTreeMap::from([("account_id".into(), "7".into())]))?;
    spec.base_url = sandbox.base_url();
    let adapter = CustomAdapter::new(spec, options())?;
    let credentials = Credentials::ApiKey(SecretString::from(key.clone()));
    let mut read = Vec::new();
    let mut cursor = None;
    let mut outcome = Err(CrmError::Config("more than 100 pages".into()));
    for _ in 0..100 {
        let page = adapter
            .pull_page(&credentials, Entity::Companies, cursor, None)
            .await;
        match page {
            Ok(page) => {
                read.extend(page.records.into_iter().map(|r| r.id));
                cursor = page.next;
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
        if cursor.is_none() {
            outcome = Ok(());
            break;
        }
    }
    let calls = sandbox
        .counters()
        .get("GET companies")
        .copied()
        .unwrap_or(0);
    sandbox.shutdown().await;
    if let Err(CrmError::Unavailable(text)) = &outcome {
        assert!(!text.contains(&key), "the key in {text}");
    }
    outcome.map(|()| (read, calls))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Paged or not, every company is read once, oldest first, and the read ends: a
    /// paged index in its pages and the empty one after; an unpaginated one in two
    /// requests (the second repeats the first and ends the list), unless it holds
    /// exactly a page's worth (25), which cannot be told from an index ignoring `page`
    /// with more behind and is refused rather than taken as complete.
    #[test]
    fn every_company_is_read_once_paged_or_not(count in 0usize..70, unpaginated in proptest::bool::ANY) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        prop_assume!(runtime.is_ok());
        let Ok(runtime) = runtime else { return Ok(()) };
        let mode = if unpaginated { CompaniesMode::Unpaginated } else { CompaniesMode::Enabled };
        let outcome = runtime.block_on(companies(count, mode));
        if unpaginated && count == 25 {
            prop_assert!(matches!(outcome, Err(CrmError::Malformed(_))), "{outcome:?}");
            return Ok(());
        }
        prop_assert!(outcome.is_ok(), "{:?}", outcome.as_ref().err());
        let Ok((read, calls)) = outcome else { return Ok(()) };
        // Companies are numbered like contacts: their ids are kept apart by the prefix.
        let expected: Vec<String> = (1..=count).map(|n| n.to_string()).collect();
        prop_assert_eq!(&read, &expected);
        let pages = if unpaginated || count == 0 { count.min(1) + 1 } else { count / 25 + 1 + usize::from(count % 25 > 0) };
        prop_assert_eq!(calls, pages as u64);
    }
}

#[tokio::test]
async fn an_instance_without_companies_is_named_as_such() {
    for (mode, status) in [(CompaniesMode::Disabled, 403), (CompaniesMode::Absent, 404)] {
        let outcome = companies(3, mode).await;
        let Err(CrmError::Unavailable(text)) = outcome else {
            panic!("{mode:?}: {outcome:?}");
        };
        assert_eq!(
            text,
            format!("Chatwoot answered {status}: companies are not enabled for this account (an Enterprise feature)")
        );
    }
}

/// The niche sandbox takes the shared faults: a 429 storm and a 503 on the companies
/// index are waited out and retried, and every company still arrives once.
#[tokio::test]
async fn a_rate_limit_storm_on_companies_still_reads_each_once() {
    let prefix = "/api/v1/accounts/7/companies";
    let faults = [
        json!({"kind": "status", "status": 429, "count": 3, "path_prefix": prefix}),
        json!({"kind": "status", "status": 503, "count": 1, "path_prefix": prefix}),
    ];
    let outcome = companies_with_faults(30, CompaniesMode::Enabled, &faults).await;
    let Ok((read, calls)) = outcome else {
        panic!("{outcome:?}");
    };
    let expected: Vec<String> = (1..=30).map(|n| n.to_string()).collect();
    assert_eq!(read, expected);
    // 3 pages (25, 5 and the empty one) and the 4 refused attempts.
    assert_eq!(calls, 3 + 4);
}

/// A spec without the entity (a Chatwoot integration made before companies were in the
/// template) lacks it the same way: named, not a configuration failure of the whole run.
#[tokio::test]
async fn a_spec_without_companies_lacks_them() {
    let mut spec = template("chatwoot")
        .and_then(Result::ok)
        .expect("the template");
    spec.companies = None;
    let spec = spec
        .bind(&BTreeMap::from([("account_id".into(), "7".into())]))
        .expect("bound");
    let adapter = CustomAdapter::new(spec, options()).expect("adapter");
    let credentials = Credentials::ApiKey(SecretString::from("k"));
    let outcome = adapter
        .pull_page(&credentials, Entity::Companies, None, None)
        .await;
    let Err(CrmError::Unavailable(text)) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        text,
        "the integration's spec for Chatwoot describes no companies endpoint"
    );
}
