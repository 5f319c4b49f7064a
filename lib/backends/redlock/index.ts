export { RedlockLockBackend } from './redlock.backend';
export type {
  RedlockLockBackendClientOptions,
  RedlockLockBackendOptions,
  RedlockLockBackendTuning,
  RedlockLockBackendUrlOptions,
} from './redlock-backend.options';
