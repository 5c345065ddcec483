//! Serving the module store over zenoh: `modules/<sha256>?chunk=N` answers one
//! [`ModuleChunk`], and `master/upload/<principal>` takes uploads chunk by chunk.

use std::sync::Arc;
use std::time::Instant;

use proto::admin::UploadReply;
use proto::{DecodeError, ModuleChunk, ModuleHash};
use tokio::task::JoinHandle;
use zenoh::query::Query;

use crate::error::NetError;
use crate::modules::store::ModuleStore;
use crate::session::Net;
use crate::typed::{Request, reply_bytes, reply_error};

/// The query parameter naming the chunk asked for.
pub const CHUNK_PARAMETER: &str = "chunk";

/// The two queryables of a module store; both end when this is dropped.
pub struct ModuleServer {
    tasks: Vec<JoinHandle<()>>,
}

/// Who may upload: given the upload's key (`master/upload/<principal>`), `Err` says why
/// not, and the uploader is told.
pub type UploadGate = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

impl ModuleServer {
    /// Declares the queryables and serves `store` on them from background tasks; uploads
    /// pass `gate` first.
    pub async fn start(
        net: &Net,
        store: Arc<ModuleStore>,
        gate: UploadGate,
    ) -> Result<ModuleServer, NetError> {
        let chunks = net.declare_queryable(&net.keys().all_modules()).await?;
        let mut uploads = net
            .serve::<ModuleChunk>(&net.keys().all_master_upload())
            .await?;
        let chunk_task = {
            let (net, store) = (net.clone(), store.clone());
            tokio::spawn(async move {
                while let Ok(query) = chunks.recv_async().await {
                    answer_chunk_query(&net, &store, query).await;
                }
            })
        };
        let upload_task = tokio::spawn(async move {
            while let Some(request) = uploads.recv().await {
                answer_upload(&store, &gate, request).await;
            }
        });
        Ok(ModuleServer {
            tasks: vec![chunk_task, upload_task],
        })
    }
}

impl Drop for ModuleServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn answer_chunk_query(net: &Net, store: &Arc<ModuleStore>, query: Query) {
    let key = query.key_expr().as_str().to_owned();
    let outcome = match parse_chunk_query(net, &query) {
        Ok((sha256, index)) => {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.chunk(&sha256, index)).await {
                Ok(Ok(chunk)) => proto::encode(&chunk).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the module store failed: {e}")),
            }
        }
        Err(error) => {
            net.decode_errors().record(&key, &error);
            Err(error.to_string())
        }
    };
    let sent = match outcome {
        Ok(frame) => reply_bytes(&query, frame).await,
        Err(message) => reply_error(&query, &message).await,
    };
    if let Err(e) = sent {
        tracing::debug!(%key, %e, "could not answer a module chunk query");
    }
}

/// The module and chunk a query asks for: `modules/<sha256>?chunk=N`.
fn parse_chunk_query(net: &Net, query: &Query) -> Result<(ModuleHash, u32), DecodeError> {
    let key = query.key_expr().as_str();
    let sha256 = net
        .keys()
        .id_in(key)
        .and_then(ModuleHash::parse)
        .ok_or_else(|| DecodeError::Malformed(format!("{key} does not end in a module sha256")))?;
    let index = query.parameters().get(CHUNK_PARAMETER).ok_or_else(|| {
        DecodeError::Malformed(format!("the query has no {CHUNK_PARAMETER}=N parameter"))
    })?;
    let index = index.parse().map_err(|_| {
        DecodeError::Malformed(format!("{CHUNK_PARAMETER}={index:?} is not a chunk number"))
    })?;
    Ok((sha256, index))
}

async fn answer_upload(store: &Arc<ModuleStore>, gate: &UploadGate, request: Request<ModuleChunk>) {
    let store = store.clone();
    let key = request.key.clone();
    let (chunk, responder) = request.into_parts();
    let reply = match gate(&key) {
        Ok(()) => tokio::task::spawn_blocking(move || store.receive(chunk, Instant::now()))
            .await
            .unwrap_or_else(|e| UploadReply::Error {
                message: format!("the module store failed: {e}"),
            }),
        Err(message) => UploadReply::Error { message },
    };
    if let UploadReply::Error { message } = &reply {
        tracing::info!(%key, %message, "module upload chunk refused");
    }
    if let Err(e) = responder.reply(&reply).await {
        tracing::debug!(%key, %e, "could not answer an upload chunk");
    }
}
