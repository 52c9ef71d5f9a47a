import { renameSync, writeFileSync } from 'node:fs';

/** Writes a file atomically: a temporary sibling then a rename, so a crash never leaves half a file. */
export function writeFileAtomic(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, file);
}
