//! Binds an Exchange account, reads its status until the sync is over, and unbinds it.
//!
//! Against a local exbind (`exbind serve` prints a super administrator's token for its demo):
//!
//! ```sh
//! EXBIND_BASE_URL=http://127.0.0.1:8787 FEISHU_USER_ACCESS_TOKEN=u-… \
//!   cargo run -p exbind-client --example bind_get_unbind -- \
//!   exadmin@demo.example carol@demo.example carol
//! ```
//!
//! The same program runs against `https://open.feishu.cn` with a real token.

use std::time::Duration;

use exbind_client::{Client, CreateBinding, Error, Quota, UserIdType};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let base = std::env::var("EXBIND_BASE_URL").unwrap_or_else(|_| "http://127.0.0.1:8787".into());
    let token = std::env::var("FEISHU_USER_ACCESS_TOKEN").expect("set FEISHU_USER_ACCESS_TOKEN");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [admin, exchange, user] = &args[..] else {
        eprintln!("usage: bind_get_unbind ADMIN_ACCOUNT EXCHANGE_ACCOUNT USER_ID");
        std::process::exit(2);
    };

    // Paced under the API's own quota; 429s are waited out and safe retries made.
    let client = Client::builder(&base)
        .quota(Quota::feishu_default())
        .build()?;
    let req = CreateBinding {
        admin_account: admin.clone(),
        exchange_account: exchange.clone(),
        user_id: user.clone(),
    };
    let made = client
        .create_binding(&token, &req, UserIdType::UserId)
        .await?;
    let id = made.data.exchange_binding_id;
    println!("bound {id} (log_id {})", made.log_id.unwrap_or_default());

    loop {
        let now = client.get_binding(&token, &id, UserIdType::UserId).await?;
        println!("status {}", now.data.status);
        if now.data.status.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    match client.delete_binding(&token, &id).await {
        Ok(r) => println!("unbound (log_id {})", r.log_id.unwrap_or_default()),
        Err(Error::Api(e)) => eprintln!(
            "unbind failed: code {} {} (log_id {:?})",
            e.code, e.msg, e.log_id
        ),
        Err(e) => return Err(e),
    }
    Ok(())
}
