/** Start of the run, for the log's time stamps and the reported duration. */
const t0 = Date.now();
/** Warnings of the run, shown in the report's settings. */
const warnings: string[] = [];

/** One line on stderr, stamped with the seconds since the start of the run. */
export function log(message: string): void {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}

/** Seconds since the start of the run. */
export function elapsedSeconds(): number {
  return (Date.now() - t0) / 1000;
}

/** Keeps `message` for the report and logs it. */
export function warn(message: string): void {
  warnings.push(message);
  log(`warning: ${message}`);
}

/** The report setting for the warnings so far (the first five), or nothing when there were none. */
export function warningsSetting(): { readonly warnings?: string } {
  return warnings.length > 0 ? { warnings: warnings.slice(0, 5).join(' | ') } : {};
}
