//! Files that messages carry (attachments), for every edge: checked against the limits (size,
//! count, accepted types, content matching its declared type), put in the object store and read
//! back. The store is `object_store`'s: a local directory in dev (`file://`), any S3-compatible
//! store in production (`s3://`); the bytes never go through PostgreSQL or Kafka, where messages
//! carry only references (`tickets::attachments`).
//!
//! Object keys: `attachments/<yyyy>/<mm>/<dd>/<attachment id>` (the upload's UTC day: a bucket
//! lifecycle rule can expire by prefix); the id is a UUID, so a key names nobody and a listing of
//! the bucket tells nothing of who wrote what.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use platform::settings::{Env, Kind, Setting, SettingError};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

pub static ATTACHMENT_STORE: Setting = Setting::new(
    "INBOX_ATTACHMENT_STORE",
    Kind::Url,
    "file:///var/tmp/inbox-attachments",
    "where attachments are stored: `file:///<dir>` (one machine, or a volume every communication and gateway pod mounts) | `s3://<bucket>[/<prefix>]` (any S3-compatible store; credentials, region and endpoint from the standard `AWS_*` variables)",
);
pub static ATTACHMENT_MAX_BYTES: Setting = Setting::new(
    "INBOX_ATTACHMENT_MAX_BYTES",
    Kind::Int,
    "10485760",
    "largest file a client or a manager may attach, in bytes (channels.yaml `attachments.max_bytes` for client channels)",
);
pub static ATTACHMENT_TYPES: Setting = Setting::new(
    "INBOX_ATTACHMENT_TYPES",
    Kind::Text,
    DEFAULT_TYPES,
    "accepted file types (MIME, comma-separated; channels.yaml `attachments.types`)",
);
pub static ATTACHMENT_MAX_PER_MESSAGE: Setting = Setting::new(
    "INBOX_ATTACHMENT_MAX_PER_MESSAGE",
    Kind::Int,
    "5",
    "files one message may carry (channels.yaml `attachments.max_per_message`)",
);

// The S3 client's own variables, under the names every S3 tool reads (object_store's
// `AmazonS3Builder::from_env` takes them from the process environment); declared so the
// manifests and the README name them like the engine's settings.
pub static AWS_ACCESS_KEY_ID: Setting = Setting::optional(
    "AWS_ACCESS_KEY_ID",
    Kind::Text,
    "`s3://` attachment store: access key (absent: the pod's own identity, e.g. IRSA or an instance profile)",
);
pub static AWS_SECRET_ACCESS_KEY: Setting = Setting::optional(
    "AWS_SECRET_ACCESS_KEY",
    Kind::Secret,
    "`s3://` attachment store: secret key",
);
pub static AWS_ENDPOINT: Setting = Setting::optional(
    "AWS_ENDPOINT",
    Kind::Url,
    "`s3://` attachment store: an S3-compatible endpoint (Ceph RGW, MinIO); absent: AWS",
);
pub static AWS_REGION: Setting =
    Setting::optional("AWS_REGION", Kind::Text, "`s3://` attachment store: region");
pub static AWS_ALLOW_HTTP: Setting = Setting::optional(
    "AWS_ALLOW_HTTP",
    Kind::Bool,
    "`s3://` attachment store: allow a plain-HTTP endpoint (dev only)",
);

/// Images a browser shows, PDF and plain text: what a bank's client sends in chat.
pub const DEFAULT_TYPES: &str =
    "image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain";

/// Longest file name kept, in characters (longer ones are cut).
const MAX_NAME_CHARS: usize = 200;

/// Size, count and type limits of attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    /// Accepted MIME types, lowercase.
    pub types: Vec<String>,
    pub max_per_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            types: parse_types(DEFAULT_TYPES).unwrap_or_default(),
            max_per_message: 5,
        }
    }
}

impl Limits {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let types = env.text(&ATTACHMENT_TYPES);
        Ok(Self {
            max_bytes: env.parse(&ATTACHMENT_MAX_BYTES)?,
            types: parse_types(&types).map_err(|e| env.error(&ATTACHMENT_TYPES, &types, e))?,
            max_per_message: env.parse(&ATTACHMENT_MAX_PER_MESSAGE)?,
        })
    }
}

/// A comma-separated list of MIME types (`type/subtype`, lowercased); at least one.
pub fn parse_types(s: &str) -> Result<Vec<String>, String> {
    let types: Vec<String> = s
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return Err("names no type (e.g. image/png,application/pdf)".into());
    }
    if let Some(bad) = types.iter().find(|t| {
        !t.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && !t.contains(char::is_whitespace)
        })
    }) {
        return Err(format!("{bad:?} is not a MIME type (type/subtype)"));
    }
    Ok(types)
}

/// Why a file was refused (or could not be stored).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes; at most {max} are allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("files of type {found} are not accepted (accepted: {accepted})")]
    Type { found: String, accepted: String },
    #[error("the file's content is {found}, not the {declared} it is declared as")]
    Mismatch { declared: String, found: String },
    #[error("a text file must be UTF-8 without NUL characters")]
    NotText,
    #[error("a message carries at most {0} files")]
    TooMany(usize),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Db(#[from] tickets::StoreError),
}

impl FileError {
    /// The file itself is refused (the sender's to fix), not the stores.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Db(_))
    }
}

/// A file as a sender gave it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    /// As declared (a `Content-Type`, Telegram's or a MIME part's); empty or
    /// `application/octet-stream`: taken from the content.
    pub content_type: String,
    pub data: Bytes,
}

/// A file put in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: Uuid,
    pub object_key: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    /// A text file's content (for the AFC check).
    pub text: Option<String>,
}

impl Stored {
    pub fn record(&self) -> tickets::attachments::NewAttachment<'_> {
        tickets::attachments::NewAttachment {
            id: self.id,
            object_key: &self.object_key,
            name: &self.name,
            content_type: &self.content_type,
            size: self.size,
            sha256: &self.sha256,
            text: self.text.as_deref(),
        }
    }
}

/// The object store with the limits.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    pub limits: Limits,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("store", &self.store.to_string())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Files {
    /// The store `url` names (`file:///dir`, created if missing; `s3://bucket[/prefix]`).
    pub fn open(url: &str, limits: Limits) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| "is not an absolute file:// path".to_owned())?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|e| e.to_string())?,
                )
            }
            "s3" => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| e.to_string())?;
                // A prefix after the bucket keeps this engine's objects under it.
                let prefix = parsed.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
                }
            }
            other => return Err(format!("scheme {other}:// is not file:// or s3://")),
        };
        Ok(Self { store, limits })
    }

    /// [`Files::open`] from the settings.
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        Self::from_env_with(env, Limits::from_env(env)?)
    }

    /// The store of the settings with `limits` resolved elsewhere (communication's channels
    /// file).
    pub fn from_env_with(env: &Env, limits: Limits) -> Result<Self, SettingError> {
        let url = env.text(&ATTACHMENT_STORE);
        Self::open(&url, limits).map_err(|e| env.error(&ATTACHMENT_STORE, &url, e))
    }

    /// Refuses more files than one message may carry.
    pub fn check_count(&self, n: usize) -> Result<(), FileError> {
        if n > self.limits.max_per_message {
            return Err(FileError::TooMany(self.limits.max_per_message));
        }
        Ok(())
    }

    /// Checks `upload` against the limits and puts it in the store.
    pub async fn put(&self, upload: Upload) -> Result<Stored, FileError> {
        let checked = check(&self.limits, upload)?;
        let id = Uuid::new_v4();
        let object_key = format!("attachments/{}/{id}", chrono::Utc::now().format("%Y/%m/%d"));
        let sha256 = hex::encode(Sha256::digest(&checked.data));
        let size = i64::try_from(checked.data.len()).unwrap_or(i64::MAX);
        self.store
            .put(&ObjectPath::from(object_key.as_str()), checked.data.into())
            .await?;
        Ok(Stored {
            id,
            object_key,
            name: checked.name,
            content_type: checked.content_type,
            size,
            sha256,
            text: checked.text,
        })
    }

    /// Checks and stores `upload` as `by`'s, to go on one of their messages.
    pub async fn accept(
        &self,
        store: &tickets::PgStore,
        by: tickets::attachments::Uploader<'_>,
        upload: Upload,
    ) -> Result<tickets::AttachmentRef, FileError> {
        let stored = self.put(upload).await?;
        Ok(store.add_attachment(by, &stored.record()).await?)
    }

    /// The file `id` with its bytes, if `reader` may fetch it (None: not theirs to read, or no
    /// such file: the two are not told apart).
    pub async fn fetch(
        &self,
        store: &tickets::PgStore,
        reader: tickets::attachments::Reader<'_>,
        id: Uuid,
    ) -> Result<Option<(tickets::AttachmentRef, Bytes)>, FileError> {
        let Some(f) = store.fetchable_attachment(reader, id).await? else {
            return Ok(None);
        };
        match self.get(&f.object_key).await {
            Ok(data) => Ok(Some((f.attachment, data))),
            // Purged meanwhile (its message blocked a moment ago).
            Err(FileError::Store(object_store::Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bytes of the object `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, FileError> {
        Ok(self
            .store
            .get(&ObjectPath::from(key))
            .await?
            .bytes()
            .await?)
    }

    /// Deletes the object `key`; one already gone is deleted too.
    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// How often [`purge`] looks for objects to delete.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Deletes, every [`PURGE_EVERY`] until `stop`, the objects of blocked messages' files (the
/// message is blocked in the store at once; its bytes leave the object store here) and of
/// uploads no message took.
pub async fn purge(
    store: tickets::PgStore,
    files: Files,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match purge_once(&store, &files).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "attachments purged"),
            Err(e) => tracing::warn!(error = %e, "attachment purge failed; tried again later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}

/// One round of [`purge`]: how many objects it deleted.
pub async fn purge_once(store: &tickets::PgStore, files: &Files) -> Result<usize, FileError> {
    let mut n = 0;
    loop {
        let blocked = store.blocked_attachments_to_purge(100).await?;
        let mut done = Vec::with_capacity(blocked.len());
        for (id, key) in &blocked {
            files.delete(key).await?;
            done.push(*id);
        }
        store.mark_attachments_purged(&done).await?;
        let abandoned = store.forget_abandoned_attachments(100).await?;
        for key in &abandoned {
            files.delete(key).await?;
        }
        n += done.len() + abandoned.len();
        if blocked.len() < 100 && abandoned.len() < 100 {
            return Ok(n);
        }
    }
}

/// A file as an HTTP response: its type, a download (inline only for an image, so a browser
/// shows it in an `<img>`), never sniffed or run as a page of the serving origin, not cached
/// by shared caches.
pub fn download_response(file: &tickets::AttachmentRef, data: Bytes) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse as _;
    let disposition = if file.content_type.starts_with("image/") {
        "inline"
    } else {
        "attachment"
    };
    // RFC 6266/5987: the name percent-encoded as UTF-8, with an ASCII fallback.
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(&file.name, KEPT);
    let fallback: String = file
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");
    let mut response = data.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

/// A file that passed [`check`].
#[derive(Debug)]
struct Checked {
    name: String,
    content_type: String,
    data: Bytes,
    text: Option<String>,
}

/// The limits applied to one file: not empty, not too large, of an accepted type whose content is
/// what it claims (a file's bytes decide: an executable named `.pdf` is refused), a text file
/// UTF-8. The name is cleaned (no path, no control characters, at most [`MAX_NAME_CHARS`]).
fn check(limits: &Limits, upload: Upload) -> Result<Checked, FileError> {
    let size = upload.data.len() as u64;
    if size == 0 {
        return Err(FileError::Empty);
    }
    if size > limits.max_bytes {
        return Err(FileError::TooLarge {
            size,
            max: limits.max_bytes,
        });
    }
    let declared = declared_type(&upload.content_type);
    let sniffed = infer::get(&upload.data).map(|t| t.mime_type().to_owned());
    let is_text = std::str::from_utf8(&upload.data).is_ok_and(|t| !t.contains('\0'));
    let content_type = match (declared, sniffed) {
        (None, Some(found)) => found,
        (None, None) if is_text => "text/plain".to_owned(),
        (None, None) => "application/octet-stream".to_owned(),
        (Some(d), Some(found)) if d != found => {
            return Err(FileError::Mismatch { declared: d, found });
        }
        (Some(d), None) if d != "text/plain" && !d.starts_with("text/") => {
            // A binary type the content does not show (a text posing as a PNG).
            return Err(FileError::Mismatch {
                declared: d,
                found: if is_text { "text" } else { "unrecognised data" }.to_owned(),
            });
        }
        (Some(d), _) => d,
    };
    if !limits.types.contains(&content_type) {
        return Err(FileError::Type {
            found: content_type,
            accepted: limits.types.join(", "),
        });
    }
    let text = if content_type.starts_with("text/") {
        if !is_text {
            return Err(FileError::NotText);
        }
        Some(String::from_utf8_lossy(&upload.data).into_owned())
    } else {
        None
    };
    Ok(Checked {
        name: clean_name(&upload.name),
        content_type,
        data: upload.data,
        text,
    })
}

/// A declared type without its parameters, lowercased; None when it says nothing
/// (`application/octet-stream`, empty).
fn declared_type(t: &str) -> Option<String> {
    let t = t
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!t.is_empty() && t != "application/octet-stream").then_some(t)
}

/// A file name as shown: its last path component, without control characters, cut to
/// [`MAX_NAME_CHARS`]; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];

    fn upload(name: &str, content_type: &str, data: &[u8]) -> Upload {
        Upload {
            name: name.into(),
            content_type: content_type.into(),
            data: Bytes::copy_from_slice(data),
        }
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 64,
            ..Limits::default()
        }
    }

    #[test]
    fn a_file_is_taken_by_its_content_and_a_false_type_is_refused() {
        let png = check(&limits(), upload("photo.png", "image/png", PNG));
        assert!(matches!(png, Ok(c) if c.content_type == "image/png" && c.text.is_none()));
        // No declared type: the content decides.
        let sniffed = check(&limits(), upload("x", "application/octet-stream", PNG));
        assert!(matches!(sniffed, Ok(c) if c.content_type == "image/png"));
        // A PNG declared as a PDF, a text declared as a PNG: refused.
        assert!(matches!(
            check(&limits(), upload("a.pdf", "application/pdf", PNG)),
            Err(FileError::Mismatch { .. })
        ));
        assert!(matches!(
            check(&limits(), upload("a.png", "image/png", b"hello")),
            Err(FileError::Mismatch { .. })
        ));
        // A type the limits do not accept.
        assert!(matches!(
            check(&limits(), upload("a.html", "text/html", b"<b>x</b>")),
            Err(FileError::Type { .. })
        ));
    }

    #[test]
    fn a_text_file_is_read_for_the_check_and_must_be_text() {
        let t = check(
            &limits(),
            upload("note.txt", "text/plain; charset=utf-8", b"card 4111"),
        );
        assert!(matches!(t, Ok(c) if c.text.as_deref() == Some("card 4111")));
        assert!(matches!(
            check(&limits(), upload("n.txt", "text/plain", b"a\0b")),
            Err(FileError::NotText)
        ));
    }

    #[test]
    fn empty_and_oversized_files_are_refused() {
        assert!(matches!(
            check(&limits(), upload("e.txt", "text/plain", b"")),
            Err(FileError::Empty)
        ));
        assert!(matches!(
            check(&limits(), upload("big.txt", "text/plain", &[b'a'; 65])),
            Err(FileError::TooLarge { size: 65, max: 64 })
        ));
    }

    #[test]
    fn a_name_keeps_only_its_last_component_without_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\a\\scan.pdf"), "scan.pdf");
        assert_eq!(clean_name("a\u{7}b\n.png"), "ab.png");
        assert_eq!(clean_name(""), "file");
        assert_eq!(clean_name(".."), "file");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn types_are_a_list_of_mime_types() {
        assert_eq!(
            parse_types(" Image/PNG , text/plain"),
            Ok(vec!["image/png".to_owned(), "text/plain".to_owned()])
        );
        assert!(parse_types("").is_err());
        assert!(parse_types("png").is_err());
    }

    #[tokio::test]
    async fn a_file_goes_into_the_store_and_comes_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("inbox-files-{}", Uuid::new_v4()));
        let url = url::Url::from_directory_path(&dir).map_err(|()| "path")?;
        let files = Files::open(url.as_str(), limits())?;
        let stored = files.put(upload("p.png", "image/png", PNG)).await?;
        assert!(stored.object_key.starts_with("attachments/"));
        assert_eq!(stored.size, PNG.len() as i64);
        assert_eq!(files.get(&stored.object_key).await?.as_ref(), PNG);
        files.delete(&stored.object_key).await?;
        files.delete(&stored.object_key).await?;
        assert!(files.get(&stored.object_key).await.is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
