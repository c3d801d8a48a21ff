//! Prints a dev bearer token: `inbox-token --role manager --user alice [--name "Alice"]`.
use anyhow::Context;
use clap::Parser;
use tickets::Role;

#[derive(Parser)]
#[command(about = "Prints an HS256 dev token signed with INBOX_JWT_SECRET")]
struct Args {
    /// client, manager or admin (repeat for several)
    #[arg(long, default_value = "client")]
    role: Vec<String>,
    #[arg(long)]
    user: String,
    #[arg(long)]
    name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 12 * 3600)]
    ttl: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let roles = args
        .role
        .iter()
        .map(|r| {
            Role::parse(r)
                .with_context(|| format!("unknown role {r:?}: use client, manager or admin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    use platform::settings::{Env, ExposeSecret, common};
    let env = Env::from_process(&[common::ALL])?;
    let secret = env.secret(&common::JWT_SECRET).context(
        "INBOX_JWT_SECRET is not set: dev tokens are signed with it (see config/dev.env)",
    )?;
    let issuer = env
        .opt(&common::JWT_ISSUER)
        .unwrap_or_else(|| "inbox-dev".to_owned());
    let token = edge::auth::issue_dev_token(
        secret.expose_secret().as_bytes(),
        &issuer,
        &args.user,
        args.name.as_deref(),
        &roles,
        args.ttl,
    )?;
    println!("{token}");
    Ok(())
}
