//! Builds OCI image layouts for tests: a busybox image from Debian's `busybox-static`, and
//! deliberately broken variants. Shared with the end-to-end tests (`tests/src/oci_image.rs`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// One entry of a layer.
pub enum Entry {
    Dir(&'static str),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    HardLink(String, String),
    /// A regular file whose name is written into the header as is, unchecked (to craft
    /// escaping paths that `tar::Builder` refuses).
    RawName(&'static str, Vec<u8>),
}

/// A layer tar from `entries`.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            Entry::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::HardLink(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                let name = target.as_bytes();
                h.as_old_mut().linkname[..name.len()].copy_from_slice(name);
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::RawName(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The busybox layer: `/bin/busybox` and a symlink per applet (`/bin/sh`, `/bin/sleep`…).
pub fn busybox_entries() -> Vec<Entry> {
    let binary = fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (apt-get install busybox-static)"));
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    let mut entries = vec![
        Entry::Dir("bin"),
        Entry::File("bin/busybox".into(), binary, 0o755),
    ];
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    entries
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a blob; returns its descriptor JSON.
pub fn put_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256_hex(bytes);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&hex), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// Writes an image layout at `layout` from `(media type, blob)` layers and a cmd.
/// Returns the manifest digest.
pub fn write_layout(layout: &Path, layers: &[(&str, Vec<u8>)], cmd: &[&str]) -> String {
    write_layout_for(layout, layers, cmd, native_arch())
}

/// [`write_layout`] of an image for the OCI architecture `arch` (`amd64`, `arm64`).
pub fn write_layout_for(
    layout: &Path,
    layers: &[(&str, Vec<u8>)],
    cmd: &[&str],
    arch: &str,
) -> String {
    let run = serde_json::json!({"Cmd": cmd, "Env": ["PATH=/bin", "IMAGE_VAR=from-image"]});
    write_layout_config(layout, layers, arch, run)
}

/// A busybox image layout whose processes run as `user` (`uid:gid`).
pub fn busybox_layout_as(layout: &Path, user: &str) -> String {
    let layer = gzip(&layer_tar(&busybox_entries()));
    let run = serde_json::json!({"Cmd": ["true"], "Env": ["PATH=/bin"], "User": user});
    write_layout_config(layout, &[(LAYER_GZIP, layer)], native_arch(), run)
}

fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image layout for `arch` whose config's `config` (what it runs, and how) is `run`.
fn write_layout_config(
    layout: &Path,
    layers: &[(&str, Vec<u8>)],
    arch: &str,
    run: serde_json::Value,
) -> String {
    fs::create_dir_all(layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let config = put_blob(layout, CONFIG, &serde_json::to_vec(&config).unwrap());
    let layers: Vec<_> = layers
        .iter()
        .map(|(mt, bytes)| put_blob(layout, mt, bytes))
        .collect();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers});
    let manifest = put_blob(layout, MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    let digest = manifest["digest"].as_str().unwrap().to_owned();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    digest
}

/// A busybox image layout (one gzip layer) at `layout`, running `cmd` by default.
pub fn busybox_layout(layout: &Path, cmd: &[&str]) -> String {
    let layer = gzip(&layer_tar(&busybox_entries()));
    write_layout(layout, &[(LAYER_GZIP, layer)], cmd)
}

/// Packs the layout directory `layout` into the tar `out`.
pub fn layout_tar(layout: &Path, out: &Path) -> PathBuf {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.append_dir_all(".", layout).unwrap();
    b.finish().unwrap();
    out.to_path_buf()
}
