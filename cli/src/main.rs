//! `korvet`: the broker binary.

mod actuator;
mod logging;
mod metrics;
mod serve;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "korvet", version, about = "A Kafka-compatible broker that keeps its data in Redis")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<serve::ServeArgs>),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve::run(*args),
    };
    std::process::exit(code);
}
