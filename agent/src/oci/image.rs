//! Reading an OCI image layout (a directory, or a `.tar` of one) and turning it into a
//! cached, unpacked root filesystem.
//!
//! Every blob is checked against its descriptor: size when opened, sha256 over the very
//! bytes read (JSON before it is parsed; a layer while it is unpacked into a temporary
//! rootfs that is discarded on a mismatch). Only sha256 digests are accepted, which also
//! keeps blob paths inside `blobs/sha256/`. Layers are applied in manifest order by
//! [`super::unpack`]. The result is cached under
//! `<cache>/sha256-<manifest hex>/` (written to a temporary directory first, then renamed
//! into place, so a reader never sees half a rootfs).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{
    Descriptor, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::unique_name;
use super::unpack::{self, UnpackError, UnpackLimits};

/// Largest JSON document (index, manifest, config) read from a layout.
pub const JSON_BYTES_MAX: u64 = 4 << 20;
/// Deepest chain of nested image indexes followed to find a manifest.
pub const INDEX_DEPTH_MAX: usize = 4;
/// Largest layout tar accepted, in bytes.
pub const LAYOUT_TAR_BYTES_MAX: u64 = 8 << 30;
/// Most entries in a layout tar.
pub const LAYOUT_TAR_ENTRIES_MAX: u64 = 10_000;

/// Mount points created in every cached rootfs so that runc never has to write into the
/// shared, read-only-mounted cache.
pub const MOUNT_POINTS: [&str; 5] = ["proc", "dev", "sys", "tmp", "sandbox"];

/// Name prefixes of the temporary directories in the cache.
const UNPACK_PREFIX: &str = ".unpack";
const LAYOUT_PREFIX: &str = ".layout";

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Why an image could not be prepared. Every variant is a property of the image (or of
/// the disk); none is a reason to stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image layout {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("image layout: {0}")]
    Invalid(String),
    #[error("blob {digest} is missing from the image layout")]
    MissingBlob { digest: String },
    #[error("blob {digest} does not match its digest (content hashes to sha256:{actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported digest algorithm in {0} (only sha256)")]
    UnsupportedDigest(String),
    #[error("unsupported media type {media_type} for the {role}")]
    UnsupportedMediaType {
        role: &'static str,
        media_type: String,
    },
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: UnpackError },
    #[error("the image is for {image}, this agent is {agent}")]
    WrongPlatform { image: String, agent: String },
}

impl ImageError {
    /// The same error with the path prefix `from` written as `to`.
    fn with_path_renamed(self, from: &str, to: &str) -> ImageError {
        match self {
            ImageError::Io { path, source } => ImageError::Io {
                path: path.replacen(from, to, 1),
                source,
            },
            ImageError::Invalid(text) => ImageError::Invalid(text.replacen(from, to, 1)),
            other => other,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What the image asks to run, kept beside the cached rootfs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image ready to run: its unpacked rootfs in the cache and its run configuration.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    /// `sha256:<hex>` of the manifest: the cache key.
    pub manifest_digest: String,
    pub rootfs: PathBuf,
    pub config: ImageRunConfig,
    /// True when the rootfs was already cached and nothing was unpacked.
    pub from_cache: bool,
}

/// The rootfs cache: `<dir>/sha256-<hex>/{rootfs/,image.json}`.
#[derive(Clone, Debug)]
pub struct ImageCache {
    dir: PathBuf,
    limits: UnpackLimits,
}

impl ImageCache {
    pub fn new(dir: PathBuf) -> ImageCache {
        ImageCache {
            dir,
            limits: UnpackLimits::default(),
        }
    }

    /// Removes the temporary directories of unpacks whose process is gone (an agent
    /// killed in the middle of one); those of live processes are left alone.
    pub fn remove_abandoned(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = [UNPACK_PREFIX, LAYOUT_PREFIX]
                .iter()
                .find_map(|p| super::unique_name_pid(&name, p));
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                tracing::info!(dir = %name, "oci: abandoned unpack removed");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Verifies the image at `layout` (directory or tar) and returns its rootfs, unpacking
    /// it unless the manifest's rootfs is already cached.
    pub fn prepare(&self, layout: &Path) -> Result<PreparedImage, ImageError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let meta = fs::metadata(layout).map_err(io_err(layout))?;
        if meta.is_dir() {
            return self.prepare_dir(layout);
        }
        let extracted = self.dir.join(unique_name(LAYOUT_PREFIX));
        let result =
            extract_layout_tar(layout, &extracted).and_then(|()| self.prepare_dir(&extracted));
        let _ = fs::remove_dir_all(&extracted);
        // Reasons name files of the tar, not of the temporary directory it was unpacked to.
        let extracted = extracted.display().to_string();
        let in_tar = format!("{}:", layout.display());
        result.map_err(|e| e.with_path_renamed(&extracted, &in_tar))
    }

    fn prepare_dir(&self, layout: &Path) -> Result<PreparedImage, ImageError> {
        let layout = Layout {
            dir: layout.to_path_buf(),
        };
        layout.check_header()?;
        let (manifest_digest, manifest) = layout.manifest()?;
        let hex = manifest_digest.trim_start_matches("sha256:");
        let cached = self.dir.join(format!("sha256-{hex}"));
        if let Some(config) = read_cached_config(&cached) {
            tracing::debug!(%manifest_digest, "oci: rootfs from cache");
            return Ok(PreparedImage {
                manifest_digest,
                rootfs: cached.join("rootfs"),
                config,
                from_cache: true,
            });
        }
        let config = layout.run_config(manifest.config())?;
        let tmp = self.dir.join(unique_name(UNPACK_PREFIX));
        let result = self.unpack_into(&layout, &manifest, &config, &tmp);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Atomic publication; a concurrent unpack of the same image may have won the race,
        // in which case its (identical) rootfs is used and ours is discarded.
        if let Err(e) = fs::rename(&tmp, &cached) {
            let _ = fs::remove_dir_all(&tmp);
            if read_cached_config(&cached).is_none() {
                return Err(io_err(&cached)(e));
            }
        }
        tracing::info!(%manifest_digest, "oci: rootfs unpacked into the cache");
        Ok(PreparedImage {
            manifest_digest,
            rootfs: cached.join("rootfs"),
            config,
            from_cache: false,
        })
    }

    fn unpack_into(
        &self,
        layout: &Layout,
        manifest: &ImageManifest,
        config: &ImageRunConfig,
        tmp: &Path,
    ) -> Result<(), ImageError> {
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_err(&rootfs))?;
        let mut budget = self.limits;
        for layer in manifest.layers() {
            let gzip = layer_is_gzip(layer.media_type())?;
            let mut blob = layout.open_blob(layer)?;
            let applied = if gzip {
                unpack::apply_layer(
                    flate2::read::GzDecoder::new(&mut blob),
                    &rootfs,
                    &mut budget,
                )
            } else {
                unpack::apply_layer(&mut blob, &rootfs, &mut budget)
            };
            // The digest is checked on the very bytes unpacked (no second read that could
            // see other content), and takes precedence over what the bytes did: a tampered
            // layer is reported as such even when it also fails to decompress.
            blob.verify()?;
            applied.map_err(|source| ImageError::Layer {
                digest: layer.digest().to_string(),
                source,
            })?;
        }
        for dir in MOUNT_POINTS {
            let missing = fs::symlink_metadata(rootfs.join(dir)).is_err();
            let made = unpack::ensure_dir(&rootfs, Path::new(dir)).map_err(|source| {
                ImageError::Layer {
                    digest: "(mount points)".into(),
                    source,
                }
            })?;
            // runc gives the tmpfs on /tmp the mode of the directory it covers: made here,
            // it is 1777 as /tmp should be, so that an image's non-root user may write it.
            if missing && dir == "tmp" {
                fs::set_permissions(&made, fs::Permissions::from_mode(0o1777))
                    .map_err(io_err(&made))?;
            }
        }
        // runc creates a missing working directory in the rootfs, which is the shared
        // cache: create it now, while the rootfs is still private. (If it cannot be, runc
        // reports why when it starts the container.)
        if let Some(dir) = config.working_dir.as_deref().filter(|d| d.starts_with('/'))
            && let Err(e) = unpack::ensure_dir(&rootfs, Path::new(dir.trim_start_matches('/')))
        {
            tracing::debug!(working_dir = dir, error = %e, "oci: working directory not created");
        }
        let json = serde_json::to_vec(config).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let path = tmp.join("image.json");
        fs::write(&path, json).map_err(io_err(&path))
    }
}

fn read_cached_config(cached: &Path) -> Option<ImageRunConfig> {
    let bytes = fs::read(cached.join("image.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn layer_is_gzip(media_type: &MediaType) -> Result<bool, ImageError> {
    match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Ok(false),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Ok(true),
        MediaType::Other(s) if s == DOCKER_LAYER_GZIP => Ok(true),
        other => Err(ImageError::UnsupportedMediaType {
            role: "layer",
            media_type: other.to_string(),
        }),
    }
}

struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn check_header(&self) -> Result<(), ImageError> {
        let path = self.dir.join("oci-layout");
        let bytes = read_capped(&path, JSON_BYTES_MAX)?;
        let header: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid(format!("oci-layout: {e}")))?;
        match header.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(v) if v.starts_with("1.") => Ok(()),
            Some(v) => Err(ImageError::Invalid(format!(
                "unsupported imageLayoutVersion {v}"
            ))),
            None => Err(ImageError::Invalid(
                "oci-layout has no imageLayoutVersion".into(),
            )),
        }
    }

    /// The manifest to run: the first one for linux on this architecture (or without a
    /// platform), following nested indexes up to [`INDEX_DEPTH_MAX`].
    fn manifest(&self) -> Result<(String, ImageManifest), ImageError> {
        let path = self.dir.join("index.json");
        let bytes = read_capped(&path, JSON_BYTES_MAX)?;
        let mut index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid(format!("index.json: {e}")))?;
        for _ in 0..INDEX_DEPTH_MAX {
            let desc = pick_manifest(index.manifests())?;
            let bytes = self.verified_json(&desc)?;
            match desc.media_type() {
                MediaType::ImageManifest => {}
                MediaType::Other(s) if s == DOCKER_MANIFEST => {}
                MediaType::ImageIndex => {
                    index = parse_json(&bytes, "image index")?;
                    continue;
                }
                MediaType::Other(s) if s == DOCKER_MANIFEST_LIST => {
                    index = parse_json(&bytes, "image index")?;
                    continue;
                }
                other => {
                    return Err(ImageError::UnsupportedMediaType {
                        role: "manifest",
                        media_type: other.to_string(),
                    });
                }
            }
            let manifest: ImageManifest = parse_json(&bytes, "manifest")?;
            return Ok((desc.digest().to_string(), manifest));
        }
        Err(ImageError::Invalid(format!(
            "image indexes nested deeper than {INDEX_DEPTH_MAX}"
        )))
    }

    fn run_config(&self, desc: &Descriptor) -> Result<ImageRunConfig, ImageError> {
        match desc.media_type() {
            MediaType::ImageConfig => {}
            MediaType::Other(s) if s == DOCKER_CONFIG => {}
            other => {
                return Err(ImageError::UnsupportedMediaType {
                    role: "config",
                    media_type: other.to_string(),
                });
            }
        }
        let bytes = self.verified_json(desc)?;
        let image: ImageConfiguration = parse_json(&bytes, "image config")?;
        let platform = format!("{}/{}", image.os(), image.architecture());
        let here = format!("linux/{}", oci_arch(std::env::consts::ARCH));
        if platform != here {
            return Err(ImageError::WrongPlatform {
                image: platform,
                agent: here,
            });
        }
        let Some(c) = image.config() else {
            return Ok(ImageRunConfig::default());
        };
        Ok(ImageRunConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        })
    }

    fn verified_json(&self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if desc.size() > JSON_BYTES_MAX {
            return Err(ImageError::Invalid(format!(
                "{} is {} bytes, more than the {JSON_BYTES_MAX} allowed for JSON",
                desc.digest(),
                desc.size()
            )));
        }
        let mut blob = self.open_blob(desc)?;
        let mut bytes = Vec::new();
        let path = blob.path.clone();
        (&mut blob)
            .take(JSON_BYTES_MAX)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        blob.verify()?;
        Ok(bytes)
    }

    /// Opens the blob `desc` names after checking its size; its sha256 is checked by
    /// [`VerifyingBlob::verify`] once it has been read.
    fn open_blob(&self, desc: &Descriptor) -> Result<VerifyingBlob, ImageError> {
        let digest = desc.digest();
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(ImageError::UnsupportedDigest(digest.to_string()));
        }
        // oci-spec guarantees 64 lowercase hex characters for sha256: the path stays here.
        let path = self.dir.join("blobs/sha256").join(digest.digest());
        let (file, meta) = match open_regular(&path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: digest.to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(ImageError::Invalid(format!(
                    "blob {digest} is not a regular file"
                )));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if meta.len() != desc.size() {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: desc.size(),
                actual: meta.len(),
            });
        }
        Ok(VerifyingBlob {
            file,
            path,
            hasher: Sha256::new(),
            expected: digest.to_string(),
        })
    }
}

/// A blob read through a sha256 hasher.
struct VerifyingBlob {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    /// `sha256:<hex>`
    expected: String,
}

impl Read for VerifyingBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl VerifyingBlob {
    /// Reads what is left of the blob and checks the digest of all of it.
    fn verify(mut self) -> Result<(), ImageError> {
        io::copy(&mut self, &mut io::sink()).map_err(io_err(&self.path))?;
        let actual = hex::encode(self.hasher.finalize());
        if self.expected.strip_prefix("sha256:") == Some(actual.as_str()) {
            Ok(())
        } else {
            Err(ImageError::DigestMismatch {
                digest: self.expected,
                actual,
            })
        }
    }
}

/// The OCI name (`amd64`) of a Rust/Linux architecture name (`x86_64`).
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The agents' `arch` attribute (`x86_64`) for an OCI architecture name (`amd64`).
pub fn agent_arch(oci: &str) -> &str {
    match oci {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "x86",
        other => other,
    }
}

/// The one architecture an image layout runs on (as its index names it, or a directory's
/// single manifest's config), to place it on agents of that `arch`; `None` when it names
/// several (each agent picks its own) or none. `layout` is a directory or a `.tar` of one.
pub fn image_arch(layout: &Path) -> Result<Option<String>, ImageError> {
    if !fs::metadata(layout).map_err(io_err(layout))?.is_dir() {
        return layout_tar_arch(layout);
    }
    let layout = Layout {
        dir: layout.to_path_buf(),
    };
    layout.check_header()?;
    let bytes = read_capped(&layout.dir.join("index.json"), JSON_BYTES_MAX)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Invalid(format!("index.json: {e}")))?;
    if let Some(arch) = index_arch(&index) {
        return Ok(arch);
    }
    let (_, manifest) = layout.manifest()?;
    let config = layout.verified_json(manifest.config())?;
    let image: ImageConfiguration = parse_json(&config, "image config")?;
    Ok(Some(
        agent_arch(&image.architecture().to_string()).to_owned(),
    ))
}

/// The architecture an index's platforms name, as agents name it: `Some(None)` when they
/// name several, `None` when they name none.
fn index_arch(index: &ImageIndex) -> Option<Option<String>> {
    let archs: BTreeSet<String> = (index.manifests().iter())
        .filter_map(|d| d.platform().as_ref())
        .map(|p| p.architecture().to_string())
        .collect();
    match archs.len() {
        0 => None,
        1 => Some(archs.first().map(|a| agent_arch(a).to_owned())),
        _ => Some(None),
    }
}

fn pick_manifest(manifests: &[Descriptor]) -> Result<Descriptor, ImageError> {
    let arch = oci_arch(std::env::consts::ARCH);
    let fits = |d: &&Descriptor| match d.platform() {
        None => true,
        Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == arch,
    };
    manifests
        .iter()
        .find(fits)
        .cloned()
        .ok_or_else(|| ImageError::Invalid(format!("no manifest for linux/{arch} in the index")))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))
}

/// Opens `path` for reading if it is a regular file (after symlinks), without blocking on
/// a FIFO planted in a layout; `InvalidInput` when it is something else.
fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO would otherwise wait forever for a writer. It changes
    // nothing for regular files, the only kind read.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ImageError> {
    let (file, _) = open_regular(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImageError::Invalid(format!("{} is missing", path.display())),
        io::ErrorKind::InvalidInput => {
            ImageError::Invalid(format!("{} is not a regular file", path.display()))
        }
        _ => io_err(path)(e),
    })?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(ImageError::Invalid(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The tar at `tar_path`, opened if it is a regular file.
fn layout_tar(tar_path: &Path) -> Result<tar::Archive<File>, ImageError> {
    let (file, _) = open_regular(tar_path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => ImageError::Invalid(format!(
            "{} is neither an image layout directory nor a tar file",
            tar_path.display()
        )),
        _ => io_err(tar_path)(e),
    })?;
    Ok(tar::Archive::new(file))
}

fn layout_tar_error(tar_path: &Path, what: String) -> ImageError {
    ImageError::Invalid(format!("layout tar {}: {what}", tar_path.display()))
}

fn tar_unreadable(tar_path: &Path, e: &io::Error) -> ImageError {
    let why = unpack::archive_message(e);
    layout_tar_error(tar_path, format!("not a readable tar archive: {why}"))
}

/// [`image_arch`] of a layout tar, from its `index.json` alone, read in place: `None`
/// when it names no architecture (or several).
fn layout_tar_arch(tar_path: &Path) -> Result<Option<String>, ImageError> {
    let mut archive = layout_tar(tar_path)?;
    let unreadable = |e: io::Error| tar_unreadable(tar_path, &e);
    // Seeking past blobs: GNU tar puts index.json after them.
    for (n, entry) in archive.entries_with_seek().map_err(unreadable)?.enumerate() {
        if n as u64 >= LAYOUT_TAR_ENTRIES_MAX {
            return Err(layout_tar_error(tar_path, "too many entries".into()));
        }
        let entry = entry.map_err(unreadable)?;
        let path = entry.path().map_err(unreadable)?;
        let mut named = path.components().filter(|c| *c != Component::CurDir);
        if !(named.next() == Some(Component::Normal("index.json".as_ref()))
            && named.next().is_none())
        {
            continue;
        }
        if entry.size() > JSON_BYTES_MAX {
            return Err(layout_tar_error(tar_path, "index.json is too large".into()));
        }
        let mut bytes = Vec::new();
        entry
            .take(JSON_BYTES_MAX)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| layout_tar_error(tar_path, format!("index.json: {e}")))?;
        return Ok(index_arch(&index).flatten());
    }
    Err(layout_tar_error(tar_path, "no index.json in it".into()))
}

/// Extracts a layout tar: regular files and directories only, at relative paths without
/// `..`, within [`LAYOUT_TAR_BYTES_MAX`] and [`LAYOUT_TAR_ENTRIES_MAX`].
fn extract_layout_tar(tar_path: &Path, into: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(into).map_err(io_err(into))?;
    let mut archive = layout_tar(tar_path)?;
    let bad = |what: String| layout_tar_error(tar_path, what);
    let (mut bytes, mut entries) = (0u64, 0u64);
    let unreadable = |e: io::Error| tar_unreadable(tar_path, &e);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > LAYOUT_TAR_ENTRIES_MAX || bytes > LAYOUT_TAR_BYTES_MAX {
            return Err(bad("too large".into()));
        }
        let name = entry.path().map_err(unreadable)?.into_owned();
        let mut rel = PathBuf::new();
        for c in name.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                _ => return Err(bad(format!("entry {} leaves the layout", name.display()))),
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dest = into.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&dest).map_err(io_err(&dest))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let mut out = File::create(&dest).map_err(io_err(&dest))?;
                io::copy(&mut entry, &mut out).map_err(io_err(&dest))?;
            }
            other => {
                return Err(bad(format!(
                    "entry {} has unsupported type {other:?}",
                    name.display()
                )));
            }
        }
    }
    Ok(())
}
