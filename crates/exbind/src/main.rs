//! The `exbind` binary: `exbind serve`, and the client subcommands that talk to exbind or to
//! the real Feishu / Lark.

mod cli;
mod logformat;
mod logwriter;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc: the request path allocates many small short-lived buffers, which it serves
/// faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use exbind_server::ServeArgs;

#[derive(Parser)]
#[command(
    name = "exbind",
    version,
    about = "A fast, faithful Feishu/Lark Exchange-binding API: server and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Bind an Exchange account to a user.
    Bind(cli::single::BindArgs),
    /// Show a binding and its sync status.
    Get(cli::single::GetArgs),
    /// Unbind an Exchange account.
    Unbind(cli::single::UnbindArgs),
    /// Bind or unbind many accounts from a CSV file, under quota, resumable.
    #[command(subcommand)]
    Bulk(cli::bulk::BulkCommand),
    /// Follow bindings until every one is done or err.
    Watch(cli::watch::WatchArgs),
    /// Drive the sync of an exbind server (control plane).
    #[command(subcommand)]
    Sync(cli::sync::SyncCommand),
    /// Log in as a user in the browser (OAuth, PKCE) and store the tokens for the other
    /// subcommands.
    Login(cli::login::LoginArgs),
    /// Show the user the stored login (or the given token) belongs to.
    Whoami(cli::login::WhoamiArgs),
    /// Forget the stored login for the base URL.
    Logout(cli::login::LogoutArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bind(a) => cli::run(cli::single::bind(a)),
        Command::Get(a) => cli::run(cli::single::get(a)),
        Command::Unbind(a) => cli::run(cli::single::unbind(a)),
        Command::Bulk(c) => cli::run(cli::bulk::run(c)),
        Command::Watch(a) => cli::run(cli::watch::run(a)),
        Command::Sync(c) => cli::run(cli::sync::run(c)),
        Command::Login(a) => cli::run(cli::login::login(a)),
        Command::Whoami(a) => cli::run(cli::login::whoami(a)),
        Command::Logout(a) => cli::run(cli::login::logout(a)),
    };
    std::process::exit(code);
}
