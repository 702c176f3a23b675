//! `korvet`: the broker binary.

mod actuator;
mod admin;
mod listeners;
mod logging;
mod metrics;
mod serve;
mod settings;

use clap::{Parser, Subcommand};

/// mimalloc: the broker allocates and frees many small buffers per record (Redis replies, record
/// batches); glibc's allocator spent a quarter of the fetch path's CPU on them and kept freed
/// memory resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage topics on a running cluster.
    Topics {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(subcommand)]
        command: admin::topics::TopicsCommand,
    },
    /// Manage consumer groups on a running cluster.
    Groups {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(subcommand)]
        command: admin::groups::GroupsCommand,
    },
    /// Manage the ACLs of a cluster whose brokers run KORVET_SECURITY_AUTHORIZER=acl.
    Acls {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(subcommand)]
        command: admin::acls::AclsCommand,
    },
    /// Send each line of standard input to a topic as a record (kafka-console-producer).
    Produce {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(flatten)]
        args: admin::produce::ProduceArgs,
    },
    /// Print a topic's records as they arrive (kafka-console-consumer, without a group).
    Consume {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(flatten)]
        args: admin::consume::ConsumeArgs,
    },
    /// Manage the SCRAM users SASL authenticates against.
    Users {
        #[command(flatten)]
        connect: admin::Connect,
        #[command(subcommand)]
        command: admin::users::UsersCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topics { connect, command } => admin::run(&connect, |a| admin::topics::run(a, command)),
        Command::Groups { connect, command } => admin::run(&connect, |a| admin::groups::run(a, command)),
        Command::Acls { connect, command } => admin::run(&connect, |a| admin::acls::run(a, command)),
        Command::Users { connect, command } => admin::run(&connect, |a| admin::users::run(a, command)),
        Command::Produce { connect, args } => admin::run(&connect, |a| admin::produce::run(a, args)),
        Command::Consume { connect, args } => admin::run(&connect, |a| admin::consume::run(a, args)),
    };
    std::process::exit(code);
}
