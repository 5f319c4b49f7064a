import { randomBytes } from 'node:crypto';

let counter = 0;

/** A random suffix, so each test owns its keys on the shared servers. */
export function uniqueId(): string {
  return randomBytes(6).toString('hex');
}

/**
 * A lock key no other test uses: jest workers and earlier runs share the servers, hence the pid,
 * a counter and a random part.
 */
export function uniqueKey(label = 'k'): string {
  counter += 1;
  return `ndl-test:${label}:${process.pid}:${counter}:${randomBytes(4).toString('hex')}`;
}

/** A fresh owner token; `label` says whose it is in failure messages. */
export function newToken(label = 't'): string {
  return `${label}-${randomBytes(8).toString('hex')}`;
}
