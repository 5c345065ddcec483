//! The in-process frameworks' state in etcd (`--etcd`): the master that takes over from
//! a leader goes on with its jobs, rollouts and hosted schedulers. One key per blob,
//! under `/wasmos/<cluster>/state/`.

use election::etcd::Etcd;
use jobs::store::{StateStore, StoreFuture};

#[derive(Clone, Debug)]
pub(crate) struct EtcdStore {
    etcd: Etcd,
    prefix: String,
}

impl EtcdStore {
    pub(crate) fn new(endpoints: Vec<String>, cluster: &str) -> Result<EtcdStore, String> {
        let etcd = Etcd::new(endpoints).map_err(|e| e.to_string())?;
        Ok(EtcdStore {
            etcd,
            prefix: format!("/wasmos/{cluster}/state/"),
        })
    }
}

impl StateStore for EtcdStore {
    fn load<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let key = format!("{}{name}", self.prefix);
            self.etcd.get_bytes(&key).await.map_err(|e| e.to_string())
        })
    }

    fn save<'a>(&'a self, name: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = format!("{}{name}", self.prefix);
            self.etcd.put(&key, &bytes).await.map_err(|e| e.to_string())
        })
    }

    fn place(&self, name: &str) -> String {
        format!("etcd {}{name}", self.prefix)
    }
}
