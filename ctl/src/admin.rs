//! `vlnet ctl`: talks to a node's admin API and prints what it answers.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vlnet_dataplane::api::{self, Request, Response};
use vlnet_dataplane::config::Config;
use vlnet_dataplane::flows::{FlowQuery, FlowSort};

use crate::cli::{ClientCommand, CtlArgs, CtlCommand, FlowOrder, VmCommand};
use crate::render;

fn socket_of(args: &CtlArgs) -> Result<PathBuf> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let cfg = Config::load(&args.config)?;
    Ok(cfg.node.api_socket)
}

fn ask(args: &CtlArgs, req: &Request) -> Result<Response> {
    let socket = socket_of(args)?;
    match api::request(&socket, req)? {
        Response::Error { message } => bail!("the daemon refused: {message}"),
        other => Ok(other),
    }
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", table(value));
    }
    Ok(())
}

fn client(args: &CtlArgs, command: &ClientCommand) -> Result<()> {
    match command {
        ClientCommand::Add { name, vnis, ttl } => {
            let req = Request::ClientAdd {
                name: name.clone(),
                vnis: vnis.clone(),
                ttl_secs: *ttl,
            };
            match ask(args, &req)? {
                Response::Token { token } if args.json => {
                    println!("{}", serde_json::json!({ "token": token }));
                }
                Response::Token { token } => println!("{token}"),
                other => bail!("unexpected answer {other:?}"),
            }
            Ok(())
        }
        ClientCommand::List => match ask(args, &Request::ClientList)? {
            Response::Clients(c) => print(args.json, &c, |c| render::clients(c)),
            other => bail!("unexpected answer {other:?}"),
        },
        ClientCommand::Remove { name } => {
            match ask(args, &Request::ClientRemove { name: name.clone() })? {
                Response::Ok => println!("removed {name}: key revoked, MACs withdrawn"),
                other => bail!("unexpected answer {other:?}"),
            }
            Ok(())
        }
    }
}

/// Runs one `vlnet ctl` command.
pub fn run(args: &CtlArgs) -> Result<()> {
    match &args.command {
        CtlCommand::Status => match ask(args, &Request::Status)? {
            Response::Status(s) => print(args.json, &s, render::status),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Peers => match ask(args, &Request::Peers)? {
            Response::Peers(p) => print(args.json, &p, |p| render::peers(p)),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Fdb { vni } => match ask(args, &Request::Fdb { vni: *vni })? {
            Response::Fdb(f) => print(args.json, &f, |f| render::fdb(f)),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Client { command } => client(args, command),
        CtlCommand::Vm {
            command: VmCommand::Moved { mac, vni, bridge },
        } => match ask(
            args,
            &Request::VmMoved {
                mac: *mac,
                vni: *vni,
                bridge: bridge.clone(),
            },
        )? {
            Response::Ok => {
                println!("announced {mac} from this node");
                Ok(())
            }
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Vm {
            command: VmCommand::Move { mac, vni, to, ttl },
        } => match ask(
            args,
            &Request::VmMove {
                mac: *mac,
                vni: *vni,
                to: to.clone(),
                ttl_secs: *ttl,
            },
        )? {
            Response::Ok => {
                println!("{to} may take {mac} on VNI {vni} within {ttl} s");
                Ok(())
            }
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Moves => match ask(args, &Request::Moves)? {
            Response::Moves(m) => print(args.json, &m, |m| render::moves(m)),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Flows { vni, top, sort } => {
            let query = FlowQuery {
                vni: *vni,
                top: *top,
                sort: match sort {
                    FlowOrder::Rtt => FlowSort::Rtt,
                    FlowOrder::Bytes => FlowSort::Bytes,
                },
            };
            match ask(args, &Request::Flows(query))? {
                Response::Flows(f) => print(args.json, &f, |f| render::flows(f)),
                other => bail!("unexpected answer {other:?}"),
            }
        }
        CtlCommand::Advise {
            min_gain_ms,
            min_gain_fraction,
        } => match ask(
            args,
            &Request::Advise {
                min_gain_ms: Some(*min_gain_ms),
                min_gain_fraction: Some(*min_gain_fraction),
            },
        )? {
            Response::Advice(a) => print(args.json, &a, |a| render::advice(a)),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Join { token } => match ask(
            args,
            &Request::Join {
                token: token.clone(),
            },
        )? {
            Response::Joined(r) => print(args.json, &r, render::joined),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Teardown => teardown(args),
    }
}

/// `vlnet ctl teardown`: stop the daemon and remove what vlnet created.
fn teardown(args: &CtlArgs) -> Result<()> {
    let cfg = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime
        .block_on(vlnet_dataplane::daemon::teardown(&cfg))
        .with_context(|| format!("tearing down node {}", cfg.node.name))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"stopped_daemon": report.stopped_daemon, "deleted_links": report.deleted_links})
        );
    } else {
        println!(
            "node {}: {}removed pinned programs and maps, deleted {}",
            cfg.node.name,
            if report.stopped_daemon {
                "stopped the daemon, "
            } else {
                ""
            },
            if report.deleted_links.is_empty() {
                "no links".to_string()
            } else {
                report.deleted_links.join(", ")
            }
        );
    }
    Ok(())
}
