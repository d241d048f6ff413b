//! `exbind bind`, `exbind get`, `exbind unbind`.

use exbind_client::{Binding, CreateBinding, Reply, UserIdType};
use serde_json::json;

use super::{print_table, CmdResult, Conn, Failure};

#[derive(Debug, clap::Args)]
pub struct BindArgs {
    #[command(flatten)]
    conn: Conn,
    /// The Exchange admin account registered in the tenant's admin console.
    #[arg(long)]
    admin_account: String,
    /// The Exchange account to bind.
    #[arg(long)]
    exchange_account: String,
    /// The Feishu user, as --user-id-type says.
    #[arg(long)]
    user_id: String,
    #[arg(long, default_value = "open_id")]
    user_id_type: UserIdType,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    conn: Conn,
    /// The exchange_binding_id.
    id: String,
    #[arg(long, default_value = "open_id")]
    user_id_type: UserIdType,
}

#[derive(Debug, clap::Args)]
pub struct UnbindArgs {
    #[command(flatten)]
    conn: Conn,
    /// The exchange_binding_id.
    id: String,
}

fn show(r: &Reply<Binding>, json: bool) {
    let b = &r.data;
    if json {
        println!("{}", json!({"data": b, "log_id": r.log_id}));
        return;
    }
    let mut rows = vec![("exchange_binding_id", b.exchange_binding_id.clone())];
    if let Some(a) = &b.admin_account {
        rows.push(("admin_account", a.clone()));
    }
    if let Some(e) = &b.exchange_account {
        rows.push(("exchange_account", e.clone()));
    }
    rows.push(("user_id", b.user_id.clone()));
    rows.push(("status", b.status.to_string()));
    rows.push(("log_id", r.log_id.clone().unwrap_or_default()));
    print_table(&rows);
}

pub async fn bind(a: BindArgs) -> CmdResult {
    let client = a.conn.client(None)?;
    let auth = a.conn.auth(&client).await?;
    let req = CreateBinding {
        admin_account: a.admin_account,
        exchange_account: a.exchange_account,
        user_id: a.user_id,
    };
    let (c, req, uid) = (&client, &req, a.user_id_type);
    let r = auth
        .run(|t| async move { c.create_binding(&t, req, uid).await })
        .await
        .map_err(|e| Failure::client(e, a.conn.json))?;
    show(&r, a.conn.json);
    Ok(())
}

pub async fn get(a: GetArgs) -> CmdResult {
    let client = a.conn.client(None)?;
    let auth = a.conn.auth(&client).await?;
    let (c, id, uid) = (&client, &a.id, a.user_id_type);
    let r = auth
        .run(|t| async move { c.get_binding(&t, id, uid).await })
        .await
        .map_err(|e| Failure::client(e, a.conn.json))?;
    show(&r, a.conn.json);
    Ok(())
}

pub async fn unbind(a: UnbindArgs) -> CmdResult {
    let client = a.conn.client(None)?;
    let auth = a.conn.auth(&client).await?;
    let (c, id) = (&client, &a.id);
    let r = auth
        .run(|t| async move { c.delete_binding(&t, id).await })
        .await
        .map_err(|e| Failure::client(e, a.conn.json))?;
    if a.conn.json {
        println!("{}", json!({"data": {}, "log_id": r.log_id}));
    } else {
        print_table(&[("unbound", a.id), ("log_id", r.log_id.unwrap_or_default())]);
    }
    Ok(())
}
