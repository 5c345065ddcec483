//! Opening a zenoh session the wasmos way, and the handle every other helper hangs off.
//!
//! Defaults (no zenoh configuration file): the master is a zenoh *router* that listens on
//! loopback port 7447; every other node (agent, framework, tool) is a zenoh *client* of
//! it, and the master routes between them. Scouting (multicast and gossip) is off: nodes
//! find each other only through the endpoints given, so nothing on the LAN joins a cluster
//! by accident. (Peers would need gossip for the router to broker between them, so
//! members are clients, not peers.) A long-lived member waits for its master when
//! opening and reconnects after it restarts; a one-shot tool gives up after
//! `connect_timeout_ms`.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use proto::Keys;
use proto::keys::KeyError;
use zenoh::key_expr::KeyExpr;

use crate::access::TlsFiles;
use crate::declared::DeclaredKeys;
use crate::decode_errors::DecodeErrors;
use crate::endpoint::{EndpointError, EndpointUse, check_endpoint};
use crate::error::NetError;

/// Port the master listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7447;
/// Where the master listens, and where every other node looks for it, by default.
pub const DEFAULT_ENDPOINT: &str = "tcp/127.0.0.1:7447";
/// Where a site router listens by default: every interface, for the site's devices.
pub const SITE_ROUTER_ENDPOINT: &str = "tcp/0.0.0.0:7447";
/// The default endpoint of a secure cluster (mutual TLS).
pub const DEFAULT_TLS_ENDPOINT: &str = "tls/127.0.0.1:7447";
/// How long a one-shot tool tries to reach the master before giving up.
pub const TOOL_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// The zenoh role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Routes between the nodes connected to it: the master.
    Router,
    /// zenoh's peer mode, for configurations that enable gossip; not used by default.
    Peer,
    /// Connected to a router that routes for it: agents, frameworks and tools.
    Client,
}

impl Mode {
    fn as_zenoh(self) -> &'static str {
        match self {
            Mode::Router => "router",
            Mode::Peer => "peer",
            Mode::Client => "client",
        }
    }
}

/// How to open a session.
///
/// Without `zenoh_config_file` the session is built from the fields alone, with scouting
/// off. With a file (zenoh's own json5 format) the file is the base and wins on everything
/// except `mode` and the endpoint lists, which are applied on top of it when non-empty, so
/// that command-line flags override the file; leave `listen`/`connect` empty to keep the
/// file's. Scouting is then whatever the file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The cluster name: all keys live under `wasmos/<cluster>/`.
    pub cluster: String,
    pub mode: Mode,
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7447`; port 0 picks a free port (see
    /// [`Net::endpoints`] for the one given).
    pub listen: Vec<String>,
    /// Endpoints to connect to, e.g. `tcp/10.0.0.5:7447`.
    pub connect: Vec<String>,
    pub zenoh_config_file: Option<PathBuf>,
    /// How long opening waits for a `connect` endpoint to answer before it fails; `None`
    /// waits (retrying with backoff) until one does.
    pub connect_timeout_ms: Option<u64>,
    /// The name this node calls the master under (`master/calls/<principal>`, …): its
    /// certificate's common name with TLS, [`proto::principal::ANONYMOUS`] without.
    pub principal: String,
    /// Mutual TLS with this identity: only `tls/` links are accepted or opened, the
    /// peer's certificate must chain to the cluster CA, and a client checks the master's
    /// name. `None`: plain links, no authentication.
    pub tls: Option<TlsFiles>,
    /// zenoh's `access_control` section, for the master's router ([`crate::access_control`]).
    pub access_control: Option<serde_json::Value>,
}

impl NetConfig {
    /// The master: a router listening on `listen` (the default endpoint when empty).
    pub fn master(listen: Vec<String>) -> NetConfig {
        let listen = if listen.is_empty() {
            vec![DEFAULT_ENDPOINT.to_owned()]
        } else {
            listen
        };
        NetConfig {
            listen,
            ..NetConfig::base(Mode::Router)
        }
    }

    /// A site router: a zenoh router listening on `listen` (every interface's port 7447
    /// when empty) for the devices of a site, and connected to the master at `connect`,
    /// so that a site needs one uplink. It starts whether or not the master answers, and
    /// keeps connecting to it in the background (after its restarts too).
    pub fn site_router(connect: Vec<String>, listen: Vec<String>) -> NetConfig {
        let listen = if listen.is_empty() {
            vec![SITE_ROUTER_ENDPOINT.to_owned()]
        } else {
            listen
        };
        NetConfig {
            listen,
            connect: or_default_endpoint(connect),
            ..NetConfig::base(Mode::Router)
        }
    }

    /// An agent or framework: a client of the master at `connect` (the default endpoint
    /// when empty). Opening waits until the master answers; afterwards the session
    /// reconnects by itself whenever the master goes and comes back.
    pub fn member(connect: Vec<String>) -> NetConfig {
        NetConfig {
            connect: or_default_endpoint(connect),
            ..NetConfig::base(Mode::Client)
        }
    }

    /// A one-shot tool (`wasmos ps`): a client whose opening fails when no master answers
    /// within [`TOOL_CONNECT_TIMEOUT_MS_DEFAULT`].
    pub fn tool(connect: Vec<String>) -> NetConfig {
        NetConfig {
            connect: or_default_endpoint(connect),
            connect_timeout_ms: Some(TOOL_CONNECT_TIMEOUT_MS_DEFAULT),
            ..NetConfig::base(Mode::Client)
        }
    }

    /// A master on a free loopback port, for tests and embedded clusters that must not
    /// collide with another cluster on the machine.
    pub fn loopback_ephemeral() -> NetConfig {
        NetConfig::master(vec!["tcp/127.0.0.1:0".to_owned()])
    }

    pub fn with_cluster(mut self, cluster: &str) -> NetConfig {
        cluster.clone_into(&mut self.cluster);
        self
    }

    pub fn with_zenoh_config_file(mut self, file: Option<PathBuf>) -> NetConfig {
        self.zenoh_config_file = file;
        self
    }

    /// Mutual TLS as `principal` (the common name of `tls.cert`); the default endpoint
    /// becomes its TLS twin ([`DEFAULT_TLS_ENDPOINT`]), other endpoints are kept as given.
    pub fn with_tls(mut self, principal: &str, tls: TlsFiles) -> NetConfig {
        principal.clone_into(&mut self.principal);
        for endpoint in self.listen.iter_mut().chain(self.connect.iter_mut()) {
            if endpoint == DEFAULT_ENDPOINT {
                DEFAULT_TLS_ENDPOINT.clone_into(endpoint);
            }
        }
        self.tls = Some(tls);
        self
    }

    pub fn with_access_control(mut self, access_control: serde_json::Value) -> NetConfig {
        self.access_control = Some(access_control);
        self
    }

    fn base(mode: Mode) -> NetConfig {
        NetConfig {
            cluster: proto::keys::DEFAULT_CLUSTER.to_owned(),
            mode,
            listen: Vec::new(),
            connect: Vec::new(),
            zenoh_config_file: None,
            connect_timeout_ms: None,
            principal: proto::principal::ANONYMOUS.to_owned(),
            tls: None,
            access_control: None,
        }
    }

    /// Refuses malformed endpoints at once (see [`crate::endpoint`]).
    pub fn check_endpoints(&self) -> Result<(), EndpointError> {
        let listen = self.listen.iter().map(|e| (e, EndpointUse::Listen));
        let connect = self.connect.iter().map(|e| (e, EndpointUse::Connect));
        listen
            .chain(connect)
            .try_for_each(|(endpoint, usage)| check_endpoint(endpoint, usage))
    }

    /// The zenoh configuration these settings stand for.
    pub fn to_zenoh(&self) -> Result<zenoh::Config, NetError> {
        let mut config = match &self.zenoh_config_file {
            Some(file) => {
                let refused = |message: String| NetError::ConfigFile {
                    path: file.clone(),
                    message,
                };
                check_config_file(file).map_err(refused)?;
                zenoh::Config::from_file(file).map_err(|e| refused(e.to_string()))?
            }
            None => {
                let mut config = zenoh::Config::default();
                insert(&mut config, "scouting/multicast/enabled", "false")?;
                insert(&mut config, "scouting/gossip/enabled", "false")?;
                // A router waits this long after binding its listeners, for scouting
                // there is none of: 500 ms more for a restarted master to come back.
                insert(&mut config, "scouting/delay", "0")?;
                config
            }
        };
        insert(&mut config, "mode", &json_string(self.mode.as_zenoh()))?;
        if !self.listen.is_empty() {
            insert(&mut config, "listen/endpoints", &json_strings(&self.listen))?;
        }
        if !self.connect.is_empty() {
            insert(
                &mut config,
                "connect/endpoints",
                &json_strings(&self.connect),
            )?;
        }
        if !self.connect.is_empty() && self.zenoh_config_file.is_none() {
            // -1 is zenoh's "retry for ever"; a member's opening fails, rather than
            // returning a session connected to nothing, when the time is up; a router
            // (a site router) opens at once and connects in the background.
            let timeout_ms = self
                .connect_timeout_ms
                .map_or("-1".to_owned(), |ms| ms.to_string());
            insert(&mut config, "connect/timeout_ms", &timeout_ms)?;
            let exit_on_failure = self.mode != Mode::Router;
            insert(
                &mut config,
                "connect/exit_on_failure",
                &exit_on_failure.to_string(),
            )?;
            // A member whose router went away tries again after 0.25, 0.75, 1.75, 3.75 s
            // and then every 4 s (zenoh's default: 1, 3, 7 s): a restarted master hears
            // its agents back within a quarter second of listening.
            insert(&mut config, "connect/retry", r#"{"period_init_ms": 250}"#)?;
        }
        if let Some(tls) = &self.tls {
            self.insert_tls(&mut config, tls)?;
        }
        if let Some(acl) = &self.access_control {
            insert(&mut config, "access_control", &acl.to_string())?;
        }
        Ok(config)
    }

    fn insert_tls(&self, config: &mut zenoh::Config, tls: &TlsFiles) -> Result<(), NetError> {
        let path = |p: &std::path::Path| json_string(&p.to_string_lossy());
        let (cert_key, key_key) = match self.mode {
            Mode::Router => (
                "transport/link/tls/listen_certificate",
                "transport/link/tls/listen_private_key",
            ),
            Mode::Peer | Mode::Client => (
                "transport/link/tls/connect_certificate",
                "transport/link/tls/connect_private_key",
            ),
        };
        insert(
            config,
            "transport/link/tls/root_ca_certificate",
            &path(&tls.ca),
        )?;
        insert(config, cert_key, &path(&tls.cert))?;
        insert(config, key_key, &path(&tls.key))?;
        insert(config, "transport/link/tls/enable_mtls", "true")?;
        insert(config, "transport/link/tls/verify_name_on_connect", "true")?;
        // No plain link is accepted or opened beside the TLS ones.
        insert(config, "transport/link/protocols", r#"["tls"]"#)
    }
}

fn or_default_endpoint(endpoints: Vec<String>) -> Vec<String> {
    if endpoints.is_empty() {
        vec![DEFAULT_ENDPOINT.to_owned()]
    } else {
        endpoints
    }
}

fn insert(config: &mut zenoh::Config, key: &'static str, value: &str) -> Result<(), NetError> {
    config
        .insert_json5(key, value)
        .map_err(|e| NetError::Config {
            key,
            value: value.to_owned(),
            message: e.to_string(),
        })
}

/// Largest zenoh configuration file read: zenoh reads the file whole, and a device such as
/// `/dev/zero` never ends.
pub const ZENOH_CONFIG_BYTES_MAX: u64 = 1 << 20;

/// A zenoh configuration file must be a regular file of at most [`ZENOH_CONFIG_BYTES_MAX`].
fn check_config_file(file: &std::path::Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > ZENOH_CONFIG_BYTES_MAX {
        return Err(format!(
            "{} bytes, over the limit of {ZENOH_CONFIG_BYTES_MAX}",
            meta.len()
        ));
    }
    Ok(())
}

/// A JSON string literal; endpoints hold no quotes or backslashes worth keeping, and any
/// that do are escaped so the configuration parser rejects them by name.
fn json_string(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

fn json_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", quoted.join(","))
}

/// An open session of one cluster: the zenoh session, the cluster's keys, and the
/// decode-error counters shared by every subscription and queryable made from it.
///
/// Cheap to clone; the session closes when the last clone is dropped or on [`Net::close`].
#[derive(Clone)]
pub struct Net {
    /// Behind an `Arc` of its own so that a subscription can hold it weakly (see
    /// [`crate::Subscription`]), as zenoh's own handles do.
    session: Arc<zenoh::Session>,
    keys: Keys,
    principal: String,
    decode_errors: DecodeErrors,
    declared: DeclaredKeys,
}

impl Net {
    pub async fn open(config: &NetConfig) -> Result<Net, NetError> {
        let keys = Keys::new(&config.cluster).map_err(|e: KeyError| NetError::Cluster(e))?;
        config.check_endpoints()?;
        let zenoh_config = config.to_zenoh()?;
        let session = zenoh::open(zenoh_config)
            .await
            .map_err(|e| NetError::Open {
                connect: config.connect.clone(),
                listen: config.listen.clone(),
                message: e.to_string(),
            })?;
        Ok(Net {
            session: Arc::new(session),
            keys,
            principal: config.principal.clone(),
            decode_errors: DecodeErrors::default(),
            declared: DeclaredKeys::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The name this session calls under (see [`NetConfig::principal`]).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The raw zenoh session, for what the typed helpers do not cover.
    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    /// `key` as declared to zenoh for repeated puts, while the session has room for it.
    pub(crate) async fn declared_key(&self, key: &str) -> Option<KeyExpr<'static>> {
        self.declared.get(&self.session, key).await
    }

    /// What a subscription needs to declare the keys it hears from, without keeping the
    /// session open.
    pub(crate) fn declarer(&self) -> (Weak<zenoh::Session>, DeclaredKeys) {
        (Arc::downgrade(&self.session), self.declared.clone())
    }

    /// Counts of payloads that did not decode, per key; see [`DecodeErrors`].
    pub fn decode_errors(&self) -> &DecodeErrors {
        &self.decode_errors
    }

    /// The endpoints this session actually listens on, e.g. `tcp/127.0.0.1:7447`, with
    /// port 0 resolved to the port given and wildcard addresses expanded to interfaces.
    pub async fn endpoints(&self) -> Vec<String> {
        let locators = self.session.info().locators().await;
        locators.iter().map(|l| l.to_string()).collect()
    }

    /// Closes the session: tokens go, subscriptions and queryables end.
    pub async fn close(&self) -> Result<(), NetError> {
        self.session
            .close()
            .await
            .map_err(|e| NetError::Close(e.to_string()))
    }
}
