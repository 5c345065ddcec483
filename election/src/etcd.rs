//! The etcd v3 calls an election needs, and the plain `put`/`get` of the state a standby
//! master takes over (the jobs framework's, hosted schedulers), over etcd's JSON gateway
//! (`/v3/...`).
//!
//! The gateway speaks proto3 JSON: keys and values are base64, 64-bit integers are
//! strings, and fields at their default value (`false`, `0`) are left out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use crate::ElectionError;

/// Longest time one request to etcd may take before it counts as failed.
pub const REQUEST_TIMEOUT_MS: u64 = 1_000;
/// Largest value [`Etcd::put`] stores: etcd refuses requests over 1.5 MiB by default.
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// Largest answer read from etcd: a value of [`VALUE_BYTES_MAX`] in base64, and some.
const REPLY_BYTES_MAX: usize = 2 * VALUE_BYTES_MAX;

/// An etcd lease: the key it holds goes when the lease expires or is revoked.
pub type LeaseId = i64;

/// A client for one etcd cluster, trying its endpoints in order.
#[derive(Clone, Debug)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
}

impl Etcd {
    /// `endpoints` are base URLs such as `http://127.0.0.1:2379`.
    pub fn new(endpoints: Vec<String>) -> Result<Etcd, ElectionError> {
        if endpoints.is_empty() {
            return Err(ElectionError::NoEndpoint);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build()
            .map_err(|e| ElectionError::Client(e.to_string()))?;
        let endpoints = endpoints
            .into_iter()
            .map(|e| e.trim_end_matches('/').to_owned())
            .collect();
        Ok(Etcd { http, endpoints })
    }

    /// A new lease of `ttl_s` seconds.
    pub async fn grant(&self, ttl_s: u64) -> Result<LeaseId, ElectionError> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(rename = "ID")]
            id: Option<Int>,
        }
        let reply: Reply = self
            .post("/v3/lease/grant", json!({ "TTL": ttl_s }))
            .await?;
        reply
            .id
            .map(|i| i.0)
            .ok_or_else(|| ElectionError::Reply("lease grant without an ID".into()))
    }

    /// Renews `lease`; the seconds it has left, 0 when it had already expired.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<u64, ElectionError> {
        #[derive(Deserialize)]
        struct Reply {
            result: Option<KeepAlive>,
        }
        #[derive(Deserialize)]
        struct KeepAlive {
            #[serde(rename = "TTL", default)]
            ttl: Option<Int>,
        }
        let reply: Reply = self
            .post("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = reply.result.and_then(|r| r.ttl).map_or(0, |t| t.0);
        Ok(u64::try_from(ttl).unwrap_or(0))
    }

    /// Ends `lease` now, deleting the keys it holds.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), ElectionError> {
        let _: serde_json::Value = self
            .post("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(())
    }

    /// Puts `key = value` under `lease` if `key` does not exist. `Ok(None)` when it was
    /// put; otherwise the value already there.
    pub async fn create(
        &self,
        key: &str,
        value: &str,
        lease: LeaseId,
    ) -> Result<Option<String>, ElectionError> {
        let key64 = B64.encode(key);
        let body = json!({
            "compare": [{ "key": key64, "target": "CREATE", "create_revision": "0" }],
            "success": [{ "request_put": {
                "key": key64, "value": B64.encode(value), "lease": lease.to_string()
            } }],
            "failure": [{ "request_range": { "key": key64 } }],
        });
        let reply: TxnReply = self.post("/v3/kv/txn", body).await?;
        if reply.succeeded {
            return Ok(None);
        }
        // The key may have gone between the compare and the range: report no holder.
        let holder = reply
            .responses
            .into_iter()
            .filter_map(|r| r.response_range)
            .flat_map(|r| r.kvs)
            .find_map(|kv| kv.value)
            .map(|v| decode_text(&v))
            .transpose()?;
        Ok(Some(holder.unwrap_or_default()))
    }

    /// Puts `key = value`, whatever was there, at most [`VALUE_BYTES_MAX`] bytes.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), ElectionError> {
        if value.len() > VALUE_BYTES_MAX {
            return Err(ElectionError::Reply(format!(
                "{key}: {} bytes, over the {VALUE_BYTES_MAX} etcd takes",
                value.len()
            )));
        }
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        let _: serde_json::Value = self.post("/v3/kv/put", body).await?;
        Ok(())
    }

    /// The bytes of `key`, if it exists.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, ElectionError> {
        let reply: RangeReply = self
            .post("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        (reply.kvs.into_iter().find_map(|kv| kv.value))
            .map(|v| {
                B64.decode(v)
                    .map_err(|e| ElectionError::Reply(format!("a value that is not base64: {e}")))
            })
            .transpose()
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<String>, ElectionError> {
        let reply: RangeReply = self
            .post("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        reply
            .kvs
            .into_iter()
            .find_map(|kv| kv.value)
            .map(|v| decode_text(&v))
            .transpose()
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, ElectionError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match self.post_to(endpoint, path, &body).await {
                Ok(reply) => return Ok(reply),
                Err(e @ ElectionError::Unreachable { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ElectionError::NoEndpoint))
    }

    async fn post_to<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ElectionError> {
        let url = format!("{endpoint}{path}");
        let unreachable = |e: reqwest::Error| ElectionError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        };
        let reply = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(unreachable)?;
        if bytes.len() > REPLY_BYTES_MAX {
            return Err(ElectionError::Reply(format!(
                "{url} answered {} bytes, more than {REPLY_BYTES_MAX}",
                bytes.len()
            )));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ElectionError::Reply(format!(
                "{url} answered {status}: {text}"
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ElectionError::Reply(format!("{url} answered undecodable JSON: {e}")))
    }
}

/// A proto3 JSON int64: a string, or a number from lenient encoders.
#[derive(Clone, Copy, Debug)]
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Int, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Number(i64),
        }
        match Repr::deserialize(d)? {
            Repr::Number(n) => Ok(Int(n)),
            Repr::Text(s) => s.parse().map(Int).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
struct TxnReply {
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<TxnResponse>,
}

#[derive(Deserialize)]
struct TxnResponse {
    response_range: Option<RangeReply>,
}

#[derive(Deserialize)]
struct RangeReply {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    value: Option<String>,
}

fn decode_text(b64: &str) -> Result<String, ElectionError> {
    let bytes = B64
        .decode(b64)
        .map_err(|e| ElectionError::Reply(format!("a value that is not base64: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
