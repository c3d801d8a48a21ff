/** The unverified claims of a JWT: only to key local storage and label the UI; the server verifies. */
export function jwtClaims(token: string): { sub?: string; name?: string; exp?: number } {
  try {
    const part = token.split('.')[1] ?? '';
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(b64 + '==='.slice((b64.length + 3) % 4)), (c) =>
        '%' + c.charCodeAt(0).toString(16).padStart(2, '0'),
      ).join(''),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}
