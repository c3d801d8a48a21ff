//! Files on Telegram. In: a client's document or photo (its largest size) is fetched from the Bot
//! API (`getFile`, then the file URL, streamed with the size bounded by the attachment limits)
//! and put in the object store as the client's upload, checked like a web upload (type by
//! content, size, count); the message carries the references. A file the limits refuse is named
//! in the message (`[attachment not accepted: name: reason]`, so the manager knows) and the client
//! is told why. Voice messages are named only. Out: a manager's files go to the chat as documents
//! (images as photos), fetched from the store through the client's own visibility rule.

use futures::StreamExt as _;
use teloxide::Bot;
use teloxide::net::Download as _;
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, FileId, InputFile, Message};
use tickets::PgStore;
use tickets::attachments::{Reader, Uploader};

use edge::files::{FileError, Files, Upload};

/// A file of a client's Telegram message, before it is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramFile {
    pub id: String,
    pub name: String,
    /// As Telegram declares it (empty: taken from the content).
    pub content_type: String,
    pub size: u64,
}

/// The files of `msg` the engine takes: its document, and its photo's largest size.
pub fn files_of(msg: &Message) -> Vec<TelegramFile> {
    let mut out = Vec::new();
    if let Some(d) = msg.document() {
        out.push(TelegramFile {
            id: d.file.id.0.clone(),
            name: d.file_name.clone().unwrap_or_else(|| "file".into()),
            content_type: d
                .mime_type
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            size: u64::from(d.file.size),
        });
    }
    if let Some(p) = msg.photo().and_then(|sizes| sizes.last()) {
        out.push(TelegramFile {
            id: p.file.id.0.clone(),
            name: format!("photo-{}.jpg", msg.id.0),
            content_type: String::new(),
            size: u64::from(p.file.size),
        });
    }
    out
}

/// Why fetching a Telegram file failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file itself is refused (size, type): told to the client, named in the message.
    #[error(transparent)]
    Refused(FileError),
    /// Telegram will never give the file: named in the message, the rest goes on.
    #[error("{0}")]
    Gone(String),
    /// The Bot API, the object store or the database failed: the update is taken again later.
    #[error("telegram file: {0}")]
    Transient(String),
}

impl From<FileError> for FetchError {
    fn from(e: FileError) -> Self {
        if e.is_refusal() {
            Self::Refused(e)
        } else {
            Self::Transient(e.to_string())
        }
    }
}

/// What became of a message's files: the references taken, and a line per refused file.
#[derive(Debug, Default)]
pub struct Taken {
    pub refs: Vec<proto::v1::AttachmentRef>,
    pub refused: Vec<String>,
}

/// Fetches `list` (the files of one message of `client_id`) and stores each as the client's.
/// A refused file is listed in [`Taken::refused`]; a transient failure fails the whole message
/// (the update comes again; uploads a retried message does not take are purged after a day).
pub async fn take_files(
    bot: &Bot,
    files: &Files,
    store: &PgStore,
    client_id: &str,
    list: &[TelegramFile],
) -> Result<Taken, FetchError> {
    let mut taken = Taken::default();
    for (i, f) in list.iter().enumerate() {
        let refused = |e: &FileError| format!("[attachment not accepted: {}: {e}]", f.name);
        if i >= files.limits.max_per_message {
            taken
                .refused
                .push(refused(&FileError::TooMany(files.limits.max_per_message)));
            continue;
        }
        match fetch(bot, files, f)
            .await
            .and_then(|data| data.map_err(FetchError::from))
        {
            Ok(data) => {
                let upload = Upload {
                    name: f.name.clone(),
                    content_type: f.content_type.clone(),
                    data,
                };
                match files
                    .accept(store, Uploader::Client(client_id), upload)
                    .await
                {
                    Ok(r) => taken.refs.push(edge::publish::attachment_ref(&r)),
                    Err(e) if e.is_refusal() => taken.refused.push(refused(&e)),
                    Err(e) => return Err(FetchError::Transient(e.to_string())),
                }
            }
            Err(FetchError::Refused(e)) => taken.refused.push(refused(&e)),
            Err(FetchError::Gone(why)) => taken
                .refused
                .push(format!("[attachment not accepted: {}: {why}]", f.name)),
            Err(e) => return Err(e),
        }
    }
    Ok(taken)
}

/// The bytes of `f`, never more than the size limit (checked before and while downloading).
async fn fetch(
    bot: &Bot,
    files: &Files,
    f: &TelegramFile,
) -> Result<Result<axum::body::Bytes, FileError>, FetchError> {
    let max = files.limits.max_bytes;
    if f.size > max {
        return Ok(Err(FileError::TooLarge { size: f.size, max }));
    }
    let file = match bot.get_file(FileId(f.id.clone())).await {
        Ok(file) => file,
        // Telegram answered and refused (an expired or unknown file): it never will give it, so
        // the message goes on without it rather than holding the chat's updates back.
        Err(teloxide::RequestError::Api(e)) => {
            return Err(FetchError::Gone(format!("Telegram refused the file: {e}")));
        }
        Err(e) => return Err(FetchError::Transient(format!("getFile: {e}"))),
    };
    let mut stream = bot.download_file_stream(&file.path);
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError::Transient(format!("download: {e}")))?;
        data.extend_from_slice(&chunk);
        if data.len() as u64 > max {
            return Ok(Err(FileError::TooLarge {
                size: data.len() as u64,
                max,
            }));
        }
    }
    Ok(Ok(data.into()))
}

/// Sends the files named in an event's `attachments` to `chat`: each fetched from the store as
/// the client may read it (a file they may not read is not sent), a photo for an image, else a
/// document. The first carries `caption` when it fits Telegram's caption (1,024 characters).
/// Returns the id of the first message sent, and whether it carried the caption.
pub async fn send_files(
    bot: &Bot,
    files: &Files,
    store: &PgStore,
    event: &tickets::Event,
    chat: ChatId,
    caption: &str,
) -> Result<(Option<String>, bool), teloxide::RequestError> {
    use teloxide::payloads::{SendDocumentSetters, SendPhotoSetters};
    let mut captioned = false;
    let mut first = None;
    for a in event.payload["attachments"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = a["id"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()) else {
            continue;
        };
        let fetched = files
            .fetch(store, Reader::Client(&event.client_id), id)
            .await
            .map_err(|e| teloxide::RequestError::Io(std::io::Error::other(e.to_string()).into()))?;
        let Some((r, data)) = fetched else {
            tracing::warn!(attachment_id = %id, client_id = %event.client_id,
                "telegram: a file of the event is not the client's to read; not sent");
            continue;
        };
        let input = InputFile::memory(data).file_name(r.name.clone());
        let cap = (!captioned && !caption.is_empty() && caption.chars().count() <= 1024)
            .then(|| caption.to_owned());
        captioned |= cap.is_some();
        let sent = if r.content_type.starts_with("image/") && r.content_type != "image/svg+xml" {
            let mut req = bot.send_photo(chat, input);
            if let Some(c) = cap {
                req = req.caption(c);
            }
            req.await?
        } else {
            let mut req = bot.send_document(chat, input);
            if let Some(c) = cap {
                req = req.caption(c);
            }
            req.await?
        };
        first.get_or_insert_with(|| sent.id.0.to_string());
    }
    Ok((first, captioned))
}

/// Whether an event names files.
pub fn has_files(event: &tickets::Event) -> bool {
    event.payload["attachments"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_and_the_largest_photo_are_the_files_taken() {
        let m: Message = serde_json::from_value(serde_json::json!({
            "message_id": 9, "date": 1_700_000_000,
            "chat": { "id": 42, "type": "private", "first_name": "Ivan" },
            "caption": "my card photo",
            "photo": [
                { "file_id": "small", "file_unique_id": "s", "file_size": 10, "width": 90, "height": 90 },
                { "file_id": "big", "file_unique_id": "b", "file_size": 900, "width": 800, "height": 800 }
            ]
        }))
        .expect("a photo message");
        assert_eq!(
            files_of(&m),
            [TelegramFile {
                id: "big".into(),
                name: "photo-9.jpg".into(),
                content_type: String::new(),
                size: 900
            }]
        );
    }
}
