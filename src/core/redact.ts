/**
 * Credentials in URLs (a webhook's `https://user:secret@host/…`, a database's `postgres://user:pw@host/db`, a
 * `?token=…` in a query) must never reach a log line, an error message or `--debug` output: logs are read by more
 * people than the configuration, and kept longer. Everything that prints a URL prints `redactUrl(url)`.
 */

/** Query parameters whose value is a secret by its name: token, access_token, api_key, secret, password, sig, auth, … */
const SECRET_PARAM = /token|secret|passw|pwd|key|sig|auth|credential|session/i;

/** What stands in for a secret. */
export const REDACTED = '***';

/** `scheme://user:password@` in free text (also where the rest of the URL does not parse). */
const USERINFO_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#@]*)@/gi;

/**
 * `url` with its credentials replaced by `***`: the password of the userinfo (any scheme; the user name stays,
 * it says who connects), a user name alone on http(s) (there it is usually a token: `https://TOKEN@host/`), and
 * the value of every query parameter named like a secret (`token`, `access_token`, `api_key`, `secret`,
 * `password`, `sig`, `auth`, …). A string that is not a URL is returned with any `scheme://user:password@` in it
 * redacted. Secrets in the path itself (as some chat services put them) cannot be told from a path.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactUrls(url);
  }
  let changed = false;
  if (u.password) {
    u.password = REDACTED;
    changed = true;
  } else if (u.username && (u.protocol === 'http:' || u.protocol === 'https:')) {
    u.username = REDACTED;
    changed = true;
  }
  for (const name of new Set(u.searchParams.keys())) {
    if (SECRET_PARAM.test(name)) {
      u.searchParams.set(name, REDACTED);
      changed = true;
    }
  }
  // Only a URL that held a secret is re-serialised: the others are printed exactly as given.
  return changed ? u.toString().replace(/%2A%2A%2A/g, REDACTED) : url;
}

/** `text` (an error message, a command line) with every URL in it passed through `redactUrl`. */
export function redactUrls(text: string): string {
  const userinfo = text.replace(USERINFO_IN_TEXT, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`);
  return userinfo.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>]+/gi, (m) => (/[?&@]/.test(m) ? redactUrlOnly(m) : m));
}

/** redactUrl without the free-text fallback (which would recurse). */
function redactUrlOnly(url: string): string {
  try {
    new URL(url);
  } catch {
    return url;
  }
  return redactUrl(url);
}
