//! `lnswarmctl agent`: list, inspect and set the availability of agents.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use lnswarm_common::api::{
    Agent, AgentState, Availability, GetAgentRequest, ListAgentsRequest, RemoveAgentRequest,
    UpdateAgentRequest,
};
use serde_json::{json, Value};

use crate::{
    connection::Connection,
    output::{print_json, print_table, unix_time, Format},
};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// List agents with their state and availability.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one agent.
    Inspect {
        /// The agent's id, or a unique prefix of it.
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Set an agent's availability.
    Update {
        /// The agent's id, or a unique prefix of it.
        id: String,
        #[arg(long, value_enum)]
        availability: AvailabilityArg,
    },
    /// Forget an agent and revoke its certificate (refused while READY unless --force).
    Rm {
        /// The agent's id, or a unique prefix of it.
        id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

fn state_name(agent: &Agent) -> &'static str {
    match agent
        .status
        .as_ref()
        .and_then(|s| AgentState::try_from(s.state).ok())
        .unwrap_or(AgentState::Unknown)
    {
        AgentState::Unknown => "UNKNOWN",
        AgentState::Ready => "READY",
        AgentState::Down => "DOWN",
        AgentState::Disconnected => "DISCONNECTED",
    }
}

fn availability_name(agent: &Agent) -> &'static str {
    match Availability::try_from(agent.availability).unwrap_or(Availability::Active) {
        Availability::Active => "ACTIVE",
        Availability::Pause => "PAUSE",
        Availability::Drain => "DRAIN",
    }
}

/// The JSON form scripts read.
pub fn agent_json(a: &Agent) -> Value {
    let d = a.description.clone().unwrap_or_default();
    let s = a.status.clone().unwrap_or_default();
    json!({
        "id": a.id,
        "state": state_name(a),
        "availability": availability_name(a),
        "message": s.message,
        "addr": s.addr,
        "since_unix_ms": s.since_unix_ms,
        "since": crate::output::ms_time(s.since_unix_ms),
        "hostname": d.hostname,
        "version": d.version,
        "node_version": d.node_version,
        "task_slots": d.task_slots,
        "port_range": [d.port_range_start, d.port_range_end],
        "advertised_address": d.advertised_address,
        "created_unix_ms": a.created_unix_ms,
        "created": crate::output::ms_time(a.created_unix_ms),
        "store_version": a.version.map(|v| v.index).unwrap_or(0),
    })
}

pub async fn run(conn: &Connection, cmd: AgentCommand) -> Result<()> {
    let mut control = conn.control().await?;
    match cmd {
        AgentCommand::Ls { format } => {
            let answer = control
                .list_agents(ListAgentsRequest {})
                .await?
                .into_inner();
            let (agents, expiries) = (answer.agents, answer.cert_expires_unix);
            let expires = |id: &str| expiries.get(id).map(|t| unix_time(*t)).unwrap_or_default();
            match format {
                Format::Json => print_json(&Value::Array(
                    agents
                        .iter()
                        .map(|a| {
                            let mut v = agent_json(a);
                            v["cert_expires"] = json!(expires(&a.id));
                            v
                        })
                        .collect(),
                )),
                Format::Table => print_table(
                    &[
                        "ID",
                        "HOSTNAME",
                        "STATE",
                        "AVAILABILITY",
                        "ADDRESS",
                        "VERSION",
                        "CERT EXPIRES",
                    ],
                    &agents
                        .iter()
                        .map(|a| {
                            let d = a.description.clone().unwrap_or_default();
                            vec![
                                a.id.clone(),
                                d.hostname,
                                state_name(a).into(),
                                availability_name(a).into(),
                                d.advertised_address,
                                d.version,
                                expires(&a.id),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        AgentCommand::Inspect { id, format } => {
            let id = crate::id_prefix::agent(&mut control, &id).await?;
            let a = control
                .get_agent(GetAgentRequest { id })
                .await?
                .into_inner();
            crate::output::print_object(format, &agent_json(&a));
        }
        AgentCommand::Update { id, availability } => {
            let id = crate::id_prefix::agent(&mut control, &id).await?;
            let availability = match availability {
                AvailabilityArg::Active => Availability::Active,
                AvailabilityArg::Pause => Availability::Pause,
                AvailabilityArg::Drain => Availability::Drain,
            };
            let a = control
                .update_agent(UpdateAgentRequest {
                    id,
                    availability: availability as i32,
                })
                .await?
                .into_inner();
            println!("{} {}", a.id, availability_name(&a));
        }
        AgentCommand::Rm { id, force } => {
            let id = crate::id_prefix::agent(&mut control, &id).await?;
            control
                .remove_agent(RemoveAgentRequest {
                    id: id.clone(),
                    force,
                })
                .await?;
            println!("{id}");
        }
    }
    Ok(())
}
