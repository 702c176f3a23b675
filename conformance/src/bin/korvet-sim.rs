//! Runs the deterministic cluster simulation.
//!
//!   korvet-sim --seeds 1000 [--first 1]     many seeds, for soak runs
//!   korvet-sim --seed 42 [--trace]         one seed, printing every event with --trace
//!   options: --duration-ms N --brokers N --no-faults --cluster
//!            --replica unacknowledged|acknowledged   (a Redis replica, failovers, replica acks)

use korvet_conformance::sim::{run, Replication, SimConfig, World};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = SimConfig::default();
    let (mut first, mut seeds, mut single, mut trace) = (1u64, 100u64, None, false);
    let mut i = 0;
    let value = |i: usize| -> u64 {
        args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("korvet-sim: {} needs a number", args[i]);
            std::process::exit(2)
        })
    };
    while i < args.len() {
        match args[i].as_str() {
            "--seed" => single = Some(value(i)),
            "--seeds" => seeds = value(i),
            "--first" => first = value(i),
            "--duration-ms" => config.duration_ms = value(i),
            "--brokers" => config.brokers = value(i) as usize,
            "--no-faults" => {
                config.faults = false;
                i += 1;
                continue;
            }
            "--cluster" => {
                config.cluster = true;
                i += 1;
                continue;
            }
            "--replica" => {
                config.replication = match args.get(i + 1).map(String::as_str) {
                    Some("unacknowledged") => Replication::Unacknowledged,
                    Some("acknowledged") => Replication::Acknowledged,
                    _ => {
                        eprintln!("korvet-sim: --replica takes unacknowledged or acknowledged");
                        std::process::exit(2)
                    }
                };
            }
            "--trace" => {
                trace = true;
                i += 1;
                continue;
            }
            other => {
                eprintln!("korvet-sim: unknown argument {other}");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    if let Some(seed) = single {
        let mut world = World::new(seed, config);
        if trace {
            world.keep_full_trace();
        }
        match world.run() {
            Ok(outcome) => println!("seed {seed}: {outcome:?}"),
            Err(failure) => {
                eprintln!("{failure}");
                std::process::exit(1)
            }
        }
        return;
    }
    let started = std::time::Instant::now();
    let mut totals = (0usize, 0usize, 0usize);
    let (mut failovers, mut lost, mut slot_moves) = (0usize, 0usize, 0usize);
    for seed in first..first + seeds {
        match run(seed, &config) {
            Ok(outcome) => {
                totals.0 += outcome.acknowledged;
                totals.1 += outcome.crashes;
                totals.2 += outcome.generations;
                failovers += outcome.failovers;
                lost += outcome.lost_acknowledged;
                slot_moves += outcome.slot_moves;
            }
            Err(failure) => {
                eprintln!("{failure}");
                std::process::exit(1)
            }
        }
    }
    println!(
        "{seeds} seeds passed in {:.1} s: {} records acknowledged, {} broker crashes, {} group generations, \
         {failovers} Redis failovers losing {lost} acknowledged records, {slot_moves} slot moves",
        started.elapsed().as_secs_f64(),
        totals.0,
        totals.1,
        totals.2
    );
}
