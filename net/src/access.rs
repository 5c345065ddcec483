//! Mutual TLS and the access control the master's zenoh router enforces.
//!
//! Every principal is a certificate of the cluster CA whose common name is its name
//! (`secure/`). The master generates zenoh's `access_control` from the list of
//! principals, default deny: what a principal may send (ingress) is spelled message by
//! message and key by key; what it may receive (egress) is anything on its own keys. So
//! the key a message came on proves who sent it: `agents/<name>/…` only from agent
//! `name`, `master/calls/<name>` only from framework `name`, and so on.

use std::path::PathBuf;

use proto::{Keys, Role};
use serde_json::{Value, json};

/// Most principals one access control list is generated for.
pub const ACL_PRINCIPALS_MAX: usize = 100_000;

/// The files of one identity: the cluster CA, its certificate and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One principal the access control names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclPrincipal {
    pub name: String,
    pub role: Role,
}

/// What a principal may send to the master's router: zenoh message kinds on keys.
struct Grant {
    messages: &'static [&'static str],
    keys: Vec<String>,
}

const PUT: &[&str] = &["put"];
const TOKEN: &[&str] = &["liveliness_token"];
const SERVE: &[&str] = &["declare_queryable", "reply"];
const ASK: &[&str] = &["query"];
const SUBSCRIBE: &[&str] = &["declare_subscriber"];
const WATCH: &[&str] = &["declare_liveliness_subscriber", "liveliness_query"];
const ASK_ALIVE: &[&str] = &["liveliness_query"];
const EVERY_MESSAGE: &[&str] = &[
    "put",
    "delete",
    "declare_subscriber",
    "query",
    "reply",
    "declare_queryable",
    "liveliness_token",
    "liveliness_query",
    "declare_liveliness_subscriber",
];

fn grants(keys: &Keys, principal: &AclPrincipal) -> Vec<Grant> {
    let name = principal.name.as_str();
    let grant = |messages, keys: Vec<String>| Grant { messages, keys };
    let master_alive = grant(WATCH, vec![keys.master_alive()]);
    // Every principal may knock on the master's three doors under its own name; the
    // master answers what its role and the policy do not allow with a refusal, which
    // says more than silence.
    let doors = grant(
        ASK,
        vec![
            keys.master_calls(name),
            keys.master_admin(name),
            keys.master_upload(name),
        ],
    );
    match principal.role {
        Role::Master => vec![grant(EVERY_MESSAGE, vec![format!("{}/**", keys.prefix())])],
        Role::Agent => vec![
            doors,
            grant(
                PUT,
                vec![
                    keys.agent_advert(name),
                    keys.agent_status(name),
                    keys.agent_leave(name),
                    keys.agent_metrics(name),
                ],
            ),
            grant(TOKEN, vec![keys.agent_alive(name)]),
            // Before it takes its id, an agent asks whether another process holds it.
            grant(ASK_ALIVE, vec![keys.agent_alive(name)]),
            grant(SERVE, vec![keys.agent_cmd(name), keys.agent_logs(name)]),
            grant(ASK, vec![keys.all_modules()]),
            grant(SUBSCRIBE, vec![keys.master_census()]),
            master_alive,
        ],
        Role::Framework => vec![
            doors,
            grant(SUBSCRIBE, vec![keys.principal_frameworks(name)]),
            grant(TOKEN, vec![keys.principal_frameworks(name)]),
            master_alive,
        ],
        Role::Admin | Role::Operator | Role::Viewer => vec![doors, master_alive],
    }
}

/// zenoh's `access_control` section for `principals`: default deny, and per principal
/// its ingress grants and egress on its own keys.
pub fn access_control(keys: &Keys, principals: &[AclPrincipal]) -> Value {
    let mut rules = Vec::new();
    let mut subjects = Vec::new();
    let mut policies = Vec::new();
    for (index, principal) in principals.iter().take(ACL_PRINCIPALS_MAX).enumerate() {
        let subject = format!("s{index}");
        subjects.push(json!({ "id": subject, "cert_common_names": [principal.name] }));
        let grants = grants(keys, principal);
        let mut own_keys: Vec<String> = grants.iter().flat_map(|g| g.keys.clone()).collect();
        own_keys.sort();
        own_keys.dedup();
        let mut rule_ids = Vec::new();
        for (n, grant) in grants.iter().enumerate() {
            let id = format!("p{index}-in{n}");
            rules.push(rule(&id, grant.messages, "ingress", &grant.keys));
            rule_ids.push(id);
        }
        let id = format!("p{index}-out");
        rules.push(rule(&id, EVERY_MESSAGE, "egress", &own_keys));
        rule_ids.push(id);
        policies.push(json!({ "rules": rule_ids, "subjects": [subject] }));
    }
    json!({
        "enabled": true,
        "default_permission": "deny",
        "rules": rules,
        "subjects": subjects,
        "policies": policies,
    })
}

fn rule(id: &str, messages: &[&str], flow: &str, keys: &[String]) -> Value {
    json!({
        "id": id,
        "messages": messages,
        "flows": [flow],
        "permission": "allow",
        "key_exprs": keys,
    })
}
