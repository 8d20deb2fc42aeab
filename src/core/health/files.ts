import { replaceFile } from '../../store/safe-files.js';

/**
 * Replaces `path` with `text` atomically: written to a new temporary file in the same directory (O_EXCL, mode 0644:
 * the map and metrics are meant to be read), then renamed over it, so a reader (node_exporter's textfile collector,
 * a dashboard) never sees half a file, and a symlink planted at `path` is replaced rather than written through.
 */
export function writeFileAtomic(path: string, text: string): void {
  replaceFile(path, text, 0o644);
}
