//! Deterministic seed data: the same seed always yields the same records.

use crate::words::{
    CITIES, EPOCH_MS, FIRST, GROUP_STEP_MS, LAST, MAIL, NOUNS, SUFFIX, TITLES, WORDS,
};
use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::schema::SObject;
use super::state::{make_id, Record};
use super::SalesforceSandboxConfig;

/// Values of the standard Industry picklist.
const INDUSTRIES: &[&str] = &[
    "Technology",
    "Retail",
    "Healthcare",
    "Transportation",
    "Food & Beverage",
    "Banking",
];
const TIERS: &[&str] = &["Gold", "Silver", "Bronze"];

/// Seeds `config.records` records of one object, taking ids from `next_id`;
/// contacts are spread over `accounts`.
pub fn generate(
    object: SObject,
    config: &SalesforceSandboxConfig,
    next_id: &mut u64,
    accounts: &[String],
) -> BTreeMap<String, Record> {
    let salt = match object {
        SObject::Account => 0x0001_acc7,
        SObject::Contact => 0x0003_c047,
    };
    let mut rng = StdRng::seed_from_u64(config.seed ^ salt);
    let group = config.same_timestamp_group.max(1);
    (0..config.records)
        .map(|i| {
            let id = make_id(object, *next_id);
            *next_id += 1;
            let step = i64::try_from(i / group).unwrap_or(i64::MAX);
            let modstamp_ms = EPOCH_MS.saturating_add(step.saturating_mul(GROUP_STEP_MS));
            let created_ms = modstamp_ms - rng.gen_range(0..30 * 86_400_000);
            let fields = match object {
                SObject::Account => account(&mut rng, i),
                SObject::Contact => contact(&mut rng, i, accounts),
            };
            let record = Record {
                id: id.clone(),
                fields,
                created_ms,
                modstamp_ms,
                deleted_ms: None,
            };
            (id, record)
        })
        .collect()
}

fn pick(rng: &mut StdRng, list: &[&str]) -> String {
    list.choose(rng).copied().unwrap_or_default().to_string()
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "(555) {:03}-{:04}",
        rng.gen_range(100..1000),
        rng.gen_range(0..10_000)
    )
}

fn into_map(fields: Vec<(&str, String)>) -> BTreeMap<String, String> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn contact(rng: &mut StdRng, i: usize, accounts: &[String]) -> BTreeMap<String, String> {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    // The index keeps emails unique, so they work as upsert keys.
    let email = format!(
        "{}.{}{i}@{}",
        first.to_lowercase(),
        last.to_lowercase(),
        pick(rng, MAIL)
    );
    let mut fields = vec![
        ("FirstName", first),
        ("LastName", last),
        ("Email", email),
        ("Phone", phone(rng)),
        ("Title", pick(rng, TITLES)),
        ("Tier__c", pick(rng, TIERS)),
    ];
    if let Some(account) = accounts.choose(rng) {
        fields.push(("AccountId", account.clone()));
    }
    into_map(fields)
}

fn account(rng: &mut StdRng, i: usize) -> BTreeMap<String, String> {
    let (word, noun) = (pick(rng, WORDS), pick(rng, NOUNS));
    let website = format!(
        "https://www.{}{}{i}.com",
        word.to_lowercase(),
        noun.to_lowercase()
    );
    into_map(vec![
        ("Name", format!("{word} {noun} {}", pick(rng, SUFFIX))),
        ("Website", website),
        ("Industry", pick(rng, INDUSTRIES)),
        ("Phone", phone(rng)),
        ("BillingCity", pick(rng, CITIES)),
        ("Tier__c", pick(rng, TIERS)),
    ])
}
