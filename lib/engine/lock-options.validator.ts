import { describe } from './lock-key.validator';

/** Throws a `TypeError` unless `value` is a finite number of ms greater than 0. */
export function assertTtl(value: unknown, where: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(
      `${where} must be a finite number of milliseconds > 0, got ${describe(value)}`,
    );
  }
}

/** Throws a `TypeError` unless `value` is a finite number of ms >= 0. */
export function assertWait(value: unknown, where: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TypeError(
      `${where} must be a finite number of milliseconds >= 0, got ${describe(value)}`,
    );
  }
}
