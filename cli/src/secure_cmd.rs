//! `wasmos secure init|issue|token`: a cluster's CA, the identities it signs, and HTTP
//! bearer tokens (all made by the `secure` crate).
//!
//! Contracts: `init DIR` writes `DIR/ca.pem`, `DIR/ca.key`, `DIR/master.pem|.key`,
//! `DIR/admin.pem|.key` and `DIR/admin.token` (keys and the token mode 0600) and prints
//! the admin token; `issue DIR --agent|--framework|--operator NAME` writes
//! `DIR/NAME.pem|.key`; `token DIR --name NAME --role ROLE` prints a new token and keeps
//! only its hash (`DIR/tokens.toml`). Nothing is ever overwritten.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use proto::Role;

#[derive(clap::Subcommand)]
pub enum SecureCommand {
    /// Make a cluster: its CA, the master's identity, an admin identity and an admin
    /// HTTP token.
    ///
    /// DIR is created (mode 0700) if missing; one that holds a CA already is refused.
    /// Written: ca.pem and ca.key (the CA; keep ca.key offline once every identity is
    /// issued), master.pem/.key (its certificate names localhost, the loopback addresses,
    /// this host's name and every --san), admin.pem/.key (an operator identity for the
    /// CLI), admin.token (an HTTP token of role admin, also printed). Keys and tokens are
    /// mode 0600.
    Init(InitArgs),
    /// Sign an identity for an agent, a framework or an operator: DIR/NAME.pem and
    /// DIR/NAME.key.
    ///
    /// The certificate's common name is NAME, its subject alternative names NAME and
    /// every --san, its role the one chosen. NAME: letters, digits, '-' and '_'.
    Issue(IssueArgs),
    /// Make an HTTP bearer token for the API, /metrics and the dashboard.
    ///
    /// The token is printed once; DIR/tokens.toml keeps only its sha256, with NAME and
    /// ROLE. A viewer may only read (GET); an operator may also kill and submit, as the
    /// policy allows; an admin may do everything. One token per NAME.
    Token(TokenArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// The cluster directory to create.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Another name or address the master is reached by (repeatable): a DNS name or an
    /// IP address put in its certificate.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["agent", "framework", "operator"])))]
pub struct IssueArgs {
    /// The cluster directory (`wasmos secure init` made it).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// An agent's identity: NAME is its agent id.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// A framework's identity: NAME is the framework's name.
    #[arg(long, value_name = "NAME")]
    pub framework: Option<String>,
    /// An operator's identity, for the CLI (`wasmos ps`, `kill`, `run`, ...).
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
    /// With --operator: one who may only read.
    #[arg(long, conflicts_with_all = ["agent", "framework"])]
    pub viewer: bool,
    /// Another DNS name or IP address for the certificate (repeatable).
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The cluster directory (`wasmos secure init` made it).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Who the token is for, as the policy and the logs name them.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// What it may do.
    #[arg(long, value_enum)]
    pub role: TokenRole,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TokenRole {
    Viewer,
    Operator,
    Admin,
}

impl TokenRole {
    fn role(self) -> Role {
        match self {
            TokenRole::Viewer => Role::Viewer,
            TokenRole::Operator => Role::Operator,
            TokenRole::Admin => Role::Admin,
        }
    }
}

pub fn run(cmd: SecureCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SecureCommand::Init(args) => init(&args),
        SecureCommand::Issue(args) => issue(&args),
        SecureCommand::Token(args) => token(&args),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let crate::identity::NewCluster {
        made,
        token,
        token_file,
    } = crate::identity::init_cluster(&args.dir, &args.sans)?;
    println!("cluster CA      {}", made.ca_cert.display());
    println!(
        "CA key          {} (0600; keep it offline once identities are issued)",
        made.ca_key.display()
    );
    print_identity("master", &made.master.cert(), &made.master.key());
    print_identity("admin", &made.admin.cert(), &made.admin.key());
    println!("admin token     {} (0600)", token_file.display());
    println!();
    println!("admin HTTP token (shown once here; only its hash is kept):");
    println!("{token}");
    println!();
    let dir = args.dir.display();
    println!("next:");
    println!("  wasmos secure issue {dir} --agent NAME       one per device");
    println!("  wasmos secure issue {dir} --framework NAME   one per framework");
    println!("  wasmos secure token {dir} --name NAME --role viewer|operator|admin");
    println!("  wasmos master --identity {dir}/master         and the HTTP API wants a token");
    Ok(ExitCode::SUCCESS)
}

fn print_identity(label: &str, cert: &Path, key: &Path) {
    println!(
        "{:<15} {} and {} (0600)",
        format!("{label} identity"),
        cert.display(),
        key.display()
    );
}

fn issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let (name, role) = match (&args.agent, &args.framework, &args.operator) {
        (Some(name), _, _) => (name, Role::Agent),
        (_, Some(name), _) => (name, Role::Framework),
        (_, _, Some(name)) if args.viewer => (name, Role::Viewer),
        (_, _, Some(name)) => (name, Role::Operator),
        // clap requires one of the three.
        (None, None, None) => anyhow::bail!("give --agent, --framework or --operator NAME"),
    };
    let identity = secure::issue_identity(&args.dir, name, role, &args.sans)?;
    print_identity(
        &format!("{name} ({role})"),
        &identity.cert(),
        &identity.key(),
    );
    let path = args.dir.join(name);
    let hint = match role {
        Role::Agent => format!("wasmos agent --identity {}", path.display()),
        Role::Framework => format!(
            "give the framework {} and its .key",
            identity.cert().display()
        ),
        _ => format!("the CLI's --identity {}", path.display()),
    };
    println!("next: {hint}");
    Ok(ExitCode::SUCCESS)
}

fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let token = secure::create_token(&args.dir, &args.name, args.role.role())?;
    eprintln!(
        "HTTP token for {} ({}), shown once; {} keeps only its hash:",
        args.name,
        args.role.role(),
        args.dir.join(secure::TOKENS_FILE).display()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
