//! Deterministic seed data: the same seed always yields the same records.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::records::{ObjectType, Record};
use crate::words::{
    CITIES, EPOCH_MS, FIRST, GROUP_STEP_MS, INDUSTRIES, LAST, MAIL, NOUNS, SUFFIX, TITLES, WORDS,
};
use crate::SandboxConfig;

/// The choices of the sandbox's enumeration properties (its property catalogue shows
/// them; seeded records take their values from them).
pub const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];
pub const COLORS: &[&str] = &["red", "orange", "yellow", "green", "blue", "purple"];
pub const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];

/// Seeds `config.records` records of one type, taking ids from `next_id`.
pub fn generate(
    ty: ObjectType,
    config: &SandboxConfig,
    next_id: &mut u64,
) -> BTreeMap<u64, Record> {
    let salt = match ty {
        ObjectType::Contacts => 0x636f_6e74,
        ObjectType::Companies => 0x636f_6d70,
    };
    let mut rng = StdRng::seed_from_u64(config.seed ^ salt);
    let group = config.same_timestamp_group.max(1);
    (0..config.records)
        .map(|i| {
            let id = *next_id;
            *next_id += 1;
            let updated_ms = EPOCH_MS + (i / group) as i64 * GROUP_STEP_MS;
            let created_ms = updated_ms - rng.gen_range(0..30 * 86_400_000);
            let properties = match ty {
                ObjectType::Contacts => contact(&mut rng, i),
                ObjectType::Companies => company(&mut rng, i),
            };
            (
                id,
                Record {
                    id,
                    properties,
                    created_ms,
                    updated_ms,
                    archived_ms: None,
                },
            )
        })
        .collect()
}

fn pick(rng: &mut StdRng, list: &[&str]) -> String {
    list.choose(rng).copied().unwrap_or_default().to_string()
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "+1 555 {:03} {:04}",
        rng.gen_range(100..1000),
        rng.gen_range(0..10_000)
    )
}

fn contact(rng: &mut StdRng, i: usize) -> BTreeMap<String, String> {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    // The index keeps emails unique, as HubSpot requires.
    let email = format!(
        "{}.{}{}@{}",
        first.to_lowercase(),
        last.to_lowercase(),
        i,
        pick(rng, MAIL)
    );
    let fields = [
        ("firstname", first),
        ("lastname", last),
        ("email", email),
        ("phone", phone(rng)),
        (
            "company",
            format!("{} {}", pick(rng, WORDS), pick(rng, NOUNS)),
        ),
        ("jobtitle", pick(rng, TITLES)),
        ("city", pick(rng, CITIES)),
        ("lifecyclestage", pick(rng, LIFECYCLE)),
        ("favorite_color", pick(rng, COLORS)),
        ("customer_tier", pick(rng, TIERS)),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn company(rng: &mut StdRng, i: usize) -> BTreeMap<String, String> {
    let (word, noun) = (pick(rng, WORDS), pick(rng, NOUNS));
    let domain = format!("{}{}{}.com", word.to_lowercase(), noun.to_lowercase(), i);
    let fields = [
        ("name", format!("{word} {noun} {}", pick(rng, SUFFIX))),
        ("domain", domain),
        ("phone", phone(rng)),
        ("city", pick(rng, CITIES)),
        ("industry", pick(rng, INDUSTRIES)),
        ("numberofemployees", rng.gen_range(2..5000).to_string()),
        (
            "annualrevenue",
            (rng.gen_range(10..50_000) * 1000).to_string(),
        ),
        ("lifecyclestage", pick(rng, LIFECYCLE)),
        ("customer_tier", pick(rng, TIERS)),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
