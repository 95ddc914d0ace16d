//! `lnswarmctl`: the command line for operators and node owners. It speaks only the
//! public gRPC APIs, with the credential it is given.

mod agent;
mod app;
mod cluster;
mod cluster_ca;
mod connection;
mod dev;
mod device_renewal;
mod id_prefix;
mod manager;
mod node;
mod node_api;
mod node_export;
mod node_pair;
mod node_webhook;
mod output;
mod plain_error;
mod profile;
mod retry;
mod task;

use clap::{Parser, Subcommand};
use lnswarm_common::telemetry;

use connection::Connection;

#[derive(Parser)]
#[command(
    name = "lnswarmctl",
    version,
    about = "Operate an lnswarm cluster and its hosted Lightning nodes"
)]
struct Cli {
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, global = true, env = "LNSWARM_LOG_FORMAT", default_value_t)]
    log_format: lnswarm_common::telemetry::LogFormat,
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    profile: profile::ProfileArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster identity, settings and join tokens.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Managers of the quorum: list, remove.
    #[command(subcommand)]
    Manager(manager::ManagerCommand),
    /// Agents: list, inspect, availability.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Tasks: list, inspect, create and remove command tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Hosted Lightning nodes: register, recover (owners); ls, inspect (operators).
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// App credentials (operators issue them; apps register nodes with them).
    #[command(subcommand)]
    App(app::AppCommand),
    /// Start a whole local cluster on loopback (regtest chain, managers, agents);
    /// --demo runs the main path end to end.
    Dev(dev::DevArgs),
    /// Print a shell completion script: `lnswarmctl completion bash > \
    /// /etc/bash_completion.d/lnswarmctl` (or zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() {
    lnswarm_common::private_files::private_umask();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Cluster(cmd) => cluster::run(&cli.connection, cmd).await,
        Command::Manager(cmd) => manager::run(&cli.connection, cmd).await,
        Command::Agent(cmd) => agent::run(&cli.connection, cmd).await,
        Command::Task(cmd) => task::run(&cli.connection, cmd).await,
        Command::Node(cmd) => node::run(&cli.connection, &cli.profile, cmd).await,
        Command::App(cmd) => app::run(&cli.connection, cmd).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "lnswarmctl", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        eprintln!("error: {}", plain_error::describe(&e));
        std::process::exit(1);
    }
}
