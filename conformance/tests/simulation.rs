//! The deterministic simulation of whole clusters (see `src/sim`): many seeds keep every
//! invariant, a seed replays identically, and deliberately injected bugs are caught.

use korvet_conformance::sim::{run, Bug, SimConfig};

/// Seeds to run: `KORVET_SIM_SEEDS` (default 200), starting at `KORVET_SIM_FIRST_SEED` (1).
fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let first = var("KORVET_SIM_FIRST_SEED", 1);
    first..first + var("KORVET_SIM_SEEDS", 200)
}

fn config() -> SimConfig {
    SimConfig { duration_ms: 10_000, ..SimConfig::default() }
}

#[test]
fn every_seed_keeps_every_invariant() {
    let config = config();
    let (mut acknowledged, mut crashes, mut generations, mut read, mut lags) = (0, 0, 0, 0, 0);
    let (mut trimmed, mut compacted) = (0, 0);
    for seed in seeds() {
        match run(seed, &config) {
            Ok(outcome) => {
                acknowledged += outcome.acknowledged;
                crashes += outcome.crashes;
                generations += outcome.generations;
                read += outcome.read;
                lags += outcome.lags;
                trimmed += outcome.trimmed;
                compacted += outcome.compacted;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // The runs must have exercised what the invariants are about.
    let runs = seeds().count();
    assert!(acknowledged > runs * 1_000, "{acknowledged} records acknowledged");
    assert!(read > runs * 1_000, "{read} records read");
    assert!(crashes > runs, "{crashes} broker crashes");
    assert!(generations > runs, "{generations} group generations");
    assert!(lags > runs, "{lags} consumer lag entries computed by the brokers' background jobs");
    assert!(trimmed > runs as i64 * 1_000, "{trimmed} records trimmed by retention and DeleteRecords");
    assert!(compacted > runs as i64 * 10, "{compacted} records removed by compaction");
}

#[test]
fn a_seed_replays_identically() {
    let config = config();
    let first = run(7, &config).expect("seed 7 passes");
    let again = run(7, &config).expect("seed 7 passes");
    assert_eq!(first, again, "same seed, same trace");
    let other = run(8, &config).expect("seed 8 passes");
    assert_ne!(first.trace_hash, other.trace_hash, "another seed, another trace");
}

#[test]
fn an_off_by_one_in_offsets_is_caught() {
    let config = SimConfig { bug: Some(Bug::OffByOneOffsets), ..config() };
    let failure = run(1, &config).expect_err("the invariants must catch it");
    assert!(failure.message.contains("acknowledged record"), "{failure}");
    assert!(failure.to_string().contains("replay: cargo run -p korvet-conformance --bin korvet-sim -- --seed 1"));
}

#[test]
fn responses_out_of_request_order_are_caught() {
    let config = SimConfig { bug: Some(Bug::ReorderedResponses), ..config() };
    let failure = run(1, &config).expect_err("the invariants must catch it");
    assert!(failure.message.contains("out of request order"), "{failure}");
}

#[test]
fn a_producers_records_appended_out_of_order_are_caught() {
    let config = SimConfig { bug: Some(Bug::UnorderedAppends), ..config() };
    let failure = run(1, &config).expect_err("the invariants must catch it");
    assert!(failure.message.contains("records are out of order"), "{failure}");
}

#[test]
fn compaction_that_removes_a_keys_latest_record_is_caught() {
    let config = SimConfig { bug: Some(Bug::CompactionRemovesTheLatest), ..config() };
    let failure = run(1, &config).expect_err("the invariants must catch it");
    assert!(failure.message.contains("sim-table"), "{failure}");
}

#[test]
fn two_coordinators_handing_out_one_generation_are_caught() {
    // A broker that wrongly takes another for dead coordinates some of its groups too; only the
    // generation claim in storage keeps both from rebalancing one group into one generation.
    let config = SimConfig { bug: Some(Bug::UnfencedGenerations), ..config() };
    let caught = (1..=40).find_map(|seed| run(seed, &config).err());
    let failure = caught.expect("the invariants must catch it within 40 seeds");
    assert!(failure.message.contains("is owned by both"), "{failure}");
}

#[test]
fn without_faults_every_produce_is_acknowledged() {
    let config = SimConfig { faults: false, ..config() };
    let outcome = run(3, &config).expect("a fault-free run passes");
    assert_eq!(outcome.crashes, 0);
    assert!(outcome.acknowledged > 1_000 && outcome.commits > 0);
}
