/**
 * `Content-Disposition: attachment` for a download, with the file name both as an ASCII fallback
 * (RFC 6266 `filename="…"`, for old clients) and exactly (RFC 5987 `filename*=UTF-8''…`).
 * Always `attachment`: downloads carry user-chosen content types, and a browser must not render
 * them inline on our origin. Shared by the S3 presigner and the local download route so both
 * stores answer the same header.
 */
export function contentDisposition(filename?: string): string {
  if (filename === undefined || filename === '') return 'attachment';
  return `attachment; filename="${asciiFallback(filename)}"; filename*=UTF-8''${encodeRfc5987(filename)}`;
}

function asciiFallback(name: string): string {
  const ascii = name
    // "é" → "e" + combining accent, then drop the accent: a readable fallback for Latin names.
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    // Quotes and backslashes would end or escape the quoted-string; control characters and
    // anything non-ASCII are not allowed in it.
    .replace(/[^\x20-\x7e]|["\\]/g, '_');
  return ascii.trim() === '' ? 'download' : ascii;
}

function encodeRfc5987(value: string): string {
  // encodeURIComponent leaves ' ( ) * unescaped, which RFC 5987's attr-char does not allow.
  return encodeURIComponent(value).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
