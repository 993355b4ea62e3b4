//! `vlnet ctl`: talks to a node's admin API and prints what it answers.

use std::io::{BufRead, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vlnet_dataplane::api::{self, Request, Response};
use vlnet_dataplane::config::{Config, DEFAULT_API_SOCKET, DEFAULT_CONFIG_PATH};
use vlnet_dataplane::flows::{FlowQuery, FlowSort};

use crate::cli::{ClientCommand, CtlArgs, CtlCommand, FlowOrder, VmCommand};
use crate::render;

/// The node's admin socket: `--socket`, else the `api_socket` of
/// `--config`, else of the default config if there is one, else the
/// default socket (a node whose config leaves it alone).
fn socket_of(args: &CtlArgs) -> Result<PathBuf> {
    socket_with_default(args, Path::new(DEFAULT_CONFIG_PATH))
}

/// [`socket_of`] with `default` as the default config.
fn socket_with_default(args: &CtlArgs, default: &Path) -> Result<PathBuf> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    match &args.config {
        Some(path) => Ok(load(path)?.node.api_socket),
        None if default.exists() => Ok(load(default)?.node.api_socket),
        None => Ok(PathBuf::from(DEFAULT_API_SOCKET)),
    }
}

/// The node's config: `--config`, else the default one.
fn config_of(args: &CtlArgs) -> Result<Config> {
    let path = args
        .config
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    load(path)
}

/// The config at `path`; when its Proxmox SDN zone cannot be read (the
/// cluster file system down, say), the file's own VNIs with a warning, so
/// that the admin commands still work.
fn load(path: &Path) -> Result<Config> {
    match Config::load(path) {
        Err(e @ vlnet_dataplane::config::ConfigError::Zone { .. }) => {
            eprintln!("vlnet: warning: {e}; going on with the file's own VNIs");
            Ok(Config::load_without_zone(path)?)
        }
        other => Ok(other?),
    }
}

fn ask(args: &CtlArgs, req: &Request) -> Result<Response> {
    let socket = socket_of(args)?;
    match api::request(&socket, req)? {
        Response::Error { message, .. } => bail!("the daemon refused: {message}"),
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
        ClientCommand::Add {
            name,
            vnis,
            ttl,
            uses,
        } => {
            let req = Request::ClientAdd {
                name: name.clone(),
                vnis: vnis.clone(),
                ttl_secs: *ttl,
                uses: *uses,
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

/// Runs one `vlnet ctl vm` command.
fn vm(args: &CtlArgs, command: &VmCommand) -> Result<()> {
    match command {
        VmCommand::Moved { mac, vni, bridge } => match ask(
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
        VmCommand::Move { mac, vni, to, ttl } => match ask(
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
        CtlCommand::Vm { command } => vm(args, command),
        CtlCommand::Moves => match ask(args, &Request::Moves)? {
            Response::Moves(m) => print(args.json, &m, |m| render::moves(m)),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Evpn => match ask(args, &Request::Evpn)? {
            Response::Evpn(r) => print(args.json, &r, render::evpn),
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
        CtlCommand::Join { token, token_file } => match ask(
            args,
            &Request::Join {
                token: read_token(
                    token_source(token.as_deref(), token_file.as_deref())?,
                    std::io::stdin().lock(),
                )?,
            },
        )? {
            Response::Joined(r) => print(args.json, &r, render::joined),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Leave { force } => match ask(args, &Request::Leave { force: *force })? {
            Response::Left(r) => print(args.json, &r, render::left),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Reload => match ask(args, &Request::Reload)? {
            Response::Reloaded(r) => print(args.json, &r, render::reloaded),
            other => bail!("unexpected answer {other:?}"),
        },
        CtlCommand::Teardown => teardown(args),
    }
}

/// Where `vlnet ctl join` takes its token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource<'a> {
    /// The command line (visible to every local user in /proc/*/cmdline).
    Argument(&'a str),
    /// The first line of standard input (`-`).
    Stdin,
    /// A file holding the token.
    File(&'a Path),
}

/// The token source that `vlnet ctl join [TOKEN|-] [--token-file PATH]`
/// names; exactly one must be given.
fn token_source<'a>(token: Option<&'a str>, file: Option<&'a Path>) -> Result<TokenSource<'a>> {
    match (token, file) {
        (Some(_), Some(_)) => bail!(
            "give the token one way: as an argument, `-` for standard input, or --token-file, not both"
        ),
        (None, None) => bail!(
            "no token given: use `vlnet ctl join -` to read it from standard input, \
             or --token-file PATH"
        ),
        (Some("-"), None) => Ok(TokenSource::Stdin),
        (Some(token), None) => Ok(TokenSource::Argument(token)),
        (None, Some(path)) => Ok(TokenSource::File(path)),
    }
}

/// Longest token text read from standard input or a file (tokens are a few
/// hundred bytes).
const MAX_TOKEN_INPUT: u64 = 64 * 1024;

/// Reads the token from `source` (`stdin` for [`TokenSource::Stdin`]): the
/// only word there, surrounding white space ignored.
fn read_token(source: TokenSource<'_>, stdin: impl BufRead) -> Result<String> {
    let (text, from) = match source {
        TokenSource::Argument(token) => (token.to_owned(), "the token argument".to_owned()),
        TokenSource::Stdin => {
            let mut line = String::new();
            stdin
                .take(MAX_TOKEN_INPUT)
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            (line, "standard input".to_owned())
        }
        TokenSource::File(path) => {
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_TOKEN_INPUT).read_to_string(&mut text))
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            (text, format!("the token file {}", path.display()))
        }
    };
    let token = text.trim();
    if token.is_empty() {
        bail!("{from} is empty; expected the token `vlnet ctl client add` printed");
    }
    if token.split_whitespace().nth(1).is_some() {
        bail!("{from} holds more than one word; expected only the token");
    }
    Ok(token.to_owned())
}

/// `vlnet ctl teardown`: stop the daemon and remove what vlnet created.
fn teardown(args: &CtlArgs) -> Result<()> {
    let cfg = config_of(args)?;
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn refusal(result: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    fn ctl(args: &[&str]) -> CtlArgs {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["vlnet", "ctl"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Ctl(ctl) => ctl,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_socket_without_a_config_is_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("vlnet.toml");
        let socket = socket_with_default(&ctl(&["status"]), &missing).unwrap();
        assert_eq!(socket, Path::new(DEFAULT_API_SOCKET));
        let given = socket_with_default(&ctl(&["--socket", "/tmp/x.sock", "status"]), &missing);
        assert_eq!(given.unwrap(), Path::new("/tmp/x.sock"));
        // A default config that exists names the socket.
        std::fs::write(
            &missing,
            "[node]\nname = \"n\"\nunderlay = \"ul0\"\napi_socket = \"/tmp/n.sock\"\n\
             [[vni]]\nid = 100\nbridge = \"br100\"\n",
        )
        .unwrap();
        let socket = socket_with_default(&ctl(&["status"]), &missing).unwrap();
        assert_eq!(socket, Path::new("/tmp/n.sock"));
        // An explicit config that does not exist is an error.
        let absent = dir.path().join("absent.toml");
        let args = ctl(&["--config", absent.to_str().unwrap(), "status"]);
        assert!(socket_with_default(&args, &missing).is_err());
    }

    #[test]
    fn one_token_source_must_be_given() {
        let file = Path::new("/root/token");
        assert_eq!(
            token_source(Some("vlnet1.x"), None).unwrap(),
            TokenSource::Argument("vlnet1.x")
        );
        assert_eq!(token_source(Some("-"), None).unwrap(), TokenSource::Stdin);
        assert_eq!(
            token_source(None, Some(file)).unwrap(),
            TokenSource::File(file)
        );
        let both = refusal(token_source(Some("-"), Some(file)));
        assert!(both.contains("not both"), "{both}");
        let neither = refusal(token_source(None, None));
        assert!(neither.contains("no token given"), "{neither}");
        assert!(neither.contains("vlnet ctl join -"), "{neither}");
    }

    #[test]
    fn the_token_is_read_from_stdin_a_file_or_the_argument() {
        let none = Cursor::new(Vec::new());
        assert_eq!(
            read_token(TokenSource::Argument("vlnet1.abc"), none).unwrap(),
            "vlnet1.abc"
        );
        // A pasted line, or a pipe without a final newline.
        for input in ["vlnet1.abc\n", "  vlnet1.abc  ", "vlnet1.abc\nignored\n"] {
            assert_eq!(
                read_token(TokenSource::Stdin, Cursor::new(input)).unwrap(),
                "vlnet1.abc",
                "{input:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "vlnet1.abc\n").unwrap();
        assert_eq!(
            read_token(TokenSource::File(&path), Cursor::new(Vec::new())).unwrap(),
            "vlnet1.abc"
        );
    }

    #[test]
    fn bad_token_input_says_what_is_wrong() {
        let empty = refusal(read_token(TokenSource::Stdin, Cursor::new("\n")));
        assert!(empty.contains("standard input is empty"), "{empty}");
        let empty = refusal(read_token(TokenSource::Stdin, Cursor::new("")));
        assert!(empty.contains("standard input is empty"), "{empty}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let unreadable = refusal(read_token(TokenSource::File(&missing), Cursor::new("")));
        assert!(
            unreadable.contains(&format!("cannot read the token file {}", missing.display())),
            "{unreadable}"
        );
        assert!(unreadable.contains("No such file"), "{unreadable}");
        let not_a_file = refusal(read_token(TokenSource::File(dir.path()), Cursor::new("")));
        assert!(
            not_a_file.contains("cannot read the token file"),
            "{not_a_file}"
        );

        let two = dir.path().join("two");
        std::fs::write(&two, "vlnet1.abc\nvlnet1.def\n").unwrap();
        let two = refusal(read_token(TokenSource::File(&two), Cursor::new("")));
        assert!(two.contains("more than one word"), "{two}");
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n\n").unwrap();
        let blank = refusal(read_token(TokenSource::File(&blank), Cursor::new("")));
        assert!(blank.contains("is empty"), "{blank}");
    }
}
