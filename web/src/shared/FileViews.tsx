// The attachment pieces both apps show: the attach control (a labelled file input), the chips of
// the files chosen for the next message, and a message's files (images as thumbnails, others as
// download links). Class names take the app's prefix (`iw-` in the widget, none in the console).
import { useEffect, useState } from 'preact/hooks';
import { formatSize, type Lang, type WidgetStrings } from '../i18n';
import { isImage, saveAs, type BlobUrls, type FileRef, type PendingFile } from './files';

/** A paperclip (decorative: the control is named by its label). */
function Clip() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">
      <path
        d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5"
        fill="none"
        stroke="currentColor"
        stroke-width="1.8"
        stroke-linecap="round"
      />
    </svg>
  );
}

/** A file input reached by Tab (visually hidden; its label is the visible control). */
export function AttachInput({
  id,
  label,
  cls,
  disabled,
  accept,
  onFiles,
}: {
  id: string;
  label: string;
  cls: string;
  disabled?: boolean;
  accept?: string;
  onFiles: (files: File[]) => void;
}) {
  return (
    <span class={`${cls}attach`}>
      <input
        type="file"
        id={id}
        class={`${cls}attach-input`}
        multiple
        accept={accept}
        disabled={disabled}
        onChange={(e) => {
          const el = e.currentTarget;
          const files = el.files ? [...el.files] : [];
          // The same file may be chosen again after it was removed.
          el.value = '';
          if (files.length) onFiles(files);
        }}
      />
      <label for={id} class={`${cls}attach-label`} title={label}>
        <Clip />
        <span class={`${cls}attach-text`}>{label}</span>
      </label>
    </span>
  );
}

/** The files chosen for the next message: name, size, state, a remove button each. */
export function PendingChips({
  files,
  t,
  lang,
  cls,
  locked,
  onRemove,
}: {
  files: readonly PendingFile[];
  t: WidgetStrings;
  lang: Lang;
  cls: string;
  /** While the message is being sent: nothing may be removed. */
  locked?: boolean;
  onRemove: (key: string) => void;
}) {
  if (!files.length) return null;
  return (
    <ul class={`${cls}chips`} aria-label={t.attachedFiles}>
      {files.map((f) => (
        <li key={f.key} class={`${cls}chip`} data-state={f.state}>
          <span class={`${cls}chip-name`}>{f.name}</span>
          <span class={`${cls}chip-size`}>{formatSize(t, lang, f.size)}</span>
          {f.state === 'uploading' && <span class={`${cls}chip-state`}>{t.fileUploading}</span>}
          {f.state === 'failed' && (
            <span class={`${cls}chip-error`} role="alert">
              {f.error ? t.fileRefused(f.error) : f.tooLarge ? t.fileTooLarge : t.fileRefused('')}
            </span>
          )}
          <button
            type="button"
            class={`${cls}chip-remove`}
            aria-label={t.removeFile(f.name)}
            aria-disabled={locked}
            onClick={() => !locked && onRemove(f.key)}
          >
            <span aria-hidden="true">×</span>
          </button>
        </li>
      ))}
    </ul>
  );
}

/** The files of one message, in order. */
export function MessageFiles({
  files,
  urls,
  t,
  lang,
  cls,
  placeholderHref,
}: {
  files: readonly FileRef[];
  urls: BlobUrls;
  t: WidgetStrings;
  lang: Lang;
  cls: string;
  /** Where a link points until its bytes are here (they are fetched on the first click). */
  placeholderHref: (f: FileRef) => string;
}) {
  if (!files.length) return null;
  return (
    <ul class={`${cls}files`} aria-label={t.messageFiles}>
      {files.map((f) => (
        <li key={f.id} class={`${cls}file`} data-file={f.id} data-type={f.contentType}>
          {isImage(f) ? (
            <Thumbnail f={f} urls={urls} t={t} lang={lang} cls={cls} placeholderHref={placeholderHref} />
          ) : (
            <FileLink f={f} urls={urls} t={t} lang={lang} cls={cls} placeholderHref={placeholderHref} />
          )}
        </li>
      ))}
    </ul>
  );
}

interface OneFile {
  f: FileRef;
  urls: BlobUrls;
  t: WidgetStrings;
  lang: Lang;
  cls: string;
  placeholderHref: (f: FileRef) => string;
}

/** An image: fetched at once and shown small; a click opens it in full size. */
function Thumbnail(p: OneFile) {
  const { f, urls, t, lang, cls } = p;
  const [url, setUrl] = useState(() => urls.peek(f.id));
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (url) return;
    let live = true;
    urls.get(f.id).then(
      (u) => live && setUrl(u),
      () => live && setFailed(true),
    );
    return () => {
      live = false;
    };
  }, [f.id]);
  if (failed) return <FileLink {...p} />;
  const size = formatSize(t, lang, f.size);
  if (!url) {
    return (
      <span class={`${cls}thumb ${cls}thumb-loading`} aria-busy="true">
        {t.fileLoading} <span class={`${cls}file-name`}>{f.name}</span>
      </span>
    );
  }
  return (
    <a class={`${cls}thumb`} href={url} target="_blank" rel="noopener" title={t.openImage(f.name)}>
      <img src={url} alt={t.imageAlt(f.name)} />
      {/* Seen under the image; the image's text alternative names it already. */}
      <span class={`${cls}file-caption`} aria-hidden="true">
        <span class={`${cls}file-name`}>{f.name}</span> <span class={`${cls}file-size`}>{size}</span>
      </span>
    </a>
  );
}

/** Any other file: a link that fetches the bytes on the first click, then saves them. */
function FileLink({ f, urls, t, lang, cls, placeholderHref }: OneFile) {
  const [url, setUrl] = useState(() => urls.peek(f.id));
  const [state, setState] = useState<'idle' | 'loading' | 'failed'>('idle');
  return (
    <>
      <a
        class={`${cls}file-link`}
        href={url ?? placeholderHref(f)}
        download={f.name}
        title={t.downloadFile(f.name)}
        aria-busy={state === 'loading' || undefined}
        onClick={(e) => {
          // Already here: the link itself saves it.
          if (url) return;
          e.preventDefault();
          if (state === 'loading') return;
          const el = e.currentTarget;
          setState('loading');
          urls.get(f.id).then(
            (u) => {
              setUrl(u);
              setState('idle');
              saveAs(u, f.name, el);
            },
            () => setState('failed'),
          );
        }}
      >
        <span class={`${cls}file-name`}>{f.name}</span> <span class={`${cls}file-size`}>{formatSize(t, lang, f.size)}</span>
      </a>
      {state !== 'idle' && (
        <span class={`${cls}file-state`} role="status">
          {state === 'loading' ? t.fileLoading : t.fileUnavailable}
        </span>
      )}
    </>
  );
}
