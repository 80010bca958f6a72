//! `retrace token create|list|revoke`: access tokens, on a data folder or
//! through a server.
//!
//! With `--data DIR` the change is appended to the folder's journal
//! directly; when a running server holds the folder, the command goes to
//! that server instead (the address it wrote into the folder,
//! `server.url`), with `--token`/`RETRACE_TOKEN` once the server holds
//! tokens. With `--nats URL` the same goes for a journal on NATS: appended
//! directly while no server runs on the journal (this command takes its
//! partitions for the while), else sent to a server whose lease names it
//! (which passes it on to the home, where tokens are recorded). With `--server URL` it always goes over HTTP (`/v1/tokens`).
//!
//! Owns these commands' arguments and output: a new token's secret alone on
//! standard output (so `TOKEN=$(retrace token create …)` keeps it), the
//! rest on standard error. It must never write a secret anywhere else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use retrace_engine::store::tokens::{self, NewToken, Role, Token, TokenFolder};
use retrace_journal_nats::{NatsJournal, NatsOptions, Ownership};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::client::{Client, TokenArg, encode};
use super::config::NatsAccessArgs;
use super::error::{Error, Result};
use super::serve::SERVER_URL_FILE;
use super::write_line as write;
use crate::routes::tokens::TokenView;

/// `retrace token …`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Creates a token and prints its secret, once (only its hash is kept).
    Create(CreateArgs),
    /// Lists every token (revoked and expired ones too), never a secret.
    List(WhereArgs),
    /// Revokes a token: refused from now on (it stays listed).
    Revoke(RevokeArgs),
}

/// Where the tokens are: a data folder, or a server.
#[derive(Debug, Clone, Args)]
pub struct WhereArgs {
    /// The data folder (a new one is made if it does not exist). When a
    /// running server holds it, the command is sent to that server.
    #[arg(
        long,
        value_name = "FOLDER",
        env = "RETRACE_DATA",
        conflicts_with = "server"
    )]
    pub data: Option<PathBuf>,
    /// A journal on NATS instead: its servers, comma-separated
    /// (`nats://127.0.0.1:4222`). When retrace servers run on the journal,
    /// the command is sent to one of them.
    #[arg(
        long,
        value_name = "URL",
        value_delimiter = ',',
        conflicts_with_all = ["data", "server"]
    )]
    pub nats: Option<Vec<String>>,
    /// With `--nats`: the journal's subject prefix (as `serve --nats-prefix`).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "retrace",
        requires = "nats"
    )]
    pub nats_prefix: String,
    /// With `--nats`: the stream's replicas, when this makes the journal (as
    /// `serve --nats-replicas`).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "nats")]
    pub nats_replicas: usize,
    #[command(flatten)]
    pub nats_access: NatsAccessArgs,
    /// A running server instead (`http://host:port`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Print JSON (as `/v1/tokens` answers).
    #[arg(long)]
    pub json: bool,
}

/// Options of `retrace token create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The token's name: the actor the journal records for what its holder
    /// does (letters, digits, `_ . -`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// admin, operator, client, viewer or agent.
    #[arg(long, value_name = "ROLE")]
    pub role: Role,
    /// Agent tokens only: the capabilities its agents may register with
    /// (repeat the flag, or separate with commas). Any, when left out.
    #[arg(long = "capabilities", value_name = "NAME", value_delimiter = ',')]
    pub capabilities: Option<Vec<String>>,
    /// When it stops working: a duration from now (`30d`, `12h`, `90m`) or
    /// an RFC 3339 instant. Never, when left out.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    #[command(flatten)]
    pub at: WhereArgs,
}

/// Options of `retrace token revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The token's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub at: WhereArgs,
}

/// Where a command goes.
enum Target {
    Folder(PathBuf),
    Server(Client),
    Nats(Vec<String>),
}

/// A journal on NATS, held by this command for the while, or the server
/// that holds it.
enum OnNats {
    Held(TokenFolder, NatsJournal),
    Server(Client),
}

/// Takes the journal on NATS (its partitions' leases, waited for briefly),
/// or finds the server holding it.
async fn on_nats(servers: &[String], at: &WhereArgs) -> Result<OnNats> {
    let (tell, holder) = watch::channel(None);
    let ownership = Ownership {
        holder: Some(tell),
        wait: Duration::from_millis(500),
        ..Ownership::new(format!("retrace-token-{}", std::process::id()))
    };
    let access = &at.nats_access;
    let credentials = super::config::nats_credentials(
        access.nats_user.clone(),
        access.nats_password.clone(),
        access.nats_token.clone(),
    )
    .map_err(Error::Usage)?;
    let opened = NatsJournal::open(NatsOptions {
        servers: servers.to_vec(),
        prefix: at.nats_prefix.clone(),
        replicas: at.nats_replicas,
        ownership: Some(ownership),
        credentials,
        tls_ca: access.nats_ca.clone(),
        ..NatsOptions::new(servers.join(","))
    })
    .await;
    match opened {
        Ok(journal) => match TokenFolder::on_journal(Arc::new(journal.clone())).await {
            Ok(folder) => Ok(OnNats::Held(folder, journal)),
            Err(e) => {
                journal.release().await;
                Err(e.into())
            }
        },
        Err(e) => {
            let held_by = holder.borrow().clone();
            match held_by.and_then(|h| h.url.map(|url| (h.node, url))) {
                Some((node, url)) => {
                    eprintln!("retrace: the server {node} runs on the journal: asking it at {url}");
                    Client::connect(&url, &at.token).map(OnNats::Server)
                }
                None => Err(retrace_engine::Error::from(e).into()),
            }
        }
    }
}

pub async fn run(command: TokenCommand, out: &mut impl Write) -> Result<()> {
    match command {
        TokenCommand::Create(args) => create(args, out).await,
        TokenCommand::List(args) => list(args, out).await,
        TokenCommand::Revoke(args) => revoke(args, out).await,
    }
}

async fn create(args: CreateArgs, out: &mut impl Write) -> Result<()> {
    let now = now_ms();
    let expires_at_ms = args
        .expires
        .as_deref()
        .map(|w| expiry(w, now))
        .transpose()?;
    let new = NewToken {
        name: args.name,
        role: args.role,
        capabilities: args.capabilities,
        expires_at_ms,
    };
    let (view, secret) = match target(&args.at)? {
        Target::Folder(path) => match TokenFolder::open(&path).await {
            Ok(mut folder) => {
                let (token, secret) = folder.create(new, now).await?;
                (view(&token, now), secret)
            }
            Err(retrace_engine::Error::Locked { .. }) => {
                let client = running_server(&path, &args.at)?;
                create_remote(&client, &new, now).await?
            }
            Err(e) => return Err(e.into()),
        },
        Target::Server(client) => create_remote(&client, &new, now).await?,
        Target::Nats(servers) => match on_nats(&servers, &args.at).await? {
            OnNats::Held(mut folder, journal) => {
                let created = folder.create(new, now).await;
                journal.release().await;
                let (token, secret) = created?;
                (view(&token, now), secret)
            }
            OnNats::Server(client) => create_remote(&client, &new, now).await?,
        },
    };
    if args.at.json {
        return write(out, json!({ "secret": secret, "token": view }).to_string());
    }
    write(out, secret)?;
    eprintln!(
        "retrace: token `{}` ({}) created; the secret above is shown only this once",
        view["name"].as_str().unwrap_or_default(),
        view["role"].as_str().unwrap_or_default()
    );
    Ok(())
}

async fn create_remote(client: &Client, new: &NewToken, now: u64) -> Result<(Value, String)> {
    let mut body = json!({ "name": new.name, "role": new.role });
    if let Some(caps) = &new.capabilities {
        body["capabilities"] = json!(caps);
    }
    if let Some(at) = new.expires_at_ms {
        body["expiresInMs"] = json!(at.saturating_sub(now).max(1));
    }
    let answer: Value = client.post("/v1/tokens", &body).await?;
    let secret = answer["secret"].as_str().unwrap_or_default().to_owned();
    Ok((answer["token"].clone(), secret))
}

async fn list(args: WhereArgs, out: &mut impl Write) -> Result<()> {
    let now = now_ms();
    let views: Vec<Value> = match target(&args)? {
        Target::Folder(path) => match tokens::list_folder(&path).await {
            Ok(tokens) => tokens.iter().map(|t| view(t, now)).collect(),
            Err(retrace_engine::Error::Locked { .. }) => {
                list_remote(&running_server(&path, &args)?).await?
            }
            Err(e) => return Err(e.into()),
        },
        Target::Server(client) => list_remote(&client).await?,
        Target::Nats(servers) => match on_nats(&servers, &args).await? {
            OnNats::Held(folder, journal) => {
                let tokens = folder.tokens().list();
                journal.release().await;
                tokens.iter().map(|t| view(t, now)).collect()
            }
            OnNats::Server(client) => list_remote(&client).await?,
        },
    };
    if args.json {
        return write(out, json!({ "tokens": views }).to_string());
    }
    write(
        out,
        format!(
            "{:<24} {:<9} {:<8} {:<25} {:<25} CAPABILITIES",
            "NAME", "ROLE", "STATUS", "CREATED", "EXPIRES"
        ),
    )?;
    for v in &views {
        let text = |key: &str| v[key].as_str().unwrap_or("-").to_owned();
        let caps = v["capabilities"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".into());
        write(
            out,
            format!(
                "{:<24} {:<9} {:<8} {:<25} {:<25} {caps}",
                text("name"),
                text("role"),
                text("status"),
                text("createdAt"),
                text("expiresAt"),
            ),
        )?;
    }
    Ok(())
}

async fn list_remote(client: &Client) -> Result<Vec<Value>> {
    let answer: Value = client.get("/v1/tokens").await?;
    Ok(answer["tokens"].as_array().cloned().unwrap_or_default())
}

async fn revoke(args: RevokeArgs, out: &mut impl Write) -> Result<()> {
    let now = now_ms();
    let view = match target(&args.at)? {
        Target::Folder(path) => match TokenFolder::open(&path).await {
            Ok(mut folder) => view(&folder.revoke(&args.name, now).await?, now),
            Err(retrace_engine::Error::Locked { .. }) => {
                let client = running_server(&path, &args.at)?;
                revoke_remote(&client, &args.name).await?
            }
            Err(e) => return Err(e.into()),
        },
        Target::Server(client) => revoke_remote(&client, &args.name).await?,
        Target::Nats(servers) => match on_nats(&servers, &args.at).await? {
            OnNats::Held(mut folder, journal) => {
                let revoked = folder.revoke(&args.name, now).await;
                journal.release().await;
                view(&revoked?, now)
            }
            OnNats::Server(client) => revoke_remote(&client, &args.name).await?,
        },
    };
    if args.at.json {
        return write(out, view.to_string());
    }
    write(out, format!("token `{}` revoked", args.name))
}

async fn revoke_remote(client: &Client, name: &str) -> Result<Value> {
    client.delete(&format!("/v1/tokens/{}", encode(name))).await
}

fn target(at: &WhereArgs) -> Result<Target> {
    match (&at.data, &at.server, &at.nats) {
        (Some(path), None, None) => Ok(Target::Folder(path.clone())),
        (None, Some(url), None) => Ok(Target::Server(Client::connect(url, &at.token)?)),
        (None, None, Some(servers)) => Ok(Target::Nats(servers.clone())),
        _ => Err(Error::Usage(
            "name the data folder (--data FOLDER), a journal on NATS (--nats URL) or a \
             server (--server URL)"
                .into(),
        )),
    }
}

/// The server that holds `path`, from the address it wrote there.
fn running_server(path: &Path, at: &WhereArgs) -> Result<Client> {
    let file = path.join(SERVER_URL_FILE);
    let url = std::fs::read_to_string(&file).map_err(|_| Error::Locked {
        path: path.to_owned(),
        readable_from_server: false,
    })?;
    eprintln!(
        "retrace: a server holds {}: asking it at {}",
        path.display(),
        url.trim()
    );
    Client::connect(url.trim(), &at.token)
}

/// A token as `/v1/tokens` shows it.
fn view(t: &Token, now_ms: u64) -> Value {
    serde_json::to_value(TokenView::new(t.clone(), now_ms)).unwrap_or(Value::Null)
}

/// `--expires`: a duration from now, or an RFC 3339 instant.
fn expiry(when: &str, now_ms: u64) -> Result<u64> {
    if let Ok(d) = humantime::parse_duration(when) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(Error::Usage("--expires must be later than now".into()));
        }
        return Ok(now_ms.saturating_add(ms));
    }
    let at = chrono::DateTime::parse_from_rfc3339(when).map_err(|_| {
        Error::Usage(format!(
            "--expires {when}: give a duration (30d, 12h, 90m) or an RFC 3339 instant \
             (2027-01-31T00:00:00Z)"
        ))
    })?;
    u64::try_from(at.timestamp_millis())
        .ok()
        .filter(|ms| *ms > now_ms)
        .ok_or_else(|| Error::Usage(format!("--expires {when} is not in the future")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d: Duration| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_durations_and_instants() {
        assert_eq!(expiry("90m", 1_000).ok(), Some(1_000 + 90 * 60_000));
        assert_eq!(expiry("2d", 0).ok(), Some(2 * 86_400_000));
        assert_eq!(
            expiry("2030-01-01T00:00:00Z", 0).ok(),
            Some(1_893_456_000_000)
        );
        assert!(expiry("2001-01-01T00:00:00Z", 1_893_456_000_000).is_err());
        assert!(expiry("soon", 0).is_err());
    }
}
