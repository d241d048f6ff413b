//! `exbind sync force|advance|complete`: the control plane of an exbind server.

use exbind_client::ControlClient;
use reqwest::Method;
use serde_json::{json, Value};

use super::{print_table, CmdResult, Conn, Failure};

#[derive(Debug, clap::Args)]
pub struct Ctl {
    #[command(flatten)]
    conn: Conn,
    /// The server's admin token.
    #[arg(long, env = "EXBIND_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The tenant of the bindings.
    #[arg(long)]
    tenant: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum SyncCommand {
    /// Set a binding's status.
    Force {
        #[command(flatten)]
        ctl: Ctl,
        /// The exchange_binding_id.
        id: String,
        /// doing, cal_done, timespan_done, done or err.
        status: String,
        /// Why, for err.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move a binding one stage on.
    Advance {
        #[command(flatten)]
        ctl: Ctl,
        id: String,
    },
    /// Move every syncing binding of the tenant to done.
    Complete {
        #[command(flatten)]
        ctl: Ctl,
    },
}

pub async fn run(cmd: SyncCommand) -> CmdResult {
    let (ctl, method, path, body) = match cmd {
        SyncCommand::Force {
            ctl,
            id,
            status,
            reason,
        } => {
            let mut body = json!({"status": status});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let path = ControlClient::binding_path(&ctl.tenant, &id);
            (ctl, Method::PATCH, path, Some(body))
        }
        SyncCommand::Advance { ctl, id } => {
            let path = format!("{}/advance", ControlClient::binding_path(&ctl.tenant, &id));
            (ctl, Method::POST, path, None)
        }
        SyncCommand::Complete { ctl } => {
            let path = format!(
                "/_exbind/v1/tenants/{}/sync/complete",
                exbind_client::encode_path_segment(&ctl.tenant)
            );
            (ctl, Method::POST, path, None)
        }
    };
    let json_out = ctl.conn.json;
    let control = ControlClient::new(
        &ctl.conn.base_url()?,
        &ctl.conn.admin_token(&ctl.admin_token)?,
    )
    .map_err(|e| Failure::client(e, json_out))?;
    let r = control
        .call(method, &path, body)
        .await
        .map_err(|e| Failure::client(e, json_out))?;
    if json_out {
        println!("{}", json!({"data": r.data, "log_id": r.log_id}));
    } else {
        let rows: Vec<(&str, String)> = match &r.data {
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| k.as_str() != "history")
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect(),
            other => vec![("result", other.to_string())],
        };
        print_table(&rows);
    }
    Ok(())
}
