//! `syncledger bench merge`: per-field three-way conflict detection
//! ([`syncledger_domain::merge::merge`]) in microseconds per record, in memory.
//!
//! `--distinct` records are generated up front (seeded) and merged in turn until
//! `--records` merges are done (a pool, so the run holds megabytes, not gigabytes: a sync
//! merges a record it has just read), each with `--fields` fields on its base, app and CRM
//! sides: most fields equal on all three, some changed on one side, some changed
//! on both (to the same value or, mostly, to different values: conflicts), a few cleared
//! to `""` on the CRM side, and the four conflict strategies in turn. Each merge is timed
//! on its own; one JSON line: µs per record (p50, p99, mean), records per second over the
//! whole loop, and how many field changes and conflicts the records held (so a generator
//! that stops producing conflicts shows).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use syncledger_domain::merge::{merge, Fields, MergePolicy, Side, Version};
use syncledger_domain::sync_config::ConflictStrategy;

use super::round3;

#[derive(clap::Args, Debug, Clone)]
pub struct MergeBenchArgs {
    /// Records merged (each timed).
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Distinct generated records, merged in turn.
    #[arg(long, default_value_t = 1_000)]
    pub distinct: usize,
    /// Fields per record.
    #[arg(long, default_value_t = 20)]
    pub fields: usize,
    /// Seed of the generated records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One record's three sides and how it is settled.
struct Case {
    base: Fields,
    app: Fields,
    crm: Fields,
    app_at: DateTime<Utc>,
    crm_at: DateTime<Utc>,
    policy: MergePolicy,
}

const STRATEGIES: [ConflictStrategy; 4] = [
    ConflictStrategy::ManualReview,
    ConflictStrategy::LastWriteWins,
    ConflictStrategy::CrmWins,
    ConflictStrategy::AppWins,
];

/// Field names as a CRM mapping has them: a few standard ones, then custom ones.
fn field_name(i: usize) -> String {
    const STANDARD: [&str; 8] = [
        "first_name",
        "last_name",
        "email",
        "phone",
        "company",
        "job_title",
        "lifecycle_stage",
        "city",
    ];
    STANDARD
        .get(i)
        .map_or_else(|| format!("custom_field_{i:02}"), |s| (*s).to_owned())
}

fn value(rng: &mut StdRng, name: &str) -> String {
    format!("{name}-{:08x}@example.com", rng.gen::<u32>())
}

fn case(rng: &mut StdRng, n: usize, fields: usize) -> Case {
    let mut c = Case {
        base: Fields::new(),
        app: Fields::new(),
        crm: Fields::new(),
        app_at: Utc
            .timestamp_opt(1_767_000_000 + rng.gen_range(0..600), 0)
            .unwrap(),
        crm_at: Utc
            .timestamp_opt(1_767_000_000 + rng.gen_range(0..600), 0)
            .unwrap(),
        policy: MergePolicy {
            strategy: STRATEGIES[n % STRATEGIES.len()],
            always: [("phone".to_owned(), Side::Crm)].into(),
        },
    };
    for i in 0..fields {
        let name = field_name(i);
        let was = value(rng, &name);
        let (mut a, mut r) = (was.clone(), was.clone());
        match rng.gen_range(0..100) {
            // Unchanged on both sides.
            0..=59 => {}
            60..=71 => a = value(rng, &name),
            72..=83 => r = value(rng, &name),
            // Both sides to the same value: converged.
            84..=86 => {
                a = value(rng, &name);
                r = a.clone();
            }
            // Cleared in the CRM as HubSpot does: a change to null.
            87..=88 => r = String::new(),
            // Both sides, differently: a conflict.
            _ => {
                a = value(rng, &name);
                r = value(rng, &name);
            }
        }
        c.base.insert(name.clone(), Some(was));
        c.app.insert(name.clone(), Some(a));
        c.crm.insert(name, Some(r));
    }
    c
}

pub async fn run(args: MergeBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.records >= 1, "--records must be at least 1");
    anyhow::ensure!(args.fields >= 1, "--fields must be at least 1");
    anyhow::ensure!(args.distinct >= 1, "--distinct must be at least 1");
    let mut rng = StdRng::seed_from_u64(args.seed);
    let cases: Vec<Case> = (0..args.distinct.min(args.records))
        .map(|n| case(&mut rng, n, args.fields))
        .collect();
    // Warm up caches and the allocator on a first pass that is not timed.
    for c in cases.iter().take(1000) {
        black_box(merge_case(c));
    }
    let mut samples = Vec::with_capacity(args.records);
    let (mut changes, mut conflicts) = (0usize, 0usize);
    let started = Instant::now();
    for c in cases.iter().cycle().take(args.records) {
        let t0 = Instant::now();
        let out = black_box(merge_case(black_box(c)));
        samples.push(t0.elapsed());
        changes += out.to_app.len() + out.to_crm.len();
        conflicts += out.conflicts.len();
    }
    let total = started.elapsed();
    samples.sort_unstable();
    let us = |d: Duration| round3(d.as_secs_f64() * 1e6);
    let rank = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        us(samples[i])
    };
    let timed: Duration = samples.iter().sum();
    println!(
        "{}",
        json!({"bench": "merge", "records": args.records, "distinct": cases.len(), "fields": args.fields,
               "us_per_record_p50": rank(0.50), "us_per_record_p99": rank(0.99),
               "us_per_record_mean": round3(timed.as_secs_f64() * 1e6 / args.records as f64),
               "records_per_second": (args.records as f64 / total.as_secs_f64()).round(),
               "field_changes": changes, "conflicts": conflicts})
    );
    Ok(ExitCode::SUCCESS)
}

fn merge_case(c: &Case) -> syncledger_domain::merge::MergeOutcome {
    merge(
        &c.base,
        Version {
            fields: &c.app,
            modified_at: c.app_at,
        },
        Version {
            fields: &c.crm,
            modified_at: c.crm_at,
        },
        &c.policy,
    )
}
